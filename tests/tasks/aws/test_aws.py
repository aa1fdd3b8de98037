"""tasks/aws.py: client settings, error classification, run key, names and tags."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from tasks import aws
from tasks.config import AwsConfig, PipelineConfig


def make_config(**over) -> PipelineConfig:
    base = {"name": "banking", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "data.jsonl"}}
    base.update(over)
    return PipelineConfig.model_validate(base)


def client_error(code: str, status: int, message: str = "boom", op: str = "CreateModelCustomizationJob") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.fixture
def dummy_env(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


# -- clients -------------------------------------------------------------------------------------
def test_clients_use_configured_retries_timeouts_pool_and_region(dummy_env):
    c = aws.make_clients(AwsConfig(region="us-west-2", retry_mode="standard", max_attempts=4, connect_timeout=3,
                                   read_timeout=7), pool_size=40)
    cfg = c.bedrock.meta.config
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 4}   # 4 calls in all, not 1 + 4
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.max_pool_connections) == (3, 7, 40)
    assert c.region == "us-west-2" and c.bedrock_runtime.meta.region_name == "us-west-2"
    assert "us-west-2" in c.bedrock.meta.endpoint_url


def test_endpoint_from_env_is_left_to_botocore_and_config_overrides_it(dummy_env):
    dummy_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    dummy_env.setenv("AWS_ENDPOINT_URL_BEDROCK", "http://127.0.0.1:5000")
    c = aws.make_clients(AwsConfig())
    assert c.s3.meta.endpoint_url == "http://127.0.0.1:4566"
    assert c.bedrock.meta.endpoint_url == "http://127.0.0.1:5000"       # service-specific wins (botocore)
    c2 = aws.make_clients(AwsConfig(endpoint_url="http://localhost:9999"))
    assert {x.meta.endpoint_url for x in (c2.s3, c2.iam, c2.sts, c2.bedrock, c2.bedrock_runtime)} == {"http://localhost:9999"}


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,status", [("ThrottlingException", 429), ("ServiceUnavailableException", 503),
                                         ("InternalServerException", 500), ("ModelNotReadyException", 429),
                                         ("SomethingNew", 502), ("ModelTimeoutException", 408)])
def test_transient_errors(code, status):
    assert aws.is_transient(client_error(code, status))


@pytest.mark.parametrize("code,status", [("ValidationException", 400), ("AccessDeniedException", 403),
                                         ("ResourceNotFoundException", 404), ("ServiceQuotaExceededException", 400),
                                         ("ConflictException", 400), ("ModelErrorException", 424)])
def test_permanent_errors(code, status):
    assert not aws.is_transient(client_error(code, status))


def test_connection_problems_are_transient_and_plain_bugs_are_not():
    assert aws.is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert aws.is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert not aws.is_transient(ValueError("bad"))
    assert not aws.is_transient(aws.StageError("x"))


def test_describe_error_has_operation_service_message_and_hint():
    text = aws.describe_error(client_error("ServiceQuotaExceededException", 400, "Too many jobs"))
    assert "CreateModelCustomizationJob" in text and "Too many jobs" in text and "Service Quotas" in text
    assert "Traceback" not in text
    wrapped = aws.stage_error("create job x", client_error("ValidationException", 400, "bad epochCount"))
    assert isinstance(wrapped, aws.StageError) and "create job x" in str(wrapped) and "bad epochCount" in str(wrapped)
    assert isinstance(aws.stage_error("x", client_error("ServiceQuotaExceededException", 400)), aws.QuotaExceeded)
    throttled = client_error("ThrottlingException", 429)
    assert aws.stage_error("x", throttled) is throttled       # transient errors pass through for Prefect retries


class _State:
    def __init__(self, exc):
        self.exc = exc

    def result(self, raise_on_failure=True):
        return self.exc


def test_retry_condition_only_retries_transient():
    assert aws.transient_retry_condition(None, None, _State(client_error("ThrottlingException", 429)))
    assert not aws.transient_retry_condition(None, None, _State(client_error("ValidationException", 400)))
    assert not aws.transient_retry_condition(None, None, _State(aws.StageError("quota")))


# -- run key -------------------------------------------------------------------------------------
def test_run_key_is_stable_and_ignores_what_does_not_change_the_model():
    cfg = make_config()
    key = aws.compute_run_key(cfg, "abc")
    assert re.fullmatch(r"[0-9a-f]{12}", key)
    same = make_config(evaluation={"concurrency": 32}, gate={"min_delta": 0.1}, budget={"max_usd": 5},
                       tags={"team": "x"}, job={"timeout_hours": 2}, serving={"max_hours": 1},
                       data={"source": "elsewhere.csv"}, aws={"retry_mode": "standard", "endpoint_url": "http://e"})
    assert aws.compute_run_key(same, "abc") == key
    # the preset's defaults spelled out explicitly are the same model
    assert aws.compute_run_key(make_config(hyperparameters={"epochCount": "2"}), "abc") == key


def test_run_key_changes_with_data_and_training_settings():
    key = aws.compute_run_key(make_config(), "abc")
    assert aws.compute_run_key(make_config(), "abd") != key
    assert aws.compute_run_key(make_config(hyperparameters={"epochCount": 3}), "abc") != key
    assert aws.compute_run_key(make_config(base_model="amazon.nova-lite-v1:0:300k"), "abc") != key
    assert aws.compute_run_key(make_config(aws={"region": "us-west-2"}), "abc") != key


# -- names ---------------------------------------------------------------------------------------
def test_names_fit_bedrock_patterns_even_for_the_longest_config_name():
    cfg = make_config(name="a" * 15 + "-" + "b" * 16)
    n = aws.resource_names(cfg, "0123456789ab")
    assert len(n.job_attempt(9)) <= 63 and "_" not in n.job_attempt(9)
    assert aws.JOB_NAME_RE.fullmatch(n.job_attempt(12))
    assert aws.MODEL_NAME_RE.fullmatch(n.model_attempt(3)) and "." not in n.custom_model
    assert aws.PT_NAME_RE.fullmatch(n.provisioned) and len(n.provisioned) <= 63
    assert len(n.role) <= 64 and aws.BUCKET_RE.fullmatch(n.bucket) and len(n.bucket) <= 63
    assert aws.TOKEN_RE.fullmatch(n.job_token_attempt(2))
    assert n.job_attempt(1) == n.job and n.job_attempt(2) == n.job + "-a2"
    assert aws.ResourceNames.attempt_of(n.job + "-a7", n.job) == 7
    assert aws.ResourceNames.attempt_of(n.job + "-other", n.job) is None


def test_default_bucket_is_per_account_without_leaking_the_account_and_config_bucket_wins():
    cfg = make_config()
    a = aws.resource_names(cfg, "0" * 12, account="111122223333").bucket
    b = aws.resource_names(cfg, "0" * 12, account="444455556666").bucket
    assert a != b and "111122223333" not in a and a.endswith("-us-east-1") and a.startswith("bedrock-forge-")
    assert aws.resource_names(make_config(aws={"bucket": "my-data"}), "0" * 12).bucket == "my-data"
    with pytest.raises(ValueError, match="not a valid S3 bucket"):
        aws.resource_names(make_config(aws={"bucket": "My_Bucket"}), "0" * 12)


# -- tags ----------------------------------------------------------------------------------------
def test_standard_tags_and_expiry():
    now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    tags = aws.standard_tags("k" * 12, "fr-1", {"team": "ml"}, expires_in_hours=2, now=now)
    assert tags["managed-by"] == "bedrock-forge" and tags["forge-run-key"] == "k" * 12
    assert tags["forge-flow-run-id"] == "fr-1" and tags["team"] == "ml"
    assert tags["forge-expires-at"] == "2026-01-01T12:00:00Z"
    assert aws.parse_expiry(tags["forge-expires-at"]) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert "forge-expires-at" not in aws.standard_tags("k", "f", {})
    assert aws.to_tag_list({"a": "b"}) == [{"key": "a", "value": "b"}]
    with pytest.raises(ValueError, match="reserved"):
        aws.standard_tags("k", "f", {"managed-by": "me"})
    with pytest.raises(ValueError, match="letters, digits"):
        aws.standard_tags("k", "f", {"bad": "a,b"})


@pytest.mark.parametrize("code, message, taken", [
    ("ConflictException", "A job with that token exists", True),
    ("ValidationException", "A model customization job named forge-x already exists.", True),
    ("ValidationException", "epochCount=99 is out of range", False),
    ("ThrottlingException", "Rate exceeded", False),
])
def test_is_name_taken_adopts_on_either_spelling_of_a_lost_race(code, message, taken):
    from botocore.exceptions import ClientError

    from tasks.aws import is_name_taken

    err = ClientError({"Error": {"Code": code, "Message": message}}, "CreateModelCustomizationJob")
    assert is_name_taken(err) is taken
