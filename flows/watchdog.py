"""Cleanup layer 2b: a watchdog process that deletes a run's serving resources when the run's process dies.

``try/finally`` (layer 1) and the Prefect state hooks (layer 2) run only while the process running the flow is
alive. A ``kill -9`` of ``forge run``, of a process worker, the kernel's OOM killer, or a worker's SIGTERM →
SIGKILL escalation during teardown skip both. The heartbeat sweep (layer 3, ``tasks/run/liveness.py``) catches
those after the heartbeat goes stale; this watchdog makes the common case immediate.

``guard(...)`` starts ``python -m flows.watchdog`` in its own session (so a Ctrl-C of the terminal's process
group, or a worker killing the flow run's process group, does not reach it) with a pipe on its stdin. The run
writes the guard's spec as the first line and keeps the pipe open while it serves. Then:

- the run finishes its teardown and calls ``release()`` (writes ``done``): the watchdog exits, doing nothing;
- the run's process dies first, however: the kernel closes the pipe, the watchdog reads EOF and deletes every
  managed serving resource tagged with the run key (retrying with backoff for ``RETRY_FOR_S``), deletes the
  heartbeat, and marks the run's manifest ``interrupted`` with what it deleted.

It needs no Prefect server: only the run's AWS settings (inherited environment + ``aws`` section) and S3.
Its log goes to ``<run dir>/watchdog.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

RETRY_FOR_S = 600.0      # keep trying a failing delete this long; then the heartbeat sweep owns it


@dataclass
class Guard:
    """The run's end of the pipe. ``release()`` once teardown has run; dropping it unreleased (the process
    died) makes the watchdog clean up."""

    process: subprocess.Popen | None
    pipe: IO[bytes] | None

    def release(self) -> None:
        if self.pipe is None:
            return
        try:
            self.pipe.write(b"done\n")
            self.pipe.flush()
            self.pipe.close()
        except OSError:
            pass
        self.pipe = None
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def guard(aws: dict[str, Any], run_key: str, heartbeat_uri: str | None, manifest_path: str | None,
          log_path: str | None) -> Guard:
    """Start the watchdog for ``run_key``'s serving resources. Never raises: without a watchdog the run still has
    its finally, its hooks and the sweep (a warning says so)."""
    spec = {"aws": aws, "run_key": run_key, "heartbeat": heartbeat_uri, "manifest": manifest_path,
            "parent": os.getpid()}
    try:
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "flows.watchdog"], stdin=subprocess.PIPE, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd())
        if log is not subprocess.DEVNULL:
            log.close()
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(spec).encode() + b"\n")
        proc.stdin.flush()
        return Guard(process=proc, pipe=proc.stdin)
    except Exception as err:  # noqa: BLE001 - degrade to the other layers
        print(f"warning: could not start the serving watchdog ({err}); the sweep will catch a lost worker",
              file=sys.stderr)
        return Guard(process=None, pipe=None)


# ---------------------------------------------------------------------------------------------
# the watchdog process
# ---------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} watchdog[{os.getpid()}]: {msg}", flush=True)


def clean_up(spec: dict[str, Any], clients: Any, *, retry_for_s: float = RETRY_FOR_S,
             sleep=time.sleep) -> list[str]:
    """Delete the run key's serving resources (until none is left or ``retry_for_s`` passes), the heartbeat,
    and mark the manifest. Returns the ARNs still alive (empty: all gone)."""
    from tasks.aws.retry import Backoff
    from tasks.teardown import teardown

    deadline, backoff = time.monotonic() + retry_for_s, Backoff(start=1.0, factor=2.0, cap=30.0)
    while True:
        report = teardown(clients, run_key=spec["run_key"])
        _log(f"deleted {report.deleted or '-'}, already gone {report.already_gone or '-'}, "
             f"errors {report.errors or '-'}")
        if not report.errors or time.monotonic() >= deadline:
            break
        sleep(backoff())
    alive = list(report.alive)
    if spec.get("heartbeat") and not alive:
        _delete_heartbeat(clients, spec["heartbeat"])
    if spec.get("manifest"):
        _mark_manifest(spec["manifest"], report, clients)
    return alive


def _delete_heartbeat(clients: Any, uri: str) -> None:
    from tasks.aws.s3uri import split_s3_uri

    try:
        bucket, key = split_s3_uri(uri)
        clients.s3.delete_object(Bucket=bucket, Key=key)
    except Exception as err:  # noqa: BLE001 - it goes stale by itself
        _log(f"could not delete the heartbeat {uri}: {err}")


def _mark_manifest(path: str, report: Any, clients: Any = None) -> None:
    from tasks.run.manifest import Manifest
    from tasks.run.store import store_of

    try:
        m = Manifest.load(path)
        store = store_of(clients.s3, m.doc) if clients is not None else None
        if store is not None:   # the S3 copy (what other machines read) says interrupted too
            m.attach(store)
        teardown = dict(m.doc.teardown or {})
        for k in ("deleted", "already_gone", "errors"):
            teardown[k] = list(teardown.get(k) or []) + list(getattr(report, k))
        teardown["by"] = "watchdog"
        m.update(teardown=teardown)
        if m.doc.status == "running":
            m.update(error="interrupted: the process running the flow died while it held serving resources; "
                           f"the watchdog deleted {report.deleted or 'nothing (already gone)'}"
                           + (f"; STILL ALIVE: {report.errors}" if report.errors else "")
                           + ". Resume with `forge rerun " + m.run_id + "`")
            m.finish("interrupted")
    except Exception as err:  # noqa: BLE001 - the manifest is a record; AWS is the truth
        _log(f"could not update the manifest {path}: {err}")


def main(stdin: IO[bytes] | None = None) -> int:
    stdin = stdin or sys.stdin.buffer
    line = stdin.readline()
    if not line:
        return 0
    spec = json.loads(line)
    # import and connect before waiting: when the run dies, the deletes go out at once
    from tasks.aws.clients import lenient_aws_config, make_clients

    clients = make_clients(lenient_aws_config(spec["aws"]))
    _log(f"guarding run key {spec['run_key']} of process {spec.get('parent')}")
    while True:
        msg = stdin.readline()
        if msg.strip() == b"done":
            _log("released: the run tore down its serving resources itself")
            return 0
        if not msg:
            break   # EOF without "done": the run's process is gone
    _log("the run's process exited without releasing: deleting its serving resources")
    alive = clean_up(spec, clients)
    if alive:
        _log(f"STILL ALIVE after {RETRY_FOR_S:g} s of retries: {alive}; the heartbeat sweep owns them now")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
