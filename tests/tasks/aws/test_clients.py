"""tasks/aws/clients.py: client settings (retries, timeouts, pool, region, endpoint), partitions."""

from __future__ import annotations

import pytest

from tasks.aws import clients as aws_clients
from tasks.config import AwsConfig


@pytest.fixture
def dummy_env(monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_clients_use_configured_retries_timeouts_pool_and_region(dummy_env):
    c = aws_clients.make_clients(
        AwsConfig(region="us-west-2", retry_mode="standard", max_attempts=4, connect_timeout=3, read_timeout=7),
        pool_size=40,
    )
    cfg = c.bedrock.meta.config
    assert cfg.retries == {"mode": "standard", "total_max_attempts": 4}  # 4 calls in all, not 1 + 4
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.max_pool_connections) == (3, 7, 40)
    assert c.region == "us-west-2" and c.bedrock_runtime.meta.region_name == "us-west-2"
    assert "us-west-2" in c.bedrock.meta.endpoint_url


def test_endpoint_from_env_is_left_to_botocore_and_config_overrides_it(dummy_env):
    dummy_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    dummy_env.setenv("AWS_ENDPOINT_URL_BEDROCK", "http://127.0.0.1:5000")
    c = aws_clients.make_clients(AwsConfig())
    assert c.s3.meta.endpoint_url == "http://127.0.0.1:4566"
    assert c.bedrock.meta.endpoint_url == "http://127.0.0.1:5000"  # service-specific wins (botocore)
    c2 = aws_clients.make_clients(AwsConfig(endpoint_url="http://localhost:9999"))
    assert {x.meta.endpoint_url for x in (c2.s3, c2.iam, c2.sts, c2.bedrock, c2.bedrock_runtime)} == {
        "http://localhost:9999"
    }


@pytest.mark.parametrize(
    "region, partition",
    [("us-east-1", "aws"), ("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")],
)
def test_partition_of_region(region, partition):
    assert aws_clients.partition_of(region) == partition
