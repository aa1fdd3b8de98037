"""Operations real clients use that the emulator lacked (issue 17): model invocation logging configuration,
CountTokens, moto's ``/moto-api/reset`` (resets what it says), KMS through moto (DescribeKey of an alias)."""

from __future__ import annotations

import base64
import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.testing import boto3_clients
from tests.support.emulator import code_of, job_request, prepare

EAST, WEST = "us-east-1", "us-west-2"


def test_invocation_logging_configuration_put_get_delete_per_region(private_emu):
    c, w = boto3_clients(private_emu.url, region=EAST), boto3_clients(private_emu.url, region=WEST)
    assert "loggingConfig" not in c.bedrock.get_model_invocation_logging_configuration()
    c.s3.create_bucket(Bucket="logs-bucket")
    cfg = {"s3Config": {"bucketName": "logs-bucket", "keyPrefix": "bedrock/"}, "textDataDeliveryEnabled": True}
    c.bedrock.put_model_invocation_logging_configuration(loggingConfig=cfg)
    assert c.bedrock.get_model_invocation_logging_configuration()["loggingConfig"] == cfg
    assert "loggingConfig" not in w.bedrock.get_model_invocation_logging_configuration()
    with pytest.raises(ClientError) as e:
        c.bedrock.put_model_invocation_logging_configuration(loggingConfig={"s3Config": {"bucketName": "no-such-b"}})
    assert code_of(e) == ("ValidationException", 400) and "does not exist" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        c.bedrock.put_model_invocation_logging_configuration(loggingConfig={"textDataDeliveryEnabled": True})
    assert code_of(e)[0] == "ValidationException"
    c.bedrock.delete_model_invocation_logging_configuration()
    assert "loggingConfig" not in c.bedrock.get_model_invocation_logging_configuration()
    ops = {(x["operation"], x["mutating"]) for x in private_emu.ledger()["calls"]}
    assert {("PutModelInvocationLoggingConfiguration", True), ("DeleteModelInvocationLoggingConfiguration", True),
            ("GetModelInvocationLoggingConfiguration", False)} <= ops


def test_count_tokens_for_invoke_and_converse_bodies(private_emu):
    c = boto3_clients(private_emu.url)
    short = c.runtime.count_tokens(modelId="amazon.nova-micro-v1:0", input={"converse": {
        "messages": [{"role": "user", "content": [{"text": "hello"}]}]}})["inputTokens"]
    long = c.runtime.count_tokens(modelId="amazon.nova-micro-v1:0", input={"converse": {
        "messages": [{"role": "user", "content": [{"text": "hello " * 200}]}],
        "system": [{"text": "be brief"}]}})["inputTokens"]
    assert 1 <= short < long
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello " * 200}]}]}).encode()
    via_invoke = c.runtime.count_tokens(modelId="amazon.nova-micro-v1:0",
                                        input={"invokeModel": {"body": body}})["inputTokens"]
    assert via_invoke >= long - c.runtime.count_tokens(modelId="amazon.nova-micro-v1:0", input={"converse": {
        "messages": [{"role": "user", "content": [{"text": "x"}]}], "system": [{"text": "be brief"}]}})["inputTokens"]
    with pytest.raises(ClientError) as e:
        c.runtime.count_tokens(modelId="no.such-model-v1:0", input={"converse": {
            "messages": [{"role": "user", "content": [{"text": "x"}]}]}})
    assert code_of(e)[0] == "ValidationException"
    assert base64.b64encode(body)      # the blob travels base64-encoded (botocore does it)


def test_moto_api_reset_resets_bedrock_s3_iam_kms_and_the_ledger(private_emu):
    c = boto3_clients(private_emu.url)
    inp = prepare(c)
    c.bedrock.create_model_customization_job(**job_request(inp))
    kms = _kms(private_emu.url)
    kms.create_key(Description="k")
    req = urllib.request.Request(f"{private_emu.url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read()) == {"status": "ok"}
    assert c.bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"] == []
    assert c.s3.list_buckets()["Buckets"] == []
    assert c.iam.list_roles()["Roles"] == []
    assert kms.list_keys()["Keys"] == []
    assert [x["operation"] for x in private_emu.ledger()["calls"]] == ["ListModelCustomizationJobs", "ListBuckets",
                                                                      "ListRoles", "ListKeys"]


def _kms(url: str):
    return boto3.client("kms", endpoint_url=url, region_name=EAST, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_kms_describe_key_of_an_alias_reaches_moto_and_is_classified(private_emu):
    kms = _kms(private_emu.url)
    key = kms.create_key(Description="forge output key")["KeyMetadata"]
    kms.create_alias(AliasName="alias/forge-out", TargetKeyId=key["KeyId"])
    got = kms.describe_key(KeyId="alias/forge-out")["KeyMetadata"]
    assert got["Arn"] == key["Arn"] and got["KeyState"] == "Enabled"
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="alias/no-such")
    assert e.value.response["Error"]["Code"] == "NotFoundException"
    calls = [(x["service"], x["operation"], x["mutating"]) for x in private_emu.ledger()["calls"]]
    assert calls == [("kms", "CreateKey", True), ("kms", "CreateAlias", True), ("kms", "DescribeKey", False),
                     ("kms", "DescribeKey", False)]
