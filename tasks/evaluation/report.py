"""Evaluation report: per-example CSV, summary JSON, markdown, PNG charts, Prefect artifacts.

Input is the plain summary dict from ``tasks.evaluation.metrics.compute_metrics`` plus the gate verdict, so
this module does not import ``tasks.evaluate`` (no cycle). Charts use matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from tasks.evaluate import EvaluationResult

METRIC_LABELS = {
    "bertscore_f1": "BERTScore F1", "bertscore_precision": "BERTScore P", "bertscore_recall": "BERTScore R",
    "rouge_l": "ROUGE-L", "exact_match": "Exact match", "accuracy": "Accuracy", "macro_f1": "Macro F1",
}
CHART_METRICS = ("bertscore_f1", "rouge_l", "exact_match", "accuracy", "macro_f1")


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _f(x: Any, nd: int = 4, sign: bool = False) -> str:
    if _isnan(x):
        return "n/a"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if hasattr(o, "item") and not isinstance(o, str):  # numpy scalars
        return _jsonable(o.item())
    return o


def _cell(s: Any, width: int = 100) -> str:
    if _isnan(s):
        return "—"
    s = " ".join(str(s).split()).replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# charts


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_metrics(summary: dict[str, Any], path: Path) -> Path | None:
    """Left: base vs custom per metric. Right: custom − base with its bootstrap CI (the CI belongs
    to the paired *difference*, so it is drawn there, not as per-model error bars)."""
    comp = summary.get("comparison", {})
    mets = [m for m in CHART_METRICS if m in comp and not _isnan(comp[m]["base"])]
    if not mets:
        return None
    plt = _plt()
    import numpy as np

    labels = [METRIC_LABELS[m] for m in mets]
    base = [comp[m]["base"] for m in mets]
    custom = [comp[m]["custom"] for m in mets]
    delta = np.array([comp[m]["delta"] for m in mets], dtype=float)
    lo = np.array([comp[m]["ci_low"] for m in mets], dtype=float)
    hi = np.array([comp[m]["ci_high"] for m in mets], dtype=float)
    conf = comp[mets[0]].get("confidence", 0.95)
    n = comp[mets[0]].get("n", 0)

    vs = summary.get("comparison_vs_champion") or {}
    champ = [vs.get(m, {}).get("champion") for m in mets] if vs else None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, (0.8 if vs else 0.6) * len(mets) + 2.4),
                                 gridspec_kw={"width_ratios": [1.2, 1]})
    y = np.arange(len(mets))
    if champ is not None:   # base / champion / challenger side by side
        h = 0.27
        groups = [(y - h, base, "base", "#9aa5b1"),
                  (y, [np.nan if _isnan(c) else c for c in champ], "champion", "#dd6b20"),
                  (y + h, custom, "challenger", "#2b6cb0")]
    else:
        h = 0.38
        groups = [(y - h / 2, base, "base", "#9aa5b1"), (y + h / 2, custom, "custom", "#2b6cb0")]
    bars_all = [a1.barh(pos, vals, h, label=lab, color=col) for pos, vals, lab, col in groups]
    for bars in bars_all:
        for r in bars:
            if not _isnan(r.get_width()):
                a1.text(r.get_width() + 0.01, r.get_y() + r.get_height() / 2, f"{r.get_width():.3f}",
                        va="center", fontsize=8)
    a1.set_yticks(y, labels)
    a1.invert_yaxis()
    a1.set_xlim(0, 1.12)
    a1.set_title(("Base / champion / challenger" if vs else "Base vs custom")
                 + f": mean score over n={n} paired examples", fontsize=10)
    a1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=len(groups), fontsize=8, frameon=False)
    a1.grid(axis="x", alpha=0.3)

    def arr(key: str) -> np.ndarray:
        return np.array([np.nan if _isnan(vs.get(m, {}).get(key)) else vs[m][key] for m in mets], dtype=float)

    series = [("vs base", delta, lo, hi, None)]
    if vs:
        series.append(("vs champ.", arr("delta"), arr("ci_low"), arr("ci_high"), "//"))
    bh = 0.5 / len(series)
    allv = np.concatenate([np.concatenate([d, lo_, up]) for _, d, lo_, up, _ in series])
    span = max(0.05, float(np.nanmax(np.abs(allv))) * 1.1) if np.isfinite(allv).any() else 0.05
    for k, (name, d_, l_a, h_a, hatch) in enumerate(series):
        off = (k - (len(series) - 1) / 2) * bh
        colors = ["#2f855a" if (l_ > 0) else ("#c53030" if h_ < 0 else "#718096")
                  for l_, h_ in zip(l_a, h_a, strict=True)]
        err = np.vstack([np.clip(d_ - l_a, 0, None), np.clip(h_a - d_, 0, None)])
        a2.barh(y + off, d_, bh * 0.9, color=colors, xerr=err, capsize=3, error_kw={"elinewidth": 1.1},
                hatch=hatch, edgecolor="white" if hatch else None)
        for yi, d, l_, h_ in zip(y + off, d_, l_a, h_a, strict=True):
            if not _isnan(float(d)):
                a2.text(np.nanmax([h_, d, 0]) + span * 0.05, yi,
                        (f"{name}: " if vs else "") + f"{d:+.3f} [{l_:+.3f}, {h_:+.3f}]", va="center",
                        fontsize=7 if vs else 7.5)
    a2.axvline(0, color="black", lw=0.8)
    a2.set_yticks(y, labels)
    a2.invert_yaxis()
    # symmetric around 0 (no visual bias), plus room on the right for the "Δ [lo, hi]" labels
    a2.set_xlim(-span, span * (3.2 if vs else 1.9))
    a2.set_xlabel("challenger − base (plain) / − champion (hatched), " + f"{conf:.0%} CI" if vs
                  else f"custom − base, {conf:.0%} paired-bootstrap CI")
    a2.set_title("Difference (green: CI above 0, red: below, grey: spans 0)", fontsize=9)
    a2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def chart_per_class(summary: dict[str, Any], path: Path, top: int = 15) -> Path | None:
    pc = summary.get("per_class")
    if not pc:
        return None
    plt = _plt()
    rows = sorted(pc.items(), key=lambda kv: kv[1]["accuracy_delta"])
    if len(rows) > 2 * top:  # worst and best `top` classes
        rows = rows[:top] + rows[-top:]
    names = [f"{k} (n={v['support']})" for k, v in rows]
    deltas = [v["accuracy_delta"] for _, v in rows]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.6))
    colors = ["#2f855a" if d > 0 else ("#c53030" if d < 0 else "#718096") for d in deltas]
    ax.barh(range(len(rows)), deltas, color=colors)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1.3, 1.3)   # symmetric; room for the "base→custom" labels
    for i, (d, (_, v)) in enumerate(zip(deltas, rows, strict=True)):
        ax.text(d + (0.02 if d >= 0 else -0.02), i, f"{v['base_accuracy']:.2f}→{v['custom_accuracy']:.2f}",
                va="center", ha="left" if d >= 0 else "right", fontsize=7)
    ax.set_xlabel("per-class accuracy (recall): custom − base")
    ax.set_title("Per-class accuracy change (point estimates; small classes are noisy)"
                 + (f"\nworst and best {top} of {len(pc)} classes" if len(pc) > 2 * top else ""), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def chart_loss(training_rows: Sequence[dict] | None, validation_rows: Sequence[dict] | None, path: Path) -> Path | None:
    from tasks.evaluation.metrics import curve_points

    tx, ty = curve_points(training_rows or [], "training_loss")
    vx, vy = curve_points(validation_rows or [], "validation_loss")
    if not ty and not vy:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    if ty:
        ax.plot(tx, ty, label="training loss", color="#2b6cb0", lw=1.2, marker="." if len(ty) < 60 else None)
    if vy:
        ax.plot(vx, vy, label="validation loss", color="#dd6b20", lw=1.8, marker="o", ms=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training / validation loss (from the job's metrics CSVs)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# markdown


def _md_header(summary: dict[str, Any], verdict: dict[str, Any], targets: dict[str, str] | None) -> list[str]:
    """Title, gate verdict with its reasons, the two targets and the counts line."""
    errs = summary.get("errors", {})
    conf = summary.get("bootstrap", {}).get("confidence", 0.95)
    status = "PASS" if verdict.get("passed") else "FAIL"
    L = ["# Evaluation report\n", f"**Quality gate: {status}** — rule: {verdict.get('rule', '')}\n"]
    L.extend(f"- {r}" for r in verdict.get("reasons", []))
    L.append("")
    if targets:
        line = f"Base: `{targets.get('base', '')}` · Custom: `{targets.get('custom', '')}`"
        if targets.get("champion"):
            line += (f" (the challenger) · Champion: `{targets['champion']}` (run "
                     f"{summary.get('champion_run_id', '?')})")
        L.append(line + "\n")
    if summary.get("champion_skipped"):
        L.append(f"Champion {summary.get('champion_run_id', '?')} was not evaluated: {summary['champion_skipped']}.\n")
    elif not summary.get("champion_run_id"):
        L.append("Champion: none (no champion in this lineage yet): gated against the base model only.\n")
    failed = ", ".join(f"{m} {errs.get(m, 0)}" for m in ("base", "custom", "champion") if m in errs or m != "champion")
    L.append(f"**n = {summary['n_examples']} examples**, {summary['n_scored']} scored for both models; "
             f"failed calls: {failed} "
             f"(of {errs.get('total_calls', 2 * summary['n_examples'])} calls). "
             f"CIs: {conf:.0%} paired bootstrap, {summary.get('bootstrap', {}).get('n_resamples', '?')} resamples.\n")
    return L


TABLE_METRICS = ("bertscore_f1", "bertscore_precision", "bertscore_recall", "rouge_l", "exact_match", "accuracy",
                 "macro_f1")


def _compared(comp: dict[str, Any], wtl: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(metric, its comparison, its "win / tie / loss" cell) for each table metric the comparison holds."""
    out = []
    for m in TABLE_METRICS:
        if m in comp:
            w = wtl.get(m)
            out.append((m, comp[m], f"{w['win']:.0%} / {w['tie']:.0%} / {w['loss']:.0%}" if w and w.get("n") else "—"))
    return out


def _md_metrics(summary: dict[str, Any], verdict: dict[str, Any]) -> list[str]:
    """The base/custom/Δ/CI/win-tie-loss table, the label-metric table (label-like) and the BERTScore note."""
    comp = summary.get("comparison", {})
    wtl = summary.get("win_tie_loss", {})
    conf = summary.get("bootstrap", {}).get("confidence", 0.95)
    L = ["## Metrics\n",
         f"| metric | base | custom | Δ (custom − base) | {conf:.0%} CI of Δ | win / tie / loss |",
         "|---|---:|---:|---:|---|---|"]
    for m, c, wt in _compared(comp, wtl):
        mark = " ◀ gate" if m == verdict.get("metric") else ""
        L.append(f"| {METRIC_LABELS.get(m, m)}{mark} | {_f(c['base'])} | {_f(c['custom'])} "
                 f"| {_f(c['delta'], sign=True)} "
                 f"| [{_f(c['ci_low'], sign=True)}, {_f(c['ci_high'], sign=True)}] | {wt} |")
    if summary.get("label_like"):
        b, cu = summary["base"], summary["custom"]
        L += ["", "| label metric | base | custom |", "|---|---:|---:|"]
        for k in ("macro_precision", "macro_recall", "weighted_precision", "weighted_recall", "weighted_f1"):
            if k in b:
                L.append(f"| {k.replace('_', ' ')} | {_f(b[k])} | {_f(cu[k])} |")
    bs = summary.get("bertscore", {})
    L.append(f"\nBERTScore model: `{bs.get('model')}`, layer {bs.get('num_layers')} "
             "(bert-score, no baseline rescaling).\n")
    return L


def _md_champion(summary: dict[str, Any], verdict: dict[str, Any]) -> list[str]:
    """Base / champion / challenger side by side, custom − champion with its CI, and the checks of the rule."""
    comp = summary.get("comparison_vs_champion")
    if not comp:
        return []
    base = summary.get("comparison", {})
    wtl = summary.get("win_tie_loss_vs_champion", {})
    conf = summary.get("bootstrap", {}).get("confidence", 0.95)
    reused = summary.get("champion_reused_outputs", 0)
    L = [f"## Challenger vs champion (run {summary.get('champion_run_id', '?')})\n",
         f"Paired over the {summary.get('n_scored_three', 0)} examples all three models answered (same prompts); "
         f"champion outputs reused from its recorded evaluation: {reused}, served now: "
         f"{max(0, summary['n_examples'] - reused)}.\n",
         f"| metric | base | champion | challenger | Δ (challenger − champion) | {conf:.0%} CI of Δ "
         "| win / tie / loss |", "|---|---:|---:|---:|---:|---|---|"]
    gated = set(verdict.get("champion_metrics") or [c.get("metric") for c in verdict.get("vs_champion", [])])
    for m, c, wt in _compared(comp, wtl):
        mark = " ◀ gate" if m in gated else ""
        b = c.get("base", base.get(m, {}).get("base"))     # base on the same (three-way) examples
        L.append(f"| {METRIC_LABELS.get(m, m)}{mark} | {_f(b)} | {_f(c['champion'])} | {_f(c['custom'])} "
                 f"| {_f(c['delta'], sign=True)} | [{_f(c['ci_low'], sign=True)}, {_f(c['ci_high'], sign=True)}] "
                 f"| {wt} |")
    if verdict.get("champion_rule"):
        L += ["", f"Rule against the champion: {verdict['champion_rule']}"]
        L.extend(f"- {'pass' if c.get('passed') else 'FAIL'}: {c.get('reason', '')}"
                 for c in verdict.get("vs_champion", []))
    L.append("")
    return L


def _md_judge(summary: dict[str, Any], verdict: dict[str, Any] | None = None) -> list[str]:
    """The LLM judge's pairwise verdicts (tasks/evaluation/judge.py); empty when it did not run. A pair the gate
    reads (``gate.metric`` / ``gate.champion_metrics`` ``judge``) is marked."""
    j = summary.get("judge")
    if not j:
        return []
    verdict = verdict or {}
    gated = {"base"} if verdict.get("metric") == "judge" else set()
    if any(c.get("metric") == "judge" for c in verdict.get("vs_champion", [])):
        gated.add("champion")
    conf = j.get("confidence", 0.95)
    L = ["## LLM judge (pairwise, both orders)\n",
         f"Judge: `{j.get('model', '?')}`" + (f" — **{j['stand_in']}**: not a model's judgement"
                                             if j.get("stand_in") else "") + "\n",
         f"Rubric: {_cell(j.get('rubric', ''), 300)}\n",
         "A verdict counts when both orders agree; disagreeing orders are a tie (position bias cancelled); an "
         "answer that is not a JSON verdict is not counted.\n",
         f"| challenger vs | judged | win / tie / loss | score (win − loss) | {conf:.0%} CI "
         "| ties from orders that disagreed | unparseable | calls made / cached |",
         "|---|---:|---|---:|---|---:|---:|---|"]
    for name, p in (j.get("pairs") or {}).items():
        mark = " ◀ gate" if name in gated else ""
        L.append(f"| {name}{mark} | {p.get('n_counted', 0)} | {_pct(p.get('win'))} / {_pct(p.get('tie'))} / "
                 f"{_pct(p.get('loss'))} | {_f(p.get('score'), 3, sign=True)} "
                 f"| [{_f(p.get('ci_low'), 3, sign=True)}, {_f(p.get('ci_high'), 3, sign=True)}] "
                 f"| {p.get('n_order_disagreed', 0)} | {p.get('n_unparseable', 0)} "
                 f"| {p.get('calls', 0)} / {p.get('cached', 0)} |")
    L.append("")
    return L


def _pct(x: Any) -> str:
    return "n/a" if _isnan(x) else f"{x:.0%}"


def _md_per_class(summary: dict[str, Any]) -> list[str]:
    """Per-class accuracy table (worst and best 5 by change); empty unless label-like."""
    pc = summary.get("per_class")
    if not pc:
        return []
    rows = sorted(pc.items(), key=lambda kv: kv[1]["accuracy_delta"])
    L = [f"## Per-class accuracy ({len(pc)} classes; worst and best 5 by change)\n",
         "| class | support | base acc | custom acc | Δ | base F1 | custom F1 |",
         "|---|---:|---:|---:|---:|---:|---:|"]
    shown = rows if len(rows) <= 10 else rows[:5] + rows[-5:]
    for k, v in shown:
        L.append(f"| {_cell(k, 40)} | {v['support']} | {_f(v['base_accuracy'], 3)} | {_f(v['custom_accuracy'], 3)} "
                 f"| {_f(v['accuracy_delta'], 3, sign=True)} | {_f(v['base_f1'], 3)} | {_f(v['custom_f1'], 3)} |")
    L.append("")
    return L


def _md_latency(summary: dict[str, Any]) -> list[str]:
    L = ["## Latency and tokens\n",
         "| model | p50 ms | p95 ms | input tokens (total / mean) | output tokens (total / mean) | attempts |",
         "|---|---:|---:|---|---|---:|"]
    for m in [m for m in ("base", "champion", "custom") if m in summary["latency"]]:
        la, tk = summary["latency"][m], summary["tokens"][m]
        L.append(f"| {m} | {_f(la['p50_ms'], 0)} | {_f(la['p95_ms'], 0)} "
                 f"| {_f(tk['input_total'], 0)} / {_f(tk['input_mean'], 1)} "
                 f"| {_f(tk['output_total'], 0)} / {_f(tk['output_mean'], 1)} | {tk['attempts_total']} |")
    L.append("")
    return L


def _md_training(summary: dict[str, Any]) -> list[str]:
    """Loss summary lines; empty without a ``training`` entry."""
    tr = summary.get("training")
    if not tr:
        return []
    L = ["## Training\n"]
    for kind in ("training", "validation"):
        t = tr.get(kind, {})
        if t.get("n_points"):
            ppl = f", final perplexity {_f(t.get('final_perplexity'), 3)}" if "final_perplexity" in t else ""
            L.append(f"- {kind} loss: {_f(t['first_loss'])} → {_f(t['final_loss'])} "
                     f"(min {_f(t['min_loss'])} at step "
                     f"{t.get('min_loss_step')}; {t['n_points']} points{ppl})")
    if tr.get("validation_loss_rising"):
        L.append("- ⚠ validation loss ended more than 5% above its minimum (possible over-fitting)")
    L.append("")
    return L


def _md_charts(charts: dict[str, str]) -> list[str]:
    if not charts:
        return []
    return ["## Charts\n", *(f"![{name}]({Path(p).name})" for name, p in charts.items()), ""]


def _md_errors(summary: dict[str, Any], df: pd.DataFrame) -> list[str]:
    """The first 5 failed calls per model; empty when none failed."""
    nerr = summary.get("errors", {}).get("calls", 0)
    if not nerr:
        return []
    L = [f"## Errors ({nerr} failed calls)\n"]
    for m in [m for m in ("base", "custom", "champion") if f"{m}_error" in df]:
        for _, r in df[df[f"{m}_error"].notna()].head(5).iterrows():
            L.append(f"- {m} example {r['example_id']}: {_cell(r[f'{m}_error'], 200)}")
    L.append("")
    return L


def _md_examples(df: pd.DataFrame, n_examples_shown: int) -> list[str]:
    """The largest BERTScore-F1 gains, then the largest losses; empty without BERTScore columns."""
    if not ("base_bertscore_f1" in df and df["base_bertscore_f1"].notna().any()):
        return []
    d = (df["custom_bertscore_f1"] - df["base_bertscore_f1"]).dropna().sort_values()
    pick = list(d.index[-n_examples_shown:][::-1]) + [i for i in d.index[:n_examples_shown]
                                                      if i not in d.index[-n_examples_shown:]]
    L = ["## Examples (largest BERTScore-F1 gains, then largest losses)\n",
         "| id | prompt | reference | base | custom | Δ BERTScore F1 |",
         "|---|---|---|---|---|---:|"]
    for i in pick:
        r = df.loc[i]
        L.append(f"| {r['example_id']} | {_cell(r['prompt'], 80)} | {_cell(r['reference'], 60)} "
                 f"| {_cell(r['base_output'], 60)} "
                 f"| {_cell(r['custom_output'], 60)} | {_f(d[i], 3, sign=True)} |")
    L.append("")
    return L


def render_markdown(summary: dict[str, Any], verdict: dict[str, Any], df: pd.DataFrame,
                    charts: dict[str, str], targets: dict[str, str] | None = None, n_examples_shown: int = 3) -> str:
    """report.md: one section per helper, in reading order (absent data leaves its section out)."""
    L = [*_md_header(summary, verdict, targets),
         *_md_metrics(summary, verdict),
         *_md_champion(summary, verdict),
         *_md_judge(summary, verdict),
         *_md_per_class(summary),
         *_md_latency(summary),
         *_md_training(summary),
         *_md_charts(charts),
         *_md_errors(summary, df),
         *_md_examples(df, n_examples_shown),
         "Files: `examples.csv` (one row per example, errors included), `summary.json`."]
    return "\n".join(L) + "\n"


def write_report(summary: dict[str, Any], df: pd.DataFrame, out_dir: str | Path, *, verdict: dict[str, Any],
                 training_rows: Sequence[dict] | None = None, validation_rows: Sequence[dict] | None = None,
                 targets: dict[str, str] | None = None) -> dict[str, str]:
    """Write examples.csv, summary.json, report.md and charts; return {name: path}."""
    from tasks.aws.redact import redact

    targets = redact(targets) if targets else targets   # a PT ARN holds the account id: shared files must not
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    csv = out / "examples.csv"
    df.to_csv(csv, index=False)
    files["examples_csv"] = str(csv)
    charts: dict[str, str] = {}
    for name, fn in (("metrics_chart", lambda p: chart_metrics(summary, p)),
                     ("per_class_chart", lambda p: chart_per_class(summary, p)),
                     ("loss_chart", lambda p: chart_loss(training_rows, validation_rows, p))):
        p = fn(out / f"{name.removesuffix('_chart')}.png")
        if p is not None:
            charts[name] = str(p)
    files.update(charts)
    md = out / "report.md"
    md.write_text(render_markdown(summary, verdict, df, charts, targets), encoding="utf-8")
    files["report_md"] = str(md)
    js = out / "summary.json"
    js.write_text(json.dumps(_jsonable({"summary": summary, "gate": verdict, "targets": targets or {},
                                        "files": {**files, "summary_json": str(js)}}), indent=2), encoding="utf-8")
    files["summary_json"] = str(js)
    return files


# ---------------------------------------------------------------------------------------------
# Prefect artifacts


CONTENT_TYPES = {".md": "text/markdown; charset=utf-8", ".png": "image/png", ".csv": "text/csv; charset=utf-8",
                 ".json": "application/json"}
INLINE_IMAGE_MAX = 400_000     # bytes of PNG embedded in the markdown artifact; a larger chart is a link


def upload_report(s3: Any, files: dict[str, str], bucket: str, key_prefix: str) -> dict[str, str]:
    """Copy the report's local files to ``s3://bucket/key_prefix<file name>``; {name: s3 URI} of those copied.
    A file that is not there (another machine's path in a reused record) is skipped, not invented."""
    from tasks.aws.s3uri import s3_uri

    out: dict[str, str] = {}
    for name, path in files.items():
        local = Path(path)
        if name.endswith("_s3") or not local.is_file():
            continue
        key = f"{key_prefix}{local.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=local.read_bytes(),
                      ContentType=CONTENT_TYPES.get(local.suffix, "application/octet-stream"))
        out[name] = s3_uri(bucket, key)
    return out


def browser_link(uri: str, region: str) -> str:
    """The S3 console's page of an object: a browser link that needs the reader's sign-in and never expires (a
    presigned URL does, in at most 7 days)."""
    from urllib.parse import quote

    from tasks.aws.s3uri import split_s3_uri

    bucket, key = split_s3_uri(uri)
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/view-object-properties.html (console object page)
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?region={region}&prefix={quote(key, safe='')}"


def _inline_images(md: str, charts: dict[str, str], links: dict[str, str]) -> str:
    """The report's ``![name](file.png)`` lines as images a browser loads from the artifact itself (data URIs: no
    credentials, no expiry, no worker disk); a chart too large for that becomes a link to its S3 copy. Prefect's UI
    (ui-v2, 3.9) renders markdown artifacts with rehype-sanitize and allows ``data:image/`` as an ``<img>`` source
    (``prefect/server/ui-v2/assets/lazy-markdown-*.js``); tests/deployments/test_form_browser.py checks it in
    chromium."""
    import base64

    for name, path in charts.items():
        local = Path(path)
        ref = f"![{name}]({local.name})"
        if ref not in md:
            continue
        if local.is_file() and local.stat().st_size <= INLINE_IMAGE_MAX:
            data = base64.b64encode(local.read_bytes()).decode()
            md = md.replace(ref, f"![{name}](data:image/png;base64,{data})")
        elif name in links:
            md = md.replace(ref, f"[{name}]({links[name]})")
        else:
            md = md.replace(ref, f"{name}: not available here")
    return md


def _rounded(x: Any, nd: int = 4) -> Any:
    x = _jsonable(x)
    return round(x, nd) if isinstance(x, float) else x


def metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The table artifact's rows: base, custom, Δ and its CI per metric; with a champion also its value and
    custom − champion with its CI (the same columns as before when there is none)."""
    comp = metrics.get("comparison", {})
    vs = metrics.get("comparison_vs_champion") or {}
    rows = []
    for m, c in comp.items():
        row = {"metric": m, **{k: _rounded(c[k]) for k in ("base", "custom", "delta", "ci_low", "ci_high")},
               "n": c["n"]}
        if vs:
            v = vs.get(m) or {}
            row.update({"champion": _rounded(v.get("champion")), "delta_vs_champion": _rounded(v.get("delta")),
                        "ci_low_vs_champion": _rounded(v.get("ci_low")),
                        "ci_high_vs_champion": _rounded(v.get("ci_high")), "n_vs_champion": v.get("n")})
        rows.append(row)
    pairs = (metrics.get("judge") or {}).get("pairs") or {}
    if "base" in pairs:      # the judge's score is itself custom relative to the other answer: it is the delta
        b, ch = pairs["base"], pairs.get("champion")
        row = {"metric": "judge", "base": None, "custom": None, "delta": _rounded(b.get("score")),
               "ci_low": _rounded(b.get("ci_low")), "ci_high": _rounded(b.get("ci_high")), "n": b.get("n_counted")}
        if vs or ch:
            ch = ch or {}
            row.update({"champion": None, "delta_vs_champion": _rounded(ch.get("score")),
                        "ci_low_vs_champion": _rounded(ch.get("ci_low")),
                        "ci_high_vs_champion": _rounded(ch.get("ci_high")), "n_vs_champion": ch.get("n_counted")})
        rows.append(row)
    return rows


def publish_artifacts(result: EvaluationResult, key_prefix: str = "eval",
                      links: dict[str, str] | None = None) -> bool:
    """The metrics table (rounded), the report markdown with its charts embedded, and links to the report's S3
    copies (``links``: {name: browser URL}, see ``browser_link``) as Prefect artifacts, inside a Prefect run; else
    a no-op. No link points at a worker's disk: without ``links`` the files are named, not linked.

    Keys must be lowercase letters, digits and dashes (prefect-patterns.md §6).
    """
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # pragma: no cover
        return False
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return False
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    links = links or {}
    rows = metrics_rows(result.metrics)
    g = result.gate
    who = f"base / champion {g.champion} / challenger" if g.champion else "base vs custom"
    create_table_artifact(key=f"{key_prefix}-metrics", table=rows,
                          description=f"{who}, n={result.n_examples}; gate {'PASS' if g.passed else 'FAIL'}")
    local = {k: v for k, v in result.files.items() if not k.endswith("_s3")}
    md_path = local.get("report_md")
    md = Path(md_path).read_text(encoding="utf-8") if md_path and Path(md_path).exists() else (
        f"# Evaluation\n**gate: {'PASS' if g.passed else 'FAIL'}** — {g.rule}\n")
    charts = {k: v for k, v in local.items() if k.endswith("_chart")}
    md = _inline_images(md, charts, links)
    if local:
        md += "\n## Files\n" + "\n".join(
            f"- {k}: [{Path(v).name}]({links[k]})" if k in links else f"- {k}: `{Path(v).name}` (not uploaded)"
            for k, v in local.items()) + "\n"
    create_markdown_artifact(key=f"{key_prefix}-report", markdown=md)
    for name, url in links.items():
        create_link_artifact(key=f"{key_prefix}-{name.replace('_', '-')}", link=url,
                             link_text=Path(local.get(name, url)).name)
    return True
