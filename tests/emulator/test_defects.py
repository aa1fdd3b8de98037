"""The issue's "Emulator defects found by clients no one here wrote" (issue 17), each asserted gone. Where another
module already holds the test, it is named here:

| defect | test |
|---|---|
| validation metrics only at .../post_fine_tuning_validation/ | test_core.py (completed job writes metric files) |
| timestamps from the virtual clock, in the future | test_timestamps.py (both tests) |
| Regions not separate (list, get, name clash, quotas) | test_regions.py |
| missing ConverseStream, InvokeModelWithResponseStream | test_streaming.py |
| missing CountTokens, invocation logging configuration; /moto-api/reset resets nothing | test_operations.py |
| foundation models from the pipeline's catalog (names cut, ids, modalities, all ACTIVE) | here + tests/contract |
| S3 accepts bucket names real S3 rejects | here |
| ``s3://b//k`` and over-long identifiers accepted | here |
| no HTTPS: Bedrock API-key (bearer) clients cannot connect | here |
| a PT has no capacity | test_capacity.py |
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError, InvalidEndpointConfigurationError

from emulator.testing import boto3_clients, running_emulator
from tests.support.emulator import PROFILE, SPEED, code_of, job_request, prepare


@pytest.mark.parametrize("name", ["Bad_Bucket", "UPPER", "-lead", "trail-", "ab", "a" * 64, "192.168.1.1",
                                  "xn--abc", "double..dot", "sthree-x", "x-s3alias", "data.mrap"])
def test_bucket_names_real_s3_rejects_are_refused(private_emu, name):
    c = boto3_clients(private_emu.url, max_attempts=1)
    with pytest.raises(ClientError) as e:
        c.s3.create_bucket(Bucket=name)
    assert code_of(e) == ("InvalidBucketName", 400)
    assert name not in [b["Name"] for b in c.s3.list_buckets()["Buckets"]]


def test_valid_bucket_names_are_still_accepted(private_emu):
    c = boto3_clients(private_emu.url, max_attempts=1)
    for name in ("abc", "my.data-bucket-1", "a" * 63, "1bucket"):
        c.s3.create_bucket(Bucket=name)


@pytest.mark.parametrize("field, over", [
    ("trainingDataConfig.s3Uri", {"trainingDataConfig": {"s3Uri": "s3://bucket-ok//data/train.jsonl"}}),
    ("outputDataConfig.s3Uri", {"outputDataConfig": {"s3Uri": "s3://bucket-ok/out//x/"}}),
])
def test_an_s3_uri_with_an_empty_segment_is_refused(private_emu, field, over):
    c = boto3_clients(private_emu.url, max_attempts=1)
    inp = prepare(c)
    with pytest.raises(ClientError) as e:
        c.bedrock.create_model_customization_job(**job_request(inp, **over))
    assert code_of(e) == ("ValidationException", 400) and field in str(e.value)


def test_over_long_identifiers_are_refused_not_looked_up(private_emu):
    c = boto3_clients(private_emu.url, max_attempts=1)
    for call, kw in ((c.bedrock.get_model_customization_job, {"jobIdentifier": "j" * 1012}),
                     (c.bedrock.get_custom_model, {"modelIdentifier": "m" * 2049}),
                     (c.bedrock.get_custom_model_deployment, {"customModelDeploymentIdentifier": "d" * 94}),
                     (c.bedrock.get_foundation_model, {"modelIdentifier": "a.b" + "c" * 2048})):
        with pytest.raises(ClientError) as e:
            call(**kw)
        assert code_of(e) == ("ValidationException", 400), call
        assert "Member must have length between" in str(e.value)
    with pytest.raises(ClientError) as e:
        c.runtime.invoke_model(modelId="x" * 2049, body=b"{}")
    assert code_of(e) == ("ValidationException", 400)
    # at the limit it is a lookup again
    with pytest.raises(ClientError) as e:
        c.bedrock.get_model_customization_job(jobIdentifier="j" * 1011)
    assert code_of(e)[0] == "ResourceNotFoundException"


def test_foundation_models_are_the_emulators_own_picture_not_the_pipelines(private_emu):
    c = boto3_clients(private_emu.url)
    models = {m["modelId"]: m for m in c.bedrock.list_foundation_models()["modelSummaries"]}
    assert models["meta.llama3-1-8b-instruct-v1:0:128k"]["modelName"] == "Llama 3.1 8B Instruct"  # > 20 characters
    assert {"TEXT", "IMAGE", "VIDEO"} <= set(models["amazon.nova-lite-v1:0:300k"]["inputModalities"])
    assert models["meta.llama3-2-1b-instruct-v1:0:128k"]["inputModalities"] == ["TEXT"]
    assert not any(mid.startswith(("us.", "eu.", "apac.", "global.")) for mid in models)   # profiles are not FMs
    assert {m["modelLifecycle"]["status"] for m in models.values()} > {"ACTIVE"}
    haiku = "anthropic.claude-3-haiku-20240307-v1:0:200k"
    assert models[haiku]["modelLifecycle"]["status"] == "EOL"
    ca = boto3_clients(private_emu.url, region="ca-central-1")
    assert ca.bedrock.get_foundation_model(modelIdentifier=haiku)["modelDetails"]["modelLifecycle"]["status"] \
        == "ACTIVE"


@pytest.fixture
def tls_emu(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "tls-state", tls=True) as h:
        yield h


def test_https_serves_sigv4_clients_with_the_emulators_certificate(tls_emu):
    assert tls_emu.url.startswith("https://") and tls_emu.ca_bundle.exists()
    assert tls_emu.health()["ok"]
    c = boto3_clients(tls_emu.url, verify=tls_emu.ca_bundle)
    assert c.bedrock.list_foundation_models()["modelSummaries"]
    c.s3.create_bucket(Bucket="tls-bucket")
    c.s3.put_object(Bucket="tls-bucket", Key="k", Body=b"v")
    assert c.s3.get_object(Bucket="tls-bucket", Key="k")["Body"].read() == b"v"
    untrusted = boto3_clients(tls_emu.url, max_attempts=1)       # the system CAs do not know the certificate
    with pytest.raises(Exception) as e:
        untrusted.bedrock.list_foundation_models()
    assert "SSL" in type(e.value).__name__ or "certificate" in str(e.value).lower()


def _bearer_runtime(url: str, verify, monkeypatch):
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-emulator-test")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    return boto3.session.Session(region_name="us-east-1").client("bedrock-runtime", endpoint_url=url, verify=verify)


def test_a_bedrock_api_key_client_connects_over_https(tls_emu, monkeypatch):
    rt = _bearer_runtime(tls_emu.url, str(tls_emu.ca_bundle), monkeypatch)
    seen = []
    rt.meta.events.register("before-send.bedrock-runtime.*",
                            lambda request, **_: seen.append(request.headers.get("Authorization")))
    out = rt.converse(modelId=PROFILE, messages=[{"role": "user", "content": [{"text": "hello"}]}])
    assert out["output"]["message"]["content"][0]["text"]
    seen = [h.decode() if isinstance(h, bytes) else str(h) for h in seen]
    assert seen and all(h.startswith("Bearer ") for h in seen)     # no SigV4 on the wire
    body = json.loads(rt.invoke_model(modelId=PROFILE, body=json.dumps(
        {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}))["body"].read())
    assert body["output"]["message"]["content"][0]["text"]
    assert [c["operation"] for c in tls_emu.ledger()["calls"]][-2:] == ["Converse", "InvokeModel"]


def test_a_bearer_client_refuses_plain_http(private_emu, monkeypatch):
    """Why HTTPS is needed: botocore will not send a bearer token to an http:// endpoint."""
    rt = _bearer_runtime(private_emu.url, None, monkeypatch)
    with pytest.raises(InvalidEndpointConfigurationError, match="HTTPS"):
        rt.converse(modelId=PROFILE, messages=[{"role": "user", "content": [{"text": "hello"}]}])


def test_python_m_emulator_tls_prints_its_certificate_and_serves_https(tmp_path):
    from emulator.testing import start_subprocess
    h = start_subprocess(speed=SPEED, state_dir=tmp_path / "sub", tls=True)
    try:
        assert h.url.startswith("https://") and h.ca_bundle == tmp_path / "sub" / "tls" / "emulator-cert.pem"
        c = boto3_clients(h.url, verify=h.ca_bundle)
        assert c.sts.get_caller_identity()["Account"] == "123456789012"
    finally:
        h.terminate()
