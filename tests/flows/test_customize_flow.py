"""The customization flow end to end on the emulator (issue 6): full run, rerun adopts with zero mutating
calls, a failure in evaluation still deletes the provisioned throughput and the rerun resumes there
without duplicates, budget refusal spends nothing, the cancellation hook stops the job and deletes the PT,
and a SIGKILLed run leaves a PT that `forge sweep` deletes.

All through boto3 against a private emulator (`fresh_emulator`), judged by its ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from emulator.testing import alive_serving
from emulator.testing import ledger_calls as calls
from scenarios.harness import small_config as scenario_config
from tests.support import REPO_ROOT
from tests.support.aws import changed_objects, point_at, s3_objects

REPO = REPO_ROOT

pytestmark = pytest.mark.usefixtures("prefect_backend")


# --------------------------------------------------------------------------------------------- helpers
def small_config(name: str = "flow-test", **over) -> dict:
    """The scenario library's small run (scenarios/harness.py), with more data and examples and the default gate
    (this module checks the gate's verdict; the fault matrix does not). ``over`` merges one level deep, as there."""
    cfg = scenario_config(name, data={"max_records": 300},
                          evaluation={"max_examples": 24, "concurrency": 8, "bootstrap_samples": 200},
                          gate={"metric": "accuracy", "min_delta": 0.05, "require_ci_above_zero": True})
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


def _cfg(d: dict):
    from tasks.config import PipelineConfig

    return PipelineConfig.model_validate(d)


@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    point_at(monkeypatch, fresh_emulator.url)
    return fresh_emulator


def run_flow(config: dict | None, runs_dir: Path, **kw):
    from flows.customize import customize_model

    state = customize_model(config=_cfg(config) if config else None, runs_dir=str(runs_dir), return_state=True, **kw)
    return state


def manifest_of(runs_dir: Path, run_id: str | None = None) -> dict:
    paths = sorted(runs_dir.glob(f"{run_id or '*'}/manifest.json"), key=lambda p: p.stat().st_mtime)
    assert paths, f"no manifest under {runs_dir}"
    return json.loads(paths[-1].read_text())


# --------------------------------------------------------------------------------------------- tests
def test_full_run_then_rerun_makes_no_mutating_call(emu, tmp_path):
    runs = tmp_path / "runs"
    state = run_flow(small_config(), runs)
    assert state.is_completed(), state.message
    m = manifest_of(runs)

    # the manifest contract (docs/design.md §8) and what it says
    for key in ("run_id", "run_key", "status", "config", "data", "steps", "resources", "metrics", "gate", "cost",
                "timings"):
        assert key in m, key
    assert m["status"] == "succeeded"
    assert [s for s, v in m["steps"].items() if v["status"] != "completed"] == []
    assert m["data"]["counts"]["test"] > 0 and len(m["data"]["content_hash"]) == 64
    assert m["gate"]["passed"] is True and m["metrics"]["custom"]["accuracy"] > m["metrics"]["base"]["accuracy"]
    assert m["resources"]["job"].startswith("arn:aws:bedrock:us-east-1:<account>:model-customization-job/")
    assert Path(m["report"]["report_md"]).exists()

    led = emu.ledger()
    assert len(calls(led, "CreateModelCustomizationJob")) == 1
    assert len(calls(led, "CreateProvisionedModelThroughput")) == 1
    assert alive_serving(led) == [], "the PT must be deleted at the end of the run"
    n_calls = len(led["calls"])
    objects_before = s3_objects(emu.url)
    assert f"runs/{m['run_id']}/manifest.json" in "\n".join(objects_before), "run state is in S3 (issue 18)"

    # same inputs again, as a new run: everything is adopted and the evaluation is reused from S3
    state = run_flow(small_config(), runs)
    assert state.is_completed(), state.message
    new = emu.ledger()["calls"][n_calls:]
    assert new, "the rerun must at least look AWS up"
    m2 = manifest_of(runs)
    # the new run writes its own record (runs/<its id>/manifest.json) and nothing else: no AWS resource changes,
    # no object of the first run (data, outputs, evaluation, its manifest) is rewritten
    assert [c["operation"] for c in new if c["mutating"] and c["operation"] != "PutObject"] == [], \
        "a rerun of a finished run must not mutate"
    objects_after = s3_objects(emu.url)
    changed = changed_objects(objects_before, objects_after)
    assert changed and all(f"runs/{m2['run_id']}/" in k for k in changed), changed
    assert m2["run_id"] != m["run_id"] and m2["run_key"] == m["run_key"]
    assert m2["steps"]["customize"]["adopted"] and m2["steps"]["evaluate"]["adopted"]
    assert m2["gate"] == m["gate"]


def test_failure_in_evaluation_deletes_pt_and_rerun_resumes_without_duplicates(emu, tmp_path, monkeypatch):
    import tasks.evaluate as ev

    runs = tmp_path / "runs"
    real = ev.collect_outputs

    def broken(*a, **k):
        raise RuntimeError("evaluation exploded (injected)")

    monkeypatch.setattr(ev, "collect_outputs", broken)
    state = run_flow(small_config("flow-fail"), runs)
    assert state.is_failed()
    m = manifest_of(runs)
    assert m["status"] == "failed" and "evaluation exploded" in m["error"]
    assert m["steps"]["evaluate"]["status"] == "failed"
    assert m["steps"]["teardown"]["status"] == "completed"
    led = emu.ledger()
    assert len(calls(led, "CreateProvisionedModelThroughput")) == 1
    assert alive_serving(led) == [], "an exception in evaluation must still delete the PT"

    # on-call reruns the failed run: it resumes at provision, adopts the job, serves again once
    monkeypatch.setattr(ev, "collect_outputs", real)
    state = run_flow(None, runs, run_id=m["run_id"], rerun_from="provision")
    assert state.is_completed(), state.message
    m2 = manifest_of(runs, m["run_id"])
    assert m2["status"] == "succeeded" and m2["attempts"] == 2
    led = emu.ledger()
    assert len(calls(led, "CreateModelCustomizationJob")) == 1, "no second job"
    assert len(calls(led, "CreateBucket")) <= 1 and len(calls(led, "CreateRole")) == 1
    assert len(calls(led, "CreateProvisionedModelThroughput")) == 2, "one PT per serving window"
    assert alive_serving(led) == []


def test_budget_refusal_makes_no_billing_call(emu, tmp_path, capsys):
    runs = tmp_path / "runs"
    cfg = small_config("flow-budget", budget={"max_usd": 0.01, "allow_unknown_prices": True},
                       pricing={"train_per_1k_tokens": 5.0, "pt_hour_no_commit": 40.0,
                                "storage_per_month": 1.95})
    state = run_flow(cfg, runs)
    assert state.is_failed()
    m = manifest_of(runs)
    assert "budget" in m["error"].lower()
    assert m["cost"]["known_usd"] > 0.01   # the base model's on-demand price is unknown: total is None
    led = emu.ledger()
    assert calls(led, mutating=True) == [], "refused before spending: not even a bucket"
    # the refusal is recorded against the spend guard that refused, not against upload; a rerun resumes at upload
    guard = m["steps"]["guard"]
    assert guard["status"] == "failed" and guard["guard"] == "budget"
    assert guard["error"].startswith("refused before spending:") and "budget" in guard["error"]
    assert "upload" not in m["steps"]
    from forge.commands.run import _first_unfinished, print_summary

    assert _first_unfinished(m) == "upload"
    print_summary(m, runs / m["run_id"] / "manifest.json")
    out = capsys.readouterr().out
    assert "guard" in out and "refused before spending" in out, out


def test_cancellation_hook_stops_the_job_and_deletes_the_pt(emu, tmp_path):
    """Layer 2: the on_cancellation hook runs in another process with only the flow run: it finds the
    job and the PT by their forge-flow-run-id tag."""
    from flows.customize import release_and_stop
    from tasks import customize as cz
    from tasks import serve, upload
    from tasks.aws.clients import account_id, make_clients
    from tasks.aws.tags import standard_tags
    from tasks.iam import ensure_role
    from tasks.prepare import prepare
    from tasks.run.names import compute_run_key, resource_names

    cfg = _cfg(small_config("flow-cancel"))
    clients = make_clients(cfg.aws)
    prepared = prepare(cfg, tmp_path / "prepared")
    run_key = compute_run_key(cfg, prepared.content_hash)
    names = resource_names(cfg, run_key)
    flow_run_id = "0b7f8a52-1111-4a2b-9c3d-5e6f7a8b9c0d"
    tags = standard_tags(run_key, flow_run_id, {})
    upload.ensure_bucket(clients, names.bucket, cfg.aws.region, None)
    up = upload.upload(clients, prepared, names.bucket, cfg.aws.prefix, run_key)
    role = ensure_role(clients, cfg, names, up, account_id(clients), tags)
    # a PT of this flow run, serving some custom model (a finished job of another run)
    other = _cfg(small_config("flow-cancel-other"))
    other_key = compute_run_key(other, prepared.content_hash)
    other_names = resource_names(other, other_key)
    other_job = cz.start_job(clients, other, other_names, role.role_arn, up, standard_tags(other_key, "x", {}))
    done = cz.wait_for_job(clients, other_job.job_arn, timeout_s=120, max_interval_s=0.5)
    pt = serve.provision(clients, cfg, names, done.custom_model_arn,
                         standard_tags(run_key, flow_run_id, {}, expires_in_hours=1))
    # this run's job, still training when the run is cancelled (hours-long in reality)
    emu.set_faults([{"job_outcome": "Stuck", "count": 1}])
    job = cz.start_job(clients, cfg, names, role.role_arn, up, tags)

    flow_run = SimpleNamespace(id=flow_run_id, parameters={"config": cfg.model_dump(mode="json")})
    release_and_stop(None, flow_run, SimpleNamespace(name="Cancelling"))

    led = emu.ledger()
    assert led["resources"][pt.arn]["state"] == "Deleted"
    assert led["resources"][job.job_arn]["state"] in ("Stopping", "Stopped")
    assert led["resources"][other_job.job_arn]["state"] == "Completed", "other runs' jobs are not touched"


def _forge_run_until_evaluating(tmp_path, name: str):
    """`forge run` (default serving.max_hours) in its own session, against a separate emulator, until it is
    calling its provisioned throughput. Returns (emulator, process, env)."""
    from emulator.testing import start_subprocess
    from tasks.config import ServingConfig

    default_hours = ServingConfig.model_fields["max_hours"].default   # the default users run (2 h)
    assert default_hours >= 1.0
    cfg = small_config(name, serving={"mode": "provisioned", "model_units": 1, "max_hours": default_hours})
    cfg_path = tmp_path / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    emu = start_subprocess(speed=3000.0, state_dir=tmp_path / "emu-state",
                           faults=[{"operation": "InvokeModel", "latency_ms": 400}])
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "forge.cli", "run", str(cfg_path), "--endpoint", emu.url,
                             "--runs-dir", str(tmp_path / "runs")], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        led = emu.ledger()
        if calls(led, "InvokeModel") and alive_serving(led):
            return emu, proc, env
        if proc.poll() is not None:
            emu.terminate()
            pytest.fail("the run ended before evaluation started")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    emu.terminate()
    pytest.fail("evaluation never started")


def _watchdog_pid(tmp_path) -> int:
    (log,) = (tmp_path / "runs").glob("*/watchdog.log")
    import re

    return int(re.search(r"watchdog\[(\d+)\]: guarding", log.read_text()).group(1))


@pytest.mark.slow
def test_a_lost_machine_pt_is_swept_once_its_heartbeat_is_stale_and_never_while_it_beats(tmp_path):
    """Layer 3: the run AND its watchdog die (a lost machine). The PT's heartbeat stops; `forge sweep` keeps it
    while the heartbeat is fresh (saying why) and deletes it once it is stale — with the default max_hours,
    long before forge-expires-at. The stale bound is shortened for the test only."""
    emu, proc, env = _forge_run_until_evaluating(tmp_path, "flow-lost")
    sweep_env = {**env, "AWS_ENDPOINT_URL": emu.url}
    try:
        live = subprocess.run([sys.executable, "-m", "forge.cli", "sweep"], env=sweep_env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert live.returncode == 0, live.stderr
        assert "deleted 0 resource(s), kept 1" in live.stdout and "live: heartbeat" in live.stdout, live.stdout
        leaked = alive_serving(emu.ledger())
        assert len(leaked) == 1, "a live run is never swept"
        os.kill(_watchdog_pid(tmp_path), signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(2)
        assert alive_serving(emu.ledger()) == leaked, "nothing deleted it: the machine is gone"
        out = subprocess.run([sys.executable, "-m", "forge.cli", "sweep", "--dry-run", "--stale-after", "60"],
                             env=sweep_env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert "kept 1" in out.stdout and "live: heartbeat" in out.stdout, out.stdout
        time.sleep(4)
        out = subprocess.run([sys.executable, "-m", "forge.cli", "sweep", "--dry-run", "--stale-after", "3"],
                             env=sweep_env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert leaked[0].rsplit("/", 1)[-1] in out.stdout and "heartbeat stale" in out.stdout, out.stdout
        assert alive_serving(emu.ledger()) == leaked, "dry run deletes nothing"
        out = subprocess.run([sys.executable, "-m", "forge.cli", "sweep", "--stale-after", "3"], env=sweep_env,
                             cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert alive_serving(emu.ledger()) == []
        assert "123456789012" not in out.stdout, "account ids are redacted in what the sweep prints"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        emu.terminate()


@pytest.mark.parametrize("step, fault", [
    ("upload", {"operation": "PutObject", "error": "AccessDeniedException", "count": 1000}),
    ("create-role", {"operation": "CreateRole", "error": "AccessDeniedException", "count": 1000}),
    ("customize", {"operation": "CreateModelCustomizationJob", "error": "AccessDeniedException", "count": 1000}),
    ("poll", {"job_outcome": "Failed", "count": 1}),
    ("provision", {"operation": "CreateProvisionedModelThroughput", "error": "AccessDeniedException", "count": 1000}),
])
def test_rerun_after_a_failure_in_each_step_resumes_there_without_duplicates(emu, tmp_path, step, fault):
    """On-call's `forge rerun RUN_ID`: resume at the first unfinished step, adopt what exists upstream."""
    from forge.commands.run import _first_unfinished

    runs = tmp_path / "runs"
    emu.set_faults([fault])
    state = run_flow(small_config(f"resume-{step.replace('-', '')}"), runs)
    assert state.is_failed()
    m = manifest_of(runs)
    assert _first_unfinished(m) == step and m["steps"][step]["status"] == "failed", m["steps"]
    assert alive_serving(emu.ledger()) == []

    emu.set_faults([])
    state = run_flow(None, runs, run_id=m["run_id"], rerun_from=_first_unfinished(m))
    assert state.is_completed(), state.message
    m2 = manifest_of(runs, m["run_id"])
    assert m2["status"] == "succeeded"
    led = emu.ledger()
    assert len(calls(led, "CreateBucket")) == 1 and len(calls(led, "CreateRole")) == 1
    assert len(calls(led, "CreateProvisionedModelThroughput")) == 1
    jobs = calls(led, "CreateModelCustomizationJob")
    assert len(jobs) == (2 if step == "poll" else 1), "one job; a failed job gets exactly one new attempt"
    assert alive_serving(led) == []


def test_evaluate_flow_re_evaluates_a_finished_run_and_tears_down(emu, tmp_path):
    """flows/evaluate.py (`forge evaluate RUN_ID`): serve the run's custom model again, evaluate, delete."""
    from flows.evaluate import evaluate_model

    runs = tmp_path / "runs"
    assert run_flow(small_config("reeval"), runs).is_completed()
    m = manifest_of(runs)
    before = len(calls(emu.ledger(), "CreateProvisionedModelThroughput"))

    state = evaluate_model(run_id=m["run_id"], runs_dir=str(runs), return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert Path(out["evaluation_dir"]).parent == runs / m["run_id"] / "evaluations"
    assert Path(out["report"]["report_md"]).exists() and out["gate"]["passed"]
    led = emu.ledger()
    assert len(calls(led, "CreateProvisionedModelThroughput")) == before + 1, "served again for this evaluation"
    assert alive_serving(led) == []
    assert len(calls(led, "CreateModelCustomizationJob")) == 1, "no training"
    m2 = manifest_of(runs, m["run_id"])
    assert len(m2["evaluations"]) == 1 and m2["evaluations"][0]["gate"]["passed"]
    assert m2["gate"] == m["gate"], "the run's own verdict is kept"


def test_a_ctrl_c_swallowed_during_evaluation_still_stops_the_run_and_deletes_the_pt(emu, tmp_path, monkeypatch):
    """The fault matrix's ctrl-c row once ended "succeeded": the KeyboardInterrupt was lost somewhere. The
    signal handler also records the stop (tasks/run/stop.py); here the record is made and no exception raised,
    as when the exception is swallowed: the run must still stop, interrupted, with its PT deleted."""
    import tasks.evaluation.invoke as inv
    from tasks.run import stop

    runs = tmp_path / "runs"
    real = inv.invoke_text
    made = []

    def invoke(*a, **k):
        made.append(1)
        if len(made) == 4:
            stop.request("Ctrl-C (SIGINT)")
        return real(*a, **k)

    monkeypatch.setattr(inv, "invoke_text", invoke)
    stop.clear()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_flow(small_config("flow-swallowed-ctrl-c"), runs)
    finally:
        stop.clear()
    m = manifest_of(runs)
    assert m["status"] == "interrupted", m["status"]
    assert m["teardown"]["by"] == "finally" and not m["teardown"]["alive"]
    led = emu.ledger()
    assert len(calls(led, "CreateProvisionedModelThroughput")) == 1
    assert alive_serving(led) == []
    assert len(made) < 2 * 24, "the queued calls were not made"

