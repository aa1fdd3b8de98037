"""Bedrock quotas as Prefect global concurrency limits (issue 18 part 5): the names and what each step takes
(tasks/run/quota.py), taking and waiting on a real Prefect API (flows/quota.py, the session's test server), and the
customize flow on the emulator holding a training slot across customize + poll and a PT slot until teardown.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from tasks.run import quota as q
from tests.support.aws import point_at

REGION = "us-east-1"


# --------------------------------------------------------------------------------------------- pure rules
def test_limit_names_are_per_quota_and_region_and_refuse_nonsense():
    assert q.limit_name(q.TRAINING_JOBS, "eu-west-1") == "bedrock-training-jobs:eu-west-1"
    assert q.limit_name(q.PT_MODEL_UNITS, REGION) == "bedrock-pt-model-units:us-east-1"
    with pytest.raises(ValueError):
        q.limit_name("bedrock-anything", REGION)
    with pytest.raises(ValueError):
        q.limit_name(q.TRAINING_JOBS, "us east 1")
    specs = q.limit_specs(["us-east-1", "us-west-2"], {q.TRAINING_JOBS: 3, q.PT_MODEL_UNITS: 5})
    assert [(s.name, s.limit) for s in specs] == [
        ("bedrock-training-jobs:us-east-1", 3), ("bedrock-pt-model-units:us-east-1", 5),
        ("bedrock-training-jobs:us-west-2", 3), ("bedrock-pt-model-units:us-west-2", 5)]
    assert all(s.source.startswith("https://docs.aws.amazon.com/") for s in specs)


def test_defaults_come_from_the_catalog_and_the_environment_overrides_them():
    from tasks.catalog import load_catalog

    base = q.default_values({})
    assert base[q.PT_MODEL_UNITS] == load_catalog().quotas.no_commitment_model_units_per_account
    assert base[q.TRAINING_JOBS] == (load_catalog().quotas.concurrent_training_jobs or q.UNCONFIRMED_TRAINING_JOBS)
    over = q.default_values({q.ENV_TRAINING: "7", q.ENV_PT_UNITS: "0"})
    assert over == {q.TRAINING_JOBS: 7, q.PT_MODEL_UNITS: 0}
    for bad in ("two", "-1", "1.5"):
        with pytest.raises(ValueError, match=q.ENV_TRAINING):
            q.default_values({q.ENV_TRAINING: bad})


def test_regions_cli_then_env_then_default_region():
    assert q.regions_of({}, ["eu-west-1", "eu-west-1", " us-east-2"]) == ["eu-west-1", "us-east-2"]
    assert q.regions_of({q.ENV_REGIONS: "ap-south-1, eu-central-1,"}) == ["ap-south-1", "eu-central-1"]
    assert q.regions_of({"AWS_DEFAULT_REGION": "us-west-2"}) == ["us-west-2"]
    assert q.regions_of({}) == ["us-east-1"]


def test_only_a_no_commitment_pt_takes_model_unit_slots():
    assert q.serving_claims("deployment", 1, None, REGION) == []            # on-demand serving: none
    assert q.serving_claims("provisioned", 2, "OneMonth", REGION) == []     # a commitment: another quota
    (claim,) = q.serving_claims("provisioned", 3, None, REGION)
    assert (claim.name, claim.slots) == ("bedrock-pt-model-units:us-east-1", 3)
    assert q.training_claim("eu-west-1").slots == 1


def test_lease_and_wait_bounds():
    assert q.lease_seconds({}) == q.DEFAULT_LEASE_S
    assert q.lease_seconds({q.ENV_LEASE: "5"}) == q.MIN_LEASE_S == 60  # never below what Prefect's server accepts
    assert q.lease_seconds({q.ENV_LEASE: "600"}) == 600
    assert q.wait_seconds(2, {}) == 120
    assert q.wait_seconds(2, {q.ENV_WAIT: "15"}) == 15
    with pytest.raises(ValueError):
        q.lease_seconds({q.ENV_LEASE: "soon"})


@pytest.mark.parametrize(("read", "key", "raw", "says"), [
    (q.lease_seconds, q.ENV_LEASE, "inf", "must be a finite number"),     # a lease that would never expire
    (q.lease_seconds, q.ENV_LEASE, "nan", "must be a finite number"),
    (lambda env: q.wait_seconds(2, env), q.ENV_WAIT, "Infinity", "must be a finite number"),
    (lambda env: q.wait_seconds(2, env), q.ENV_WAIT, "-nan", "must be a finite number"),
    (q.default_values, q.ENV_TRAINING, "two", "a whole number of slots"),
    (q.default_values, q.ENV_PT_UNITS, "-1", "must be >= 0"),
])
def test_a_hostile_quota_variable_is_refused_by_name(read, key, raw, says):
    with pytest.raises(ValueError) as err:
        read({key: raw})
    assert str(err.value).startswith(f"{key}={raw!r}: ") and says in str(err.value)


def _slot(latest, **kw):
    args = dict(will_create=False, job_run_id=None, our_run_id="mine-1", creator_flow_run=None, our_flow_runs=["fr-a"],
                creator_state=None)
    args.update(kw)
    return q.job_slot(latest, **args)[0]


def test_a_job_holds_one_slot_whoever_adopts_it():
    assert _slot(None, will_create=True) == "take"                                   # the create call
    assert _slot("Completed") == "none"                                              # a finished job holds none
    assert _slot("Failed") == "none"
    # an earlier attempt of this run (crash, Retry): its slot is gone or expiring, the job still counts
    assert _slot("InProgress", job_run_id="mine-1", creator_flow_run="fr-old", creator_state="CRASHED") == "take"
    assert _slot("InProgress", creator_flow_run="fr-a") == "take"
    # a duplicate run of the same config: the live creator holds the slot, adopting takes no second one
    assert _slot("InProgress", job_run_id="other-1", creator_flow_run="fr-x", creator_state="RUNNING") == "none"
    assert _slot("InProgress", job_run_id="other-1", creator_flow_run="fr-x", creator_state="PENDING") == "none"
    # ... unless that creator is gone: the slot is taken over
    assert _slot("InProgress", job_run_id="other-1", creator_flow_run="fr-x", creator_state="CRASHED") == "take"
    assert _slot("InProgress", job_run_id="other-1", creator_flow_run="fr-x", creator_state=None) == "take"


# --------------------------------------------------------------------------------------------- on a real Prefect API
@pytest.fixture
def limit(prefect_backend):
    """A fresh limit of 1 slot (its own Region name, so tests never share one); deleted afterwards."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    region = f"test-{uuid.uuid4().hex[:8]}"
    name = q.limit_name(q.TRAINING_JOBS, region)
    with get_client(sync_client=True) as c:
        c.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    yield region, name
    with get_client(sync_client=True) as c:
        c.delete_global_concurrency_limit_by_name(name)


def _active(name: str) -> int:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_global_concurrency_limit_by_name(name).active_slots


class _Log:
    def __init__(self):
        self.lines: list[str] = []

    def _add(self, msg, *args):
        self.lines.append(msg % args if args else msg)

    info = warning = error = _add


def test_a_second_taker_waits_visibly_until_the_first_releases(limit):
    from flows import quota as fq

    region, name = limit
    log = _Log()
    first = fq.take(q.training_claim(region), log=log, flow_run_id="local", timeout_s=5, lease_s=60)
    assert first is not None and _active(name) == 1
    waits: list[tuple[str, int, int]] = []
    got: dict = {}

    def second():
        got["slot"] = fq.take(q.training_claim(region), log=log, flow_run_id="local", timeout_s=60, lease_s=60,
                              on_wait=lambda line, a, lim: waits.append((line, a, lim)),
                              on_taken=lambda s: got.setdefault("waited", s))

    t = threading.Thread(target=second)
    t.start()
    deadline = time.monotonic() + 30
    while not waits and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waits, "the second taker did not say it waits"
    assert t.is_alive() and "slot" not in got, "the second taker did not wait for the slot"
    line, active, lim = waits[0]
    assert (active, lim) == (1, 1) and name in line and "waiting for quota" in line
    first.release()
    t.join(60)
    assert got.get("slot") is not None and got["waited"] > 0
    assert _active(name) == 1
    got["slot"].release()
    got["slot"].release()          # idempotent
    assert _active(name) == 0


def test_a_full_limit_times_out_naming_the_limit(limit):
    from flows import quota as fq

    region, name = limit
    held = fq.take(q.training_claim(region), log=_Log(), flow_run_id="local", timeout_s=5, lease_s=60)
    try:
        with pytest.raises(fq.QuotaWaitTimeout, match=name):
            fq.take(q.training_claim(region), log=_Log(), flow_run_id="local", timeout_s=2, lease_s=60)
    finally:
        held.release()
    assert _active(name) == 0


def test_asking_more_than_the_limit_can_ever_give_fails_at_once(limit):
    from flows import quota as fq

    region, _ = limit
    claim = q.Claim(name=q.limit_name(q.TRAINING_JOBS, region), slots=2, what="2 things")
    with pytest.raises(fq.QuotaWaitTimeout, match="could never start"):
        fq.take(claim, log=_Log(), flow_run_id="local", timeout_s=60, lease_s=60)


def test_a_missing_limit_is_no_limit_said_once(prefect_backend):
    from flows import quota as fq

    log = _Log()
    region = f"nowhere-{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        assert fq.take(q.training_claim(region), log=log, flow_run_id="local", timeout_s=1, lease_s=60) is None
    said = [line for line in log.lines if "no Prefect concurrency limit" in line]
    assert len(said) == 1 and region in said[0]


def test_without_a_prefect_api_a_run_is_not_coordinated(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import quota as fq

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        status, why = fq.read_limit("bedrock-training-jobs:us-east-1")
    assert status == "no-api" and why


# --------------------------------------------------------------------------------------------- the flow
@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    point_at(monkeypatch, fresh_emulator.url)
    return fresh_emulator


def _config(name: str, region_limits: str):
    from scenarios.harness import small_config
    from tasks.config import PipelineConfig

    cfg = small_config(name, serving={"mode": "provisioned", "model_units": 1, "max_model_units": 1})
    cfg["aws"] = {**cfg.get("aws", {}), "region": REGION}
    return PipelineConfig.model_validate(cfg)


@pytest.fixture
def region_limits(prefect_backend):
    """The two real limits of us-east-1 (as forge deploy creates them), 1 slot each, for the flow tests."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    names = [q.limit_name(q.TRAINING_JOBS, REGION), q.limit_name(q.PT_MODEL_UNITS, REGION)]
    with get_client(sync_client=True) as c:
        for n in names:
            try:
                c.delete_global_concurrency_limit_by_name(n)
            except Exception:  # noqa: BLE001
                pass
            c.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=n, limit=1))
    yield names
    with get_client(sync_client=True) as c:
        for n in names:
            c.delete_global_concurrency_limit_by_name(n)


def _state_name(flow_run_id: str) -> str:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(uuid.UUID(flow_run_id)).state.name


def _manifest(runs: Path) -> dict:
    paths = sorted(runs.glob("*/manifest.json"))
    return json.loads(paths[-1].read_text()) if paths else {}


def test_a_run_over_the_training_quota_waits_then_finishes(emu, tmp_path, region_limits, monkeypatch):
    """The training slot is held by someone else: the run waits before CreateModelCustomizationJob (no job, the
    manifest says "waiting"), starts once it is released, and gives both slots back when it ends."""
    from flows import quota as fq
    from flows.customize import customize_model

    train_limit, pt_limit = region_limits
    monkeypatch.setenv(q.ENV_WAIT, "300")
    blocker = fq.take(q.training_claim(REGION), log=_Log(), flow_run_id="local", timeout_s=5, lease_s=60)
    runs = tmp_path / "runs"
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "state", customize_model(config=_config("quota-wait", train_limit), runs_dir=str(runs), return_state=True)))
    t.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (_manifest(runs).get("waiting") or {}).get("limit"):
        assert t.is_alive(), out
        time.sleep(0.2)
    waiting = _manifest(runs).get("waiting")
    assert waiting and waiting["limit"] == train_limit and waiting["step"] == "customize", _manifest(runs)
    assert (waiting["in_use"], waiting["limit_value"]) == (1, 1)
    assert _state_name(_manifest(runs)["flow_run_id"]) == fq.WAITING_STATE   # what the UI shows meanwhile
    assert not [c for c in emu.ledger()["calls"] if c.get("operation") == "CreateModelCustomizationJob"], \
        "a job was created while the quota was full"
    time.sleep(1.0)
    assert t.is_alive(), "the run did not keep waiting"
    blocker.release()
    t.join(300)
    state = out["state"]
    assert state.is_completed(), state.message
    m = _manifest(runs)
    assert m["status"] == "succeeded" and m.get("waiting") is None
    assert _state_name(m["flow_run_id"]) == "Completed"
    (wait,) = [w for w in m["quota_waits"] if w["step"] == "customize"]
    assert wait["limit"] == train_limit and wait["waited_s"] >= 1.0
    assert _active(train_limit) == 0 and _active(pt_limit) == 0, "a slot outlived the run"
    creates = [c for c in emu.ledger()["calls"] if c.get("operation") == "CreateModelCustomizationJob"]
    assert len(creates) == 1


@pytest.fixture
def slow_emu(tmp_path, monkeypatch):
    """A private emulator slow enough (×100: a job trains ~13 s) for a second run to find the first one's job."""
    from emulator.testing import running_emulator

    with running_emulator(speed=100.0, state_dir=tmp_path / "emulator-state") as emu:
        point_at(monkeypatch, emu.url)
        yield emu


def test_a_duplicate_run_adopts_the_job_without_a_second_slot(slow_emu, tmp_path, region_limits):
    """Two runs of the same config (a schedule and a UI trigger): the second finds the first's job in progress,
    its creator alive, and adopts it without taking (or waiting for) a training slot: the limit of 1 is enough."""
    from flows.customize import customize_model

    train_limit, _ = region_limits
    config = _config("quota-dupe", train_limit)
    out: dict = {}

    def run(key: str, runs: Path) -> None:
        out[key] = customize_model(config=config, runs_dir=str(runs), return_state=True)

    first = threading.Thread(target=run, args=("first", tmp_path / "runs-1"))
    first.start()

    def job_in_progress() -> bool:
        return any(r["type"] == "model-customization-job" and r["state"] == "InProgress"
                   for r in slow_emu.ledger()["resources"].values())

    deadline = time.monotonic() + 240
    while not job_in_progress():
        assert first.is_alive() and time.monotonic() < deadline, out
        time.sleep(0.2)
    assert _active(train_limit) == 1
    second = threading.Thread(target=run, args=("second", tmp_path / "runs-2"))
    second.start()
    second.join(300)
    first.join(300)
    assert out["first"].is_completed() and out["second"].is_completed(), out
    m1, m2 = _manifest(tmp_path / "runs-1"), _manifest(tmp_path / "runs-2")
    assert m1["run_key"] == m2["run_key"] and m2["steps"]["customize"]["adopted"] is True
    assert m2["steps"]["customize"]["output"]["status"] == "InProgress", "adopted after the job ended: no test"
    assert not [w for w in m2.get("quota_waits") or [] if w["step"] == "customize"], m2.get("quota_waits")
    creates = [c for c in slow_emu.ledger()["calls"] if c["operation"] == "CreateModelCustomizationJob"]
    assert len(creates) == 1
    assert _active(train_limit) == 0
