"""Against a REAL PostgreSQL-backed Prefect server (issue 18 parts 3 and 4): the test starts a PostgreSQL from
Debian's package (forge/postgres.py: initdb under a temp home, loopback, a free port) and ``prefect server start``
on it, registers the deployments with ``forge deploy --apply``'s code, then

- reads ``parameter_openapi_schema`` back over the API: JSONB has re-sorted the keys of every definition (shown,
  so the test means something), and the order the UI renders — by ``position`` — is still the pydantic models';
- creates runs with hostile configs through ``POST /deployments/{id}/create_flow_run`` as the UI's Run form or an
  API client would: each is refused at creation (409, naming the field), no flow run is created; a good config
  is accepted.

Needs the postgresql binaries (``apt-get install -y postgresql``); skips with that line when they are missing.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from forge import stack
from forge.postgres import PG_DATABASE, find_bin_dir, masked, start_postgres
from tasks.config import PipelineConfig
from tasks.config.schema import models_of

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300),
              pytest.mark.skipif(find_bin_dir() is None,
                                 reason="PostgreSQL not installed: apt-get update && apt-get install -y postgresql")]

CUSTOMIZE = "customize-model/customize"


@pytest.fixture(scope="module")
def pg_server():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    # under /tmp, searchable by the `postgres` user the server runs as when the tests run as root
    # (pytest's tmp_path is under a 0700 folder)
    tmp = Path(tempfile.mkdtemp(prefix="forge-pg-test-"))
    tmp.chmod(0o755)
    started: list[stack.Service] = []
    t0 = time.monotonic()
    try:
        pg = start_postgres(tmp / "postgres", log_dir=tmp / "logs")
        started.append(pg)
        marks = {"postgres": round(time.monotonic() - t0, 1)}
        server = stack.start_server(tmp / "prefect-home", ui=False, log_dir=tmp / "logs",
                                    database_url=pg.database_url, timeout=150)
        started.append(server)
        marks["server"] = round(time.monotonic() - t0, 1)
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            ids = deploy_all(only=["customize"], echo=lambda *_: None)
        marks["deployed"] = round(time.monotonic() - t0, 1)
        print(f"postgres-backed server timings (s since start): {marks}")
        yield {"api": server.url, "pg": pg, "ids": ids, "logs": tmp / "logs"}
    finally:
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _deployment(api: str) -> dict:
    r = httpx.get(f"{api}/deployments/name/{CUSTOMIZE}", timeout=10)
    r.raise_for_status()
    return r.json()


def test_the_server_stores_its_state_in_postgresql(pg_server):
    """Not SQLite by accident: the deployment is a row of the `prefect` database of our PostgreSQL."""
    rows = pg_server["pg"].psql("SELECT name FROM deployment", database=PG_DATABASE).split()
    assert rows == ["customize"]
    assert "***" in masked(pg_server["pg"].database_url) and "5432" not in pg_server["pg"].database_url.split("@")[0]


def test_form_order_survives_jsonb(pg_server):
    schema = _deployment(pg_server["api"])["parameter_openapi_schema"]
    defs = schema["definitions"]
    models = models_of(PipelineConfig)
    resorted = 0
    for name, model in models.items():
        props = defs[name]["properties"]
        fields = list(model.model_fields)
        resorted += list(props) != fields                     # as stored: JSONB's key order
        assert sorted(props, key=lambda k: props[k]["position"]) == fields, name   # as the UI renders it
    # PostgreSQL did scramble the stored order (what the UI showed before positions): the test is on JSONB
    assert resorted >= len(models) // 2, "the stored key order was not re-sorted: is this really PostgreSQL?"
    top = schema["properties"]
    assert sorted(top, key=lambda k: top[k]["position"])[:3] == ["config", "rerun_from", "run_id"]


def _good(api: str) -> dict:
    return copy.deepcopy(_deployment(api)["parameters"]["config"])


def _create(api: str, dep_id: str, config: dict) -> httpx.Response:
    return httpx.post(f"{api}/deployments/{dep_id}/create_flow_run", json={"parameters": {"config": config}},
                      timeout=30)


def _runs(api: str, dep_id: str) -> list[dict]:
    r = httpx.post(f"{api}/flow_runs/filter", json={"deployments": {"id": {"any_": [dep_id]}}}, timeout=10)
    r.raise_for_status()
    return r.json()


HOSTILE = [
    ("unknown base model", {"base_model": "amazon.nova-ultra-v9:0"}, "base_model"),
    ("negative epochs", {"hyperparameters": {"epochCount": -3}}, "epochCount"),
    ("bad name", {"name": "Robert'); DROP TABLE runs;--"}, "name"),
    ("type the model lacks", {"customization_type": "CONTINUED_PRE_TRAINING", "preset": None},
     "customization_type"),
    ("distillation without a teacher", {"customization_type": "DISTILLATION"}, "distillation"),
    ("serving for a week and a day", {"serving": {"mode": "provisioned", "max_hours": 200}}, "max_hours"),
    ("unknown key", {"epochs": 3}, "epochs"),
]


@pytest.mark.parametrize("label, change, field", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_config_the_pipeline_refuses_is_refused_at_creation(pg_server, label, change, field):
    api, dep_id = pg_server["api"], pg_server["ids"]["customize"]
    config = {**_good(api), **change}
    assert not _valid(config), f"{label}: the model accepts it, so the form must too"
    before = len(_runs(api, dep_id))
    r = _create(api, dep_id, config)
    assert r.status_code == 409, (label, r.status_code, r.text[:500])
    assert "Validation failed" in r.text and field in r.text, (label, r.text[:800])
    assert len(_runs(api, dep_id)) == before, f"{label}: a flow run was created anyway"


def test_a_good_config_is_accepted(pg_server):
    api, dep_id = pg_server["api"], pg_server["ids"]["customize"]
    config = _good(api)
    config["hyperparameters"] = {"epochCount": 2}
    assert _valid(config)
    r = _create(api, dep_id, config)
    assert r.status_code == 201, r.text[:800]
    run_id = r.json()["id"]
    assert r.json()["parameters"]["config"]["hyperparameters"] == {"epochCount": 2}
    httpx.delete(f"{api}/flow_runs/{run_id}", timeout=10).raise_for_status()   # no worker: nothing ran


def _valid(config: dict) -> bool:
    try:
        PipelineConfig.model_validate(copy.deepcopy(config))
    except ValueError:
        return False
    return True

