"""Regions are separate (issue 17): one Bedrock backend per account+Region, as moto keys its backends.

A us-west-2 job is not listed, fetched or name-clashed in us-east-1; quotas count per Region; a PT in one
Region is not an invoke target in another; the state file keeps each Region's resources apart across restarts.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from emulator.testing import boto3_clients, running_emulator
from tests.support.emulator import SPEED, code_of, job_request, prepare, wait

EAST, WEST = "us-east-1", "us-west-2"
LLAMA = "meta.llama3-1-8b-instruct-v1:0:128k"     # customizable in us-west-2 (Nova: us-east-1 only)


def west_job(c, inp: dict, n_train: int = 92, **over) -> dict:
    """A CreateModelCustomizationJob request valid in us-west-2: Llama 3.1 8B on prompt-completion records
    (92 + 8: Llama needs at least 100 training + validation records, model-customization-prepare)."""
    def pc(n: int, off: int = 0) -> bytes:
        return "".join(json.dumps({"prompt": f"question {i + off} about topic {i % 4}", "completion": f"label-{i % 4}"})
                       + "\n" for i in range(n)).encode()
    c.s3.put_object(Bucket=inp["bucket"], Key="data/llama-train.jsonl", Body=pc(n_train))
    c.s3.put_object(Bucket=inp["bucket"], Key="data/llama-val.jsonl", Body=pc(8, 500))
    return job_request(inp, baseModelIdentifier=LLAMA,
                       trainingDataConfig={"s3Uri": f"s3://{inp['bucket']}/data/llama-train.jsonl"},
                       validationDataConfig={"validators": [{"s3Uri": f"s3://{inp['bucket']}/data/llama-val.jsonl"}]},
                       **over)


def _clients(url: str):
    return boto3_clients(url, region=EAST), boto3_clients(url, region=WEST)


def test_a_west_job_is_not_listed_fetched_or_name_clashed_in_east(private_emu):
    east, west = _clients(private_emu.url)
    inp = prepare(east)   # S3 and IAM are the account's, seen from every Region
    arn = west.bedrock.create_model_customization_job(**west_job(west, inp))["jobArn"]
    assert ":us-west-2:" in arn
    assert [j["jobArn"] for j in west.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"]] \
        == [arn]
    assert east.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"] == []
    for ident in (arn, f"job-{inp['uid']}"):
        with pytest.raises(ClientError) as e:
            east.bedrock.get_model_customization_job(jobIdentifier=ident)
        assert code_of(e) == ("ResourceNotFoundException", 404)
    # the same job name and custom model name are free in us-east-1
    arn_east = east.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
    assert ":us-east-1:" in arn_east and arn_east != arn
    model_w = wait(lambda: west.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed"})["outputModelArn"]
    wait(lambda: east.bedrock.get_model_customization_job(jobIdentifier=arn_east), {"Completed"})
    assert [m["modelArn"] for m in west.bedrock.list_custom_models()["modelSummaries"]] == [model_w]
    with pytest.raises(ClientError) as e:
        east.bedrock.get_custom_model(modelIdentifier=model_w)
    assert code_of(e)[0] == "ResourceNotFoundException"


def test_a_llama_job_under_100_training_plus_validation_records_fails_validation(private_emu):
    """model-customization-prepare: Llama "Sum of training and validation records" minimum 100. A data problem is
    found in the job's validation phase, as the emulator finds every data problem: the job fails, nothing is made."""
    east, west = _clients(private_emu.url)
    inp = prepare(east)
    arn = west.bedrock.create_model_customization_job(**west_job(west, inp, n_train=91))["jobArn"]   # 91 + 8
    job = wait(lambda: west.bedrock.get_model_customization_job(jobIdentifier=arn), {"Completed", "Failed"})
    assert job["status"] == "Failed" and job["statusDetails"]["validationDetails"]["status"] == "Failed"
    msg = job["failureMessage"]
    assert msg.startswith("Validation failed for training data: Line 91: too few records: "), msg
    assert "91 training + 8 validation" in msg and f"100 in total that {LLAMA} (FINE_TUNING) needs" in msg, msg
    assert "outputModelArn" not in job and west.bedrock.list_custom_models()["modelSummaries"] == []


def test_quotas_count_per_region(private_emu):
    """2 jobs InProgress and 2 no-commitment model units per Region, not summed across Regions."""
    east, west = _clients(private_emu.url)
    private_emu.set_faults([{"job_outcome": "Stuck"}])
    inp = prepare(east)
    for i in range(2):
        east.bedrock.create_model_customization_job(**job_request(inp, jobName=f"e{i}", customModelName=f"e{i}"))
    with pytest.raises(ClientError) as e:
        east.bedrock.create_model_customization_job(**job_request(inp, jobName="e2", customModelName="e2"))
    assert code_of(e)[0] == "ServiceQuotaExceededException"
    for i in range(2):      # us-west-2 still has its own 2
        west.bedrock.create_model_customization_job(**west_job(west, inp, jobName=f"w{i}", customModelName=f"w{i}"))
    base = "amazon.nova-micro-v1:0:128k"
    for c in (east, west):
        for i in range(2):
            c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName=f"pt{i}", modelId=base)
        with pytest.raises(ClientError) as e:
            c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="pt2", modelId=base)
        assert code_of(e)[0] == "ServiceQuotaExceededException"


def test_a_pt_serves_only_in_its_region_and_tags_are_per_region(private_emu):
    east, west = _clients(private_emu.url)
    pt = west.bedrock.create_provisioned_model_throughput(
        modelUnits=1, provisionedModelName="west-pt", modelId="amazon.nova-micro-v1:0:128k",
        tags=[{"key": "k", "value": "v"}])["provisionedModelArn"]
    wait(lambda: west.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    assert west.runtime.invoke_model(modelId=pt, body=body)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        east.runtime.invoke_model(modelId=pt, body=body)
    assert code_of(e)[0] == "ResourceNotFoundException"
    assert west.bedrock.list_tags_for_resource(resourceARN=pt)["tags"] == [{"key": "k", "value": "v"}]
    with pytest.raises(ClientError) as e:
        east.bedrock.list_tags_for_resource(resourceARN=pt)
    assert code_of(e)[0] == "ResourceNotFoundException"
    assert east.bedrock.list_provisioned_model_throughputs()["provisionedModelSummaries"] == []


def test_state_dir_keeps_each_region_apart_across_restart(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "s") as h:
        east, west = _clients(h.url)
        inp = prepare(east)
        e_arn = east.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
        w_arn = west.bedrock.create_model_customization_job(**west_job(west, inp))["jobArn"]
        h.restart()
        east, west = _clients(h.url)
        assert [j["jobArn"] for j in east.bedrock.list_model_customization_jobs()[
            "modelCustomizationJobSummaries"]] == [e_arn]
        assert [j["jobArn"] for j in west.bedrock.list_model_customization_jobs()[
            "modelCustomizationJobSummaries"]] == [w_arn]
        saved = json.loads((tmp_path / "s" / "bedrock.json").read_text())
        assert saved["version"] == 2 and set(saved["regions"]) == {EAST, WEST}


def test_a_version_1_state_file_is_split_by_the_arns_region(tmp_path):
    """State written before Regions were separate loads with each resource in its ARN's Region."""
    with running_emulator(speed=SPEED, state_dir=tmp_path / "s") as h:
        east, west = _clients(h.url)
        inp = prepare(east)
        e_arn = east.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
        w_arn = west.bedrock.create_model_customization_job(**west_job(west, inp, jobName="w", customModelName="w"))[
            "jobArn"]
    f = tmp_path / "s" / "bedrock.json"
    v2 = json.loads(f.read_text())
    flat: dict = {"version": 1, "account_id": v2["account_id"], "clock": v2["clock"], "ledger": v2["ledger"]}
    for kind in ("jobs", "models", "pts", "deployments", "tokens", "tags"):
        flat[kind] = {k: v for r in v2["regions"].values() for k, v in r[kind].items()}
    f.write_text(json.dumps(flat))
    with running_emulator(speed=SPEED, state_dir=tmp_path / "s") as h:
        east, west = _clients(h.url)
        assert east.bedrock.get_model_customization_job(jobIdentifier=e_arn)["jobArn"] == e_arn
        assert west.bedrock.get_model_customization_job(jobIdentifier=w_arn)["jobName"] == "w"
        with pytest.raises(ClientError):
            east.bedrock.get_model_customization_job(jobIdentifier=w_arn)
