"""Benchmark `prepare` against a straightforward per-line ``json.loads`` loop, at 50k and 200k records.

    .venv/bin/python bench/prepare.py [--sizes 50000,200000] [--repeats 3] [--out bench/results-prepare.md]

Input: a generated raw JSONL file ``{"prompt", "completion"}`` per size (seeded): banking-support-like
prompts of 8-40 words and one of 60 intent labels as completion, with ~1 % exact and ~0.5 % near
duplicates (valid data: prepare dedupes and flags them, the loop keeps them). A second file of the
largest size also has ~0.5 % empty prompts and ~0.2 % records without ``completion``: prepare must
refuse it and report every problem (one run each side, timed).

- **loop** (the reference, what a seed guide's script does): read every line with ``json.loads``,
  keep records whose ``prompt`` and ``completion`` keys are present and non-empty, ``random.shuffle``,
  cut 80/10/10, write three JSONL files. Nothing else is checked.
- **prepare**: ``tasks.prepare.prepare(PipelineConfig, out_dir)`` for Amazon Titan Text Express
  fine-tuning (prompt/completion format, no record-count limit in the catalog, so 200k is legal):
  mapping, format conversion, every validation rule, exact/near-duplicate and length checks, label
  balance, stratified seeded split, report.json.

Each measurement runs in its own subprocess (``--child``), so peak-memory figures don't mix:
- wall and CPU seconds (``time.perf_counter`` / ``resource.getrusage`` user+sys) of the work only;
- peak RSS (``ru_maxrss``) and the peak above the RSS right before the work (imports excluded: prepare
  imports pandas/pydantic, the loop imports nothing);
- in a separate subprocess (tracemalloc slows Python down, so it never shares a run with the timing),
  the tracemalloc peak of Python allocations during the work.
Timing: median of ``--repeats`` runs; CPU seconds are less sensitive to other load on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

WORDS = ("card arrived yet still waiting transfer pending refund charged twice fee exchange rate top up "
         "declined payment cash withdrawal atm pin blocked account verify identity app login password "
         "limit contactless virtual disposable lost stolen freeze unfreeze salary direct debit cancel "
         "beneficiary country currency statement balance wrong amount why how when can i my the please "
         "help urgent today yesterday week online shop merchant apple google pay").split()
LABELS = [f"intent_{i:02d}_{w}" for i, w in enumerate(WORDS[:60])]


def generate(path: Path, n: int, seed: int = 1, bad: bool = False) -> dict[str, int]:
    """Write n raw records; return what was planted.

    Always: ~1 % exact duplicate lines and ~0.5 % near duplicates (same prompt, other case and
    punctuation) — valid data that prepare dedupes/flags and the loop does not notice. With ``bad``:
    also ~0.5 % empty prompts and ~0.2 % records without ``completion`` (prepare refuses such a file
    and reports every problem; the loop silently drops them).
    """
    rng = random.Random(seed)
    planted = {"records": n, "duplicates": 0, "near_duplicates": 0, "empty_prompt": 0, "missing_key": 0}
    recent: list[dict] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.01 and recent:
                rec = rng.choice(recent)
                planted["duplicates"] += 1
            elif r < 0.015 and recent:
                src = rng.choice(recent)
                rec = {"prompt": src["prompt"].upper().rstrip("?") + " !", "completion": src["completion"]}
                planted["near_duplicates"] += 1
            elif bad and r < 0.02:
                rec = {"prompt": "", "completion": rng.choice(LABELS)}
                planted["empty_prompt"] += 1
            elif bad and r < 0.022:
                rec = {"prompt": " ".join(rng.choices(WORDS, k=12))}
                planted["missing_key"] += 1
            else:
                words = rng.choices(WORDS, k=rng.randint(8, 40))
                rec = {"prompt": f"#{i} " + " ".join(words).capitalize() + "?", "completion": rng.choice(LABELS)}
                if len(recent) < 1000:
                    recent.append(rec)
                else:
                    recent[rng.randrange(1000)] = rec
            fh.write(json.dumps(rec) + "\n")
    return planted


# ---------------------------------------------------------------------------------------------
# the two workloads (run inside a child process)
# ---------------------------------------------------------------------------------------------
def run_loop(src: Path, out: Path, seed: int = 42) -> dict:
    """The straightforward reference: json.loads per line, keys present + non-empty, random split."""
    records, dropped = [], 0
    with open(src, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("prompt") and rec.get("completion"):
                records.append(rec)
            else:
                dropped += 1
    random.Random(seed).shuffle(records)
    n = len(records)
    cuts = {"train": (0, int(n * 0.8)), "validation": (int(n * 0.8), int(n * 0.9)), "test": (int(n * 0.9), n)}
    out.mkdir(parents=True, exist_ok=True)
    for name, (a, b) in cuts.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for rec in records[a:b]:
                fh.write(json.dumps(rec) + "\n")
    return {"kept": n, "dropped": dropped, "train": cuts["train"][1],
            "findings": f"{dropped} dropped (empty/missing), duplicates not checked"}


def run_prepare(src: Path, out: Path, seed: int = 42) -> dict:
    from tasks.config import PipelineConfig
    from tasks.data.preparation import prepare
    from tasks.data.problems import DataValidationError

    config = PipelineConfig(name="bench-prepare", base_model="amazon.titan-text-express-v1:0:8k",
                            customization_type="FINE_TUNING", preset="balanced",
                            data={"source": str(src), "split": {"seed": seed}})
    try:
        prepared = prepare(config, out)
    except DataValidationError as err:   # still a complete run over the data: report what it found
        return {"kept": 0, "refused": True, "problems_reported": getattr(err, "total", len(err.problems)),
                "first_problems": err.lines()[:3]}
    report = {}
    try:
        report = json.loads(Path(prepared.report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    kept = prepared.train.records + (prepared.validation.records if prepared.validation else 0) \
        + (prepared.test.records if prepared.test else 0)
    counts = report.get("counts", {})
    return {"kept": kept, "train": prepared.train.records, "label_like": prepared.label_like,
            "stratified": (report.get("split") or {}).get("stratified"),
            "findings": f"{counts.get('exact_duplicates', '?')} exact + {counts.get('near_duplicates', '?')} near "
                        f"duplicates found, {len(report.get('warnings') or [])} warning(s)"}


def child(kind: str, src: Path, out: Path, trace: bool) -> None:
    sys.path.insert(0, str(ROOT))
    if kind == "prepare":   # imports before the baseline reading: they are not the work
        import tasks.data.preparation  # noqa: F401
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if trace:
        import tracemalloc

        tracemalloc.start()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = (run_prepare if kind == "prepare" else run_loop)(src, out)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    res = {"kind": kind, "wall_s": wall, "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
           "rss_before_mb": rss_before, "peak_rss_mb": ru1.ru_maxrss / 1024, **result}
    if trace:
        import tracemalloc

        res["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    print("BENCH-RESULT " + json.dumps(res))


def measure(kind: str, src: Path, work: Path, trace: bool) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--input", str(src), "--outdir", str(out)]
                          + (["--trace"] if trace else []), capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    raise RuntimeError(f"{kind} child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


# ---------------------------------------------------------------------------------------------
# whole process: `forge prepare` as a command vs the seed guide's loop as a script
# ---------------------------------------------------------------------------------------------
LOOP_SCRIPT = """\
import json, random, sys
from pathlib import Path

src, out = sys.argv[1], Path(sys.argv[2])
records = []
with open(src, encoding="utf-8") as fh:
    for line in fh:
        rec = json.loads(line)
        if rec.get("prompt") and rec.get("completion"):
            records.append(rec)
random.Random(42).shuffle(records)
n = len(records)
out.mkdir(parents=True, exist_ok=True)
for name, (a, b) in {"train": (0, int(n * 0.8)), "validation": (int(n * 0.8), int(n * 0.9)),
                     "test": (int(n * 0.9), n)}.items():
    with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
        for rec in records[a:b]:
            fh.write(json.dumps(rec) + "\\n")
"""


def whole_process(src: Path, work: Path, repeats: int, baseline: Path | None = None,
                  variant: Path | None = None) -> dict:
    """Wall and CPU time of each command, start-up included (median of ``repeats`` runs, alternating, after
    one warm-up run each). Bytecode is cached as in an installed package (PYTHONPYCACHEPREFIX in the work
    folder, PYTHONDONTWRITEBYTECODE unset), for both sides. ``baseline``: the source tree of an older
    version (``git archive COMMIT | tar -x -C DIR``), run as a third side with ``PYTHONPATH=DIR`` (same
    interpreter and packages): what a change costs, measured under the same load. ``variant``: likewise a
    source tree with a proposed change (what it would gain), reported against the loop."""
    loop_py = work / "seed_loop.py"
    loop_py.write_text(LOOP_SCRIPT, encoding="utf-8")
    forge = Path(sys.executable).parent / "forge"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    prep = [str(forge), "prepare", str(src), "--base-model", "amazon.titan-text-express-v1:0:8k", "--out"]
    cmds = {"loop": ([sys.executable, str(loop_py), str(src)], {**env, "PYTHONPYCACHEPREFIX": str(work / "pyc")}),
            # both forge sides import through PYTHONPATH (the editable install's finder would add its own cost)
            "forge prepare": (prep, {**env, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(work / "pyc")})}
    if baseline is not None:
        cmds["forge prepare (baseline)"] = (prep, {**env, "PYTHONPATH": str(baseline),
                                                   "PYTHONPYCACHEPREFIX": str(work / "pyc-baseline")})
    if variant is not None:
        cmds["forge prepare (variant)"] = (prep, {**env, "PYTHONPATH": str(variant),
                                                  "PYTHONPYCACHEPREFIX": str(work / "pyc-variant")})
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    load_start = os.getloadavg()
    for r in range(repeats + 1):
        for kind, (cmd, cmd_env) in cmds.items():
            out = Path(tempfile.mkdtemp(prefix="whole-", dir=work))
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run([*cmd, str(out)], capture_output=True, text=True, cwd=work, env=cmd_env)
            wall = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                raise RuntimeError(f"{kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            if r:                      # run 0 is the warm-up
                walls[kind].append(wall)
                cpus[kind].append((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))
    res: dict = {kind: {"runs": w, "wall_s": statistics.median(w), "cpu_s": statistics.median(cpus[kind])}
                 for kind, w in walls.items()}
    res["ratio"] = res["forge prepare"]["wall_s"] / res["loop"]["wall_s"]
    res["cpu_ratio"] = res["forge prepare"]["cpu_s"] / res["loop"]["cpu_s"]
    # run r of each side ran back to back: the median of the per-run ratios follows a drifting load better
    res["paired"] = statistics.median(f / lp for f, lp in zip(walls["forge prepare"], walls["loop"], strict=True))
    res["load"] = {"start": load_start, "end": os.getloadavg()}
    if variant is not None:
        v = res["forge prepare (variant)"]
        res["variant"] = {"wall": v["wall_s"] / res["loop"]["wall_s"], "cpu": v["cpu_s"] / res["loop"]["cpu_s"],
                          "paired": statistics.median(f / lp for f, lp in zip(walls["forge prepare (variant)"],
                                                                              walls["loop"], strict=True))}
    if baseline is not None:
        b = res["forge prepare (baseline)"]
        res["vs_baseline"] = {"wall": res["forge prepare"]["wall_s"] / b["wall_s"],
                              "cpu": res["forge prepare"]["cpu_s"] / b["cpu_s"], "tree": str(baseline)}
    return res


def render_whole(n: int, res: dict, repeats: int, baseline_label: str = "", variant_label: str = "") -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    la0, la = res["load"]["start"], res["load"]["end"]
    lines = ["## Whole process", "",
             f"Produced by `bench/prepare.py --whole-process` on {now}, load average (1/5/15 min) "
             f"{la0[0]:.1f}/{la0[1]:.1f}/{la0[2]:.1f} at start, {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} at end, on "
             f"{os.cpu_count()} CPUs: `forge prepare` as a command (the installed `.venv/bin/forge`, "
             "start-up included: interpreter, imports, argument parsing) against the seed guide's loop as a "
             "script run with `python`, both on the same generated "
             f"{n:,}-record JSONL; wall time, median of {repeats} runs after one warm-up run each, the sides "
             "alternating run by run (so both see the same load), bytecode cached "
             "as in an installed package; CPU = user + system seconds of the command.", "",
             "| records | side | wall s (median) | CPU s (median) | runs (wall s) |", "|---:|---|---:|---:|---|"]
    for kind in [k for k in ("loop", "forge prepare", "forge prepare (baseline)", "forge prepare (variant)")
                 if k in res]:
        runs = ", ".join(f"{w:.2f}" for w in res[kind]["runs"])
        label = {"forge prepare (baseline)": f"forge prepare (baseline: {baseline_label})",
                 "forge prepare (variant)": f"forge prepare (variant: {variant_label})"}.get(kind, kind)
        lines.append(f"| {n:,} | {label} | {res[kind]['wall_s']:.2f} | {res[kind]['cpu_s']:.2f} | {runs} |")
    ok = res["ratio"] <= 1.0
    lines += ["", f"**Whole process: {'met' if ok else 'not met'}** (forge prepare / loop wall "
              f"**{res['ratio']:.2f}×**, CPU {res['cpu_ratio']:.2f}×, median of the per-run wall ratios "
              f"{res['paired']:.2f}×, target ≤ 1.0×)."]
    if "variant" in res:
        va = res["variant"]
        lines += ["", f"**Variant ({variant_label}): {'met' if va['wall'] <= 1.0 else 'not met'}** (its forge "
                  f"prepare / loop wall **{va['wall']:.2f}×**, CPU {va['cpu']:.2f}×, median of the per-run wall ratios "
                  f"{va['paired']:.2f}×, run alternately with the others)."]
    if "vs_baseline" in res:
        vb = res["vs_baseline"]
        ok_b = vb["cpu"] <= 1.05
        lines += ["", f"**Against the baseline: {'met' if ok_b else 'not met'}** (forge prepare / baseline, run "
                  f"alternately under the same load: wall **{vb['wall']:.2f}×**, CPU **{vb['cpu']:.2f}×**, target "
                  "≤ 1.05×: the guards may cost at most 5 %)."]
    return "\n".join(lines) + "\n"


def _put_section(path: Path, section: str) -> None:
    """Replace (or append) the "## Whole process" section of the results file; the other rows stay."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# prepare benchmark\n"
    head, sep, tail = text.partition("## Whole process")
    if sep:
        nxt = tail.find("\n## ")
        tail = tail[nxt + 1:] if nxt >= 0 else ""
    else:
        tail = ""
    path.write_text(head.rstrip("\n") + "\n\n" + section + ("\n" + tail if tail else ""), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description="prepare vs a per-line json.loads loop")
    ap.add_argument("--sizes", default="50000,200000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results-prepare.md")
    ap.add_argument("--child", choices=["loop", "prepare"])
    ap.add_argument("--input", type=Path)
    ap.add_argument("--outdir", type=Path)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--whole-process", action="store_true",
                    help="only the whole-process row (largest size): updates that section of --out")
    ap.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                    help="with --whole-process: also time forge prepare from this source tree of an older version "
                         "(git archive COMMIT | tar -x -C DIR), alternating, and report new / baseline")
    ap.add_argument("--baseline-label", default="", help="how the results name the baseline (e.g. its commit)")
    ap.add_argument("--variant", type=Path, default=None, metavar="DIR",
                    help="with --whole-process: also time forge prepare from this source tree with a proposed change, "
                         "alternating, and report it against the loop")
    ap.add_argument("--variant-label", default="", help="how the results name the variant (what it changes)")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.input, args.outdir, args.trace)
        return 0
    if args.whole_process:
        n = int(args.sizes.split(",")[-1])
        with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
            src = Path(tmp) / f"raw-{n}.jsonl"
            generate(src, n)
            res = whole_process(src, Path(tmp), args.repeats, args.baseline, args.variant)
        print(f"whole process, {n:,} records: loop {res['loop']['wall_s']:.2f}s, forge prepare "
              f"{res['forge prepare']['wall_s']:.2f}s ({res['ratio']:.2f}x, paired {res['paired']:.2f}x, "
              f"cpu {res['cpu_ratio']:.2f}x)"
              + (f"; vs baseline wall {res['vs_baseline']['wall']:.3f}x cpu {res['vs_baseline']['cpu']:.3f}x"
                 if "vs_baseline" in res else "")
              + (f"; variant {res['variant']['wall']:.2f}x the loop (paired {res['variant']['paired']:.2f}x, cpu "
                 f"{res['variant']['cpu']:.2f}x)" if "variant" in res else ""), flush=True)
        _put_section(args.out, render_whole(n, res, args.repeats, args.baseline_label or str(args.baseline or ""),
                                            args.variant_label or str(args.variant or "")))
        print(f"wrote {args.out}")
        return 0

    sys.path.insert(0, str(ROOT))
    import importlib.util

    have_prepare = importlib.util.find_spec("tasks.prepare") is not None
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: dict[int, dict] = {}
    meta = {"load_start": os.getloadavg(), "versions_start": _versions() if have_prepare else ""}
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        work = Path(tmp)
        for n in sizes:
            src = work / f"raw-{n}.jsonl"
            planted = generate(src, n)
            size_mb = src.stat().st_size / 2**20
            print(f"{n:,} records, {size_mb:.1f} MiB: {planted}", flush=True)
            entry: dict = {"planted": planted, "mib": size_mb}
            for kind in (["loop", "prepare"] if have_prepare else ["loop"]):
                runs = [measure(kind, src, work, trace=False) for _ in range(args.repeats)]
                traced = measure(kind, src, work, trace=True)
                entry[kind] = {"runs": runs, "traced": traced,
                               "wall_s": statistics.median(r["wall_s"] for r in runs),
                               "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                               "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                               "rss_above_mb": max(r["peak_rss_mb"] - r["rss_before_mb"] for r in runs),
                               "tracemalloc_peak_mb": traced["tracemalloc_peak_mb"]}
                print(f"  {kind:8s} wall {entry[kind]['wall_s']:.2f}s cpu {entry[kind]['cpu_s']:.2f}s "
                      f"peak RSS {entry[kind]['peak_rss_mb']:.0f} MiB (+{entry[kind]['rss_above_mb']:.0f}) "
                      f"tracemalloc {entry[kind]['tracemalloc_peak_mb']:.1f} MiB", flush=True)
            rows[n] = entry
        bad_rows: dict = {}
        if have_prepare:
            n = sizes[-1]
            src = work / f"raw-{n}-bad.jsonl"
            bad_rows["planted"] = generate(src, n, bad=True)
            for kind in ("loop", "prepare"):
                bad_rows[kind] = measure(kind, src, work, trace=False)
                print(f"  bad file {kind:8s} wall {bad_rows[kind]['wall_s']:.2f}s problems "
                      f"{bad_rows[kind].get('problems_reported', bad_rows[kind].get('dropped'))}", flush=True)
    meta.update(load_end=os.getloadavg(), versions_end=_versions() if have_prepare else "")
    old = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    kept = old[old.index("## Whole process"):] if "## Whole process" in old else ""   # --whole-process's sections
    args.out.write_text(render(rows, sizes, have_prepare, args.repeats, bad_rows, meta)
                        + ("\n" + kept if kept else ""), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def _source_state(rel: str) -> str:
    """Which version of a file ran: last commit touching it, and whether the work tree differs."""
    import hashlib

    digest = hashlib.sha256((ROOT / rel).read_bytes()).hexdigest()[:12]
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", rel], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", rel], cwd=ROOT, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    state = f"commit {commit}" if commit else "not committed yet"
    if commit and dirty:
        state += " + uncommitted changes"
    return f"({state}, sha256 {digest})"


def _versions() -> str:
    return ", ".join(f"{rel} {_source_state(rel)}" for rel in (
        "tasks/data/preparation.py", "tasks/data/scanner.py", "tasks/data/sources.py", "tasks/data/outputs.py",
        "tasks/data/keys.py"))


def render(rows: dict[int, dict], sizes: list[int], have_prepare: bool, repeats: int, bad: dict | None = None,
           meta: dict | None = None) -> str:
    meta = meta or {}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# prepare benchmark", "",
           f"Produced by `bench/prepare.py` on {now}: {os.cpu_count()} CPUs "
           f"({platform.processor() or platform.machine()}), "
           f"Python {platform.python_version()}, {platform.system()}. The machine is shared with other work, so "
           f"wall times carry noise: each figure is the median of {repeats} runs, CPU seconds alongside.", "",
           "Input: generated raw JSONL `{prompt, completion}` (8-40-word prompts, 60 intent labels) with ~1 % exact "
           "and ~0.5 % near duplicates planted (valid data). "
           "**loop** = per-line `json.loads`, keys present and non-empty, `random.shuffle`, 80/10/10, three files. "
           "**prepare** = `tasks.prepare.prepare` for Titan Text Express fine-tuning (format conversion, every "
           "validation rule, exact/near-duplicate and length checks, label balance, stratified seeded split, "
           "report.json). One subprocess per measurement; memory = peak RSS (`ru_maxrss`), the part above the RSS "
           "right before the work (imports excluded), and the tracemalloc peak (separate run).", ""]
    if not have_prepare:
        out += ["**tasks/prepare.py was not available when this ran: only the loop is measured.**", ""]
    else:
        v0, v1 = meta.get("versions_start", ""), meta.get("versions_end", "")
        out += [f"Version measured: {v0}." + ("" if v0 == v1 else f" **These files changed during the run**; at the "
                                                                  f"end: {v1}."), ""]
    if meta.get("load_start"):
        la, lb = meta["load_start"], meta["load_end"]
        out += [f"Load average (1/5/15 min) at start {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}, at end "
                f"{lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} on {os.cpu_count()} CPUs: above the CPU count, wall times are "
                "stretched by other work and the CPU-second ratio is the fairer comparison.", ""]
    out += ["| records | input MiB | side | wall s | CPU s | peak RSS MiB | above imports MiB | tracemalloc peak MiB | "
            "records kept | what it found |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for n in sizes:
        e = rows[n]
        for kind in ("loop", "prepare"):
            if kind not in e:
                continue
            k = e[kind]
            r0 = k["runs"][0]
            out.append(f"| {n:,} | {e['mib']:.1f} | {kind} | {k['wall_s']:.2f} | {k['cpu_s']:.2f} | "
                       f"{k['peak_rss_mb']:.0f} | {k['rss_above_mb']:.0f} | {k['tracemalloc_peak_mb']:.1f} | "
                       f"{r0.get('kept', '?'):,} | {r0.get('findings', '')} |")
    if have_prepare:
        out += ["", "| records | prepare / loop wall | prepare / loop CPU | target |", "|---:|---:|---:|---|"]
        for n in sizes:
            e = rows[n]
            out.append(f"| {n:,} | **{e['prepare']['wall_s'] / e['loop']['wall_s']:.2f}×** | "
                       f"{e['prepare']['cpu_s'] / e['loop']['cpu_s']:.2f}× | ≤ 1.0× (no slower than the loop) |")
        if len(sizes) >= 2:
            a = sizes[0]
            for b in sizes[1:]:
                growth = {kind: (rows[b][kind]["rss_above_mb"], rows[a][kind]["rss_above_mb"]) for kind in ("loop",
                                                                                                            "prepare")}
                out += ["", f"Memory growth {a:,} → {b:,} records ({b / a:.0f}× the data), RSS above imports: "
                        + "; ".join(f"{kind} {x1:.0f} → {x2:.0f} MiB (+{x2 - x1:.1f} MiB, about "
                                    f"{(x2 - x1) * 2**20 / (b - a):.0f} bytes per extra record)"
                                    for kind, (x2, x1) in growth.items()) + "."]
            b = sizes[-1]
            pa, pb = rows[a]["prepare"]["rss_above_mb"], rows[b]["prepare"]["rss_above_mb"]
            ta, tb = rows[a]["prepare"]["tracemalloc_peak_mb"], rows[b]["prepare"]["tracemalloc_peak_mb"]
            allowed = 2 + 2 * (b - a) / 2**20        # 2 MiB noise + 2 bytes a record (the split byte is 1)
            out += ["", ("**Flat: met**" if pb - pa <= allowed else "**Flat: not met**")
                    + " (target: prepare's memory flat as the file grows; criterion here: RSS above imports "
                    f"grows at most 2 MiB + 2 bytes per extra record, {allowed:.1f} MiB from {a:,} to {b:,}; "
                    f"prepare +{pb - pa:.1f} MiB, tracemalloc peak {ta:.1f} → {tb:.1f} MiB). "
                    "prepare holds no text and no per-record keys in memory: "
                    "pass 1 appends fixed-size keys to files on disk and dedupe, sample and split read them back "
                    "in chunks and hash buckets of bounded size (tasks/data/keys.py). What grows is the split byte of "
                    "each record (1 byte a record), against "
                    f"{(rows[b]['loop']['rss_above_mb'] - rows[a]['loop']['rss_above_mb']) * 2**20 / (b - a):.0f} "
                    "bytes a record for the loop, which holds every parsed record."]
        worst = max(rows[n]["prepare"]["wall_s"] / rows[n]["loop"]["wall_s"] for n in sizes)
        worst_cpu = max(rows[n]["prepare"]["cpu_s"] / rows[n]["loop"]["cpu_s"] for n in sizes)
        out += ["", ("**Speed: met**" if worst <= 1.0 and worst_cpu <= 1.0 else "**Speed: not met**")
                + f" (worst ratio over the sizes: wall {worst:.2f}×, CPU {worst_cpu:.2f}×)."]
        planted = rows[sizes[-1]]["planted"]
        out += ["", f"Planted in the {sizes[-1]:,}-record file: {planted}."]
    if bad:
        lp, pp = bad["loop"], bad["prepare"]
        out += ["", f"## Broken file ({sizes[-1]:,} records, one run each)", "",
                f"Planted: {bad['planted']}.", "",
                f"- loop: {lp['wall_s']:.2f} s, silently dropped {lp.get('dropped')} records and wrote the splits.",
                f"- prepare: {pp['wall_s']:.2f} s, "
                + (f"refused with {pp['problems_reported']} located problems, e.g. "
                   f"`{(pp.get('first_problems') or ['?'])[0]}`."
                   if pp.get("refused") else f"did not refuse (kept {pp.get('kept')} records).")]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
