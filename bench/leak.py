"""`python bench/leak.py [ROW ...] [--sweep-every 30] [--json FILE]`: kill a serving run, measure the PT it leaves.

Issue 15's benchmark. Every row starts a real run whose provisioned throughput (PT) is InService and whose
evaluation is calling it (the emulator's InvokeModel carries a latency fault, so evaluation lasts ~30 s), with
the DEFAULT ``serving.max_hours`` (2 h: ``forge-expires-at`` is two hours away, it never helps here) and the
default sweep stale bound (``tasks/run/liveness.py`` STALE_AFTER_S), then kills it:

- ``forge-run-kill``   SIGKILL of the ``forge run`` process only;
- ``forge-run-killpg`` SIGKILL of ``forge run``'s whole process group;
- ``worker-kill``      SIGKILL of a real ``prefect worker start`` process worker (on a real ``prefect server
                       start``, SQLite in a temp PREFECT_HOME; the run triggered through the ``customize``
                       deployment registered by ``forge deploy --apply`` from deployments/prefect.yaml);
- ``worker-term``      SIGTERM of that worker (a normal stop);
- ``lost-machine``     SIGKILL of the worker, its flow-run process AND the run's watchdog at once (a lost
                       machine): only the scheduled sweep is left.

All along, a scheduled-style sweeper (``flows.sweep.sweep_now``, what the ``sweep`` deployment runs) sweeps every
``--sweep-every`` seconds with the default stale bound: it must never delete a live run's PT, and it is the only
layer left in the ``lost-machine`` row.

Per row: PT-seconds billed after the kill (kill time → the PT's ``Deleted`` transition in the emulator ledger,
converted from the emulator's virtual clock to real time), PTs still alive at the end (leaked), the flow run's
final state in Prefect, the manifest status, which layer deleted the PT (manifest ``teardown.by``, the run's
``watchdog.log``, the sweeper's own record), and the process tree at the kill with what survived it.
Target (issue 15): 0 leaked and <= 300 s of PT time after each kill. Results: bench/leak.md.

The same functions drive tests/deployments/test_worker_loss.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_S = 300.0                 # issue 15: at most this much PT time after a kill
INVOKE_LATENCY_MS = 1500         # every InvokeModel waits this long: evaluation lasts ~30 s
SPEED = 3000.0                   # emulator virtual-clock speed (training and provisioning take seconds)
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}
ROWS = ("forge-run-kill", "forge-run-killpg", "worker-kill", "worker-term", "lost-machine")
# not run by default: SIGKILL of a worker whose flow run does not stream its output through the worker (job variable
# stream_output: false), so the surviving flow-run process does not die of a broken stdout pipe (bench/leak.md)
EXTRA_ROWS = ("worker-kill-quiet",)
ORDER = ("lost-machine", "worker-term", "worker-kill", "worker-kill-quiet", "forge-run-kill", "forge-run-killpg")


# --------------------------------------------------------------------------------------------- config
def default_max_hours() -> float:
    from tasks.config import ServingConfig

    return float(ServingConfig.model_fields["max_hours"].default)


def leak_config(name: str) -> dict:
    """A small run whose evaluation lasts long enough to be killed in, with the DEFAULT serving.max_hours."""
    from scenarios.harness import small_config

    hours = default_max_hours()
    assert hours >= 1.0, f"serving.max_hours default is {hours}: this benchmark measures the default (2 h)"
    cfg = small_config(name, serving={"mode": "provisioned", "model_units": 1, "max_hours": hours},
                       data={"max_records": 400},
                       evaluation={"max_examples": 40, "concurrency": 4, "max_tokens": 16, "bootstrap_samples": 100})
    return json.loads(json.dumps(cfg))


# --------------------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    cmd: str

    def line(self) -> str:
        return f"pid {self.pid} ppid {self.ppid} pgid {self.pgid} sid {self.sid}: {self.cmd}"


def processes() -> dict[int, Proc]:
    """Every process on the machine from /proc (Linux)."""
    out: dict[int, Proc] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
        out[int(d.name)] = Proc(int(d.name), int(rest[1]), int(rest[2]), int(rest[3]), rest[0], _short(cmd))
    return out


def _short(cmd: str) -> str:
    cmd = cmd.replace(sys.executable, "python").replace(str(REPO) + "/", "")
    return cmd if len(cmd) <= 110 else cmd[:107] + "..."


def tree(root: int) -> list[Proc]:
    """``root`` and all its descendants (by parent pid), parents first."""
    procs = processes()
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop(0)
        if pid in procs:
            found.append(procs[pid])
            frontier += sorted(p.pid for p in procs.values() if p.ppid == pid)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def role(p: Proc) -> str:
    c = p.cmd
    for needle, name in (("flows.watchdog", "watchdog"), ("prefect worker start", "worker"),
                         ("prefect.engine", "flow-run process"), ("forge.cli run", "forge run"),
                         ("uvicorn", "temporary Prefect server"), ("prefect server start", "Prefect server"),
                         ("prefect.server", "temporary Prefect server")):
        if needle in c:
            return name
    return "other"


# A sitecustomize put on the PYTHONPATH of the processes a row starts (with --trace): every signal a process sends
# (os.kill / os.killpg, which Popen.send_signal/kill and anyio use) and every sys.exit, with the sender's pid and
# the Python stack, appended to $FORGE_LEAK_TRACE. It changes no behaviour.
TRACER = """
import os, sys, time, traceback
_path = os.environ.get("FORGE_LEAK_TRACE")
if _path:
    def _note(what):
        try:
            with open(_path, "a") as f:
                f.write(f"{time.time():.3f} pid {os.getpid()} ({' '.join(sys.argv)[:80]}): {what}\\n")
                f.write("".join(traceback.format_stack(limit=14)[:-2]))
        except OSError:
            pass
    _kill, _killpg, _exit = os.kill, os.killpg, sys.exit
    def kill(pid, sig):
        _note(f"os.kill({pid}, {sig!r})")
        return _kill(pid, sig)
    def killpg(pgid, sig):
        _note(f"os.killpg({pgid}, {sig!r})")
        return _killpg(pgid, sig)
    def exit(code=None):
        _note(f"sys.exit({code!r})")
        return _exit(code)
    os.kill, os.killpg, sys.exit = kill, killpg, exit
"""


def tracing_env(tmp: Path) -> dict[str, str]:
    """Environment additions that make the started processes log the signals they send (see TRACER)."""
    d = tmp / "tracer"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sitecustomize.py").write_text(TRACER)
    path = os.pathsep.join([str(d), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, "FORGE_LEAK_TRACE": str(tmp / "signals.log")}


def signal_trace(tmp: Path, t_kill: float) -> list[str]:
    """The traced signals and exits after the kill: one line each, with the innermost project/Prefect frame."""
    log = tmp / "signals.log"
    if not log.exists():
        return []
    out, head = [], None
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"^(\d+\.\d+) (pid .*)$", line)
        if m:
            head = (float(m.group(1)), m.group(2))
            if head[0] >= t_kill - 0.5:
                out.append(f"+{head[0] - t_kill:.2f} s {head[1]}")
        elif head and head[0] >= t_kill - 0.5 and line.strip().startswith("File ") and out:
            where = re.sub(r'^.*?(site-packages/|/work/main/)', "", line.strip().split(",")[0].strip('File "'))
            out[-1] = re.sub(r" \[at .*\]$", "", out[-1]) + f" [at {where}:{line.split(', line ')[-1].split(',')[0]}]"
    return out


# --------------------------------------------------------------------------------------------- the ledger
def virtual_to_real(emu) -> Any:
    """A function mapping the emulator's virtual ISO times to real epoch seconds (its clock is linear)."""
    t0 = time.time()
    h = emu.health()
    t1 = time.time()
    real_now, virtual_now, speed = (t0 + t1) / 2, float(h["virtual_now"]), float(h["speed"])

    def to_real(iso: str) -> float:
        v = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
        return real_now - (virtual_now - v) / speed

    return to_real


def serving_of(ledger: dict, run_prefix: str) -> dict[str, dict]:
    """The ledger's PTs/deployments created by runs whose id starts with ``run_prefix`` (their forge-run-id)."""
    from emulator.testing import SERVING_TYPES

    return {arn: r for arn, r in ledger["resources"].items()
            if r["type"] in SERVING_TYPES and (r.get("tags") or {}).get("forge-run-id", "").startswith(run_prefix)}


def deleted_at(emu, arn: str) -> float | None:
    """Real epoch seconds of the PT's Deleted transition, None while it lives."""
    r = emu.ledger()["resources"].get(arn) or {}
    ends = [h["t"] for h in r.get("history", []) if h["state"] in ("Deleting", "Deleted")]
    return virtual_to_real(emu)(ends[0]) if ends else None


def wait_evaluating(emu, run_prefix: str, still_running, timeout_s: float = 300.0) -> str:
    """Until the run's PT is InService and evaluation has called models since: returns the PT ARN."""
    from emulator.testing import ledger_calls

    deadline, base = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        led = emu.ledger()
        live = [a for a, r in serving_of(led, run_prefix).items() if r["state"] == "InService"]
        n = len(ledger_calls(led, "InvokeModel"))
        if live and base is None:
            base = n
        if live and base is not None and n >= base + 6:
            return live[0]
        if not still_running():
            raise RuntimeError(f"{run_prefix}: the run ended before its evaluation was running")
        time.sleep(0.3)
    raise RuntimeError(f"{run_prefix}: evaluation not running after {timeout_s:.0f} s")


# --------------------------------------------------------------------------------------------- the sweeper
@dataclass
class Sweeper:
    """``flows.sweep.sweep_now`` every ``every_s`` (the sweep deployment's job) with the default stale bound."""

    endpoint: str
    every_s: float = 30.0
    deleted: dict[str, tuple[float, str]] = field(default_factory=dict)   # arn -> (real time, why)
    sweeps: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sweeper:
        self._thread = threading.Thread(target=self._loop, name="bench-sweeper", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        from flows.sweep import sweep_now

        while not self._stop.wait(self.every_s):
            try:
                report = sweep_now(region="us-east-1", endpoint_url=self.endpoint)
            except Exception as err:  # noqa: BLE001 - recorded; a sweep error is a finding
                self.errors.append(str(err))
                continue
            self.sweeps += 1
            for arn in report.deleted:
                self.deleted.setdefault(arn, (time.time(), report.reasons.get(arn, "")))
            self.errors += report.errors

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)


# --------------------------------------------------------------------------------------------- one row
@dataclass
class Outcome:
    row: str
    kill: str
    pt: str | None = None
    pt_s_after_kill: float | None = None       # None: still alive when the row ended
    t_kill: float | None = None                # real epoch seconds of the kill
    pt_deleted_real: float | None = None       # real epoch seconds of the PT's Deleted transition
    leaked: list[str] = field(default_factory=list)
    flow_state: str = "?"                      # when the row ended (~20 s after the PT was gone)
    flow_run_id: str | None = None
    flow_state_final: str | None = None        # after Prefect's zombie detection had its time (settle_flow_states)
    flow_marked_s: float | None = None         # kill -> the timestamp of that final state
    manifest_path: str | None = None
    manifest_final: str | None = None          # re-read by settle_flow_states (scoring can end after the PT is gone)
    manifest_status: str | None = None
    deleted_by: str = "?"
    expires_at: str | None = None
    tree_at_kill: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)       # traced os.kill/os.killpg/sys.exit after the kill
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.leaked and self.pt_s_after_kill is not None and self.pt_s_after_kill <= TARGET_S


@dataclass
class Pending:
    """A killed run whose PT is still being measured."""

    outcome: Outcome
    emu: Any
    runs_dir: Path
    t_kill: float
    t_start: float
    tree: list[Proc]
    api: str | None = None
    flow_run_id: str | None = None
    wait_s: float = TARGET_S + 60


def _env(tmp: Path, endpoint: str) -> dict[str, str]:
    env = {**os.environ, **DUMMY_AWS, "AWS_ENDPOINT_URL": endpoint, "PREFECT_HOME": str(tmp / "prefect-home"),
           "PYTHONUNBUFFERED": "1", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    env.pop("PREFECT_API_URL", None)
    return env


def kill_forge_run(emu, tmp: Path, row: str, *, group: bool) -> Pending:
    """`forge run` in its own session until it evaluates, then SIGKILL (its pid, or its whole process group)."""
    import yaml

    t_start = time.monotonic()
    name = f"leak-{row}"
    cfg_path = tmp / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(leak_config(name)))
    runs = tmp / "runs"
    log = (tmp / "forge-run.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli", "run", str(cfg_path), "--endpoint", emu.url,
                             "--runs-dir", str(runs)], env={**_env(tmp, emu.url), **tracing_env(tmp)}, cwd=REPO,
                            stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        arn = wait_evaluating(emu, name + "-", lambda: proc.poll() is None)
    except Exception as err:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        tail = (tmp / "forge-run.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{err}: {tail}") from None
    procs = tree(proc.pid)
    t_kill = time.time()
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        os.kill(proc.pid, signal.SIGKILL)
    out = Outcome(row=row, kill=f"SIGKILL {'process group of' if group else 'pid of'} `forge run`", pt=arn)
    out.timeline += _watch_exits(procs, t_kill, proc, 5.0)
    proc.wait(timeout=30)
    return Pending(out, emu, runs, t_kill, t_start, procs)


def trigger(api: str, deployment: str, parameters: dict, job_variables: dict | None = None) -> str:
    """``forge.stack.trigger`` with job variables (the UI's "Custom run" → job variables)."""
    import httpx

    from forge import stack

    if not job_variables:
        return stack.trigger(api, deployment, parameters)
    dep = httpx.get(f"{api}/deployments/name/{deployment}", timeout=10)
    dep.raise_for_status()
    resp = httpx.post(f"{api}/deployments/{dep.json()['id']}/create_flow_run",
                      json={"parameters": parameters, "job_variables": job_variables}, timeout=30)
    resp.raise_for_status()
    return resp.json()["id"]


def kill_worker(emu, tmp: Path, api: str, row: str, how: str, job_variables: dict | None = None) -> Pending:
    """A process worker on the real server runs a ``customize`` deployment run; kill it ``how`` =
    "kill" (SIGKILL the worker), "term" (SIGTERM the worker) or "lost" (SIGKILL the worker, its flow-run
    process and the watchdog: everything on the machine)."""
    from forge import stack

    t_start = time.monotonic()
    name = f"leak-{row}"
    runs = tmp / "runs"
    worker = stack.start_worker(tmp / "worker-home", api, aws_endpoint=emu.url, log_dir=tmp / "logs", name=row,
                                extra_env={"FORGE_CACHE_DIR": str(tmp / "cache"), "FORGE_RUNS_DIR": str(runs),
                                           "PREFECT_LOGGING_LEVEL": "INFO", **tracing_env(tmp)})
    fr = trigger(api, "customize-model/customize", {"config": leak_config(name), "runs_dir": str(runs)},
                 job_variables)
    try:
        arn = wait_evaluating(emu, name + "-", worker.alive)
    except Exception:
        _kill_all(tree(worker.proc.pid))
        raise
    procs = tree(worker.proc.pid)
    t_kill = time.time()
    if how == "lost":
        for p in procs:
            _signal(p.pid, signal.SIGKILL)
    else:
        worker.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
    kill = {"kill": "SIGKILL of the process worker", "term": "SIGTERM of the process worker",
            "lost": "SIGKILL of worker + flow-run process + watchdog (lost machine)"}[how]
    out = Outcome(row=row, kill=kill, pt=arn)
    pending = Pending(out, emu, runs, t_kill, t_start, procs, api=api, flow_run_id=fr)
    out.timeline += _watch_exits(procs, t_kill, worker.proc, 60.0 if how == "term" else 5.0)
    if worker._log_handle is not None:  # type: ignore[attr-defined]
        worker._log_handle.close()  # type: ignore[attr-defined]
    return pending


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_all(procs: list[Proc]) -> None:
    for p in procs:
        _signal(p.pid, signal.SIGKILL)


def _watch_exits(procs: list[Proc], t_kill: float, worker: subprocess.Popen, timeout_s: float) -> list[str]:
    """When each process of the tree ended after the kill (for ``timeout_s`` at most); ``worker``: our own child,
    reaped here."""
    ended: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(ended) < len(procs):
        worker.poll()   # reap our own child
        for p in procs:
            if p.pid not in ended and not alive(p.pid):
                ended[p.pid] = time.time() - t_kill
        time.sleep(0.1)
    worker.poll()
    return [f"{role(p)} (pid {p.pid}) " + (f"ended {ended[p.pid]:.1f} s after the kill" if p.pid in ended
                                           else f"still running {timeout_s:.0f} s after the kill")
            for p in procs] + ([f"exit status of {role(procs[0])}: {worker.returncode}"]
                               if worker.returncode is not None else [])


def finish(p: Pending, sweeper: Sweeper | None) -> Outcome:
    """Wait (up to ``p.wait_s``) for the PT's deletion; then record who deleted it, the manifest, the flow run's
    state and the processes that outlived the kill (those are then stopped, by pid)."""
    out = p.outcome
    out.tree_at_kill = [f"{role(x)}: {x.line()}" for x in p.tree]
    deadline = p.t_kill + p.wait_s
    end = None
    while end is None and time.time() < deadline:
        end = deleted_at(p.emu, out.pt) if out.pt else None
        if end is None:
            time.sleep(0.5)
    out.pt_s_after_kill = None if end is None else round(max(0.0, end - p.t_kill), 1)
    out.t_kill, out.pt_deleted_real = p.t_kill, end
    time.sleep(2)     # let the manifest and logs settle (the watchdog writes after its deletes)
    led = p.emu.ledger()
    prefix = out.row and f"leak-{out.row}-"
    mine = serving_of(led, prefix)
    out.leaked = [a for a, r in mine.items() if r["state"] != "Deleted"]
    if out.pt:
        out.expires_at = (led["resources"][out.pt].get("tags") or {}).get("forge-expires-at")
    _read_manifest(p, out, sweeper)
    out.flow_state, out.flow_run_id = _flow_state(p), p.flow_run_id
    linger = time.monotonic() + 20     # give what outlived the kill a moment to end by itself
    while time.monotonic() < linger and any(alive(x.pid) for x in p.tree):
        time.sleep(0.5)
    out.survivors = [f"{role(x)}: {x.line()} (still running {time.time() - p.t_kill:.0f} s after the kill)"
                     for x in p.tree if alive(x.pid)]
    out.signals = signal_trace(p.runs_dir.parent, p.t_kill)
    _kill_all([x for x in p.tree if alive(x.pid)])
    out.seconds = round(time.monotonic() - p.t_start, 1)
    return out


def _read_manifest(p: Pending, out: Outcome, sweeper: Sweeper | None) -> None:
    manifests = sorted(p.runs_dir.glob(f"leak-{out.row}-*/manifest.json"))
    by = None
    if manifests:
        doc = json.loads(manifests[-1].read_text())
        out.manifest_status, out.manifest_path = doc.get("status"), str(manifests[-1])
        by = (doc.get("teardown") or {}).get("by")
        log = manifests[-1].parent / "watchdog.log"
        if log.exists():
            out.notes += [re.sub(r"^\S+ ", "", line) for line in log.read_text().splitlines()
                          if "guarding" not in line][-3:]
    swept = sweeper.deleted.get(out.pt) if sweeper and out.pt else None
    if swept:
        out.deleted_by = f"sweep ({swept[1]})"
    elif by:
        out.deleted_by = str(by)
    elif out.pt_s_after_kill is not None:
        out.deleted_by = "finally/hook (teardown.by not recorded)"
    else:
        out.deleted_by = "nobody"


def _flow_state(p: Pending) -> str:
    if not p.api or not p.flow_run_id:
        return "n/a (temporary server of `forge run`)"
    import httpx

    from forge import stack

    try:
        run = stack.wait_flow_run(p.api, p.flow_run_id, timeout=20, poll=1.0)
    except stack.StackError:
        run = httpx.get(f"{p.api}/flow_runs/{p.flow_run_id}", timeout=10).json()
    st = run.get("state") or {}
    msg = (st.get("message") or "").replace("\n", " ")
    return f"{st.get('name')}" + (f": {msg[:120]}" if msg else "")


# --------------------------------------------------------------------------------------------- the lab
@dataclass
class Lab:
    """One emulator (InvokeModel latency fault), a real Prefect server with the deployments, a sweeper."""

    tmp: Path
    emu: Any
    server: Any = None
    sweeper: Sweeper | None = None

    @property
    def api(self) -> str:
        return self.server.url

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.server is not None:
            self.server.stop()
        self.emu.terminate()


def open_lab(tmp: Path, *, server: bool = True, sweep_every_s: float | None = 30.0) -> Lab:
    from emulator.testing import start_subprocess
    from forge import stack

    os.environ.update(DUMMY_AWS)
    emu = start_subprocess(speed=SPEED, state_dir=tmp / "emulator",
                           faults=[{"operation": "InvokeModel", "latency_ms": INVOKE_LATENCY_MS}])
    lab = Lab(tmp=tmp, emu=emu)
    try:
        if server:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            from forge.commands.deploy import deploy_all

            lab.server = stack.start_server(tmp / "prefect-server", ui=False, log_dir=tmp / "logs")
            with temporary_settings(updates={PREFECT_API_URL: lab.server.url}):
                deploy_all(echo=lambda *_: None, only=["customize"])
        if sweep_every_s:
            lab.sweeper = Sweeper(emu.url, sweep_every_s).start()
    except Exception:
        lab.close()
        raise
    return lab


def start_row(lab: Lab, row: str) -> Pending:
    tmp = lab.tmp / row
    tmp.mkdir(parents=True, exist_ok=True)
    if row in ("forge-run-kill", "forge-run-killpg"):
        return kill_forge_run(lab.emu, tmp, row, group=row.endswith("pg"))
    how = {"worker-kill": "kill", "worker-kill-quiet": "kill", "worker-term": "term", "lost-machine": "lost"}[row]
    quiet = {"stream_output": False} if row == "worker-kill-quiet" else None
    pending = kill_worker(lab.emu, tmp, lab.api, row, how, quiet)
    if quiet:
        pending.outcome.kill += " (job variable stream_output: false)"
    if how == "lost":   # only the sweep is left: stale bound + one interval + slack
        from tasks.run.liveness import STALE_AFTER_S

        every = lab.sweeper.every_s if lab.sweeper else 0.0
        pending.wait_s = STALE_AFTER_S + 2 * every + 60
    return pending


def run_row(lab: Lab, row: str) -> Outcome:
    """One row, start to measured end."""
    return finish(start_row(lab, row), lab.sweeper)


def zombie_bound_s() -> float:
    """How long after a flow-run process dies Prefect should show its run Crashed (forge deploy's automation: no
    flow-run heartbeat within zombie_within_s(), FORGE_ZOMBIE_WITHIN_S or 90 s; a beat every FLOW_HEARTBEAT_S), plus
    30 s of slack."""
    from forge.commands.deploy import FLOW_HEARTBEAT_S, zombie_within_s

    return float(zombie_within_s() + FLOW_HEARTBEAT_S + 30)


def settle_flow_states(api: str, outcomes: list[Outcome], bound_s: float | None = None) -> None:
    """For each row with a flow run: wait (until kill + ``bound_s``) for a terminal state; record it and how long
    after the kill Prefect set it."""
    import httpx

    from forge.stack import TERMINAL_STATES

    bound_s = zombie_bound_s() if bound_s is None else bound_s
    for o in outcomes:
        if not o.flow_run_id or o.t_kill is None:
            _reread_manifest(o)
            continue
        while True:
            st = httpx.get(f"{api}/flow_runs/{o.flow_run_id}", timeout=10).json().get("state") or {}
            if st.get("type") in TERMINAL_STATES or time.time() > o.t_kill + bound_s:
                break
            time.sleep(2)
        o.flow_state_final = st.get("name")
        if st.get("type") in TERMINAL_STATES and st.get("timestamp"):
            at = datetime.fromisoformat(st["timestamp"].replace("Z", "+00:00")).timestamp()
            o.flow_marked_s = round(at - o.t_kill, 1)
        _reread_manifest(o)


def _reread_manifest(o: Outcome) -> None:
    if o.manifest_path and Path(o.manifest_path).exists():
        o.manifest_final = json.loads(Path(o.manifest_path).read_text()).get("status")


def run_rows(lab: Lab, rows: list[str]) -> list[Outcome]:
    """Each row in turn; the lost machine first and measured last (its PT waits for the sweep meanwhile), the
    worker's SIGTERM next (its flow run waits for Prefect's zombie detection); then the final flow-run states."""
    order = sorted(rows, key=ORDER.index)
    deferred, done = [], {}
    for row in order:
        try:
            pending = start_row(lab, row)
        except Exception as err:  # noqa: BLE001 - a row that could not start is reported, not hidden
            done[row] = Outcome(row=row, kill="-", notes=[f"ERROR: {err}"])
            continue
        if row == "lost-machine":
            deferred.append(pending)
        else:
            done[row] = finish(pending, lab.sweeper)
    for pending in deferred:
        done[pending.outcome.row] = finish(pending, lab.sweeper)
    outcomes = [done[r] for r in rows if r in done]
    if lab.server is not None:
        settle_flow_states(lab.api, outcomes)
    return outcomes


# --------------------------------------------------------------------------------------------- report
def table(outcomes: list[Outcome]) -> str:
    head = ("| row | kill | PT-s after kill | leaked | flow run in Prefect (at the row's end → final) | manifest | "
            "deleted by | met |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for o in outcomes:
        pt_s = "still alive" if o.pt_s_after_kill is None else f"{o.pt_s_after_kill:.1f}"
        flow = o.flow_state.replace("|", "/")
        manifest = o.manifest_status or "-"
        if o.manifest_final and o.manifest_final != o.manifest_status:
            manifest += f" → {o.manifest_final}"
        if o.flow_state_final:
            flow += f" → **{o.flow_state_final}**" + (f" at +{o.flow_marked_s:.0f} s" if o.flow_marked_s else "")
        lines.append(f"| {o.row} | {o.kill} | {pt_s} | {len(o.leaked)} | {flow} | "
                     f"{manifest} | {o.deleted_by.replace('|', '/')} | {'yes' if o.ok else 'NO'} |")
    return "\n".join(lines)


def details(outcomes: list[Outcome]) -> str:
    parts = []
    for o in outcomes:
        parts.append(f"### {o.row}: {o.kill} ({o.seconds:.0f} s)\n")
        parts.append("process tree at the kill:\n```\n" + "\n".join(o.tree_at_kill or ["-"]) + "\n```")
        for title, items in (("after the kill", o.timeline), ("signals sent / exits (traced)", o.signals),
                             ("alive when the row ended", o.survivors),
                             ("watchdog.log / notes", o.notes)):
            if items:
                parts.append(f"{title}:\n" + "\n".join(f"- {x}" for x in items))
        if o.flow_run_id:
            parts.append(f"flow run {o.flow_run_id}: {o.flow_state} at the row's end; final {o.flow_state_final}"
                         + (f", set {o.flow_marked_s:.0f} s after the kill" if o.flow_marked_s is not None else ""))
        parts.append(f"forge-expires-at on the PT: {o.expires_at}\n")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    import argparse

    for k, v in {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "PREFECT_LOGGING_LEVEL": "WARNING"}.items():
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", nargs="*", default=list(ROWS), metavar="ROW",
                    help=f"any of {', '.join(ROWS + EXTRA_ROWS)} (default: all but {', '.join(EXTRA_ROWS)})")
    ap.add_argument("--sweep-every", type=float, default=30.0, help="seconds between scheduled-style sweeps")
    ap.add_argument("--json", default=None, help="also write the outcomes as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, manifests)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.rows) - set(ROWS) - set(EXTRA_ROWS))
    if unknown:
        ap.error(f"unknown row(s) {unknown}: pick from {', '.join(ROWS + EXTRA_ROWS)}")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="forge-leak-"))
    server = any(r.startswith("worker") or r == "lost-machine" for r in args.rows)
    lab = open_lab(tmp, server=server, sweep_every_s=args.sweep_every)
    try:
        outcomes = run_rows(lab, args.rows)
    finally:
        sweeps = lab.sweeper.sweeps if lab.sweeper else 0
        sweep_errors = lab.sweeper.errors if lab.sweeper else []
        lab.close()
    print(table(outcomes))
    print()
    print(details(outcomes))
    print(f"\n{len(outcomes)} row(s) in {time.monotonic() - t0:.0f} s; {sweeps} sweeps every {args.sweep_every:g} s"
          f"{'; sweep errors: ' + str(sweep_errors) if sweep_errors else ''}; logs in {tmp}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
