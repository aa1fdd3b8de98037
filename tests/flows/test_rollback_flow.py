"""flows/rollback.py (the UI's ``rollback`` deployment) on the emulator: after two promoted weeks of one lineage
the flow puts week 1's model back into production serving and week 2's serving is gone; a second run is a no-op;
the refusals fail the flow run with what to do next; a Retry of a failed run goes to the version it pinned; the
deployment's parameter schema takes the UI's JSON."""

from __future__ import annotations

import uuid

import pytest
import yaml

from emulator.testing import alive_serving
from flows.context import RunContext
from flows.promote import promote_if_gate_passed
from flows.rollback import PIN_LABEL, rollback_lineage
from tasks import promote as promote_stage
from tasks.registry import store_for_config
from tests.support import REPO_ROOT
from tests.support.aws import use_fresh_emulator
from tests.support.champion import evaluated_week

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.timeout(300)]

MUTATING = ("Create", "Delete", "Tag", "Untag", "Put", "Update")


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _promoted(tmp_path, name: str, weeks: int) -> list[RunContext]:
    out = []
    for week in range(1, weeks + 1):
        ctx = evaluated_week(tmp_path, name, week)
        assert promote_if_gate_passed(ctx, timeout_s=60, initial_interval_s=0.1)["promoted"]
        out.append(ctx)
    return out


def _mutating(emu, since: int) -> list[str]:
    return [c["operation"] for c in emu.ledger()["calls"][since:] if c["operation"].startswith(MUTATING)]


def _production(emu) -> list[str]:
    led = emu.ledger()
    return [a for a in alive_serving(led, production=True) if a not in alive_serving(led)]


def _id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _artifact(name: str, state) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"rollback-{name}"])))
    (art,) = [a for a in arts if a.flow_run_id == state.state_details.flow_run_id]
    return art.data


def test_rollback_flow_serves_week_1_again_retires_week_2_and_a_second_run_is_a_no_op(emu, tmp_path):
    name = f"rb-{uuid.uuid4().hex[:8]}"
    w1, w2 = _promoted(tmp_path, name, 2)
    store = store_for_config(w1.clients, w1.config, w1.account)
    w2_serving = store.read().champion.serving_arn
    mark = len(emu.ledger()["calls"])

    state = rollback_lineage(config=w2.config, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["promoted"] and out["champion"] == w1.run_id and out["rolled_back_from"] == w2.run_id
    assert [_id(a) for a in out["retired"]] == [_id(w2_serving)] and out["alive"] == []
    ops = _mutating(emu, mark)
    assert ops.count("CreateCustomModelDeployment") == 1 and ops.count("DeleteCustomModelDeployment") == 1, ops
    reg = store.read()
    assert reg.champion.run_id == w1.run_id and reg.version(w2.run_id).status == "rolled-back"
    assert reg.switches[-1].reason == "rollback"
    assert _production(emu) == [reg.champion.serving_arn]                # week 2's production serving is gone
    served = w1.clients.bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=reg.champion.serving_arn)
    assert served["modelArn"] == reg.version(w1.run_id).custom_model_arn and served["status"] == "Active"
    art = _artifact(name, state)
    assert f"{w1.run_id} is the champion of {name}" in art and f"rolled back from {w2.run_id}" in art
    assert "- retired: " in art and _id(w2_serving) in art and "STILL BILLING" not in art

    mark = len(emu.ledger()["calls"])                                     # again, with the version now serving
    again = rollback_lineage(config=w2.config, to=w1.run_id, return_state=True)
    assert again.is_completed(), again.message
    assert again.result()["already"] and again.result()["champion"] == w1.run_id
    assert _mutating(emu, mark) == [] and _production(emu) == [reg.champion.serving_arn]

    mark = len(emu.ledger()["calls"])                                     # again without `to`: week 1 replaced none
    refused = rollback_lineage(config=w2.config, return_state=True)
    assert refused.is_failed()
    assert "nothing to roll back to" in refused.message and "Nothing was changed" in refused.message
    assert f"set `to` to the run id of a version to serve (versions: {w1.run_id} (champion)" in refused.message
    assert _mutating(emu, mark) == [] and store.read().champion.run_id == w1.run_id


def test_refusals_fail_the_flow_run_and_change_nothing(emu, tmp_path):
    name = f"rb-{uuid.uuid4().hex[:8]}"
    (w1,) = _promoted(tmp_path, name, 1)
    cfg = tmp_path / "lineage.yaml"
    cfg.write_text(yaml.safe_dump(w1.config.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    mark = len(emu.ledger()["calls"])

    state = rollback_lineage(config_path=str(cfg), return_state=True)     # one champion, no previous
    assert state.is_failed()
    assert f"rollback of {name} refused: champion {w1.run_id} of {name} replaced no earlier champion: nothing to " \
           "roll back to. Nothing was changed in production. Next: set `to`" in state.message
    assert "refused" in _artifact(name, state)

    for params, said in [
        ({"config": w1.config, "to": "../etc"}, "to: run id '../etc' is a path"),
        ({"config": w1.config, "lineage": "another-lineage"}, "the config names"),
        ({"config": w1.config, "config_path": str(cfg)}, "not both"),
        ({}, "give the lineage's config"),
        ({"config": w1.config, "to": f"{name}-week9"}, f"no version of run {name}-week9"),
        ({"config": w1.config.model_copy(update={"name": f"{name}-x"})}, "no registry for lineage"),
        ({"config_path": str(tmp_path / "missing.yaml")}, "config_path"),
    ]:
        got = rollback_lineage(**params, return_state=True)
        assert got.is_failed() and said in got.message, (params, got.message)
    assert _mutating(emu, mark) == []
    reg = store_for_config(w1.clients, w1.config, w1.account).read()
    assert reg.champion.run_id == w1.run_id and len(_production(emu)) == 1


def test_a_retried_flow_run_goes_to_the_version_it_pinned(emu, tmp_path, monkeypatch):
    """The first attempt switches the champion to week 1 and fails before retiring week 2's serving; the Retry
    (flow retries, as the UI's Retry) finishes the retirement instead of rolling back from week 1."""
    from prefect import get_client

    name = f"rb-{uuid.uuid4().hex[:8]}"
    w1, w2 = _promoted(tmp_path, name, 2)
    store = store_for_config(w1.clients, w1.config, w1.account)
    w2_serving = store.read().champion.serving_arn
    real, calls = promote_stage.protect_champion_model, []

    def fails_once(*args, **kw):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("the worker lost its connection after the switch")
        return real(*args, **kw)

    monkeypatch.setattr(promote_stage, "protect_champion_model", fails_once)
    state = rollback_lineage.with_options(retries=1, retry_delay_seconds=0)(config=w2.config, return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert len(calls) == 2 and out["champion"] == w1.run_id and [_id(a) for a in out["retired"]] == [_id(w2_serving)]
    reg = store.read()
    assert reg.champion.run_id == w1.run_id and [s.reason for s in reg.switches] == ["promote", "promote", "rollback"]
    assert _production(emu) == [reg.champion.serving_arn]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(state.state_details.flow_run_id).labels[PIN_LABEL] == w1.run_id


def test_the_deployment_form_takes_the_uis_json():
    """What the server checks with enforce_parameter_schema when the rollback form is submitted."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import is_valid

    from forge.commands.deploy import check_deployment, load_deployments_file
    from tasks.config import PipelineConfig, load_config

    spec = load_deployments_file(REPO_ROOT / "deployments" / "prefect.yaml").get("rollback")
    flow, schedules = check_deployment(spec, REPO_ROOT)
    assert flow.name == "rollback-lineage" and schedules == [] and spec.schedules == []
    assert (REPO_ROOT / spec.parameters["config_path"]).is_file()
    schema = parameter_schema(rollback_lineage).model_dump()
    assert set(schema["properties"]) == {"config", "config_path", "to", "lineage"}
    assert is_valid(spec.parameters, schema)
    config = load_config(REPO_ROOT / "examples" / "banking77.yaml").model_dump(mode="json")
    ui = {"config": config, "config_path": None, "to": "banking77-demo-20260105-030000-ab12", "lineage": None}
    assert is_valid(ui, schema)
    assert isinstance(flow.validate_parameters(ui)["config"], PipelineConfig)   # the same model as customize's
    assert not is_valid({**ui, "to": 7}, schema)
    assert not is_valid({**ui, "config": {**config, "customization_type": "FINE-TUNE"}}, schema)
