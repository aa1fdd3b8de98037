"""Start the emulator from tests, benchmarks and ``forge run`` (docs/emulator.md).

    with running_emulator(speed=2000.0, state_dir=tmp) as emu:     # in-process, background thread
        boto3.client("bedrock", endpoint_url=emu.url, ...)
    handle = start_subprocess(speed=3000.0, state_dir=tmp)          # separate process (python -m emulator)
    handle.ledger(); handle.set_faults([...]); handle.reset(); handle.restart(); handle.terminate()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _http(method: str, url: str, body: object | None = None, timeout: float = 10.0,
          ca_bundle: str | Path | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    ctx = None
    if url.startswith("https://"):
        import ssl
        ctx = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {url} -> HTTP {e.code}: {e.read().decode('utf-8', 'replace')}") from None


class EmulatorHandle:
    """A running emulator: ``.url`` plus control helpers over its ``/_emulator/*`` endpoints."""

    def __init__(self, url: str, state_dir: Path | None):
        self.url = url
        self.state_dir = state_dir
        self.ca_bundle: Path | None = None     # with tls=True: the self-signed certificate to trust (verify=)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def ledger(self) -> dict:
        return _http("GET", f"{self.url}/_emulator/ledger", ca_bundle=self.ca_bundle)

    def health(self) -> dict:
        return _http("GET", f"{self.url}/_emulator/health", timeout=2.0, ca_bundle=self.ca_bundle)

    def set_faults(self, rules: list[dict]) -> None:
        _http("POST", f"{self.url}/_emulator/faults", rules, ca_bundle=self.ca_bundle)

    def reset(self) -> None:
        _http("POST", f"{self.url}/_emulator/reset", {}, ca_bundle=self.ca_bundle)

    def terminate(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def restart(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


class _ThreadHandle(EmulatorHandle):
    def __init__(self, *, speed: float, state_dir: Path | None, faults: list[dict] | None,
                 invoke_latency_ms: float | None, port: int, host: str = "127.0.0.1",
                 pt_tokens_per_minute: float | None = None, pt_burst_seconds: float | None = None,
                 tls: bool = False):
        self._tls = tls
        self._kw = dict(speed=speed, faults=faults, invoke_latency_ms=invoke_latency_ms,
                        pt_tokens_per_minute=pt_tokens_per_minute, pt_burst_seconds=pt_burst_seconds)
        self._host = host
        self._tmp = None
        if state_dir is None:   # restart() needs somewhere to keep the state
            self._tmp = tempfile.TemporaryDirectory(prefix="forge-emulator-")
            state_dir = Path(self._tmp.name)
        self.emulator = None
        self._server = None
        self._thread: threading.Thread | None = None
        super().__init__("", Path(state_dir))
        self._start(port)

    def _start(self, port: int) -> None:
        from emulator.server import Emulator, make_server
        self.emulator = Emulator(state_dir=self.state_dir, **self._kw)
        cert = None
        if self._tls:
            from emulator.tls import self_signed
            cert = self_signed(self.state_dir / "tls")
            self.ca_bundle = cert[0]
        self._server = make_server(self.emulator, self._host, port, tls=cert)
        self.url = f"{'https' if cert else 'http'}://{self._host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"emulator:{self.port}", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.emulator is not None:
            self.emulator.close()
            self.emulator = None

    def terminate(self) -> None:
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same state dir (state is reloaded from disk)."""
        port = self.port
        self._stop()
        self._start(port)


@contextmanager
def running_emulator(*, speed: float = 2000.0, state_dir: str | Path | None = None, faults: list[dict] | None = None,
                     invoke_latency_ms: float | None = None, port: int = 0, pt_tokens_per_minute: float | None = None,
                     pt_burst_seconds: float | None = None, tls: bool = False) -> Iterator[EmulatorHandle]:
    """An in-process emulator on a background thread (a free port unless ``port`` is given).
    ``pt_tokens_per_minute``: capacity of one PT model unit (input+output tokens per real minute; None = the
    facts' default, 0 = unlimited); ``pt_burst_seconds``: how many seconds of capacity a full bucket holds.
    ``tls``: serve HTTPS with a self-signed certificate (``handle.ca_bundle``; emulator/tls.py)."""
    h = _ThreadHandle(speed=speed, state_dir=Path(state_dir) if state_dir else None, faults=faults,
                      invoke_latency_ms=invoke_latency_ms, port=port, pt_tokens_per_minute=pt_tokens_per_minute,
                      pt_burst_seconds=pt_burst_seconds, tls=tls)
    try:
        yield h
    finally:
        h.terminate()


class _ProcessHandle(EmulatorHandle):
    def __init__(self, *, speed: float, state_dir: Path | None, faults: list[dict] | None,
                 invoke_latency_ms: float | None, port: int, startup_timeout: float = 30.0,
                 pt_tokens_per_minute: float | None = None, pt_burst_seconds: float | None = None,
                 tls: bool = False):
        self._tmp = None
        self._tls = tls
        self._capacity = (pt_tokens_per_minute, pt_burst_seconds)
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="forge-emulator-")
            state_dir = Path(self._tmp.name)
        super().__init__("", Path(state_dir))
        self._speed, self._latency, self._timeout = speed, invoke_latency_ms, startup_timeout
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._faults_file: Path | None = None
        if faults:
            self._faults_file = self.state_dir / "faults-at-start.json"
            self._faults_file.write_text(json.dumps(faults), encoding="utf-8")
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._spawn(port)

    def _spawn(self, port: int) -> None:
        cmd = [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", str(port),
               "--speed", str(self._speed), "--state-dir", str(self.state_dir), "--ready-line"]
        if self._faults_file:
            cmd += ["--faults", str(self._faults_file)]
        if self._latency is not None:
            cmd += ["--invoke-latency-ms", str(self._latency)]
        if self._capacity[0] is not None:
            cmd += ["--pt-tokens-per-minute", str(self._capacity[0])]
        if self._capacity[1] is not None:
            cmd += ["--pt-burst-seconds", str(self._capacity[1])]
        if self._tls:
            cmd += ["--tls"]
        self._log = open(self.state_dir / "emulator.log", "ab")
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=root)
        deadline = time.monotonic() + self._timeout
        line = self._read_ready_line(deadline)
        ready = json.loads(line)
        self.url = ready["url"]
        self.ca_bundle = Path(ready["ca_bundle"]) if ready.get("ca_bundle") else None
        while True:
            try:
                self.health()
                return
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.terminate()
                    raise RuntimeError("emulator did not become healthy; "
                                       f"see {self.state_dir / 'emulator.log'}") from None
                time.sleep(0.05)

    def _read_ready_line(self, deadline: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        result: list[str] = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline().decode()), daemon=True)
        t.start()
        t.join(max(0.1, deadline - time.monotonic()))
        if not result or not result[0].strip():
            log = (self.state_dir / "emulator.log").read_text(errors="replace")[-2000:]
            self._kill()
            raise RuntimeError(f"emulator subprocess did not start (exit code {self.proc.poll()}):\n{log}")
        return result[0]

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None

    def terminate(self) -> None:
        self._kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def restart(self) -> None:
        port = self.port
        self._kill()
        self._spawn(port)


def start_subprocess(*, speed: float = 3000.0, state_dir: str | Path | None = None, port: int = 0,
                     faults: list[dict] | None = None, invoke_latency_ms: float | None = None,
                     pt_tokens_per_minute: float | None = None,
                     pt_burst_seconds: float | None = None, tls: bool = False) -> EmulatorHandle:
    """``python -m emulator`` in a separate process; returns once ``/_emulator/health`` answers.
    ``pt_tokens_per_minute`` / ``pt_burst_seconds``: PT capacity, as for :func:`running_emulator`; ``tls``:
    ``--tls`` (HTTPS, ``handle.ca_bundle``)."""
    return _ProcessHandle(speed=speed, state_dir=Path(state_dir) if state_dir else None, faults=faults,
                          invoke_latency_ms=invoke_latency_ms, port=port, pt_tokens_per_minute=pt_tokens_per_minute,
                          pt_burst_seconds=pt_burst_seconds, tls=tls)


def boto3_clients(url: str, *, region: str = "us-east-1", max_attempts: int | None = None,
                  verify: str | Path | bool | None = None):
    """Plain boto3 clients for s3, iam, sts, bedrock, bedrock-runtime and pricing against ``url`` (dummy credentials).
    ``max_attempts`` = total attempts per call (botocore ``total_max_attempts``); 1 turns retries off.
    ``verify``: the CA bundle of an HTTPS emulator (``handle.ca_bundle``)."""
    from types import SimpleNamespace

    import boto3
    from botocore.config import Config
    cfg = Config(retries={"mode": "standard", "total_max_attempts": max_attempts}) if max_attempts else None
    kw = dict(endpoint_url=url, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing",
              config=cfg)
    if verify is not None:
        kw["verify"] = str(verify) if not isinstance(verify, bool) else verify
    return SimpleNamespace(s3=boto3.client("s3", **kw), iam=boto3.client("iam", **kw), sts=boto3.client("sts", **kw),
                           bedrock=boto3.client("bedrock", **kw), runtime=boto3.client("bedrock-runtime", **kw),
                           # the Price List API answers from us-east-1 whatever the Region priced
                           pricing=boto3.client("pricing", **{**kw, "region_name": "us-east-1"}))


# -- reading the ledger (tests and benchmarks judge runs by it) ----------------------------------------
SERVING_TYPES = ("provisioned-model-throughput", "custom-model-deployment")


def ledger_calls(ledger: dict, op: str | None = None, mutating: bool | None = None, ok: bool = True) -> list[dict]:
    """Calls of ``op`` (any when None), optionally only (non-)mutating ones, only successful ones when ``ok``."""
    return [c for c in ledger["calls"]
            if (op is None or c["operation"] == op) and (mutating is None or c["mutating"] == mutating)
            and (not ok or int(c["status"] or 500) < 300)]


def alive_serving(ledger: dict, managed_only: bool = True, production: bool = False) -> list[str]:
    """ARNs of provisioned throughputs / deployments not deleted (only bedrock-forge's when ``managed_only``).
    Production serving (tag ``forge-role=production``, a promoted champion that is meant to stay) is left out
    unless ``production``: what a run or the stack must clean up is the rest."""
    return [arn for arn, r in ledger["resources"].items()
            if r["type"] in SERVING_TYPES and r["state"] != "Deleted"
            and (not managed_only or (r.get("tags") or {}).get("managed-by") == "bedrock-forge")
            and (production or (r.get("tags") or {}).get("forge-role") != "production")]
