"""A local PostgreSQL for the Prefect server: ``python -m forge.stack --database postgres`` and the tests.

Debian's ``postgresql`` package (``apt-get install -y postgresql``: the server binaries are in
``/usr/lib/postgresql/<version>/bin``, not on PATH), run as a subprocess of the stack:

- ``initdb`` once, data under the stack's home (``<home>/data``), a superuser ``forge`` with a generated
  password (``<home>/password``, mode 600; scram-sha-256 on TCP, https://www.postgresql.org/docs/current/auth-password.html);
- ``postgres -D <home>/data -h 127.0.0.1 -p PORT``: TCP on loopback only, its Unix socket in ``<home>/run``
  rather than /var/run/postgresql (https://www.postgresql.org/docs/current/app-postgres.html);
- the ``prefect`` database created when missing; the server connects with
  ``PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://forge:...@127.0.0.1:PORT/prefect``
  (https://docs.prefect.io/v3/manage/server/index#configure-a-postgresql-database).

PostgreSQL refuses to run as root ("root" execution of the PostgreSQL server is not permitted): as root the
binaries run as the ``postgres`` user the package creates (``subprocess.Popen(user=...)``), which then owns
``<home>/data`` and ``<home>/run``, and must be able to reach them (every parent folder searchable).
Stopping is a fast shutdown (SIGINT: clients disconnected, a checkpoint, exit;
https://www.postgresql.org/docs/current/server-shutdown.html), SIGKILL of its process group after a timeout.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from forge.stack import Service, StackError, free_port, require_free

PG_USER = "forge"
PG_DATABASE = "prefect"
RUN_AS = "postgres"                # the user Debian's package creates
LOOPBACK = ("127.0.0.1", "::1", "localhost")
APT_HINT = "apt-get update && apt-get install -y postgresql"


def find_bin_dir() -> Path | None:
    """The folder holding initdb/postgres/pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0])
    return versions[-1].parent if versions else None


def version(bin_dir: Path) -> str:
    """``15.14`` from ``postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)``."""
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"\)\s*([\d.]+)", out)
    return m.group(1) if m else out.strip()


def database_url(password: str, host: str, port: int, database: str = PG_DATABASE, driver: str = "asyncpg") -> str:
    return f"postgresql+{driver}://{PG_USER}:{password}@{host}:{port}/{database}"


def masked(url: str) -> str:
    """A database URL with its password replaced by ***, for banners and logs."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


@dataclass(eq=False)
class PostgresService(Service):
    """The running server. ``database_url`` is what Prefect connects with (holds the password: never print it,
    print ``masked(database_url)``)."""

    database_url: str = ""
    data_dir: Path | None = None
    port: int = 0
    pg_version: str = ""
    bin_dir: Path | None = None

    def psql(self, sql: str, database: str = PG_DATABASE) -> str:
        """Run one SQL statement as the superuser over TCP; its rows as psql -tA prints them."""
        m = re.match(r"postgresql\+\w+://[^:]+:([^@]*)@([^:/]+):(\d+)/", self.database_url)
        if m is None or self.bin_dir is None:
            raise StackError("postgres is not started")
        out = _psql(self.bin_dir, m.group(2), int(m.group(3)), m.group(1), sql, database)
        if out.returncode != 0:
            raise StackError(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT) first; then Service.stop: its SIGTERM (a smart shutdown, which does not slow a
        fast one down), the wait, and SIGKILL of the process group after ``timeout``."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
        super().stop(timeout)


def _run_as() -> str | None:
    """The user the server binaries run as: ``postgres`` when we are root (PostgreSQL refuses root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        raise StackError(f"running as root, PostgreSQL needs a non-root user to run as and there is no "
                         f"{RUN_AS!r} user ({APT_HINT} creates it)") from None
    return RUN_AS


def _own(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def _env(bin_dir: Path) -> dict[str, str]:
    # no PG* variables of ours leak into the server; C.UTF-8 exists on every Debian
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _reachable(path: Path, user: str | None) -> None:
    if user is None:
        return
    probe = subprocess.run(["test", "-w", str(path)], user=user, cwd="/", capture_output=True, timeout=30)
    if probe.returncode != 0:
        raise StackError(f"the {user!r} user cannot reach {path}: every parent folder must be searchable by it "
                         f"(chmod o+x on each), or pick a --home elsewhere")


def _password(home: Path, data_dir: Path) -> str:
    """The superuser's password: made with the cluster, kept beside it (mode 600) for the next start."""
    file = home / "password"
    if (data_dir / "PG_VERSION").exists():
        if not file.exists():
            raise StackError(f"{data_dir} holds a database cluster but {file} (its password) is missing: "
                             f"delete {data_dir} to start afresh")
        return file.read_text(encoding="utf-8").strip()
    pw = secrets.token_urlsafe(24)       # URL-safe: goes into the connection URL as is
    file.touch(mode=0o600, exist_ok=True)
    file.chmod(0o600)
    file.write_text(pw + "\n", encoding="utf-8")
    return pw


def init_cluster(bin_dir: Path, home: Path, user: str | None) -> tuple[Path, str]:
    """``initdb`` unless ``<home>/data`` already holds a cluster. Returns (data dir, superuser password)."""
    home.mkdir(parents=True, exist_ok=True)
    data_dir = home / "data"
    password = _password(home, data_dir)
    if (data_dir / "PG_VERSION").exists():
        return data_dir, password
    _own(data_dir, user)                      # empty and ours: initdb takes an existing empty folder
    run_dir = home / "run"
    _own(run_dir, user)
    _reachable(data_dir, user)
    pwfile = run_dir / "initdb-password"      # readable by the initdb user only, deleted right after
    pwfile.touch(mode=0o600, exist_ok=True)
    pwfile.write_text(password + "\n", encoding="utf-8")
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    try:
        out = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "--username", PG_USER, "--pwfile", str(pwfile),
             "--auth-host", "scram-sha-256", "--auth-local", "peer", "--encoding", "UTF8", "--locale", "C",
             "--no-instructions"],
            user=user, cwd=str(data_dir), env=_env(bin_dir), capture_output=True, text=True, timeout=300)
    finally:
        pwfile.unlink(missing_ok=True)
    if out.returncode != 0:
        raise StackError(f"initdb failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return data_dir, password


def _psql(bin_dir: Path, host: str, port: int, password: str, sql: str, database: str = "postgres"):
    return subprocess.run([str(bin_dir / "psql"), "-h", host, "-p", str(port), "-U", PG_USER, "-d", database,
                           "-v", "ON_ERROR_STOP=1", "-tAc", sql],
                          env={**_env(bin_dir), "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "3"},
                          capture_output=True, text=True, timeout=60)


def start_postgres(home: Path, *, host: str = "127.0.0.1", port: int | None = None, log_dir: Path | None = None,
                   timeout: float = 60.0, bin_dir: Path | None = None) -> PostgresService:
    """initdb (first time), start ``postgres`` on ``host:port`` (loopback only), create the ``prefect``
    database when missing. Raises StackError (with the log's tail) when it does not come up."""
    if host not in LOOPBACK:
        raise StackError(f"the stack's PostgreSQL listens on loopback only, not {host!r}")
    bin_dir = bin_dir or find_bin_dir()
    if bin_dir is None:
        raise StackError(f"PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): "
                         f"{APT_HINT}")
    if port:
        require_free(host, port, "PostgreSQL", "--postgres-port")
    port = port or free_port(host)
    home = home.resolve()
    user = _run_as()
    data_dir, password = init_cluster(bin_dir, home, user)
    sockets = home / "run"
    _own(sockets, user)
    log = handle = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / "postgres.log"
        handle = log.open("ab")
    proc = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data_dir), "-h", host, "-p", str(port), "-k", str(sockets)],
        user=user, cwd=str(data_dir), env=_env(bin_dir), stdout=handle or subprocess.DEVNULL,
        stderr=subprocess.STDOUT, start_new_session=True)
    svc = PostgresService(name="postgres", proc=proc, log=log, _log_handle=handle,
                          url=f"postgresql://{host}:{port}", data_dir=data_dir, port=port,
                          pg_version=version(bin_dir), bin_dir=bin_dir)
    try:
        _wait_ready(svc, bin_dir, host, port, password, timeout)
        exists = _psql(bin_dir, host, port, password, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'")
        if exists.stdout.strip() != "1":
            made = _psql(bin_dir, host, port, password, f"CREATE DATABASE {PG_DATABASE}")
            if made.returncode != 0:
                raise StackError(f"could not create database {PG_DATABASE!r}: {made.stderr.strip()}")
    except BaseException:
        svc.stop()
        raise
    svc.database_url = database_url(password, host, port)
    return svc


def _wait_ready(svc: PostgresService, bin_dir: Path, host: str, port: int, password: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not svc.alive():
            raise StackError(f"postgres exited with code {svc.proc.returncode} before accepting connections "
                             f"(log: {svc.log})\n{svc.tail()}")
        if _listening(host, port) and _psql(bin_dir, host, port, password, "SELECT 1").returncode == 0:
            return
        if time.monotonic() > deadline:
            raise StackError(f"postgres not accepting connections on {host}:{port} after {timeout:.0f} s "
                             f"(log: {svc.log})\n{svc.tail()}")
        time.sleep(0.25)


def _listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0
