"""Against a REAL local Prefect server (``prefect server start``, SQLite in a temp PREFECT_HOME; not the
test harness): register the deployments from deployments/prefect.yaml, trigger ``customize`` through
the REST API with the JSON body the UI's Run form posts, let a process worker pick it up, and check
the run completed on the emulator with its artifacts attached; the sweeper deployment has its
5-minute schedule and a triggered run of it completes.

One module-scoped scenario (server ~8 s, deploy ~2 s, worker + two flow runs) shared by the tests.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from forge import stack
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

ROOT = REPO_ROOT


def _ui_config() -> dict:
    """examples/banking77.yaml as the Run form submits it (JSON), made small for a test."""
    from tasks.config import load_config

    cfg = load_config(ROOT / "examples" / "banking77.yaml").model_dump(mode="json")
    cfg["name"] = "server-test"
    cfg["data"]["max_records"] = 200
    cfg["evaluation"].update(max_examples=10, bootstrap_samples=100, concurrency=4)
    # the orchestration is under test here, not the stand-in model's quality: a lenient gate
    cfg["gate"].update(min_delta=-1.0, require_ci_above_zero=False)
    return json.loads(json.dumps(cfg))


def _artifacts(api: str, flow_run_id: str) -> list[dict]:
    r = httpx.post(f"{api}/artifacts/filter",
                   json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}, timeout=10)
    r.raise_for_status()
    return r.json()


def _runs_of(api: str, deployment_id: str) -> list[dict]:
    r = httpx.post(f"{api}/flow_runs/filter",
                   json={"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
                   timeout=10)
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, emulator):
    """Uses the session emulator (its stand-in models stay loaded across tests); this run's resources
    are told apart by their forge-flow-run-id tag."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    tmp = tmp_path_factory.mktemp("server")
    runs_dir = tmp / "runs"
    logs = tmp / "logs"
    t0 = time.monotonic()
    server = stack.start_server(tmp / "prefect-home", ui=False, log_dir=logs)
    marks = {"server": time.monotonic() - t0}
    worker = None
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            ids = deploy_all(echo=lambda *_: None)
        marks["deployed"] = time.monotonic() - t0
        api = server.url
        customize_run = stack.trigger(api, "customize-model/customize",
                                      {"config": _ui_config(), "runs_dir": str(runs_dir)})
        sweep_run = stack.trigger(api, "sweep-resources/sweep", {})
        worker = stack.start_worker(
            tmp / "worker-home", api, aws_endpoint=emulator.url, run_once=True, log_dir=logs,
            extra_env={"FORGE_CACHE_DIR": str(tmp / "cache"), "FORGE_RUNS_DIR": str(runs_dir),
                       "PREFECT_LOGGING_LEVEL": "INFO"})  # step logs in worker.log, shown on failure
        finished = {rid: stack.wait_flow_run(api, rid, timeout=240) for rid in (customize_run, sweep_run)}
        marks["runs finished"] = time.monotonic() - t0
        worker.proc.wait(timeout=60)
        print(f"real-server scenario timings (s since start): {marks}")
        yield {"api": api, "ids": ids, "customize": finished[customize_run], "sweep": finished[sweep_run],
               "runs_dir": runs_dir, "ledger": emulator.ledger(), "worker_log": worker.log}
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def _explain(scenario, run) -> str:
    return (f"{run['state']['name']}: {run['state'].get('message')}\n--- worker log (tail) ---\n"
            + "\n".join(Path(scenario["worker_log"]).read_text(errors="replace").splitlines()[-40:]))


def test_all_deployments_registered_on_the_process_pool(scenario):
    api = scenario["api"]
    assert set(scenario["ids"]) == {"retrain", "customize", "evaluate", "sweep", "rerun-step", "rollback"}
    pool = httpx.get(f"{api}/work_pools/forge-process", timeout=10).json()
    assert pool["type"] == "process"
    for name, dep_id in scenario["ids"].items():
        dep = httpx.get(f"{api}/deployments/{dep_id}", timeout=10).json()
        assert dep["work_pool_name"] == "forge-process" and dep["work_queue_name"] == "forge", name
        step = dep["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
        assert Path(step["directory"]) == ROOT, name
    customize = httpx.get(f"{api}/deployments/{scenario['ids']['customize']}", timeout=10).json()
    assert "PipelineConfig" in customize["parameter_openapi_schema"]["definitions"]


def test_customize_triggered_like_the_ui_completes_with_artifacts(scenario):
    run = scenario["customize"]
    assert run["state"]["type"] == "COMPLETED", _explain(scenario, run)
    keys = {a["key"] for a in _artifacts(scenario["api"], run["id"]) if a["key"]}
    assert "run-manifest" in keys
    assert {"eval-metrics", "eval-report"} <= keys, keys
    manifests = list(Path(scenario["runs_dir"]).glob("server-test-*/manifest.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["status"] == "succeeded" and manifest["flow_run_id"] == run["id"]
    assert run["name"] == manifest["run_id"], "the UI's flow run is named after the forge run id"
    assert manifest["steps"]["teardown"]["status"] == "completed"


def test_customize_run_left_no_serving_resource(scenario):
    run_id = scenario["customize"]["id"]
    resources = [r for r in scenario["ledger"]["resources"].values()
                 if r["tags"].get("forge-flow-run-id") == run_id]
    serving = [r for r in resources if r["type"] in ("provisioned-model-throughput", "custom-model-deployment")]
    assert serving, "the run served nothing: evaluation did not run"
    alive = [r for r in serving if r["state"] != "Deleted"]
    assert not alive, alive
    jobs = [r for r in resources if r["type"] == "model-customization-job"]
    assert len(jobs) == 1 and jobs[0]["state"] == "Completed"


def test_sweep_deployment_has_its_5_minute_schedule_and_runs(scenario):
    api = scenario["api"]
    dep = httpx.get(f"{api}/deployments/{scenario['ids']['sweep']}", timeout=10).json()
    (sched,) = dep["schedules"]
    assert sched["active"] and sched["schedule"]["interval"] == 300
    scheduled = [r for r in _runs_of(api, dep["id"]) if r["state"]["type"] == "SCHEDULED"
                 and r["auto_scheduled"]]
    assert len(scheduled) >= 2, "the server's scheduler made no runs for the sweep deployment"
    times = [datetime.fromisoformat(r["expected_start_time"]) for r in scheduled]
    assert {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)} == {300.0}
    run = scenario["sweep"]
    assert run["state"]["type"] == "COMPLETED", _explain(scenario, run)


def test_deploy_switches_on_prefect_zombie_detection(scenario):
    """Flow-run heartbeats in every deployment's environment and the automation that marks a run without them
    Crashed (Prefect's "detect zombie flows" guide), scoped to bedrock-forge's runs."""
    api = scenario["api"]
    for name, dep_id in scenario["ids"].items():
        dep = httpx.get(f"{api}/deployments/{dep_id}", timeout=10).json()
        assert dep["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30", name
    r = httpx.post(f"{api}/automations/filter", json={}, timeout=10)
    r.raise_for_status()
    (auto,) = [a for a in r.json() if a["name"] == "bedrock-forge: crash zombie flow runs"]
    trig = auto["trigger"]
    assert auto["enabled"] and trig["posture"] == "Proactive" and trig["within"] == 90.0
    assert trig["after"] == ["prefect.flow-run.heartbeat"] and "prefect.flow-run.heartbeat" in trig["expect"]
    assert trig["match_related"]["prefect.resource.id"] == "prefect.tag.bedrock-forge"
    (action,) = auto["actions"]
    assert action["type"] == "change-flow-run-state" and action["state"] == "CRASHED"


def test_retrain_deployment_is_scheduled_weekly(scenario):
    dep = httpx.get(f"{scenario['api']}/deployments/{scenario['ids']['retrain']}", timeout=10).json()
    (sched,) = dep["schedules"]
    assert sched["schedule"]["cron"] == "0 3 * * 1" and sched["schedule"]["timezone"] == "UTC"
    assert dep["parameters"]["config_path"] == "examples/banking77.yaml"


def test_redeploy_is_idempotent(scenario):
    """`forge deploy --apply` twice: same ids, still one schedule each."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    with temporary_settings(updates={PREFECT_API_URL: scenario["api"]}):
        again = deploy_all(echo=lambda *_: None, only=["sweep", "customize"])
    assert again == {k: scenario["ids"][k] for k in ("sweep", "customize")}
    dep = httpx.get(f"{scenario['api']}/deployments/{again['sweep']}", timeout=10).json()
    assert len(dep["schedules"]) == 1


def test_bad_form_input_is_refused_by_the_server(scenario):
    cfg = _ui_config()
    cfg["serving"]["mode"] = "always-on"
    with pytest.raises(stack.StackError, match="refused"):
        stack.trigger(scenario["api"], "customize-model/customize", {"config": cfg})


def test_failure_notification_automation_is_accepted_by_the_server(scenario):
    """deployments/automations/notify-on-failure.json, with a real notification block, as the runbook says."""
    from prefect.blocks.notifications import SlackWebhook
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: scenario["api"]}):
        block_id = SlackWebhook(url="https://hooks.slack.com/services/T000/B000/XXXX").save("forge-oncall",
                                                                                             overwrite=True)
    text = (ROOT / "deployments" / "automations" / "notify-on-failure.json").read_text()
    assert "REPLACE_WITH_BLOCK_DOCUMENT_ID" in text
    body = json.loads(text.replace("REPLACE_WITH_BLOCK_DOCUMENT_ID", str(block_id)))
    resp = httpx.post(f"{scenario['api']}/automations/", json=body, timeout=10)
    assert resp.status_code == 201, resp.text
    saved = resp.json()
    assert set(saved["trigger"]["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert saved["actions"][0]["block_document_id"] == str(block_id)


def test_stack_refuses_a_busy_port_instead_of_trusting_whoever_answers(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert stack.main(["--home", str(tmp_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"Prefect server port 127.0.0.1:{port} is already in use" in err and "--port" in err
