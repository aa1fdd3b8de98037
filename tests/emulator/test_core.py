"""The emulator's Bedrock control plane and runtime, through real boto3 clients (botocore parses every
response, so a wrong wire shape fails here). Speeds are high so lifecycles take milliseconds."""

from __future__ import annotations

import csv
import io
import json

import pytest
from botocore.exceptions import ClientError

from emulator.testing import boto3_clients, running_emulator
from tests.support.emulator import BASE, PROFILE, SPEED, code_of, job_request, nova_records, prepare, wait


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """One emulator for the module's tests that share state (``fresh`` in conftest.py is a private one)."""
    with running_emulator(speed=SPEED, state_dir=tmp_path_factory.mktemp("emu-core")) as h:
        yield h


@pytest.fixture(scope="module")
def c(emu):
    return boto3_clients(emu.url)


@pytest.fixture(scope="module")
def done_job(c):
    inp = prepare(c)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Completed", job.get("failureMessage")
    return {"inp": inp, "arn": arn, "job": job, "model_arn": job["outputModelArn"]}


# -- jobs ------------------------------------------------------------------------------------
def test_job_runs_through_substatuses_to_completed_and_creates_the_custom_model(c, done_job):
    job, inp = done_job["job"], done_job["inp"]
    assert job["jobName"] == f"job-{inp['uid']}" and job["outputModelName"] == f"model-{inp['uid']}"
    assert job["jobArn"].startswith(f"arn:aws:bedrock:us-east-1:{c.sts.get_caller_identity()['Account']}:"
                                    f"model-customization-job/{BASE}/")
    assert [job["statusDetails"][k]["status"] for k in ("validationDetails", "dataProcessingDetails",
                                                         "trainingDetails")] == ["Completed"] * 3
    assert job["endTime"] > job["creationTime"]
    assert job["trainingMetrics"]["trainingLoss"] > 0 and len(job["validationMetrics"]) == 1
    assert job["hyperParameters"] == {"epochCount": "2", "learningRate": "0.00001"}
    model = c.bedrock.get_custom_model(modelIdentifier=f"model-{inp['uid']}")
    assert model["modelArn"] == done_job["model_arn"] and model["modelStatus"] == "Active"
    assert model["jobArn"] == done_job["arn"] and model["baseModelArn"].endswith(f"foundation-model/{BASE}")
    assert c.bedrock.get_custom_model(modelIdentifier=done_job["model_arn"])["modelName"] == f"model-{inp['uid']}"


def test_a_running_job_reports_its_current_substatus(tmp_path):
    with running_emulator(speed=1.0, state_dir=tmp_path) as h:
        c = boto3_clients(h.url)
        inp = prepare(c)
        arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
        job = c.bedrock.get_model_customization_job(jobIdentifier=arn)
        assert job["status"] == "InProgress" and "outputModelArn" not in job
        sd = job["statusDetails"]
        assert sd["validationDetails"]["status"] == "InProgress"
        assert sd["dataProcessingDetails"]["status"] == sd["trainingDetails"]["status"] == "NotStarted"
        summary = c.bedrock.list_model_customization_jobs(statusEquals="InProgress")["modelCustomizationJobSummaries"]
        assert [s["jobArn"] for s in summary] == [arn]


def test_completed_job_writes_metric_files_where_aws_does(c, done_job):
    inp = done_job["inp"]
    job_id = done_job["arn"].rsplit("/", 1)[1]
    assert len(job_id) == 12
    prefix = f"out/model-customization-job-{job_id}/"   # docs/bedrock-facts.md §6
    train = c.s3.get_object(Bucket=inp["bucket"], Key=prefix + "training_artifacts/step_wise_training_metrics.csv")
    rows = list(csv.DictReader(io.StringIO(train["Body"].read().decode())))
    assert rows and {"step_number", "epoch_number", "training_loss", "perplexity"} <= set(rows[0])
    val = c.s3.get_object(Bucket=inp["bucket"],
                          Key=prefix + "validation_artifacts/post_fine_tuning_validation/validation_metrics.csv")
    vtext = val["Body"].read()
    vrows = list(csv.DictReader(io.StringIO(vtext.decode())))
    assert vrows and "validation_loss" in vrows[0]
    # every known reader's path holds the same file (AWS's Nova and Llama samples; the real path is unconfirmed)
    for key in ("validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv",
                "validation_artifacts/validation_metrics.csv"):
        assert c.s3.get_object(Bucket=inp["bucket"], Key=prefix + key)["Body"].read() == vtext


def test_list_jobs_filters_sorts_and_pages(c, done_job):
    name = done_job["job"]["jobName"]
    got = c.bedrock.list_model_customization_jobs(nameContains=name, statusEquals="Completed")
    s = got["modelCustomizationJobSummaries"]
    assert [x["jobName"] for x in s] == [name] and s[0]["customModelArn"] == done_job["model_arn"]
    assert c.bedrock.list_model_customization_jobs(nameContains=name, statusEquals="Failed")[
        "modelCustomizationJobSummaries"] == []
    inp = prepare(c)
    c.bedrock.create_model_customization_job(**job_request(inp))
    pages = c.bedrock.get_paginator("list_model_customization_jobs").paginate(
        PaginationConfig={"PageSize": 1}, sortOrder="Ascending")
    names = [x["jobName"] for p in pages for x in p["modelCustomizationJobSummaries"]]
    assert len(names) >= 2 and len(set(names)) == len(names)
    assert names.index(name) < names.index(f"job-{inp['uid']}")


@pytest.mark.parametrize("over, field", [
    ({"jobName": "bad_name"}, "jobName"),
    ({"customModelName": "model.v1"}, "customModelName"),
    ({"customizationType": "FINETUNE"}, "customizationType"),
    ({"trainingDataConfig": {"s3Uri": "s3://Bad_Bucket/x.jsonl"}}, "trainingDataConfig.s3Uri"),
    ({"outputDataConfig": {"s3Uri": "s3://bucket-ok/has space/"}}, "outputDataConfig.s3Uri"),
    ({"hyperParameters": {"epochCount": "9"}}, "epochCount"),
    ({"hyperParameters": {"epochs": "2"}}, "epochs"),
    ({"baseModelIdentifier": "amazon.nova-micro-v1:0"}, "amazon.nova-micro-v1:0:128k"),
    ({"jobTags": [{"key": "bad#key", "value": "v"}]}, "jobTags"),
])
def test_create_job_rejects_what_botocore_lets_through(c, over, field):
    inp = prepare(c)
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_model_customization_job(**job_request(inp, **over))
    assert code_of(exc) == ("ValidationException", 400)
    assert field in exc.value.response["Error"]["Message"]


def test_duplicate_job_name_is_rejected_and_a_token_makes_create_idempotent(c):
    inp = prepare(c)
    req = job_request(inp, clientRequestToken=f"tok-{inp['uid']}")
    arn = c.bedrock.create_model_customization_job(**req)["jobArn"]
    assert c.bedrock.create_model_customization_job(**req)["jobArn"] == arn        # same token + params
    with pytest.raises(ClientError) as exc:                                         # same token, new params
        c.bedrock.create_model_customization_job(**{**req, "hyperParameters": {"epochCount": "3"}})
    assert code_of(exc) == ("ConflictException", 400)
    assert "clientRequestToken" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:                                         # new token, same name
        c.bedrock.create_model_customization_job(**{**req, "clientRequestToken": f"other-{inp['uid']}"})
    assert code_of(exc)[0] == "ValidationException" and "already exists" in exc.value.response["Error"]["Message"]
    jobs = c.bedrock.list_model_customization_jobs(nameContains=req["jobName"])["modelCustomizationJobSummaries"]
    assert len(jobs) == 1


def test_get_unknown_job_is_resource_not_found(c):
    with pytest.raises(ClientError) as exc:
        c.bedrock.get_model_customization_job(jobIdentifier="no-such-job")
    assert code_of(exc) == ("ResourceNotFoundException", 404)


# -- what Bedrock checks ----------------------------------------------------------------------
def test_bad_record_fails_the_job_naming_the_line(c):
    inp = prepare(c, train=nova_records(24, bad_line=3))
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Failed"
    assert "Line 3" in job["failureMessage"]
    assert job["statusDetails"]["validationDetails"]["status"] == "Failed"
    assert job["statusDetails"]["trainingDetails"]["status"] == "NotStarted"
    assert "outputModelArn" not in job


def test_role_without_read_access_fails_the_job(c):
    inp = prepare(c, get=False)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Failed"
    assert "s3:GetObject" in job["failureMessage"] and inp["role_arn"] in job["failureMessage"]


def test_missing_training_object_fails_the_job(c):
    inp = prepare(c, upload=False, val=None)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Failed" and "train.jsonl" in job["failureMessage"]


def test_role_without_write_access_fails_at_the_end_and_writes_nothing(c):
    inp = prepare(c, put=False)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Failed" and "s3:PutObject" in job["failureMessage"]
    assert c.s3.list_objects_v2(Bucket=inp["bucket"], Prefix="out/").get("KeyCount", 0) == 0


def test_role_that_is_missing_or_does_not_trust_bedrock_is_refused_at_create(c):
    inp = prepare(c, trust=False)
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_model_customization_job(**job_request(inp))
    assert code_of(exc) == ("AccessDeniedException", 403)
    assert "bedrock.amazonaws.com" in exc.value.response["Error"]["Message"]
    missing = inp["role_arn"].rsplit("/", 1)[0] + "/no-such-role"
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_model_customization_job(**job_request(inp, roleArn=missing))
    assert code_of(exc)[0] == "ValidationException" and "no-such-role" in exc.value.response["Error"]["Message"]


# -- quotas, stop -----------------------------------------------------------------------------
def test_at_most_two_jobs_in_progress_and_stop_frees_a_slot(fresh):
    h, c = fresh
    h.set_faults([{"job_outcome": "Stuck"}])
    inp = prepare(c)
    a = c.bedrock.create_model_customization_job(**job_request(inp, jobName="j1", customModelName="m1"))["jobArn"]
    c.bedrock.create_model_customization_job(**job_request(inp, jobName="j2", customModelName="m2"))
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_model_customization_job(**job_request(inp, jobName="j3", customModelName="m3"))
    assert code_of(exc) == ("ServiceQuotaExceededException", 400)
    c.bedrock.stop_model_customization_job(jobIdentifier="j1")
    assert c.bedrock.get_model_customization_job(jobIdentifier=a)["status"] in ("Stopping", "Stopped")
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=a), {"Stopped"})
    assert "outputModelArn" not in job
    with pytest.raises(ClientError) as exc:
        c.bedrock.stop_model_customization_job(jobIdentifier=a)
    assert code_of(exc)[0] == "ConflictException"
    h.set_faults([])
    c.bedrock.create_model_customization_job(**job_request(inp, jobName="j3", customModelName="m3"))


def test_no_commitment_throughput_quota(fresh):
    _h, c = fresh
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_provisioned_model_throughput(modelUnits=2, provisionedModelName="pt0", modelId=BASE)
    assert code_of(exc)[0] == "ValidationException" and "modelUnits" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt0", modelId=BASE,
                                                      commitmentDuration="OneMonth")
    assert code_of(exc)[0] == "ServiceQuotaExceededException"
    c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt1", modelId=BASE)
    c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt2", modelId=BASE)
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt3", modelId=BASE)
    assert code_of(exc) == ("ServiceQuotaExceededException", 400)
    c.bedrock.delete_provisioned_model_throughput(provisionedModelId="pt1")
    c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt3", modelId=BASE)


# -- custom models, provisioned throughput, deployments ----------------------------------------
def test_provisioned_throughput_lifecycle_idempotency_update_and_delete(c, done_job):
    model_arn, uid = done_job["model_arn"], done_job["inp"]["uid"]
    name = f"pt-{uid}"
    req = dict(modelUnits=1, provisionedModelName=name, modelId=model_arn, clientRequestToken=f"pt-{uid}",
               tags=[{"key": "managed-by", "value": "bedrock-forge"}])
    arn = c.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"]
    assert c.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"] == arn
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_provisioned_model_throughput(**{**req, "clientRequestToken": f"pt2-{uid}"})
    assert code_of(exc)[0] == "ValidationException" and "already exists" in exc.value.response["Error"]["Message"]
    pt = wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=arn), {"InService", "Failed"})
    assert pt["status"] == "InService" and pt["modelArn"] == model_arn and pt["modelUnits"] == 1
    assert pt["foundationModelArn"].endswith(BASE)
    listed = c.bedrock.list_provisioned_model_throughputs(nameContains=name)["provisionedModelSummaries"]
    assert [p["provisionedModelArn"] for p in listed] == [arn]
    c.bedrock.update_provisioned_model_throughput(provisionedModelId=arn, desiredProvisionedModelName=f"{name}-b")
    assert c.bedrock.get_provisioned_model_throughput(provisionedModelId=f"{name}-b")["provisionedModelArn"] == arn
    with pytest.raises(ClientError) as exc:
        c.bedrock.delete_custom_model(modelIdentifier=model_arn)          # in use by the PT
    assert code_of(exc)[0] == "ConflictException"
    c.bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
    with pytest.raises(ClientError) as exc:
        c.bedrock.get_provisioned_model_throughput(provisionedModelId=arn)
    assert code_of(exc) == ("ResourceNotFoundException", 404)


def test_custom_model_deployment_lifecycle(c, done_job):
    model_arn, uid = done_job["model_arn"], done_job["inp"]["uid"]
    req = dict(modelDeploymentName=f"dep-{uid}", modelArn=model_arn, description="emulator test",
               clientRequestToken=f"dep-{uid}")
    arn = c.bedrock.create_custom_model_deployment(**req)["customModelDeploymentArn"]
    assert c.bedrock.create_custom_model_deployment(**req)["customModelDeploymentArn"] == arn
    d = wait(lambda: c.bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=arn), {"Active", "Failed"})
    assert d["status"] == "Active" and d["modelDeploymentName"] == f"dep-{uid}" and d["modelArn"] == model_arn
    s = c.bedrock.list_custom_model_deployments(nameContains=f"dep-{uid}")["modelDeploymentSummaries"]
    assert s[0]["customModelDeploymentName"] == f"dep-{uid}"      # docs/bedrock-facts.md §2.8: list uses this key
    out = c.runtime.converse(modelId=arn, messages=[{"role": "user", "content": [{"text": "question number 1"}]}],
                             inferenceConfig={"maxTokens": 16})
    assert out["output"]["message"]["content"][0]["text"]
    c.bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)
    assert c.bedrock.list_custom_model_deployments(nameContains=f"dep-{uid}")["modelDeploymentSummaries"] == []


def test_deployment_of_a_model_without_on_demand_support_is_refused(fresh):
    _h, c = fresh
    with pytest.raises(ClientError) as exc:
        c.bedrock.create_custom_model_deployment(
            modelDeploymentName="d1", modelArn="arn:aws:bedrock:us-east-1:123456789012:custom-model/x.y/abcdefabcdef")
    assert code_of(exc) == ("ResourceNotFoundException", 404)


def test_list_and_delete_custom_models(fresh):
    h, c = fresh
    inp = prepare(c)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    model_arn = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed"})["outputModelArn"]
    models = c.bedrock.list_custom_models(modelStatus="Active")["modelSummaries"]
    assert [m["modelArn"] for m in models] == [model_arn]
    assert models[0]["baseModelArn"].endswith(BASE) and models[0]["customizationType"] == "FINE_TUNING"
    c.bedrock.delete_custom_model(modelIdentifier=model_arn)
    assert c.bedrock.list_custom_models()["modelSummaries"] == []
    with pytest.raises(ClientError) as exc:
        c.bedrock.delete_custom_model(modelIdentifier=model_arn)
    assert code_of(exc) == ("ResourceNotFoundException", 404)


# -- tags, foundation models --------------------------------------------------------------------
def test_tags_on_jobs_and_models(c, done_job):
    arn, model_arn = done_job["arn"], done_job["model_arn"]
    c.bedrock.tag_resource(resourceARN=arn, tags=[{"key": "forge-run-key", "value": "abc123"}])
    c.bedrock.tag_resource(resourceARN=model_arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    c.bedrock.untag_resource(resourceARN=model_arn, tagKeys=["a"])
    assert c.bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "forge-run-key", "value": "abc123"}]
    assert c.bedrock.list_tags_for_resource(resourceARN=model_arn)["tags"] == [{"key": "b", "value": "2"}]
    with pytest.raises(ClientError) as exc:
        c.bedrock.tag_resource(resourceARN=arn, tags=[{"key": f"k{i}", "value": "v"} for i in range(60)])
    assert code_of(exc)[0] == "TooManyTagsException"
    with pytest.raises(ClientError) as exc:
        c.bedrock.list_tags_for_resource(resourceARN=arn[:-12] + "zzzzzzzzzzzz")
    assert code_of(exc) == ("ResourceNotFoundException", 404)


def test_job_tags_from_create_are_listed(c):
    inp = prepare(c)
    arn = c.bedrock.create_model_customization_job(**job_request(
        inp, jobTags=[{"key": "managed-by", "value": "bedrock-forge"}]))["jobArn"]
    assert c.bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == \
        [{"key": "managed-by", "value": "bedrock-forge"}]


def test_foundation_models(c):
    ft = c.bedrock.list_foundation_models(byCustomizationType="FINE_TUNING")["modelSummaries"]
    ids = {m["modelId"] for m in ft}
    assert BASE in ids and all("FINE_TUNING" in m["customizationsSupported"] for m in ft)
    d = c.bedrock.get_foundation_model(modelIdentifier=BASE)["modelDetails"]
    assert d["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{BASE}"
    assert c.bedrock.get_foundation_model(modelIdentifier=d["modelArn"])["modelDetails"]["modelId"] == BASE
    with pytest.raises(ClientError) as exc:
        c.bedrock.get_foundation_model(modelIdentifier="amazon.nothing-v9:0")
    assert code_of(exc) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        c.bedrock.list_foundation_models(byInferenceType="SOMETIMES")
    assert code_of(exc)[0] == "ValidationException"


# -- runtime ----------------------------------------------------------------------------------
NOVA_BODY = {"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "question number 2"}]}],
             "inferenceConfig": {"maxTokens": 20}}


def test_invoke_base_model_through_its_inference_profile(c):
    out = json.loads(c.runtime.invoke_model(modelId=PROFILE, body=json.dumps(NOVA_BODY))["body"].read())
    assert out["output"]["message"]["content"][0]["text"]
    conv = c.runtime.converse(modelId=PROFILE, messages=NOVA_BODY["messages"], inferenceConfig={"maxTokens": 20})
    assert conv["usage"]["totalTokens"] == conv["usage"]["inputTokens"] + conv["usage"]["outputTokens"]
    assert conv["stopReason"] in ("end_turn", "max_tokens")


def test_invoke_errors_like_aws(c, done_job):
    # docs/bedrock-facts.md §3: the custom model ARN is not an on-demand target
    with pytest.raises(ClientError) as exc:
        c.runtime.invoke_model(modelId=done_job["model_arn"], body=json.dumps(NOVA_BODY))
    assert code_of(exc) == ("ValidationException", 400)
    assert "Provisioned Throughput" in exc.value.response["Error"]["Message"]
    # Issue "Today's Bedrock": Nova works directly in us-east-1 (the old "Nova needs a profile" rule was the
    # emulator's invention); a Llama 3.x base id is served on demand only through a us. profile (emulator/facts).
    out = c.runtime.invoke_model(modelId="amazon.nova-micro-v1:0", body=json.dumps(NOVA_BODY))
    assert json.loads(out["body"].read())["output"]["message"]["content"][0]["text"]
    with pytest.raises(ClientError) as exc:
        c.runtime.invoke_model(modelId="meta.llama3-1-8b-instruct-v1:0", body=json.dumps({"prompt": "hi"}))
    assert code_of(exc)[0] == "ValidationException" and "inference profile" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        c.runtime.invoke_model(modelId=PROFILE, body=b"{not json")
    assert code_of(exc)[0] == "ValidationException"
    with pytest.raises(ClientError) as exc:
        c.runtime.invoke_model(modelId="vendor.unknown-model-v1:0", body=json.dumps(NOVA_BODY))
    assert code_of(exc)[0] == "ValidationException"


def test_invoke_needs_the_throughput_in_service(tmp_path):
    with running_emulator(speed=1.0, state_dir=tmp_path) as h:
        c = boto3_clients(h.url)
        arn = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="slow",
                                                            modelId=BASE)["provisionedModelArn"]
        assert c.bedrock.get_provisioned_model_throughput(provisionedModelId=arn)["status"] == "Creating"
        with pytest.raises(ClientError) as exc:
            c.runtime.invoke_model(modelId=arn, body=json.dumps(NOVA_BODY))
        assert code_of(exc)[0] == "ValidationException" and "InService" in exc.value.response["Error"]["Message"]


def test_custom_model_behind_provisioned_throughput_answers_from_its_training_data(c, done_job):
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1,
                                                       provisionedModelName=f"inv-{done_job['inp']['uid']}",
                                                       modelId=done_job["model_arn"])["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    body = {**NOVA_BODY, "system": [{"text": "Answer with the label."}],
            "messages": [{"role": "user", "content": [{"text": "question number 5 about topic 1"}]}]}
    resp = c.runtime.invoke_model(modelId=pt, body=json.dumps(body))
    out = json.loads(resp["body"].read())
    assert out["output"]["message"]["content"][0]["text"].strip() == "label-1"
    base = json.loads(c.runtime.invoke_model(modelId=PROFILE, body=json.dumps(body))["body"].read())
    assert base["output"]["message"]["content"][0]["text"].strip() != "label-1"
    c.bedrock.delete_provisioned_model_throughput(provisionedModelId=pt)


def test_a_token_whose_throughput_was_deleted_creates_a_new_one(fresh):
    _h, c = fresh
    req = dict(modelUnits=1, provisionedModelName="again", modelId=BASE, clientRequestToken="pt-token-1")
    first = c.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"]
    c.bedrock.delete_provisioned_model_throughput(provisionedModelId=first)
    second = c.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"]
    assert second != first
    assert c.bedrock.get_provisioned_model_throughput(provisionedModelId=second)["status"] in ("Creating", "InService")


def test_every_response_has_the_required_members_of_its_botocore_output_shape(fresh):
    """botocore parses leniently; validate each parsed response against the service model's output shape."""
    from botocore.validate import ParamValidator

    h, c = fresh
    problems: list[str] = []
    checked: set[str] = set()

    def check(http_response, parsed, model, **_kw):
        if model.output_shape is None or http_response.status_code >= 300:
            return
        checked.add(model.name)
        body = {k: v for k, v in parsed.items() if k != "ResponseMetadata"}
        if model.name == "InvokeModel":
            body["body"] = b""      # a stream after parsing
        report = ParamValidator().validate(body, model.output_shape)
        if report.has_errors():
            problems.append(f"{model.name}: {report.generate_report()}")

    for client in (c.bedrock, c.runtime):
        client.meta.events.register("after-call.*.*", check)
    inp = prepare(c)
    arn = c.bedrock.create_model_customization_job(**job_request(inp, jobTags=[{"key": "k", "value": "v"}]))["jobArn"]
    c.bedrock.get_model_customization_job(jobIdentifier=arn)
    c.bedrock.list_model_customization_jobs()
    model = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed"})["outputModelArn"]
    c.bedrock.list_model_customization_jobs()
    c.bedrock.get_custom_model(modelIdentifier=model)
    c.bedrock.list_custom_models()
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="shape",
                                                       modelId=model)["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    c.bedrock.list_provisioned_model_throughputs()
    dep = c.bedrock.create_custom_model_deployment(modelDeploymentName="shape",
                                                   modelArn=model)["customModelDeploymentArn"]
    wait(lambda: c.bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=dep), {"Active"})
    c.bedrock.list_custom_model_deployments()
    c.bedrock.list_foundation_models()
    c.bedrock.get_foundation_model(modelIdentifier=BASE)
    c.bedrock.list_tags_for_resource(resourceARN=arn)
    c.runtime.converse(modelId=PROFILE, messages=NOVA_BODY["messages"])
    c.runtime.invoke_model(modelId=PROFILE, body=json.dumps(NOVA_BODY))
    c.bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=dep)
    c.bedrock.delete_provisioned_model_throughput(provisionedModelId=pt)
    c.bedrock.delete_custom_model(modelIdentifier=model)
    assert problems == []
    assert len(checked) >= 15, checked


def test_access_granted_by_an_attached_managed_policy_counts(fresh):
    _h, c = fresh
    inp = prepare(c, get=False, put=False)
    pol = c.iam.create_policy(PolicyName=f"data-{inp['uid']}", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                                                 "Resource": f"arn:aws:s3:::{inp['bucket']}/*"}]}))["Policy"]["Arn"]
    c.iam.attach_role_policy(RoleName=inp["role_arn"].rsplit("/", 1)[1], PolicyArn=pol)
    arn = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    job = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Completed", job.get("failureMessage")


def test_update_throughput_to_another_custom_model(fresh):
    _h, c = fresh
    inp = prepare(c)
    models = []
    for n in (1, 2):
        req = job_request(inp, jobName=f"j{n}", customModelName=f"m{n}")
        arn = c.bedrock.create_model_customization_job(**req)["jobArn"]
        models.append(wait(lambda a=arn: c.bedrock.get_model_customization_job(jobIdentifier=a),
                           {"Completed"})["outputModelArn"])
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="swap",
                                                       modelId=models[0])["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    c.bedrock.update_provisioned_model_throughput(provisionedModelId=pt, desiredModelId=models[1])
    got = c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt)
    assert got["desiredModelArn"] == models[1] and got["status"] in ("Updating", "InService")
    got = wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    assert got["modelArn"] == models[1]
