"""`make stack` (= ``python -m forge.stack``): the docker-compose services, without Docker.

Starts, each as a subprocess in its own session (so a terminal Ctrl-C reaches only this supervisor,
which then stops the children in order and lets the worker's flow runs finish their cleanup):

1. a Prefect server (``prefect server start``) on SQLite in ``.forge/stack/prefect``; with ``--database postgres``
   on a PostgreSQL the stack starts itself (Debian's ``postgresql`` package, loopback only, data in
   ``.forge/stack/postgres``: forge/postgres.py), the production backend; without ``--database`` and with
   ``PREFECT_API_DATABASE_CONNECTION_URL`` set, on that database;
2. the local Bedrock emulator (``forge emulator``), unless ``--no-emulator`` (then the worker uses
   your AWS settings);
3. the work pool, queue and deployments (``forge deploy --apply``, in-process);
4. a process worker on the pool (``prefect worker start --pool forge-process``).

It prints the URLs and waits; Ctrl-C stops everything. ``--smoke CONFIG`` triggers one ``customize``
run through the API with that config, waits for it, prints its final state, and exits (non-zero on
failure): an end-to-end check of the whole stack. Logs go to ``.forge/stack/logs/``.

The helpers (free port, start/wait/stop a service) are reused by tests/deployments/test_server.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from forge.commands.run import DUMMY_CREDENTIALS

REPO_ROOT = Path(__file__).resolve().parents[1]
DUMMY_AWS = {**DUMMY_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}  # the emulator accepts any keys
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class StackError(RuntimeError):
    """A service did not come up; the message names it and its log file."""


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    url: str | None = None
    log: Path | None = None
    _log_handle: object = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 25) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL of its whole process group after ``timeout`` (a service runs in its own session:
        `prefect worker start` is a wrapper whose worker is a child, which a SIGKILL of the wrapper alone left
        running). A worker stops polling on SIGTERM (docs/prefect-notes.md §3)."""
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log_handle is not None:
            self._log_handle.close()  # type: ignore[attr-defined]
            self._log_handle = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def require_free(host: str, port: int, what: str, flag: str) -> None:
    """Refuse a busy port up front: a health check could otherwise answer from whatever holds it."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            raise StackError(f"{what} port {host}:{port} is already in use (another stack or emulator?): "
                             f"stop it or pick another port with {flag}") from None


def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path | None, cwd: Path = REPO_ROOT) -> Service:
    log = handle = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{name}.log"
        handle = log.open("ab")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=handle or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return Service(name=name, proc=proc, log=log, _log_handle=handle)


def wait_healthy(service: Service, health_url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not service.alive():
            raise StackError(f"{service.name} exited with code {service.proc.returncode} before becoming "
                             f"healthy (log: {service.log})\n{service.tail()}")
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise StackError(f"{service.name} not healthy at {health_url} after {timeout:.0f} s "
                             f"(log: {service.log})\n{service.tail()}")
        time.sleep(0.25)


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def start_server(home: Path, *, host: str = "127.0.0.1", port: int | None = None, ui: bool = True,
                 log_dir: Path | None = None, timeout: float = 90.0, database_url: str | None = None) -> Service:
    """``prefect server start`` on ``database_url`` (e.g. ``forge.postgres.start_postgres(...).database_url``);
    None: SQLite in ``home`` unless PREFECT_API_DATABASE_CONNECTION_URL is set."""
    if port:
        require_free(host, port, "Prefect server", "--port")
    port = port or free_port(host)
    home.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    if not ui:
        argv.append("--no-ui")
    api_url = f"http://{host}:{port}/api"
    # the UI asks the server where the API is; without this it says port 4200 whatever --port is
    env = prefect_env(home, PREFECT_UI_ENABLED="true" if ui else "false", PREFECT_UI_API_URL=api_url)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    svc = _spawn("prefect-server", argv, env, log_dir)
    svc.url = api_url
    wait_healthy(svc, f"{svc.url}/health", timeout)
    return svc


def start_emulator(*, host: str = "127.0.0.1", port: int | None = None, speed: float = 3000.0,
                   state_dir: Path | None = None, log_dir: Path | None = None, timeout: float = 60.0) -> Service:
    """The local Bedrock (``forge emulator``, docs/design.md §8) as a subprocess."""
    if port:
        require_free(host, port, "emulator", "--emulator-port")
    port = port or free_port(host)
    argv = [sys.executable, "-m", "forge.cli", "emulator", "--host", host, "--port", str(port), "--speed", f"{speed:g}"]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    svc = _spawn("emulator", argv, dict(os.environ, PYTHONUNBUFFERED="1"), log_dir)
    svc.url = f"http://{host}:{port}"
    wait_healthy(svc, f"{svc.url}/_emulator/health", timeout)
    return svc


def start_worker(home: Path, api_url: str, *, pool: str = "forge-process", aws_endpoint: str | None = None,
                 run_once: bool = False, log_dir: Path | None = None, extra_env: dict[str, str] | None = None,
                 name: str = "worker") -> Service:
    """``prefect worker start --pool POOL`` with the AWS endpoint in the standard setting."""
    env = prefect_env(home, api_url, **(extra_env or {}))
    if aws_endpoint:
        env["AWS_ENDPOINT_URL"] = aws_endpoint
        for k, v in DUMMY_AWS.items():
            env.setdefault(k, v)
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
            "--name", f"{name}-{os.getpid()}"]
    if run_once:
        argv.append("--run-once")
    svc = _spawn(name, argv, env, log_dir)
    return svc


def wait_flow_run(api_url: str, flow_run_id: str, timeout: float = 600.0, poll: float = 1.0) -> dict:
    """Poll the API until the flow run is in a terminal state; returns the flow run JSON."""
    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        if (run.get("state") or {}).get("type") in TERMINAL_STATES:
            return run
        if time.monotonic() > deadline:
            raise StackError(f"flow run {flow_run_id} still {run.get('state', {}).get('name')} after {timeout:.0f} s")
        time.sleep(poll)


def trigger(api_url: str, deployment: str, parameters: dict) -> str:
    """Create a flow run of ``flow/deployment`` the way the UI's Run form does; returns its id."""
    dep = httpx.get(f"{api_url}/deployments/name/{deployment}", timeout=10)
    if dep.status_code == 404:
        raise StackError(f"deployment {deployment!r} not found: run `forge deploy --apply` first")
    dep.raise_for_status()
    for attempt in range(5):   # a busy server (SQLite under load) may answer 503 for a moment
        resp = httpx.post(f"{api_url}/deployments/{dep.json()['id']}/create_flow_run",
                          json={"parameters": parameters}, timeout=30)
        if resp.status_code not in (502, 503, 504):
            break
        time.sleep(1.0 + attempt)
    if resp.status_code >= 400:
        raise StackError(f"creating a run of {deployment} was refused ({resp.status_code}): {resp.text[:2000]}")
    return resp.json()["id"]


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m forge.stack", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=str(REPO_ROOT / ".forge" / "stack"),
                    help="state and logs (default .forge/stack/)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4200, help="Prefect server port (UI + API)")
    ap.add_argument("--emulator-port", type=int, default=4566)
    ap.add_argument("--speed", type=float, default=3000.0, help="emulator virtual-clock speed")
    ap.add_argument("--no-emulator", action="store_true", help="use your AWS settings instead of the emulator")
    ap.add_argument("--pool", default="forge-process")
    ap.add_argument("--database", choices=("sqlite", "postgres"), default=None,
                    help="sqlite (default: a file in the stack's home) or postgres (a local PostgreSQL the stack "
                         "starts: apt-get install -y postgresql); unset with PREFECT_API_DATABASE_CONNECTION_URL "
                         "set: that database")
    ap.add_argument("--postgres-port", type=int, default=None,
                    help="with --database postgres: its port on --host (default: a free one)")
    ap.add_argument("--smoke", metavar="CONFIG", help="trigger one customize run with this config, wait, exit")
    args = ap.parse_args(argv)

    home = Path(args.home).resolve()
    logs = home / "logs"
    services: list[Service] = []
    # Ctrl-C and `kill PID` both stop everything cleanly (also when started with SIGINT ignored, as
    # background jobs of a non-interactive shell are)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server, endpoint = _start_services(args, home, logs, services)
        _banner(args, server, endpoint, logs)
        if args.smoke:
            return _smoke(server.url, args.smoke)
        print("Ctrl-C stops everything.", flush=True)
        while all(s.alive() for s in services):
            time.sleep(1)
        dead = [s for s in services if not s.alive()]
        for s in dead:
            print(f"{s.name} exited with code {s.proc.returncode} (log: {s.log})\n{s.tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except StackError as err:
        print(f"stack: {err}", file=sys.stderr)
        return 1
    finally:
        stop_all(services)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


RELEASE_WAIT_S = 90.0


def stop_all(services: list[Service], release_wait_s: float = RELEASE_WAIT_S) -> None:
    """Stop in reverse order of start — the worker first. A process worker's stop kills its flow runs' processes
    at once (bench/leak.md); each run's watchdog (flows/watchdog.py) then deletes the run's serving resources, so
    the emulator (the AWS side) is kept up until none is left alive, at most ``release_wait_s``. Whatever is still
    alive then is deleted by the stack itself before its emulator stops (said on stderr): an emulator's PT must
    not outlive the stack that made it."""
    for s in reversed(services):
        if s.name == "emulator" and s.url and s.alive():
            left = _wait_serving_released(s.url, release_wait_s)
            if left:
                _delete_serving(s.url, left)
        s.stop()
    if services:
        print("stopped: " + ", ".join(s.name for s in reversed(services)), flush=True)


def _wait_serving_released(emulator_url: str, timeout: float) -> list[str]:
    """Poll the emulator's ledger until no managed serving resource is alive; returns those still alive after
    ``timeout``. A slow or failed ledger read is retried (before, one read error ended the wait at once and the
    emulator was stopped under a run's watchdog)."""
    from emulator.testing import alive_serving

    deadline = time.monotonic() + timeout
    alive: list[str] | None = None       # None: no read has succeeded yet
    while time.monotonic() < deadline:
        try:
            alive = alive_serving(httpx.get(f"{emulator_url}/_emulator/ledger", timeout=10).json())
        except (httpx.HTTPError, ValueError):
            time.sleep(0.5)
            continue
        if not alive:
            return []
        time.sleep(0.5)
    if alive is None:
        # never "none alive" without having read it: say so, the operator must check (forge resources --live)
        print(f"warning: the emulator's ledger could not be read for {timeout:g} s: whether a serving resource "
              f"is still alive is unknown (check with `forge resources --endpoint {emulator_url}` before "
              "restarting)", file=sys.stderr)
        return []
    return alive


def _delete_serving(emulator_url: str, arns: list[str]) -> None:
    import boto3

    print(f"warning: {len(arns)} serving resource(s) still alive {RELEASE_WAIT_S:g} s after the worker stopped "
          f"(its runs' watchdogs did not delete them): the stack deletes them now: {arns}", file=sys.stderr)
    bedrock = boto3.client("bedrock", endpoint_url=emulator_url, region_name=DUMMY_AWS["AWS_DEFAULT_REGION"],
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    for arn in arns:
        try:
            if ":provisioned-model/" in arn:
                bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
            else:
                bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)
        except Exception as err:  # noqa: BLE001 - say it and go on with the others
            print(f"warning: could not delete {arn}: {err}", file=sys.stderr)


def _start_services(args: argparse.Namespace, home: Path, logs: Path,
                    services: list[Service]) -> tuple[Service, str | None]:
    """Server, emulator (unless --no-emulator), the deployments, the worker — appended to ``services`` as they
    start, so whatever started is stopped on any failure."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    database_url = None
    if getattr(args, "database", None) == "postgres":
        from forge.postgres import start_postgres

        print(f"starting PostgreSQL on {args.host} (data in {home / 'postgres'}) ...", flush=True)
        pg = start_postgres(home / "postgres", host=args.host, port=args.postgres_port, log_dir=logs)
        services.append(pg)
        database_url = pg.database_url
    elif getattr(args, "database", None) == "sqlite":
        database_url = sqlite_url(home / "prefect")
    args.database_line = _database(home, database_url, services)
    print(f"starting Prefect server on {args.host}:{args.port} ({args.database_line}) ...", flush=True)
    server = start_server(home / "prefect", host=args.host, port=args.port, log_dir=logs,
                          database_url=database_url)
    services.append(server)
    endpoint = None
    if not args.no_emulator:
        print(f"starting the Bedrock emulator on {args.host}:{args.emulator_port} ...", flush=True)
        emu = start_emulator(host=args.host, port=args.emulator_port, speed=args.speed,
                             state_dir=home / "emulator", log_dir=logs)
        services.append(emu)
        endpoint = emu.url
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        deploy_all(pool=args.pool)
    services.append(start_worker(home / "worker", server.url, pool=args.pool, aws_endpoint=endpoint, log_dir=logs))
    return server, endpoint


def sqlite_url(prefect_home: Path) -> str:
    """Prefect's own default database: ``prefect.db`` in its home (PREFECT_HOME)."""
    return f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}"


def _database(home: Path, url: str | None = None, services: list[Service] | None = None) -> str:
    """What the server stores its state in, as the banner says it (a password never printed): ``url`` as the
    stack passes it to the server, else PREFECT_API_DATABASE_CONNECTION_URL, else SQLite in the home."""
    import re

    pg = next((s for s in services or [] if s.name == "postgres"), None)
    url = url or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL", "")
    if pg is not None:
        return (f"PostgreSQL {getattr(pg, 'pg_version', '')} on {(pg.url or '').removeprefix('postgresql://')}, "
                f"data in {getattr(pg, 'data_dir', '')}")
    if not url or url.startswith("sqlite"):
        return f"SQLite in {home / 'prefect'}"
    kind = "PostgreSQL" if url.startswith("postgresql") else "database"
    return f"{kind} " + re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _banner(args: argparse.Namespace, server: Service, endpoint: str | None, logs: Path) -> None:
    ui = server.url.removesuffix("/api")
    print("\nbedrock-forge stack is up:")
    print(f"  Prefect UI     {ui}   (Deployments → customize → Run → Custom run)")
    print(f"  Prefect API    {server.url}   export PREFECT_API_URL={server.url}")
    print(f"  database       {getattr(args, 'database_line', None) or _database(Path(args.home))}")
    if endpoint:
        print(f"  emulator       {endpoint}   ledger: {endpoint}/_emulator/ledger")
        print(f"                 export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=testing "
              "AWS_SECRET_ACCESS_KEY=testing")
    print(f"  worker         pool {args.pool!r}, working directory {REPO_ROOT}")
    print(f"  logs           {logs}/")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _smoke(api_url: str, config_path: str) -> int:
    from tasks.config import load_config

    config = load_config(config_path).model_dump(mode="json")
    run_id = trigger(api_url, "customize-model/customize", {"config": config})
    print(f"smoke: triggered customize flow run {run_id}; waiting ...", flush=True)
    run = wait_flow_run(api_url, run_id, timeout=1800)
    print(json.dumps({"flow_run": run_id, "state": run["state"]["name"],
                      "message": run["state"].get("message")}, indent=2))
    return 0 if run["state"]["type"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
