"""Create-time checks from the emulator's own facts (issue 17): CreateModelCustomizationJob refuses a base model
outside its customization Regions (naming where it is customizable), past its end of life, with a customization type
it does not support, or a distillation teacher/student pair AWS does not offer; CreateProvisionedModelThroughput
refuses a LEGACY or EOL base model, CreateCustomModelDeployment an EOL one. Every refusal is a ValidationException
(400) through a real boto3 client, and creates nothing.

Facts: emulator/facts/models.yaml, emulator/facts/customization.yaml (sources in docs/emulator.md).
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from botocore.exceptions import ClientError

from emulator import datacheck
from emulator.facts import load_facts
from emulator.testing import boto3_clients
from tests.support.emulator import BASE, code_of, job_request, prepare, wait

EAST, WEST = "us-east-1", "us-west-2"
LLAMA31 = "meta.llama3-1-8b-instruct-v1:0:128k"
LLAMA32 = "meta.llama3-2-1b-instruct-v1:0:128k"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
NOVA_PRO = "amazon.nova-pro-v1:0:300k"


def _refused(fn, **kw) -> str:
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert code_of(e) == ("ValidationException", 400)
    return e.value.response["Error"]["Message"]


def _nothing_created(c) -> None:
    assert c.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"] == []
    assert c.bedrock.list_provisioned_model_throughputs()["provisionedModelSummaries"] == []


def _distill(inp: dict, teacher: str, student: str = BASE, **over) -> dict:
    return job_request(inp, baseModelIdentifier=student, customizationType="DISTILLATION", hyperParameters={},
                       customizationConfig={"distillationConfig": {"teacherModelConfig": {
                           "teacherModelIdentifier": teacher, "maxResponseLengthForInference": 1000}}}, **over)


# -- Regions -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("region, model, where", [
    (WEST, BASE, "us-east-1"),            # Nova fine-tuning: us-east-1 only
    (EAST, LLAMA31, "us-west-2"),         # Llama 3.1: us-west-2 only
    ("eu-west-1", LLAMA31, "us-west-2"),
])
def test_a_job_outside_the_models_customization_regions_names_where_it_is(private_emu, region, model, where):
    c = boto3_clients(private_emu.url, region=region)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    msg = _refused(c.bedrock.create_model_customization_job, **job_request(inp, baseModelIdentifier=model))
    assert f"not supported in {region}" in msg and f"supported in {where}" in msg, msg
    _nothing_created(c)


def test_the_same_model_in_its_own_region_is_accepted(private_emu):
    c = boto3_clients(private_emu.url, region=WEST)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    arn = c.bedrock.create_model_customization_job(**job_request(inp, baseModelIdentifier=LLAMA31,
                                                                 hyperParameters={"epochCount": "1"}))["jobArn"]
    assert arn.startswith("arn:aws:bedrock:us-west-2:")


# -- lifecycle ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model, eol", [(HAIKU, "2026-09-10"), (LLAMA32, "2026-07-07")])
def test_a_job_on_a_model_past_its_end_of_life_is_refused(private_emu, model, eol):
    c = boto3_clients(private_emu.url, region=WEST)     # both were customizable in us-west-2 only
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    hp = {"epochCount": "1"}
    msg = _refused(c.bedrock.create_model_customization_job, **job_request(inp, baseModelIdentifier=model,
                                                                           hyperParameters=hp))
    assert "reached the end of its life" in msg and eol in msg and "Choose an ACTIVE base model" in msg, msg
    assert LLAMA31 in msg or BASE in msg          # the fix names models that are still customizable
    _nothing_created(c)
    # in another Region the answer is the Region's, and it says the model is gone where it was customizable
    east = boto3_clients(private_emu.url, region=EAST)
    msg = _refused(east.bedrock.create_model_customization_job, **job_request(inp, baseModelIdentifier=model,
                                                                              hyperParameters=hp))
    assert "end of its life in us-west-2" in msg, msg


def _with_lifecycle(monkeypatch, model_id: str, **lifecycle) -> None:
    facts = load_facts()
    m = facts.models[model_id]
    monkeypatch.setitem(facts.models, model_id, m.model_copy(update={
        "modelLifecycle": m.modelLifecycle.model_copy(update=lifecycle)}))


def test_an_end_of_life_date_counts_from_the_day_after_it(monkeypatch):
    """An ACTIVE entry whose endOfLifeTime has passed is EOL; the day before, it is not."""
    _with_lifecycle(monkeypatch, LLAMA31, status="LEGACY", endOfLifeTime="2026-12-01")
    assert datacheck.lifecycle_status(LLAMA31, WEST, date(2026, 12, 1)) == ("LEGACY", "2026-12-01")
    assert datacheck.lifecycle_status(LLAMA31, WEST, date(2026, 12, 2))[0] == "EOL"
    assert datacheck.check_model_facts(LLAMA31, "FINE_TUNING", WEST, today=date(2026, 12, 1)) is None
    assert "end of its life" in datacheck.check_model_facts(LLAMA31, "FINE_TUNING", WEST, today=date(2026, 12, 2))


def test_a_region_override_beats_the_date():
    """Claude 3 Haiku is past 2026-09-10 in most Regions, still ACTIVE in ca-central-1, LEGACY in ap-northeast-2."""
    assert datacheck.lifecycle_status(HAIKU, "ca-central-1")[0] == "ACTIVE"
    assert datacheck.lifecycle_status(HAIKU, "ap-northeast-2")[0] == "LEGACY"
    assert datacheck.lifecycle_status(HAIKU, WEST)[0] == "EOL"


def test_a_legacy_model_still_trains(private_emu, monkeypatch):
    """LEGACY refuses a new PT, not a job (docs/emulator.md: AWS says customization 'might face restrictions')."""
    _with_lifecycle(monkeypatch, LLAMA31, status="LEGACY", endOfLifeTime="2099-01-01")
    c = boto3_clients(private_emu.url, region=WEST)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    c.bedrock.create_model_customization_job(**job_request(inp, baseModelIdentifier=LLAMA31,
                                                           hyperParameters={"epochCount": "1"}))


# -- customization type ------------------------------------------------------------------------------------
CONFIGS = {
    "DISTILLATION": {"distillationConfig": {"teacherModelConfig": {
        "teacherModelIdentifier": "us.meta.llama3-3-70b-instruct-v1:0"}}},
    "REINFORCEMENT_FINE_TUNING": {"rftConfig": {"graderConfig": {"lambdaGrader": {
        "lambdaArn": "arn:aws:lambda:us-west-2:123456789012:function:grader"}}}},
}


@pytest.mark.parametrize("model, ctype, region", [
    (BASE, "CONTINUED_PRE_TRAINING", EAST), (LLAMA31, "REINFORCEMENT_FINE_TUNING", WEST),
    (LLAMA32, "DISTILLATION", WEST),
])
def test_a_customization_type_the_model_does_not_support_is_refused(private_emu, model, ctype, region):
    c = boto3_clients(private_emu.url, region=region)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    cc = CONFIGS.get(ctype)
    req = job_request(inp, baseModelIdentifier=model, customizationType=ctype, hyperParameters={})
    if cc:
        req["customizationConfig"] = cc
    msg = _refused(c.bedrock.create_model_customization_job, **req)
    assert f"does not support customization type {ctype}" in msg and "Supported customization types" in msg, msg
    _nothing_created(c)


# -- distillation pairs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("region, teacher, student", [
    (EAST, "us.amazon.nova-pro-v1:0", BASE),
    (EAST, "amazon.nova-pro-v1:0", "amazon.nova-lite-v1:0:300k"),
    (EAST, "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0", BASE),
    (EAST, "us.amazon.nova-pro-v1:0", "amazon.nova-lite-v1:0:300k"),   # was Nova Premier -> Pro (Premier: EOL)
    (WEST, "us.meta.llama3-3-70b-instruct-v1:0", LLAMA31),
    (WEST, "us.meta.llama3-1-70b-instruct-v1:0", "meta.llama3-1-70b-instruct-v1:0:128k"),
])
def test_supported_distillation_pairs_are_accepted(private_emu, region, teacher, student):
    c = boto3_clients(private_emu.url, region=region)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    arn = c.bedrock.create_model_customization_job(**_distill(inp, teacher, student))["jobArn"]
    assert c.bedrock.get_model_customization_job(jobIdentifier=arn)["customizationType"] == "DISTILLATION"


@pytest.mark.parametrize("region, teacher, student, fragments", [
    (EAST, "us.amazon.nova-pro-v1:0", NOVA_PRO, ["does not support the student model", "amazon.nova-lite-v1:0:300k"]),
    (EAST, "amazon.nova-premier-v1:0", BASE, ["not supported for distillation", "through its inference profile",
                                              "us.amazon.nova-premier-v1:0", "end of its life (2026-09-14)"]),
    # Nova Premier model card: "Model EOL date: September 14, 2026"; its pairs stay, refused
    (EAST, "us.amazon.nova-premier-v1:0", NOVA_PRO, ["us.amazon.nova-premier-v1:0 has reached the end of its life "
                                                     "(2026-09-14)", f"teacher for {NOVA_PRO} in us-east-1: none"]),
    (EAST, "us.amazon.nova-premier-v1:0", BASE, ["has reached the end of its life (2026-09-14)",
                                                 "us.amazon.nova-pro-v1:0"]),
    (EAST, "us.meta.llama3-3-70b-instruct-v1:0", BASE, ["not supported for distillation in us-east-1",
                                                        "us.amazon.nova-pro-v1:0"]),
    (WEST, "us.meta.llama3-1-405b-instruct-v1:0", LLAMA31, ["has reached the end of its life",
                                                            "us.meta.llama3-3-70b-instruct-v1:0"]),
    (EAST, "anthropic.claude-3-5-sonnet-20241022-v2:0", BASE, ["has reached the end of its life"]),
])
def test_unsupported_distillation_pairs_are_refused_naming_the_supported_ones(private_emu, region, teacher, student,
                                                                              fragments):
    c = boto3_clients(private_emu.url, region=region)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    msg = _refused(c.bedrock.create_model_customization_job, **_distill(inp, teacher, student))
    for f in fragments:
        assert f in msg, (f, msg)
    assert "us.meta.llama3-1-405b" not in msg.split("Choose", 1)[-1] or "405b" in teacher   # never offered as a fix
    _nothing_created(c)


# -- serving a LEGACY / EOL model ------------------------------------------------------------------------------
@pytest.mark.parametrize("region, model, fragment", [
    (WEST, HAIKU, "reached the end of its life"),
    ("ap-northeast-2", HAIKU, "Legacy state"),
    (WEST, LLAMA32, "reached the end of its life"),
])
def test_a_new_pt_of_a_legacy_or_eol_base_model_is_refused(private_emu, region, model, fragment):
    c = boto3_clients(private_emu.url, region=region)
    msg = _refused(c.bedrock.create_provisioned_model_throughput, modelUnits=1, provisionedModelName="pt",
                   modelId=model)
    assert fragment in msg, msg
    _nothing_created(c)


def test_a_pt_of_an_active_region_of_the_same_model_is_accepted(private_emu):
    c = boto3_clients(private_emu.url, region="ca-central-1")     # Claude 3 Haiku is still ACTIVE there
    c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt", modelId=HAIKU)


def test_serving_a_custom_model_whose_base_went_legacy_then_eol(private_emu, monkeypatch):
    """A custom model trained while its base was ACTIVE: LEGACY refuses a new PT but not a deployment; EOL refuses
    both. A PT created before keeps serving."""
    c = boto3_clients(private_emu.url, region=EAST)
    inp = prepare(boto3_clients(private_emu.url, region=EAST))   # S3/IAM are the account's
    job = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    model = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=job), {"Completed"})["outputModelArn"]
    before = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="before",
                                                           modelId=model)["provisionedModelArn"]
    _with_lifecycle(monkeypatch, BASE, status="LEGACY", endOfLifeTime="2099-01-01")
    msg = _refused(c.bedrock.create_provisioned_model_throughput, modelUnits=1, provisionedModelName="after",
                   modelId=model)
    assert "Legacy state" in msg and BASE in msg, msg
    dep = c.bedrock.create_custom_model_deployment(modelDeploymentName="dep", modelArn=model)
    c.bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=dep["customModelDeploymentArn"])
    _with_lifecycle(monkeypatch, BASE, status="EOL", endOfLifeTime="2026-11-01")
    msg = _refused(c.bedrock.create_custom_model_deployment, modelDeploymentName="dep2", modelArn=model)
    assert "reached the end of its life" in msg, msg
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=before), {"InService"})
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    assert c.runtime.invoke_model(modelId=before, body=body)["ResponseMetadata"]["HTTPStatusCode"] == 200


# -- invoking a base model past its end of life ---------------------------------------------------------------
@pytest.mark.parametrize("region, model", [(EAST, "anthropic.claude-3-haiku-20240307-v1:0"),
                                           (WEST, "us.meta.llama3-2-1b-instruct-v1:0")])
def test_invoking_a_base_model_past_its_end_of_life_is_resource_not_found(private_emu, region, model):
    c = boto3_clients(private_emu.url, region=region, max_attempts=1)
    body = json.dumps({"prompt": "hi"} if "llama" in model else {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    for call in (lambda: c.runtime.invoke_model(modelId=model, body=body),
                 lambda: c.runtime.converse(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])):
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == ("ResourceNotFoundException", 404)
        assert "reached the end of its life" in e.value.response["Error"]["Message"]


def test_the_same_model_where_it_is_still_active_answers(private_emu):
    c = boto3_clients(private_emu.url, region="ca-central-1")     # Claude 3 Haiku: ACTIVE there
    out = c.runtime.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                             messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert out["output"]["message"]["content"][0]["text"]
