"""Many workers, one account (issue 18 part 5, "Done when"): a PostgreSQL-backed Prefect server (forge/postgres.py),
two process workers in separate working folders — standing in for two machines: their own PREFECT_HOME, runs folder
and cache, sharing only the Prefect API and S3 (the emulator) — and four ``customize`` runs at once through the
deployment API, with the training-jobs limit (2) and the PT model-unit limit (1) below the number of runs.

Worker A (``--limit 2``) takes the first two runs; worker B the other two, which wait for a training slot. While A's
runs train, the machine A is lost: the worker and every process under it are SIGKILLed. Then:
- A's flow runs stop heart-beating; ``forge deploy``'s zombie automation marks them Crashed; its resume automation
  starts the ``rerun-step`` deployment with each crashed run's forge run id; worker B picks them up, fetches their
  manifests from S3 (FORGE_RUNS_URI) and resumes them, adopting their jobs; A's training slots were leases: they
  expired with A, so B's waiting runs got them;
- the tests read the outcome: every run finished (resumed ones on B), one job and one PT per run (emulator ledger),
  never more jobs in progress than the training limit nor PTs than the unit limit, the runs beyond the quota waited
  (manifest ``quota_waits``, the "Waiting for quota" state) instead of failing, and `forge status --runs-uri` from a
  third folder with no local state shows them all.

One scenario per module (~3 min on the 2-core CI machine); its figures are printed. Needs the postgresql binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from forge import stack
from forge.postgres import find_bin_dir, start_postgres

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.machines, pytest.mark.timeout(600),
              pytest.mark.skipif(find_bin_dir() is None,
                                 reason="PostgreSQL not installed: apt-get update && apt-get install -y postgresql")]

RUNS = 4
TRAINING_LIMIT = 2
PT_LIMIT = 1
SPEED = 150.0            # emulator clock: a job trains ~9 s, a PT provisions ~4 s
LEASE_S = 60             # the shortest lease Prefect accepts: a lost run's slot frees within ~lease + 15 s
ZOMBIE_S = 35            # a lost run is Crashed within one heartbeat (30 s) + this
BUCKET = "forge-team-runs"
PREFIX = "bedrock-forge"
RUNS_URI = f"s3://{BUCKET}/{PREFIX}/runs/"
CUSTOMIZE = "customize-model/customize"
DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}


def _config(name: str) -> dict:
    from scenarios.harness import small_config

    cfg = small_config(name, serving={"mode": "provisioned", "model_units": 1, "max_model_units": 1},
                       evaluation={"max_examples": 8, "concurrency": 4, "max_tokens": 16, "bootstrap_samples": 100})
    cfg["aws"] = {"region": "us-east-1", "bucket": BUCKET, "prefix": PREFIX}
    return json.loads(json.dumps(cfg))


@dataclass
class Worker:
    name: str
    folder: Path
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None


def _start_worker(name: str, folder: Path, api: str, emu_url: str, limit: int) -> Worker:
    """``prefect worker start`` as on its own machine: its own PREFECT_HOME, runs folder and cache; the API and S3
    (the emulator) are all it shares with the other worker."""
    folder.mkdir(parents=True, exist_ok=True)
    env = stack.prefect_env(folder / "prefect-home", api, **DUMMY, AWS_ENDPOINT_URL=emu_url,
                            FORGE_RUNS_DIR=str(folder / "runs"), FORGE_CACHE_DIR=str(folder / "cache"),
                            FORGE_RUNS_URI=RUNS_URI, FORGE_QUOTA_LEASE_SECONDS=str(LEASE_S),
                            FORGE_QUOTA_WAIT_SECONDS="600", PREFECT_WORKER_QUERY_SECONDS="1",
                            PREFECT_LOGGING_LEVEL="INFO")
    log = folder / "worker.log"
    handle = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "forge-process",
                             "--type", "process", "--name", f"machine-{name}", "--limit", str(limit)],
                            env=env, cwd=folder, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Worker(name, folder, proc, log)


def _flow_run(api: str, fr_id: str) -> dict:
    r = httpx.get(f"{api}/flow_runs/{fr_id}", timeout=10)
    r.raise_for_status()
    return r.json()


def _flow_runs(api: str) -> list[dict]:
    r = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=10)
    r.raise_for_status()
    return r.json()


def _state(run: dict) -> tuple[str | None, str | None]:
    st = run.get("state") or {}
    return st.get("type"), st.get("name")


@dataclass
class Outcome:
    api: str
    emu_url: str
    tmp: Path
    originals: dict[str, str] = field(default_factory=dict)     # config name -> flow run id
    on_a: list[str] = field(default_factory=list)               # config names run by worker A
    run_ids: dict[str, str] = field(default_factory=dict)       # config name -> forge run id
    resumes: dict[str, dict] = field(default_factory=dict)      # config name -> the rerun-step flow run
    waiting_states: set[str] = field(default_factory=set)       # flow runs seen in "Waiting for quota"
    marks: dict[str, float] = field(default_factory=dict)       # figures (s since the runs were triggered)
    ledger: dict = field(default_factory=dict)
    manifests: dict[str, dict] = field(default_factory=dict)    # config name -> manifest as S3 has it
    status_out: str = ""
    status_rc: int | None = None
    runs_b: list[str] = field(default_factory=list)             # run folders in B's runs folder
    runs_a: list[str] = field(default_factory=list)
    final_states: dict[str, str | None] = field(default_factory=dict)   # config name -> its original flow run's
    retry_first: str | None = None          # the state the Retry run first ended in (FAILED)
    retry_run_id: str | None = None         # its forge run id before the Retry
    retry_flow_run: dict = field(default_factory=dict)
    retry_reruns: list[str] = field(default_factory=list)   # rerun-step runs started for it (none: it Failed)


def _watch_states(api: str, out: Outcome, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            for run in _flow_runs(api):
                if _state(run)[1] == "Waiting for quota":
                    out.waiting_states.add(run["id"])
        except httpx.HTTPError:
            pass
        stop.wait(0.5)


def _jobs_in_progress(emu_url: str) -> dict[str, str]:
    from emulator.testing import boto3_clients

    c = boto3_clients(emu_url)
    jobs = c.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"]
    return {j["jobName"]: j["status"] for j in jobs}


def _wait(cond, timeout: float, what: str, poll: float = 0.25, api: str | None = None, ids: list[str] = ()):
    """Poll ``cond`` for ``timeout`` s; fails at once when one of the flow runs ``ids`` ended Failed/Crashed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in ids:
            if _state(_flow_run(api, i))[0] in ("FAILED", "CRASHED", "CANCELLED"):
                raise AssertionError(f"flow run {i} ended {_state(_flow_run(api, i))} while waiting for {what}")
        got = cond()
        if got:
            return got
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _kill_tree(pid: int) -> list[int]:
    from bench.leak import tree

    procs = tree(pid)
    for p in procs:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [p.pid for p in procs]


def _diagnose(api: str, emu_url: str | None) -> str:
    """Every flow run's state and its last log lines (the flow runs' own output does not go through the workers)."""
    lines = []
    try:
        for run in _flow_runs(api):
            lines.append(f"flow run {run['id']} {run['name']}: {_state(run)} {list(run.get('parameters') or {})}")
            logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}},
                                                            "sort": "TIMESTAMP_DESC", "limit": 12}, timeout=10).json()
            lines += [f"    {lg['level']} {lg['message'][:300]}" for lg in reversed(logs)]
        if emu_url:
            lines.append(f"jobs: {_jobs_in_progress(emu_url)}")
    except Exception as err:  # noqa: BLE001 - diagnostics only
        lines.append(f"(diagnostics failed: {err})")
    return "\n".join(lines)


def _scenario(tmp: Path) -> Outcome:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from emulator.testing import start_subprocess
    from forge.commands.deploy import deploy_all

    services: list = []
    workers: list[Worker] = []
    emu = None
    t_boot = time.monotonic()
    boot: dict[str, float] = {}
    try:
        pg = start_postgres(tmp / "postgres", log_dir=tmp / "logs")
        services.append(pg)
        boot["postgres"] = time.monotonic() - t_boot
        server = stack.start_server(tmp / "server-home", ui=False, log_dir=tmp / "logs",
                                    database_url=pg.database_url, timeout=150)
        services.append(server)
        api = server.url
        boot["server"] = time.monotonic() - t_boot
        emu = start_subprocess(speed=SPEED, state_dir=tmp / "emulator")
        old = os.environ.get("FORGE_ZOMBIE_WITHIN_S")
        os.environ["FORGE_ZOMBIE_WITHIN_S"] = str(ZOMBIE_S)
        try:
            with temporary_settings(updates={PREFECT_API_URL: api}):
                deploy_all(only=["customize", "rerun-step"], quota_regions=["us-east-1"],
                           training_jobs=TRAINING_LIMIT, pt_model_units=PT_LIMIT, echo=lambda *_: None)
        finally:
            if old is None:
                os.environ.pop("FORGE_ZOMBIE_WITHIN_S", None)
            else:
                os.environ["FORGE_ZOMBIE_WITHIN_S"] = old
        boot["deployed"] = time.monotonic() - t_boot
        out = Outcome(api=api, emu_url=emu.url, tmp=tmp)
        out.marks.update({f"boot_{k}": round(v, 1) for k, v in boot.items()})
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_states, args=(api, out, stop), daemon=True)
        watcher.start()

        # machine A takes the first two runs ...
        a = _start_worker("A", tmp / "machine-a", api, emu.url, limit=2)
        workers.append(a)
        t0 = time.monotonic()
        names = [f"team-{i}" for i in range(1, RUNS + 1)]
        for n in names[:2]:
            out.originals[n] = stack.trigger(api, CUSTOMIZE, {"config": _config(n)})
        _wait(lambda: all(_state(_flow_run(api, out.originals[n]))[0] == "RUNNING" for n in names[:2]), 180,
              "worker A to run the first two runs")
        out.on_a = names[:2]
        # ... machine B the other two, which find the training quota taken
        b = _start_worker("B", tmp / "machine-b", api, emu.url, limit=4)
        workers.append(b)
        # both of A's runs hold a training slot (their jobs exist) before B's runs are triggered: waiting for
        # RUNNING alone left a race where a B run reached customize before team-2 took its slot (CI after stop 26)
        _wait(lambda: all(any(k.startswith(f"forge-{n}-") for k in _jobs_in_progress(emu.url)) for n in names[:2]),
              240, "worker A's two runs to create their jobs", api=api, ids=[out.originals[n] for n in names[:2]])
        for n in names[2:]:
            out.originals[n] = stack.trigger(api, CUSTOMIZE, {"config": _config(n)})
        out.marks["triggered"] = round(time.monotonic() - t0, 1)

        # lose machine A while one of its runs' jobs trains
        _wait(lambda: any(k.startswith(tuple(f"forge-{n}-" for n in out.on_a)) and v == "InProgress" for k, v in
                          _jobs_in_progress(emu.url).items()), 240, "one of A's jobs to be in progress",
              api=api, ids=list(out.originals.values()))
        for n in out.on_a:
            out.run_ids[n] = _flow_run(api, out.originals[n])["name"]
        killed = _kill_tree(a.proc.pid)
        a.proc.wait(timeout=30)
        t_kill = time.monotonic()
        out.marks["killed_A"] = round(t_kill - t0, 1)
        out.marks["killed_processes"] = len(killed)

        # every run ends: A's Crashed then resumed by the rerun-step deployment on B, B's Completed
        def crashed() -> bool:
            return all(_state(_flow_run(api, out.originals[n]))[0] == "CRASHED" for n in out.on_a)

        _wait(crashed, ZOMBIE_S + 60, "A's flow runs to be marked Crashed")
        out.marks["crashed_after_kill"] = round(time.monotonic() - t_kill, 1)

        def resumed() -> bool:
            runs = [r for r in _flow_runs(api) if (r.get("parameters") or {}).get("run_id")]
            for n in out.on_a:
                mine = [r for r in runs if r["parameters"]["run_id"] == out.run_ids[n]]
                if mine:
                    out.resumes[n] = mine[0]
            return len(out.resumes) == len(out.on_a)

        _wait(resumed, 60, "the resume automation to start rerun-step runs")
        out.marks["resume_started_after_kill"] = round(time.monotonic() - t_kill, 1)
        final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
        watched = [out.originals[n] for n in names[2:]] + [r["id"] for r in out.resumes.values()]
        _wait(lambda: all(_state(_flow_run(api, i))[0] in final for i in watched), 360, "every run to end", poll=1)
        out.marks["all_done"] = round(time.monotonic() - t0, 1)
        for n, r in list(out.resumes.items()):
            out.resumes[n] = _flow_run(api, r["id"])
        for n in names[2:]:
            out.run_ids[n] = _flow_run(api, out.originals[n])["name"]

        # Retry in the UI: a run that failed at provision (the PT create refused) is set back to Scheduled/
        # AwaitingRetry as the UI's Retry button does; worker B runs the same flow run again: the same forge run
        retried = f"team-{RUNS + 1}"
        emu.set_faults([{"operation": "CreateProvisionedModelThroughput", "error": "AccessDeniedException"}])
        out.originals[retried] = stack.trigger(api, CUSTOMIZE, {"config": _config(retried)})
        _wait(lambda: _state(_flow_run(api, out.originals[retried]))[0] in final, 240, "the faulty run to fail",
              poll=1)
        out.retry_first = _state(_flow_run(api, out.originals[retried]))[0]
        out.retry_run_id = _flow_run(api, out.originals[retried])["name"]
        emu.set_faults([])
        t_retry = time.monotonic()
        httpx.post(f"{api}/flow_runs/{out.originals[retried]}/set_state", timeout=10, json={
            "state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
            "force": True}).raise_for_status()
        _wait(lambda: _state(_flow_run(api, out.originals[retried]))[0] in final - {"FAILED"}
              or (_state(_flow_run(api, out.originals[retried]))[0] == "FAILED"
                  and _flow_run(api, out.originals[retried])["run_count"] > 1), 240, "the retried run to end", poll=1)
        out.marks["retry_done_s"] = round(time.monotonic() - t_retry, 1)
        out.retry_flow_run = _flow_run(api, out.originals[retried])
        out.run_ids[retried] = out.retry_flow_run["name"]
        out.retry_reruns = [r["id"] for r in _flow_runs(api)
                            if (r.get("parameters") or {}).get("run_id") == out.retry_run_id]
        out.final_states = {n: _state(_flow_run(api, i))[0] for n, i in out.originals.items()}
        stop.set()
        watcher.join(5)

        out.ledger = emu.ledger()
        from emulator.testing import boto3_clients
        from tasks.run.store import S3RunStore

        store = S3RunStore.at(boto3_clients(emu.url).s3, RUNS_URI)
        for n in out.originals:
            found = store.get(out.run_ids[n])
            out.manifests[n] = found[0] if found else {}
        out.runs_a = sorted(p.name for p in (a.folder / "runs").glob("*") if p.is_dir())
        out.runs_b = sorted(p.name for p in (b.folder / "runs").glob("*") if p.is_dir())

        third = tmp / "on-call-laptop"
        third.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "FORGE_RUNS"))}
        env.update(DUMMY)
        r = subprocess.run([sys.executable, "-m", "forge.cli", "status", "--runs-uri", RUNS_URI,
                            "--endpoint", emu.url], cwd=third, env=env, capture_output=True, text=True, timeout=120)
        out.status_rc, out.status_out = r.returncode, r.stdout + r.stderr
        assert not any(third.iterdir()), f"forge status wrote local state: {list(third.iterdir())}"
        return out
    except Exception:
        if services and len(services) > 1:
            print(_diagnose(services[1].url, emu.url if emu is not None else None))
        raise
    finally:
        for w in workers:
            if w.alive():
                _kill_tree(w.proc.pid)
        if emu is not None:
            emu.terminate()
        for svc in reversed(services):
            svc.stop()


@pytest.fixture(scope="module")
def outcome():
    # under /tmp, searchable by the `postgres` user when the tests run as root (pytest's tmp_path is 0700)
    tmp = Path(tempfile.mkdtemp(prefix="forge-two-workers-"))
    tmp.chmod(0o755)
    t0 = time.monotonic()
    try:
        out = _scenario(tmp)
        out.marks["scenario_s"] = round(time.monotonic() - t0, 1)
        print("two-worker figures (s):", json.dumps(out.marks))
        yield out
    except Exception:
        for log in sorted(tmp.glob("machine-*/worker.log")):
            print(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _explain(out: Outcome) -> str:
    return json.dumps({"marks": out.marks, "run_ids": out.run_ids,
                       "manifests": {n: {k: m.get(k) for k in ("status", "flow_run_ids", "quota_waits", "error")}
                                     for n, m in out.manifests.items()}}, indent=1, default=str)


def test_every_run_finished_and_the_lost_ones_resumed_on_the_other_worker(outcome):
    out = outcome
    for n, m in out.manifests.items():
        assert m.get("status") == "succeeded", (n, _explain(out))
    for n in out.on_a:
        resume = out.resumes[n]
        assert _state(resume)[0] == "COMPLETED", (n, resume.get("state"))
        m = out.manifests[n]
        # the same forge run: the original flow run (on A) and its resume, one run folder, one manifest
        assert m["flow_run_ids"][0] == out.originals[n] and resume["id"] in m["flow_run_ids"], _explain(out)
        assert out.run_ids[n] in out.runs_b, "the resume did not run on machine B"
    for n in set(out.manifests) - set(out.on_a):
        assert out.run_ids[n] not in out.runs_a, "machine A ran a run it was not given"
        assert out.final_states[n] == "COMPLETED", out.final_states


def test_one_job_and_one_pt_per_run_key(outcome):
    out = outcome
    keys = {m["run_key"] for m in out.manifests.values()}
    assert len(keys) == len(out.manifests) == RUNS + 1
    for n in out.manifests:
        jobs = [r for r in out.ledger["resources"].values()
                if r["type"] == "model-customization-job" and r["name"].startswith(f"forge-{n}-")]
        pts = [r for r in out.ledger["resources"].values()
               if r["type"] == "provisioned-model-throughput" and r["name"].startswith(f"forge-{n}-")]
        assert len(jobs) == 1, (n, jobs)
        assert len(pts) == 1, (n, pts)
        assert pts[0]["state"] == "Deleted", pts     # and torn down


def _max_overlap(resources: list[dict], busy: set[str]) -> int:
    """The most resources in one of the ``busy`` states at the same (virtual) time, from the ledger's histories."""
    events = []
    for r in resources:
        hist = r["history"]
        for i, h in enumerate(hist):
            if h["state"] in busy and (i == 0 or hist[i - 1]["state"] not in busy):
                events.append((h["t"], 1))
            if h["state"] not in busy and i > 0 and hist[i - 1]["state"] in busy:
                events.append((h["t"], -1))
    level = peak = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        level += d
        peak = max(peak, level)
    return peak


def test_never_more_jobs_or_pts_than_the_limits_and_no_quota_error(outcome):
    out = outcome
    res = list(out.ledger["resources"].values())
    jobs = _max_overlap([r for r in res if r["type"] == "model-customization-job"], {"InProgress"})
    pts = _max_overlap([r for r in res if r["type"] == "provisioned-model-throughput"],
                       {"Creating", "InService", "Updating"})
    assert 1 <= jobs <= TRAINING_LIMIT, jobs
    assert pts == PT_LIMIT, pts
    refused = [c for c in out.ledger["calls"] if c.get("error") == "ServiceQuotaExceededException"]
    assert refused == [], refused


def test_the_runs_beyond_the_quota_waited_instead_of_failing(outcome):
    out = outcome
    waited = {n: [w for w in (m.get("quota_waits") or []) if w["waited_s"] > 0] for n, m in out.manifests.items()}
    b_runs = [f"team-{i}" for i in range(3, RUNS + 1)]
    for n in b_runs:   # triggered while A's two runs held both training slots
        assert any(w["step"] == "customize" and w["limit"] == "bedrock-training-jobs:us-east-1" for w in waited[n]), \
            _explain(out)
    assert sum(1 for ws in waited.values() for w in ws if w["step"] == "provision") >= 1, _explain(out)  # PT limit 1
    assert {out.originals[n] for n in b_runs} <= out.waiting_states, "the UI never showed 'Waiting for quota'"
    print("quota waits (s):", {n: [(w["step"], w["waited_s"]) for w in ws] for n, ws in waited.items()})


def test_forge_status_from_a_third_folder_shows_every_run(outcome):
    out = outcome
    assert out.status_rc == 0, out.status_out
    for n, run_id in out.run_ids.items():
        line = next((ln for ln in out.status_out.splitlines() if run_id in ln), None)
        assert line is not None and "succeeded" in line, (n, out.status_out)


def test_retry_in_the_ui_resumes_the_same_run_on_a_worker(outcome):
    """Scheduled/AwaitingRetry on the failed flow run (the UI's Retry): the same flow run runs again on worker B
    (run_count 2) and resumes its forge run at provision — same run id and manifest, one job — instead of a new run.
    A Failed run is not resumed by the crash automation (an error is on-call's to fix)."""
    out = outcome
    n = f"team-{RUNS + 1}"
    assert out.retry_first == "FAILED", out.retry_first
    fr = out.retry_flow_run
    assert _state(fr)[0] == "COMPLETED" and fr["run_count"] == 2, (fr.get("state"), fr.get("run_count"))
    assert out.run_ids[n] == out.retry_run_id, "Retry started another forge run"
    m = out.manifests[n]
    assert m["status"] == "succeeded" and m["attempts"] == 2 and m["rerun_from"] == "provision", _explain(out)
    assert m["flow_run_ids"].count(fr["id"]) == 2
    assert out.retry_reruns == [], "the crash automation resumed a Failed run"
