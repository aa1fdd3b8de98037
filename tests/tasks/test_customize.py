"""tasks/customize.py against the local Bedrock emulator: start/adopt, retries, quota, wait, stop."""

from __future__ import annotations

import json
import time

import pytest
from botocore.validate import ParamValidator

from tasks import customize, iam
from tasks.aws import clients as aws_clients
from tasks.aws import errors as aws_errors
from tasks.aws import tags as aws_tags
from tasks.run import names as run_names
from tasks.run.types import UploadedData
from tests.support.aws import NOVA, Stage, creates, make_config, set_up_run


# -- request shapes (botocore's own validator, every customization type) --------------------------
@pytest.mark.parametrize("over", [
    {},
    {"customization_type": "DISTILLATION", "distillation": {"teacher_model": "us.amazon.nova-pro-v1:0",
                                                            "max_response_length": 512}},
    {"base_model": "amazon.nova-2-lite-v1:0:256k", "customization_type": "REINFORCEMENT_FINE_TUNING",
     "rft": {"grader_lambda_arn": "arn:aws:lambda:us-east-1:000000000000:function:grader",
             "hyperparameters": {"epochCount": 2, "learningRate": "1e-5", "reasoningEffort": "low"}}},
    {"base_model": "amazon.titan-text-lite-v1:0:4k", "customization_type": "CONTINUED_PRE_TRAINING", "preset": "cpt"},
])
def test_job_request_is_valid_for_every_customization_type(over):
    cfg = make_config("shape", **over)
    names = run_names.resource_names(cfg, "0123456789ab")
    up = UploadedData(bucket="b-b-b", train_uri="s3://b-b-b/p/data/x/train.jsonl", output_uri="s3://b-b-b/p/output/k/",
                      validation_uri="s3://b-b-b/p/data/x/validation.jsonl", input_prefix="p/data/x/",
                      output_prefix="p/output/k/")
    req = customize.build_job_request(
        cfg, names, "arn:aws:iam::000000000000:role/r", up, {"managed-by": "bedrock-forge"}, 2
    )
    shape = (
        aws_clients.make_clients(cfg.aws)
        .bedrock.meta.service_model.operation_model("CreateModelCustomizationJob")
        .input_shape
    )
    report = ParamValidator().validate(req, shape)
    assert not report.has_errors(), report.generate_report()
    assert req["jobName"] == names.job + "-a2" and req["clientRequestToken"] == names.job_token + "-a2"
    assert all(isinstance(v, str) for v in req.get("hyperParameters", {}).values())
    ctype = cfg.customization_type.value
    if ctype == "DISTILLATION":
        assert req["customizationConfig"] == {"distillationConfig": {"teacherModelConfig": {
            "teacherModelIdentifier": "us.amazon.nova-pro-v1:0", "maxResponseLengthForInference": 512}}}
    if ctype == "REINFORCEMENT_FINE_TUNING":
        rft = req["customizationConfig"]["rftConfig"]
        assert rft["hyperParameters"] == {"epochCount": 2, "learningRate": 1e-5, "reasoningEffort": "low"}
    if ctype == "FINE_TUNING":
        assert req["hyperParameters"]["epochCount"] == "1"      # the 'quick' preset


# -- against the emulator --------------------------------------------------------------------------
def test_happy_path_trains_and_returns_both_metric_tables(env, tmp_path):
    s = set_up_run(tmp_path)
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    assert not job.adopted and job.attempt == 1 and job.job_name == s.names.job
    seen: list[dict] = []
    result = customize.wait_for_job(s.clients, job.job_arn, timeout_s=60, progress=seen.append)
    assert result.status == "Completed" and result.custom_model_arn.split(":")[5].startswith("custom-model/")
    assert result.training_metrics and ({"step_number", "epoch_number", "training_loss"}
                                        <= set(result.training_metrics[0]))
    assert result.validation_metrics and "validation_loss" in result.validation_metrics[0]
    assert result.final_training_loss == pytest.approx(result.training_metrics[-1]["training_loss"])
    assert seen[-1]["status"] == "Completed"
    tags = aws_tags.bedrock_tags(s.clients, result.custom_model_arn)
    assert tags["managed-by"] == "bedrock-forge" and tags["forge-run-key"] == s.names.run_key


def test_rerun_adopts_instead_of_creating_again(fresh_env, tmp_path):
    s = set_up_run(tmp_path)
    first = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    # a fresh worker: new clients, no cache, same config and data
    again = customize.start_job(
        aws_clients.make_clients(s.config.aws), s.config, s.names, s.role_arn, s.uploaded, s.tags
    )
    assert again.adopted and again.job_arn == first.job_arn
    customize.wait_for_job(s.clients, first.job_arn, timeout_s=60, initial_interval_s=0.2)
    done = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    assert done.adopted and done.status == "Completed"
    assert len([c for c in creates(fresh_env.ledger()) if c["status"] < 300]) == 1


def test_transient_faults_are_retried_and_survived(fresh_env, tmp_path):
    s = set_up_run(tmp_path)
    fresh_env.set_faults([{"operation": "CreateModelCustomizationJob", "error": "ThrottlingException", "count": 2},
                          {"operation": "GetModelCustomizationJob", "error": "ServiceUnavailableException",
                           "count": 1}])
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    result = customize.wait_for_job(s.clients, job.job_arn, timeout_s=60, initial_interval_s=0.2)
    assert result.status == "Completed"
    calls = creates(fresh_env.ledger())
    assert [c["error"] for c in calls] == ["ThrottlingException", "ThrottlingException", None]


@pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs")
def test_prefect_task_retries_transient_errors_only(fresh_env, tmp_path, prefect_backend):
    s = set_up_run(tmp_path, aws={"max_attempts": 1})      # botocore gives up at once: Prefect must retry
    fresh_env.set_faults([{"operation": "CreateModelCustomizationJob", "error": "ServiceUnavailableException",
                           "count": 2}])
    task = customize.start_job_task.with_options(retry_delay_seconds=0.1)
    job = task(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    assert job.job_name == s.names.job and len(creates(fresh_env.ledger())) == 3
    fresh_env.set_faults([{"operation": "ListModelCustomizationJobs", "error": "AccessDeniedException", "count": 5}])
    with pytest.raises(aws_errors.StageError, match="AccessDenied"):
        task(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    lists = [c for c in fresh_env.ledger()["calls"] if c["operation"] == "ListModelCustomizationJobs"]
    assert [c["error"] for c in lists].count("AccessDeniedException") == 1      # no retry of a permanent error


def test_wait_task_publishes_progress_and_survives_an_emulator_restart(fresh_env, tmp_path, prefect_backend):
    from prefect import flow, get_client

    s = set_up_run(tmp_path)
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    fresh_env.restart()  # the service keeps its state; a new worker re-adopts and waits
    clients = aws_clients.make_clients(s.config.aws)
    adopted = customize.start_job(clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    assert adopted.adopted and adopted.job_arn == job.job_arn

    @flow
    def poll() -> str:
        return customize.wait_for_job_task(clients, adopted.job_arn, timeout_s=60).status

    assert poll() == "Completed"
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    # filtered on the server: an unfiltered read returns one page, which a long suite's artifacts overflow
    only_ours = ArtifactFilter(key=ArtifactFilterKey(like_="job-progress-" + s.names.job))
    with get_client(sync_client=True) as c:
        arts = [a for a in c.read_artifacts(artifact_filter=only_ours)
                if (a.key or "").startswith("job-progress-" + s.names.job)]
    assert arts and arts[-1].type == "progress" and float(arts[-1].data) == 100.0


def test_permanent_error_fails_fast_with_the_service_message(fresh_env, tmp_path, monkeypatch):
    s = set_up_run(tmp_path)
    monkeypatch.setattr(customize, "ROLE_WAIT_S", 0.0)
    missing = s.role_arn.rsplit("/", 1)[0] + "/no-such-role"
    with pytest.raises(aws_errors.StageError) as exc:
        customize.start_job(s.clients, s.config, s.names, missing, s.uploaded, s.tags)
    assert "Could not assume the provided role" in str(exc.value) and "Traceback" not in str(exc.value)
    assert len(creates(fresh_env.ledger())) == 1


def test_new_role_not_yet_assumable_is_retried_until_it_is(fresh_env, tmp_path):
    s = set_up_run(tmp_path)
    late_role = s.role_arn.rsplit("/", 1)[0] + "/late-role"
    calls = {"n": 0}

    def sleep(_):   # the role appears while we back off
        calls["n"] += 1
        if calls["n"] == 2:
            iam_client = s.clients.iam
            iam_client.create_role(RoleName="late-role", AssumeRolePolicyDocument=json.dumps(
                iam.trust_policy(s.account, "us-east-1")))
            iam_client.put_role_policy(RoleName="late-role", PolicyName="p", PolicyDocument=json.dumps(
                iam.permission_policy(s.config, s.uploaded, s.account, "us-east-1")))

    customize._sleep, saved = sleep, customize._sleep
    try:
        job = customize.start_job(s.clients, s.config, s.names, late_role, s.uploaded, s.tags)
    finally:
        customize._sleep = saved
    assert job.job_name == s.names.job and calls["n"] >= 2


def test_failed_job_needs_an_explicit_rerun_then_gets_a_new_attempt(fresh_env, tmp_path):
    s = set_up_run(tmp_path)
    fresh_env.set_faults([{"operation": "CreateModelCustomizationJob", "job_outcome": "Failed", "count": 1}])
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    fresh_env.set_faults([])
    with pytest.raises(customize.JobFailed, match="failed: .+") as failed:
        customize.wait_for_job(s.clients, job.job_arn, timeout_s=60, initial_interval_s=0.2)
    assert "forge rerun" in str(failed.value)
    with pytest.raises(customize.JobNeedsRerun, match="ended Failed.*forge rerun RUN_ID --from customize"):
        customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    second = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags, rerun=True)
    assert second.attempt == 2 and second.job_name == s.names.job + "-a2" and not second.adopted
    assert customize.wait_for_job(s.clients, second.job_arn, timeout_s=60, initial_interval_s=0.2).status == "Completed"
    again = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags, rerun=True)
    assert again.adopted and again.attempt == 2      # a rerun adopts the completed attempt
    assert len([c for c in creates(fresh_env.ledger()) if c["status"] < 300]) == 2


def _stuck_jobs(s: Stage, env, n: int) -> list[str]:
    """n other managed jobs that never finish (they hold the emulator's 2-job quota)."""
    env.set_faults([{"operation": "CreateModelCustomizationJob", "job_outcome": "Stuck", "count": n}])
    arns = []
    for i in range(n):
        other = s.names.model_copy(update={"job": f"{s.names.job}-x{i}", "custom_model": f"{s.names.custom_model}-x{i}",
                                           "job_token": f"{s.names.job_token}-x{i}"})
        arns.append(customize.start_job(s.clients, s.config, other, s.role_arn, s.uploaded, s.tags).job_arn)
    env.set_faults([])
    return arns


def test_quota_full_fails_clearly_or_waits_for_a_slot(fresh_env, tmp_path):
    s = set_up_run(tmp_path, job={"on_quota_full": "fail"})
    blockers = _stuck_jobs(s, fresh_env, 2)
    with pytest.raises(aws_errors.QuotaExceeded, match="quota is full.*Service Quotas.*on_quota_full: wait"):
        customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)

    waiting = s.config.model_copy(update={"job": s.config.job.model_copy(update={"on_quota_full": "wait",
                                                                                "quota_wait_minutes": 5})})
    slept = []

    def sleep(seconds):   # a slot frees up while we wait
        slept.append(seconds)
        if len(slept) == 2:
            customize.stop_job(s.clients, blockers[0])
            time.sleep(0.2)   # Stopping -> Stopped on the virtual clock

    customize._sleep, saved = sleep, customize._sleep
    try:
        job = customize.start_job(s.clients, waiting, s.names, s.role_arn, s.uploaded, s.tags)
    finally:
        customize._sleep = saved
    assert job.job_name == s.names.job and len(slept) >= 2
    customize.stop_job(s.clients, blockers[1])


def test_cancellation_stops_only_the_jobs_of_that_flow_run(fresh_env, tmp_path):
    s = set_up_run(tmp_path, flow_run_id="run-to-cancel")
    fresh_env.set_faults([{"operation": "CreateModelCustomizationJob", "job_outcome": "Stuck", "count": 2}])
    mine = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    other_names = s.names.model_copy(update={"job": s.names.job + "-other",
                                             "custom_model": s.names.custom_model + "-other",
                                             "job_token": s.names.job_token + "-other"})
    theirs = customize.start_job(s.clients, s.config, other_names, s.role_arn, s.uploaded,
                                 {**s.tags, "forge-flow-run-id": "another-run"})
    assert customize.stop_jobs_of_flow_run(s.clients, "run-to-cancel") == [mine.job_arn]
    status = {a: s.clients.bedrock.get_model_customization_job(jobIdentifier=a)["status"]
              for a in (mine.job_arn, theirs.job_arn)}
    assert status[mine.job_arn] in ("Stopping", "Stopped") and status[theirs.job_arn] == "InProgress"
    assert customize.stop_jobs_of_flow_run(s.clients, "run-to-cancel") == []     # idempotent
    customize.stop_job(s.clients, theirs.job_arn)


def test_wait_timeout_leaves_the_job_running_unless_asked(fresh_env, tmp_path):
    s = set_up_run(tmp_path)
    fresh_env.set_faults([{"operation": "CreateModelCustomizationJob", "job_outcome": "Stuck", "count": 1}])
    job = customize.start_job(s.clients, s.config, s.names, s.role_arn, s.uploaded, s.tags)
    with pytest.raises(customize.JobTimeout, match="keeps running: rerun the flow to adopt it"):
        customize.wait_for_job(s.clients, job.job_arn, timeout_s=0.2, max_interval_s=0.05)
    assert s.clients.bedrock.get_model_customization_job(jobIdentifier=job.job_arn)["status"] == "InProgress"
    with pytest.raises(customize.JobTimeout, match="stopped it"):
        customize.wait_for_job(s.clients, job.job_arn, timeout_s=0.1, max_interval_s=0.05, stop_on_timeout=True)
    assert s.clients.bedrock.get_model_customization_job(jobIdentifier=job.job_arn)["status"] in ("Stopping", "Stopped")


def test_metric_files_are_read_from_either_validation_path(env, tmp_path):
    s = set_up_run(tmp_path)
    job_arn = f"arn:aws:bedrock:us-east-1:{s.account}:model-customization-job/{NOVA}/abcdefghijkl"
    bucket, train_key, (new_val, old_val) = customize.metric_keys(s.uploaded.output_uri, job_arn)
    assert train_key.endswith("/model-customization-job-abcdefghijkl/training_artifacts/step_wise_training_metrics.csv")
    s.clients.s3.put_object(Bucket=bucket, Key=train_key, Body=b"step_number,epoch_number,training_loss,perplexity\n"
                                                              b"0,0,2.5,12.1\n1,0,1.5,4.4\n")
    s.clients.s3.put_object(Bucket=bucket, Key=old_val, Body=b"step_number,epoch_number,validation_loss,perplexity\n"
                                                            b"1,0,1.7,5.4\n")
    train, val = customize.read_metrics(s.clients, s.uploaded.output_uri, job_arn)
    assert [r["training_loss"] for r in train] == [2.5, 1.5] and val == [
        {"step_number": 1, "epoch_number": 0, "validation_loss": 1.7, "perplexity": 5.4}]
    s.clients.s3.put_object(Bucket=bucket, Key=new_val, Body=b"step_number,epoch_number,validation_loss,perplexity\n"
                                                            b"1,0,1.2,3.3\n")
    assert customize.read_metrics(s.clients, s.uploaded.output_uri, job_arn)[1][0]["validation_loss"] == 1.2


# -- start_from: champion (issue 19): where the job starts ----------------------------------------------------
_ACCT = "123456789012"
_FM = "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k"


def _cm(i: int) -> str:
    return f"arn:aws:bedrock:us-east-1:{_ACCT}:custom-model/amazon.nova-micro-v1:0:128k/{i:012d}"


class _Models:
    """GetCustomModel over a table ARN -> (baseModelArn, modelStatus); anything else is ResourceNotFound."""

    def __init__(self, table: dict[str, tuple[str, str]]):
        self.table, self.calls = table, 0

    def get_custom_model(self, modelIdentifier: str) -> dict:
        from botocore.exceptions import ClientError

        self.calls += 1
        if modelIdentifier not in self.table:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no such model"}},
                              "GetCustomModel")
        base, status = self.table[modelIdentifier]
        return {"modelArn": modelIdentifier, "baseModelArn": base, "modelStatus": status}


def _start(table, champion_arn: str | None, **over):
    from types import SimpleNamespace

    from tasks.registry import Champion

    cfg = make_config("cont", **{"start_from": "champion", **over})
    clients = SimpleNamespace(bedrock=_Models(table))
    champ = Champion(run_id="week1", custom_model_arn=champion_arn) if champion_arn else None
    return customize.resolve_start(clients, cfg, champ), clients.bedrock


@pytest.mark.parametrize("label, table, champion, expect", [
    ("no champion yet: the base model", {}, None, "amazon.nova-micro-v1:0:128k"),
    ("the champion", {_cm(1): (_FM, "Active")}, _cm(1), _cm(1)),
    ("a champion that continued a custom model", {_cm(2): (_cm(1), "Active"), _cm(1): (_FM, "Active")}, _cm(2),
     _cm(2)),
])
def test_resolve_start_finds_where_the_job_starts(label, table, champion, expect):
    start, _ = _start(table, champion)
    assert start.model == expect, label
    assert start.continues == (champion is not None)


@pytest.mark.parametrize("label, table, champion, needle", [
    ("the champion was deleted", {}, _cm(1), "does not have"),
    ("the champion is not Active", {_cm(1): (_FM, "Failed")}, _cm(1), "not Active"),
    ("another foundation model", {_cm(1): ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0:300k",
                                           "Active")}, _cm(1), "base_model: amazon.nova-lite-v1:0:300k"),
    ("a chain ending elsewhere", {_cm(2): (_cm(1), "Active"),
                                  _cm(1): ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0:300k",
                                           "Active")}, _cm(2), "amazon.nova-pro-v1:0:300k"),
])
def test_resolve_start_refuses_a_champion_it_cannot_continue(label, table, champion, needle):
    with pytest.raises(customize.StageError) as err:
        _start(table, champion)
    assert needle in str(err.value) and "start_from: base" in str(err.value), (label, str(err.value))


def test_start_from_base_asks_aws_nothing_and_the_job_request_names_the_start():
    start, bedrock = _start({_cm(1): (_FM, "Active")}, _cm(1), start_from="base")
    assert start.model == "amazon.nova-micro-v1:0:128k" and not start.continues and bedrock.calls == 0
    cfg = make_config("cont", start_from="champion")
    names = run_names.resource_names(cfg, "k" * 12, account=_ACCT)
    up = UploadedData(bucket="b-b-b", train_uri="s3://b-b-b/p/data/x/train.jsonl", output_uri="s3://b-b-b/p/out/k/",
                      input_prefix="p/data/x/", output_prefix="p/out/k/")
    req = customize.build_job_request(cfg, names, "arn:aws:iam::1:role/r", up, {}, start_model=_cm(1))
    assert req["baseModelIdentifier"] == _cm(1)
    assert customize.build_job_request(cfg, names, "arn:aws:iam::1:role/r", up, {})["baseModelIdentifier"] == \
        "amazon.nova-micro-v1:0:128k"


@pytest.mark.parametrize("ctype, extra", [
    ("DISTILLATION", {"distillation": {"teacher_model": "amazon.nova-pro-v1:0"}}),
])
def test_start_from_champion_is_refused_for_types_bedrock_cannot_continue(ctype, extra):
    from tasks.config import ConfigError, parse_config

    raw = {"name": "cont", "base_model": NOVA, "data": {"source": "d.jsonl"}, "customization_type": ctype,
           "start_from": "champion", **extra}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "cfg.yaml")
    assert "start_from" in str(err.value) and "FINE_TUNING or CONTINUED_PRE_TRAINING" in str(err.value)
