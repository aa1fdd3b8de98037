"""flows/context.py: where run folders live (the flow parameter, FORGE_RUNS_DIR, runs)."""


def test_runs_root_is_the_parameter_else_forge_runs_dir_else_runs(monkeypatch):
    from flows.context import runs_root

    monkeypatch.delenv("FORGE_RUNS_DIR", raising=False)
    assert runs_root(None) == "runs"
    monkeypatch.setenv("FORGE_RUNS_DIR", "/srv/forge-runs")
    assert runs_root(None) == "/srv/forge-runs" and runs_root("") == "/srv/forge-runs"
    assert runs_root("mine") == "mine"


# --------------------------------------------------------------------------------------------- Prefect's Retry
# The UI's Retry button on a failed flow run (prefect/server/ui_v2_build, flow-run page): setFlowRunState(id,
# {type: SCHEDULED, name: "AwaitingRetry", message: "Retry from the UI"}, force: true). The same flow run then runs
# again (a worker's flow-run process: prefect.flow_engine.run_flow with that flow run; run_count becomes 2), with the
# same parameters and no run_id: it must resume the forge run it created, not start a new run id.
import json  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402

from tests.support.aws import point_at  # noqa: E402


@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    point_at(monkeypatch, fresh_emulator.url, "FORGE_RUNS_URI")
    return fresh_emulator


def _retry_like_the_ui(flow_run_id):
    from prefect import get_client
    from prefect.client.schemas.objects import State, StateType

    with get_client(sync_client=True) as c:
        c.set_flow_run_state(flow_run_id, State(type=StateType.SCHEDULED, name="AwaitingRetry",
                                                message="Retry from the UI"), force=True)
        return c.read_flow_run(flow_run_id)


def _calls(emu, op: str) -> list[dict]:
    return [c for c in emu.ledger()["calls"] if c["operation"] == op]


@pytest.mark.parametrize("where", ["same-worker", "other-worker"])
def test_retry_of_a_failed_run_resumes_the_same_forge_run(prefect_backend, emu, tmp_path, where):
    """A run fails at provision (the PT create is refused); Retry like the UI. The same run folder and manifest
    resume at provision: no new run id, no second job. ``other-worker``: the retry runs where the first attempt's
    runs folder is not (deleted), so the run is found in the S3 run store by the flow run's id."""
    from prefect import get_client
    from prefect.flow_engine import run_flow

    from flows.customize import customize_model
    from scenarios.harness import small_config

    runs = tmp_path / "runs"
    config = small_config(f"retry-{where}")
    with get_client(sync_client=True) as c:
        fr = c.create_flow_run(customize_model, parameters={"config": config, "runs_dir": str(runs)})
    emu.set_faults([{"operation": "CreateProvisionedModelThroughput", "error": "AccessDeniedException"}])
    first = run_flow(customize_model, flow_run=fr, return_type="state")
    assert first.is_failed(), first
    (run_dir,) = list(runs.iterdir())
    m1 = json.loads((run_dir / "manifest.json").read_text())
    assert m1["status"] == "failed" and m1["steps"]["provision"]["status"] == "failed", m1["steps"]
    assert str(fr.id) in m1["flow_run_ids"]
    emu.set_faults([])   # the cause is fixed; on-call presses Retry
    if where == "other-worker":
        shutil.rmtree(runs)
    again = run_flow(customize_model, flow_run=_retry_like_the_ui(fr.id), return_type="state")
    assert again.is_completed(), again.message
    assert [p.name for p in runs.iterdir()] == [run_dir.name], "Retry started another run"
    m2 = json.loads((run_dir / "manifest.json").read_text())
    assert m2["run_id"] == m1["run_id"] and m2["status"] == "succeeded" and m2["attempts"] == 2
    assert m2["rerun_from"] == "provision"
    with get_client(sync_client=True) as c:
        assert c.read_flow_run(fr.id).run_count == 2
    assert len(_calls(emu, "CreateModelCustomizationJob")) == 1, "the retry made a second job"
    assert len([c for c in _calls(emu, "CreateProvisionedModelThroughput") if c.get("status", 200) < 300]) == 1


def test_the_earlier_run_is_found_by_the_flow_run_id_only(tmp_path):
    """A manifest listing the flow run is the run; a name that is a path is never followed."""
    from flows.context import find_run_of_flow_run
    from tasks.run.manifest import Manifest

    runs = tmp_path / "runs"
    Manifest.create(runs, "other-20261201-000000-abcd", {"name": "other"}).update(flow_run_ids=["fr-1", "fr-2"])
    assert find_run_of_flow_run(str(runs), "fr-2") == "other-20261201-000000-abcd"
    assert find_run_of_flow_run(str(runs), "fr-3") is None
    assert find_run_of_flow_run(str(runs), "fr-2", name="../escape") == "other-20261201-000000-abcd"


def test_a_rerun_gets_the_recorded_config_with_the_account_back_in_its_arns(tmp_path, aws_env):
    """The manifest stores the config redacted (no account id in shared files): a rerun given only the run id
    must not send AWS an ARN that reads <account> (it used to fail: issue 20's note)."""
    import boto3

    from flows.context import config_of_run
    from scenarios.harness import small_config
    from tasks.run.manifest import Manifest

    account = boto3.client("sts").get_caller_identity()["Account"]
    key = f"arn:aws:kms:us-east-1:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    cfg = small_config("redacted-arn", aws={"kms_key_id": key})
    m = Manifest.create(tmp_path / "runs", "redacted-arn-1", cfg)
    assert "<account>" in m.doc.config["aws"]["kms_key_id"], "stored redacted"
    got = config_of_run(str(tmp_path / "runs"), "redacted-arn-1")
    assert got.aws.kms_key_id == key
