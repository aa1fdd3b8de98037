"""The emulator as a service: faults, ledger, persistence across restarts, subprocess, routing, CLI."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from emulator.testing import boto3_clients, running_emulator, start_subprocess
from tests.support.emulator import BASE, SPEED, code_of, job_request, prepare, wait


# -- faults -----------------------------------------------------------------------------------
def test_throttling_fault_reaches_boto3_when_retries_are_off(private_emu):
    private_emu.set_faults([{"operation": "ListCustomModels", "error": "ThrottlingException", "count": 1}])
    c = boto3_clients(private_emu.url, max_attempts=1)
    with pytest.raises(ClientError) as exc:
        c.bedrock.list_custom_models()
    assert code_of(exc) == ("ThrottlingException", 429)
    assert c.bedrock.list_custom_models()["modelSummaries"] == []      # count=1: the next call passes
    c.bedrock.list_provisioned_model_throughputs()                      # other operations are untouched


def test_botocore_retries_ride_out_a_transient_5xx(private_emu):
    private_emu.set_faults([{"operation": "GetFoundationModel", "error": "ServiceUnavailableException", "count": 2}])
    c = boto3_clients(private_emu.url, max_attempts=3)
    assert c.bedrock.get_foundation_model(modelIdentifier=BASE)["modelDetails"]["modelId"] == BASE
    calls = [x for x in private_emu.ledger()["calls"] if x["operation"] == "GetFoundationModel"]
    assert [(x["status"], x["error"]) for x in calls] == [(503, "ServiceUnavailableException")] * 2 + [(200, None)]


def test_faults_apply_to_s3_iam_and_the_runtime(private_emu):
    c = boto3_clients(private_emu.url, max_attempts=1)
    private_emu.set_faults([{"operation": "PutObject", "error": "ThrottlingException", "count": 1},
                    {"operation": "CreateRole", "error": "ThrottlingException", "count": 1},
                    {"operation": "InvokeModel", "error": "InternalServerException", "count": 1}])
    c.s3.create_bucket(Bucket="faulty-bucket")
    with pytest.raises(ClientError) as exc:
        c.s3.put_object(Bucket="faulty-bucket", Key="k", Body=b"x")
    assert exc.value.response["Error"]["Code"] == "SlowDown"
    with pytest.raises(ClientError) as exc:
        c.iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    assert exc.value.response["Error"]["Code"] == "Throttling"
    with pytest.raises(ClientError) as exc:
        c.runtime.invoke_model(modelId="us.amazon.nova-micro-v1:0", body=b"{}")
    assert code_of(exc) == ("InternalServerException", 500)


def test_job_and_throughput_outcome_faults(private_emu):
    c = boto3_clients(private_emu.url)
    inp = prepare(c)
    private_emu.set_faults([{"job_outcome": "Failed", "count": 1}, {"pt_outcome": "Failed", "count": 1}])
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Failed" and job["failureMessage"]
    assert job["statusDetails"]["trainingDetails"]["status"] == "Failed"
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="p", modelId=BASE)
    got = wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt["provisionedModelArn"]),
               {"InService", "Failed"})
    assert got["status"] == "Failed" and got["failureMessage"]
    assert private_emu.ledger()["billing"]["pt_model_unit_seconds"] == 0      # a failed PT is not billed


def test_stuck_job_stays_in_progress_past_its_end(tmp_path):
    with running_emulator(speed=50000.0, state_dir=tmp_path, faults=[{"job_outcome": "Stuck"}]) as h:
        c = boto3_clients(h.url)
        arn = c.bedrock.create_model_customization_job(**job_request(prepare(c)))["jobArn"]
        time.sleep(0.3)     # > 4 virtual hours at this speed; a normal job of this size takes ~20 virtual minutes
        job = c.bedrock.get_model_customization_job(jobIdentifier=arn)
        assert job["status"] == "InProgress" and job["statusDetails"]["trainingDetails"]["status"] == "InProgress"


def test_bad_fault_rules_are_refused_with_a_reason(private_emu):
    req = urllib.request.Request(f"{private_emu.url}/_emulator/faults", data=json.dumps([{"error": "Nope"}]).encode(),
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    assert exc.value.code == 400 and "error" in json.loads(exc.value.read())["message"]


# -- ledger ------------------------------------------------------------------------------------
def test_ledger_records_calls_resources_history_tags_and_billing(private_emu):
    c = boto3_clients(private_emu.url)
    inp = prepare(c)
    arn = c.bedrock.create_model_customization_job(**job_request(
        inp, jobTags=[{"key": "forge-run-key", "value": "k1"}]))["jobArn"]
    model = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed"})["outputModelArn"]
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="led",
                                                       modelId=model)["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    c.bedrock.delete_provisioned_model_throughput(provisionedModelId=pt)
    led = private_emu.ledger()
    ops = {(x["service"], x["operation"], x["mutating"]) for x in led["calls"]}
    assert {("s3", "CreateBucket", True), ("s3", "PutObject", True), ("iam", "CreateRole", True),
            ("bedrock", "CreateModelCustomizationJob", True), ("bedrock", "GetModelCustomizationJob", False)} <= ops
    assert all({"t", "service", "operation", "mutating", "status", "error"} <= set(x) for x in led["calls"])
    job = led["resources"][arn]
    assert job["type"] == "model-customization-job" and job["tags"] == {"forge-run-key": "k1"}
    assert [h["state"] for h in job["history"]] == ["InProgress", "Completed"]
    assert [h["state"] for h in led["resources"][pt]["history"]] == ["Creating", "InService", "Deleted"]
    assert led["resources"][model]["state"] == "Active"
    b = led["billing"]
    assert b["pt_model_unit_seconds"] > 0 and b["training_token_epochs"] > 0 and b["deployment_seconds"] == 0
    frozen = private_emu.ledger()["billing"]["pt_model_unit_seconds"]
    assert frozen == b["pt_model_unit_seconds"]            # the deleted PT no longer accrues


# -- persistence -------------------------------------------------------------------------------
def test_restart_keeps_jobs_models_throughputs_objects_and_roles(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "s") as h:
        c = boto3_clients(h.url)
        inp = prepare(c)
        arn = c.bedrock.create_model_customization_job(**job_request(inp, clientRequestToken="tok1"))["jobArn"]
        model = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed"})["outputModelArn"]
        pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="keep",
                                                           modelId=model)["provisionedModelArn"]
        account = c.sts.get_caller_identity()["Account"]
        h.restart()
        c = boto3_clients(h.url)
        assert c.sts.get_caller_identity()["Account"] == account
        assert c.bedrock.get_model_customization_job(jobIdentifier=arn)["status"] == "Completed"
        assert c.bedrock.get_custom_model(modelIdentifier=model)["modelStatus"] == "Active"
        assert wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt),
                    {"InService"})["provisionedModelName"] == "keep"
        assert c.bedrock.create_model_customization_job(**job_request(inp, clientRequestToken="tok1"))["jobArn"] == arn
        assert c.s3.get_object(Bucket=inp["bucket"], Key="data/train.jsonl")["Body"].read()
        # the restored role still passes Bedrock's checks
        again = job_request(inp, jobName="again", customModelName="again")
        arn2 = c.bedrock.create_model_customization_job(**again)["jobArn"]
        assert wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn2), {"Completed", "Failed"})[
            "status"] == "Completed"


def test_reset_clears_everything(private_emu):
    c = boto3_clients(private_emu.url)
    inp = prepare(c)
    c.bedrock.create_model_customization_job(**job_request(inp))
    private_emu.reset()
    assert c.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"] == []
    assert c.s3.list_buckets()["Buckets"] == []
    assert private_emu.ledger()["calls"][-1]["operation"] == "ListBuckets"


def test_two_emulators_in_one_process_do_not_share_s3_or_iam(private_emu, tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "other") as other:
        a, b = boto3_clients(private_emu.url), boto3_clients(other.url)
        a.s3.create_bucket(Bucket="only-in-a")
        assert [x["Name"] for x in b.s3.list_buckets()["Buckets"]] == []
        for c in (a, b):                      # the same bucket name in both (global names per emulator)
            c.s3.create_bucket(Bucket="same-name-in-both")
            c.s3.put_object(Bucket="same-name-in-both", Key="k", Body=c.sts.get_caller_identity()["Account"].encode())
        assert a.s3.get_object(Bucket="same-name-in-both", Key="k")["Body"].read().decode() == \
            a.sts.get_caller_identity()["Account"]
        a.s3.delete_object(Bucket="same-name-in-both", Key="k")
        a.s3.delete_bucket(Bucket="same-name-in-both")
        assert b.s3.get_object(Bucket="same-name-in-both", Key="k")["Body"].read()
        assert a.sts.get_caller_identity()["Account"] != b.sts.get_caller_identity()["Account"]


# -- the service: subprocess, routing, CLI ----------------------------------------------------
def test_subprocess_serves_all_five_services_and_keeps_state_across_restart(tmp_path):
    h = start_subprocess(speed=SPEED, state_dir=tmp_path / "sub")
    try:
        assert h.health()["ok"]
        c = boto3_clients(h.url)
        c.s3.create_bucket(Bucket="sub-bucket")
        arn = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="subpt",
                                                            modelId=BASE)["provisionedModelArn"]
        port = h.port
        h.restart()
        assert h.port == port
        c = boto3_clients(h.url)
        assert c.bedrock.get_provisioned_model_throughput(provisionedModelId=arn)["provisionedModelName"] == "subpt"
        assert [x["Name"] for x in c.s3.list_buckets()["Buckets"]] == ["sub-bucket"]
        assert c.iam.list_roles()["Roles"] == [] and c.sts.get_caller_identity()["Account"]
    finally:
        h.terminate()


def test_unknown_bedrock_route_and_internal_endpoint_answer_404(private_emu):
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{private_emu.url}/_emulator/nothing")
    assert exc.value.code == 404


def test_forge_emulator_verb_is_registered_with_its_options():
    from forge.cli import build_parser
    args = build_parser().parse_args(["emulator", "--port", "0", "--speed", "50", "--state-dir", "/tmp/x",
                                      "--invoke-latency-ms", "20"])
    assert (args.port, args.speed, args.state_dir, args.invoke_latency_ms) == (0, 50.0, "/tmp/x", 20.0)


def test_a_bad_faults_file_is_reported_with_its_line(tmp_path, capsys):
    from emulator.server import serve
    bad = tmp_path / "faults.json"
    bad.write_text('[{"operation": "InvokeModel",\n "error": }]')
    assert serve(port=0, faults_file=str(bad)) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err


def test_one_aws_endpoint_url_reaches_all_five_services(private_emu, monkeypatch, tmp_path):
    import boto3
    for k, v in {"AWS_ENDPOINT_URL": private_emu.url, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    session = boto3.Session()
    s3 = session.client("s3")
    s3.create_bucket(Bucket="env-only")
    f = tmp_path / "train.jsonl"
    f.write_bytes(b'{"prompt": "a", "completion": "b"}\n' * 1000)
    s3.upload_file(str(f), "env-only", "data/train.jsonl")            # s3transfer, as the pipeline uploads
    assert s3.head_object(Bucket="env-only", Key="data/train.jsonl")["ContentLength"] == f.stat().st_size
    assert session.client("iam").list_roles()["Roles"] == []
    assert session.client("sts").get_caller_identity()["Account"] == private_emu.health()["account_id"]
    assert session.client("bedrock").list_custom_models()["modelSummaries"] == []
    out = session.client("bedrock-runtime").converse(
        modelId="us.amazon.nova-micro-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert out["output"]["message"]["role"] == "assistant"
    services = {x["service"] for x in private_emu.ledger()["calls"]}
    assert services == {"s3", "iam", "sts", "bedrock", "bedrock-runtime"}


def test_moto_mock_aws_in_the_same_process_does_not_wipe_a_running_emulator(private_emu):
    """Unit tests elsewhere use moto.mock_aws(), which resets every moto backend on start and stop."""
    import boto3
    from moto import mock_aws

    c = boto3_clients(private_emu.url)
    inp = prepare(c)
    assert c.sts.get_caller_identity()["Account"] != "123456789012"   # moto's default stays free for mock_aws
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        assert s3.list_buckets()["Buckets"] == []
        s3.create_bucket(Bucket=inp["bucket"])          # same name, other (mocked) account
        s3.put_object(Bucket=inp["bucket"], Key="data/train.jsonl", Body=b"mock")
    assert c.s3.get_object(Bucket=inp["bucket"], Key="data/train.jsonl")["Body"].read() != b"mock"
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]     # role + data still there
    assert wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})[
        "status"] == "Completed"
