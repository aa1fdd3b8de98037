"""The on-call promise of the ``rollback`` deployment (flows/rollback.py, deployments/prefect.yaml): an operator rolls
a lineage back from the Prefect UI and the run executes on a process worker on ANOTHER machine, one that has none of
the original runs' local files — the lineage's config (its ``aws`` section) and its registry in S3 are all it needs.

Machine A (this test process) builds two promoted weeks of one lineage on the emulator (week 2 is champion, served
on demand in production). A PostgreSQL-backed ``prefect server start`` gets the deployment through ``forge deploy
--apply``'s code; machine B is a ``prefect worker start`` whose working folder is fresh and empty (its own
PREFECT_HOME, runs folder and cache; no config file, no manifest), sharing only the Prefect API and the emulator's
URL. A flow run is created as the UI's Run form sends it (``config`` as JSON, ``to``/``config_path``/``lineage``
null). Judged from the emulator's ledger and the registry, never from what the run says about itself: week 1 is
champion and serving again, week 2's version is ``rolled-back`` and its production serving is deleted, one
deployment created and one deleted. A second run with ``to`` = week 1 changes nothing.

The weeks come from tests/support/champion.py ``evaluated_week``, as in tests/flows/test_rollback_flow.py. Needs the
postgresql binaries.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from bench.leak import tree
from emulator.testing import alive_serving, boto3_clients
from flows.context import RunContext
from flows.promote import promote_if_gate_passed
from forge import stack
from forge.postgres import find_bin_dir, start_postgres
from tasks.registry import store_for_config
from tests.support import DUMMY_ENV
from tests.support.aws import use_fresh_emulator
from tests.support.champion import evaluated_week

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.machines, pytest.mark.timeout(600),
              pytest.mark.skipif(find_bin_dir() is None,
                                 reason="PostgreSQL not installed: apt-get update && apt-get install -y postgresql")]

ROLLBACK = "rollback-lineage/rollback"
MUTATING = ("Create", "Delete", "Tag", "Untag", "Put", "Update")
RUN_BOUND_S = 240


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL-backed Prefect server with the ``rollback`` deployment applied (forge deploy --apply's code)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    tmp = Path(tempfile.mkdtemp(prefix="forge-rollback-elsewhere-"))   # searchable by `postgres` when run as root
    tmp.chmod(0o755)
    started: list[stack.Service] = []
    try:
        pg = start_postgres(tmp / "postgres", log_dir=tmp / "logs")
        started.append(pg)
        srv = stack.start_server(tmp / "server-home", ui=False, log_dir=tmp / "logs", database_url=pg.database_url,
                                 timeout=150)
        started.append(srv)
        with temporary_settings(updates={PREFECT_API_URL: srv.url}):
            deploy_all(only=["rollback"], echo=lambda *_: None)
            yield srv.url
    finally:
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


# -- machine A: two promoted weeks (as tests/flows/test_rollback_flow.py builds them) ------------------------------
def _week(tmp_path: Path, name: str, week: int) -> RunContext:
    ctx = evaluated_week(tmp_path, name, week)
    assert promote_if_gate_passed(ctx, timeout_s=60, initial_interval_s=0.1)["promoted"]
    return ctx


# -- machine B: a process worker in an empty folder ----------------------------------------------------------------
def _start_worker(folder: Path, api: str, emu_url: str, log: Path) -> subprocess.Popen:
    """Only what test_two_workers.py gives its workers: the API, the emulator's URL and dummy keys, and a runs
    folder and cache of its own (inside ``folder``, not created). No FORGE_* setting of this process leaks in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "AWS_"))}
    env = stack.prefect_env(folder / "prefect-home", api, **DUMMY_ENV, AWS_ENDPOINT_URL=emu_url,
                            FORGE_RUNS_DIR=str(folder / "runs"), FORGE_CACHE_DIR=str(folder / "cache"),
                            PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_LOGGING_LEVEL="INFO")
    env = {**base, **{k: v for k, v in env.items() if k.startswith(("FORGE_", "AWS_", "PREFECT_", "PYTHON"))}}
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "forge-process",
                                 "--type", "process", "--name", f"machine-b-{uuid.uuid4().hex[:6]}"],
                                env=env, cwd=folder, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_tree(pid: int) -> None:
    for p in tree(pid):   # the worker and its flow-run processes (those run in sessions of their own)
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _flow_run(api: str, fr_id: str) -> dict:
    r = httpx.get(f"{api}/flow_runs/{fr_id}", timeout=10)
    r.raise_for_status()
    return r.json()


def _diagnose(api: str, fr_id: str, worker_log: Path) -> str:
    lines = []
    try:
        run = _flow_run(api, fr_id)
        lines.append(f"flow run {fr_id} {run['name']}: {run.get('state')}")
        logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [fr_id]}},
                                                        "sort": "TIMESTAMP_DESC", "limit": 20}, timeout=10).json()
        lines += [f"    {lg['level']} {lg['message'][:400]}" for lg in reversed(logs)]
    except Exception as err:  # noqa: BLE001 - diagnostics only
        lines.append(f"(diagnostics failed: {err})")
    tail = worker_log.read_text(errors="replace").splitlines()[-30:] if worker_log.exists() else []
    return "\n".join([*lines, f"--- {worker_log}", *tail])


def _run_to_the_end(api: str, params: dict, worker: subprocess.Popen, log: Path) -> dict:
    """A flow run of the deployment as the UI's Run form creates it; its terminal flow run (bounded)."""
    fr_id = stack.trigger(api, ROLLBACK, params)
    deadline = time.monotonic() + RUN_BOUND_S
    while time.monotonic() < deadline:
        run = _flow_run(api, fr_id)
        if (run.get("state") or {}).get("type") in stack.TERMINAL_STATES:
            return run
        if worker.poll() is not None:
            raise AssertionError(f"worker B exited ({worker.returncode})\n{_diagnose(api, fr_id, log)}")
        time.sleep(0.5)
    raise AssertionError(f"no terminal state within {RUN_BOUND_S} s\n{_diagnose(api, fr_id, log)}")


def _artifact(api: str, name: str, fr_id: str) -> str:
    arts = httpx.post(f"{api}/artifacts/filter", timeout=10, json={"artifacts": {
        "key": {"any_": [f"rollback-{name}"]}, "flow_run_id": {"any_": [fr_id]}}}).json()
    assert len(arts) == 1, arts
    return arts[0]["data"]


# -- what the emulator says ----------------------------------------------------------------------------------------
def _mutating(emu, since: int) -> list[str]:
    return [c["operation"] for c in emu.ledger()["calls"][since:] if c["operation"].startswith(MUTATING)]


def _production(emu) -> list[str]:
    led = emu.ledger()
    return [a for a in alive_serving(led, production=True) if a not in alive_serving(led)]


def _id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _delete_serving(emu) -> None:
    """Nothing left billing whatever happened: every serving still alive on the emulator is deleted."""
    led, bedrock = emu.ledger(), boto3_clients(emu.url).bedrock
    for arn in alive_serving(led, managed_only=False, production=True):
        try:
            if "provisioned" in led["resources"][arn]["type"]:
                bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
            else:
                bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)
        except Exception as err:  # noqa: BLE001 - best effort, reported
            print(f"cleanup: could not delete {arn}: {err}")


def test_a_rollback_from_the_ui_runs_on_a_worker_with_no_local_state(server, emu, tmp_path):
    api = server
    name = f"rbx-{uuid.uuid4().hex[:8]}"
    machine_a = tmp_path / "machine-a"
    machine_a.mkdir()
    w1, w2 = _week(machine_a, name, 1), _week(machine_a, name, 2)
    store = store_for_config(w1.clients, w1.config, w1.account)
    reg = store.read()
    assert reg.champion.run_id == w2.run_id and reg.champion.previous == w1.run_id
    w2_serving = reg.champion.serving_arn
    assert _production(emu) == [w2_serving]

    machine_b = Path(tempfile.mkdtemp(prefix="forge-machine-b-"))
    log = machine_b.parent / f"{machine_b.name}.log"     # beside the folder: machine B's folder starts empty
    assert list(machine_b.iterdir()) == []
    worker = _start_worker(machine_b, api, emu.url, log)
    try:
        ui = {"config": w2.config.model_dump(mode="json"), "to": None, "config_path": None, "lineage": None}
        mark = len(emu.ledger()["calls"])
        run = _run_to_the_end(api, ui, worker, log)
        assert run["state"]["type"] == "COMPLETED", _diagnose(api, run["id"], log)
        assert run["id"] in log.read_text(errors="replace"), "worker B did not run it"
        ops = _mutating(emu, mark)
        assert ops.count("CreateCustomModelDeployment") == 1 and ops.count("DeleteCustomModelDeployment") == 1, ops
        calls = [c for c in emu.ledger()["calls"][mark:] if c["mutating"]]
        assert sorted(c["operation"] for c in calls if c["service"] == "bedrock") == [
            "CreateCustomModelDeployment", "DeleteCustomModelDeployment"], calls
        assert {(c["service"], c["operation"]) for c in calls if c["service"] != "bedrock"} <= {("s3", "PutObject")}
        reg = store.read()
        assert reg.champion.run_id == w1.run_id and reg.version(w2.run_id).status == "rolled-back", reg
        assert reg.switches[-1].reason == "rollback"
        assert _production(emu) == [reg.champion.serving_arn]          # exactly one production serving alive
        assert emu.ledger()["resources"][w2_serving]["state"] == "Deleted"
        served = w1.clients.bedrock.get_custom_model_deployment(
            customModelDeploymentIdentifier=reg.champion.serving_arn)
        assert served["modelArn"] == reg.version(w1.run_id).custom_model_arn and served["status"] == "Active"
        art = _artifact(api, name, run["id"])
        assert f"rolled back from {w2.run_id}" in art and _id(w2_serving) in art and "STILL BILLING" not in art
        assert not (machine_b / "runs").exists() or not any((machine_b / "runs").iterdir()), "B wrote run state"

        mark = len(emu.ledger()["calls"])                                # again, to the version now serving
        again = _run_to_the_end(api, {**ui, "to": w1.run_id}, worker, log)
        assert again["state"]["type"] == "COMPLETED", _diagnose(api, again["id"], log)
        assert "nothing left to do" in _artifact(api, name, again["id"])
        assert _mutating(emu, mark) == [] and _production(emu) == [reg.champion.serving_arn]
        assert store.read().champion.run_id == w1.run_id
    finally:
        _kill_tree(worker.pid)
        worker.wait(timeout=30)
        _delete_serving(emu)
        shutil.rmtree(machine_b, ignore_errors=True)
        log.unlink(missing_ok=True)
