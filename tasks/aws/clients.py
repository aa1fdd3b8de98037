"""boto3 clients for one run: one session, botocore's own retry mode for transport-level retries
(docs/design.md §4).

The endpoint is ``aws.endpoint_url`` when set, else whatever botocore resolves itself
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, profile ``endpoint_url``) — not re-implemented
here. Every stage gets its clients from ``make_clients``; nothing else builds a boto3 client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.aws.pricing import PRICE_LIST_REGION, pricing_client
from tasks.config import AwsConfig


@dataclass
class Clients:
    s3: Any
    iam: Any
    sts: Any
    bedrock: Any
    bedrock_runtime: Any
    region: str
    kms: Any = None   # read-only use: DescribeKey resolves an ``alias/...`` aws.kms_key_id (tasks/iam.py)
    pricing: Any = None   # read-only: the AWS Price List (tasks/aws/pricing.py), always in its own Region


_LOADER: Any = None
_CONNECTION_KEYS = ("region", "profile", "endpoint_url")


def lenient_aws_config(raw: Any) -> AwsConfig:
    """The connection settings of a run's ``aws`` section, for cleanup code that must not fail on a config
    that no longer validates (a hook given flow parameters in which NaN became null, a watchdog or sweeper
    reading an older run's record): the full section when it validates, else only region/profile/endpoint."""
    if isinstance(raw, AwsConfig):
        return raw
    raw = raw if isinstance(raw, dict) else {}
    try:
        return AwsConfig.model_validate(raw)
    except Exception:  # noqa: BLE001 - fall back on what a client needs
        kept = {k: raw[k] for k in _CONNECTION_KEYS if isinstance(raw.get(k), str) and raw.get(k)}
        try:
            return AwsConfig.model_validate(kept)
        except Exception:  # noqa: BLE001
            return AwsConfig()


def _session(profile: str | None, region: str) -> Any:
    """A fresh boto3 session (own credentials/profile) sharing one botocore data loader, so the service
    models (bedrock's is large) are parsed once per process instead of once per session."""
    global _LOADER
    import boto3
    import botocore.session

    bs = botocore.session.Session()
    if _LOADER is None:
        _LOADER = bs.get_component("data_loader")
    else:
        bs.register_component("data_loader", _LOADER)
    return boto3.Session(botocore_session=bs, profile_name=profile, region_name=region)


def make_clients(aws: AwsConfig, pool_size: int = 16) -> Clients:
    """boto3 clients for one run. ``pool_size`` should cover the evaluation's concurrency."""
    from botocore.config import Config

    session = _session(aws.profile, aws.region)
    cfg = Config(
        region_name=aws.region,
        # total_max_attempts = attempts including the first, like AWS_MAX_ATTEMPTS; the Config key
        # "max_attempts" would count retries only (one more call than configured)
        retries={"mode": aws.retry_mode, "total_max_attempts": aws.max_attempts},
        connect_timeout=aws.connect_timeout,
        read_timeout=aws.read_timeout,
        max_pool_connections=pool_size,
    )
    kw: dict[str, Any] = {"config": cfg, "region_name": aws.region}
    if aws.endpoint_url:
        kw["endpoint_url"] = aws.endpoint_url
    return Clients(
        s3=session.client("s3", **kw),
        iam=session.client("iam", **kw),
        sts=session.client("sts", **kw),
        bedrock=session.client("bedrock", **kw),
        # the runtime client is the evaluation's: throttles must reach the evaluator's AIMD limiter and its own
        # bounded retries (evaluation.invoke_retries) instead of botocore's client-side rate limiter, which paced
        # the evaluation at 0.82x of a PT's capacity (bench/results-evaluate.md) against 0.98x this way
        bedrock_runtime=session.client("bedrock-runtime", **{**kw, "config": cfg.merge(
            Config(retries={"mode": "standard", "total_max_attempts": 1}))}),
        region=aws.region,
        kms=session.client("kms", **kw) if aws.kms_key_id else None,   # only runs that name a key need it
        pricing=pricing_client(session, aws.endpoint_url, cfg.merge(Config(region_name=PRICE_LIST_REGION))),
    )


def account_id(clients: Clients) -> str:
    return clients.sts.get_caller_identity()["Account"]


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
