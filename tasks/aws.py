"""AWS plumbing shared by every stage: clients, error classification, the run key, names and tags.

- Clients: one boto3 session per run; botocore's own retry mode (standard/adaptive) handles
  transport-level retries (DESIGN.md §4). The endpoint is ``aws.endpoint_url`` when set, else
  whatever botocore resolves itself (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, profile
  ``endpoint_url``) — not re-implemented here.
- Errors: ``is_transient`` decides what Prefect task retries may retry (throttling, 5xx, timeouts,
  connection errors); everything else fails fast with ``describe_error``: the service message plus a
  hint of what to do (REF §2.11).
- Run key: sha256 of the normalized, model-relevant part of the config + the prepared data's content
  hash, 12 hex chars. Resource names derive from it, within Bedrock's name patterns (REF §2.2, §2.7,
  §2.8; patterns checked in botocore's ``bedrock`` service model).
- Tags: ``managed-by=bedrock-forge``, ``forge-run-key``, ``forge-flow-run-id``, and for billing
  resources ``forge-expires-at`` (the sweeper's clock, DESIGN.md §3).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from tasks.config import AwsConfig, PipelineConfig

MANAGED_BY_KEY = "managed-by"
MANAGED_BY_VALUE = "bedrock-forge"
RUN_KEY_TAG = "forge-run-key"
FLOW_RUN_TAG = "forge-flow-run-id"
EXPIRES_TAG = "forge-expires-at"
RESERVED_TAGS = (MANAGED_BY_KEY, RUN_KEY_TAG, FLOW_RUN_TAG, EXPIRES_TAG)


# ---------------------------------------------------------------------------------------------
# clients
# ---------------------------------------------------------------------------------------------
@dataclass
class Clients:
    s3: Any
    iam: Any
    sts: Any
    bedrock: Any
    bedrock_runtime: Any
    region: str


_LOADER: Any = None


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
        bedrock_runtime=session.client("bedrock-runtime", **kw),
        region=aws.region,
    )


def account_id(clients: Clients) -> str:
    return clients.sts.get_caller_identity()["Account"]


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
# REF §2.11: retryable codes; botocore's standard mode retries most of them already, Prefect task
# retries add a slower, jittered layer on top for the same class only.
TRANSIENT_CODES = {
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "SlowDown", "ServiceUnavailable", "ServiceUnavailableException",
    "InternalServerException", "InternalFailure", "InternalError", "InternalServerError",
    "ModelNotReadyException", "ModelTimeoutException", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "EC2ThrottledException", "BandwidthLimitExceeded",
}
PERMANENT_CODES = {
    "ValidationException", "AccessDeniedException", "AccessDenied", "ResourceNotFoundException",
    "NoSuchEntity", "NoSuchBucket", "NoSuchKey", "ServiceQuotaExceededException", "ConflictException",
    "TooManyTagsException", "ModelErrorException", "UnrecognizedClientException", "ExpiredTokenException",
    "InvalidClientTokenId", "MalformedPolicyDocument", "LimitExceeded", "EntityAlreadyExists",
}

_HINTS = {
    "ValidationException": "the request was rejected as invalid: check the named field against the config "
                           "(base model id, hyperparameters, data URIs, names) and fix it before rerunning",
    "AccessDeniedException": "the caller lacks a permission (REF §7 lists what the pipeline needs: bedrock:*, "
                             "iam:PassRole on the service role, s3 put/get); or model access is not enabled for "
                             "this base model in the Bedrock console",
    "403": "access denied by IAM or the bucket policy: check the caller's S3 permissions and that the bucket "
           "belongs to this account (aws.bucket)",
    "AccessDenied": "the caller lacks an S3/IAM permission on this resource, or the bucket belongs to another "
                    "account: set aws.bucket to a bucket you own",
    "ResourceNotFoundException": "the resource does not exist (deleted, wrong region, or a typo in the id)",
    "NoSuchEntity": "the IAM entity does not exist",
    "NoSuchBucket": "the bucket does not exist in this account/region",
    "ServiceQuotaExceededException": "an account quota is full: free capacity (stop a job, delete an unused "
                                     "provisioned throughput with `forge sweep`) or request an increase in "
                                     "Service Quotas for Amazon Bedrock",
    "ConflictException": "a resource with this name already exists or is busy: rerun to adopt it, or wait for it "
                         "to finish its current transition",
    "TooManyTagsException": "too many tags: remove some entries from config.tags",
    "ModelErrorException": "the model failed on this input; the example is recorded as an error",
    "ExpiredTokenException": "the AWS credentials expired: refresh them (aws sso login / new session)",
    "UnrecognizedClientException": "the AWS credentials are not valid for this endpoint/region",
    "InvalidClientTokenId": "the AWS credentials are not valid",
}
_TRANSIENT_HINT = "a transient service error: retried with backoff; if it persists, lower concurrency or retry later"


def _code_status(exc: BaseException) -> tuple[str, int]:
    resp = getattr(exc, "response", None)
    if not isinstance(resp, dict):
        return "", 0
    code = str(resp.get("Error", {}).get("Code", "") or "")
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def error_code(exc: BaseException) -> str:
    return _code_status(exc)[0] or getattr(exc, "code", "") or ""


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying later: throttling, 5xx, timeouts, connection errors, ModelNotReady."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, StageError):
        return exc.transient
    if isinstance(exc, ClientError):
        code, status = _code_status(exc)
        if code in TRANSIENT_CODES:
            return True
        if code in PERMANENT_CODES:
            return False
        return status == 429 or status >= 500
    if isinstance(exc, BotoConnectionError | HTTPClientError):   # connect/read timeouts, endpoint down
        return True
    return isinstance(exc, TimeoutError | ConnectionError)


def is_name_taken(exc: BaseException) -> bool:
    """A create lost a race for its name (or an earlier create's response was lost): adopt, don't fail.

    Bedrock answers ConflictException for some resources and ValidationException "... already exists"
    for others (job / provisioned throughput / deployment names, docs/emulator.md).
    """
    code = error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")).lower()
    return code == "ConflictException" or (code == "ValidationException" and "already exists" in message)


def describe_error(exc: BaseException) -> str:
    """``<operation>: <Code>: <service message> (what to do)`` — one line, no traceback."""
    from botocore.exceptions import ClientError

    if isinstance(exc, StageError):
        return str(exc)
    if isinstance(exc, ClientError):
        code, status = _code_status(exc)
        msg = exc.response.get("Error", {}).get("Message") or str(exc)
        hint = _HINTS.get(code) or (_TRANSIENT_HINT if is_transient(exc) else "see the service message")
        op = getattr(exc, "operation_name", "") or "AWS call"
        return f"{op}: {code or status}: {msg} ({hint})"
    if is_transient(exc):
        return f"{type(exc).__name__}: {exc} ({_TRANSIENT_HINT}; check network access to the endpoint)"
    return f"{type(exc).__name__}: {exc}"


class StageError(RuntimeError):
    """An AWS stage failed in a way people must act on. The message says what, where and how to fix."""

    def __init__(self, message: str, *, code: str = "", transient: bool = False):
        super().__init__(message)
        self.code = code
        self.transient = transient


class QuotaExceeded(StageError):
    pass


def stage_error(where: str, exc: BaseException) -> BaseException:
    """Turn a permanent error into a StageError naming ``where``; transient ones pass through unchanged
    (so Prefect's retry condition sees them)."""
    if is_transient(exc):
        return exc
    code = error_code(exc)
    cls = QuotaExceeded if code == "ServiceQuotaExceededException" else StageError
    return cls(f"{where}: {describe_error(exc)}", code=code)


def transient_retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only errors classified transient (DESIGN.md §4)."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as err:  # noqa: BLE001 - the state may re-raise its exception
        exc = err
    return isinstance(exc, BaseException) and is_transient(exc)


def aws_task(fn: Callable, name: str, retries: int = 3) -> Any:
    """Thin Prefect wrapper for a get-or-create AWS step: retries only transient errors, backoff 2/4/8 s with
    jitter. No Prefect cache: the step itself asks AWS (the source of truth) what exists."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.tasks import exponential_backoff

    return task(name=name, retries=retries, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5,
                retry_condition_fn=transient_retry_condition, cache_policy=NO_CACHE)(fn)


def wait_task(fn: Callable, name: str) -> Any:
    """Prefect wrapper for long waits: no task retries (a rerun re-adopts the resource and waits again)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, retries=0, cache_policy=NO_CACHE)(fn)


class RedactAccountIds(logging.Filter):
    """Account ids inside ARNs become ``<account>`` in log records, exception text included, as in the
    manifest (tasks/manifest.py): run logs end up in the Prefect UI, CI output and bug reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        from tasks.manifest import redact

        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# the loggers a run writes through: get_run_logger() and log_prints (flow/task runs), Prefect's engines
# (state messages carry exception text), and this package's fallback logger
REDACTED_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine",
                    "bedrock_forge")


def install_log_redaction() -> None:
    for name in REDACTED_LOGGERS:
        lg = logging.getLogger(name)
        if not any(isinstance(f, RedactAccountIds) for f in lg.filters):
            lg.addFilter(RedactAccountIds())


install_log_redaction()


def get_logger() -> logging.Logger | Any:
    """The Prefect run logger inside a run, else the module logger (plain calls, tests)."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return logging.getLogger("bedrock_forge")


# ---------------------------------------------------------------------------------------------
# run key, names, tags
# ---------------------------------------------------------------------------------------------
def _model_relevant(config: PipelineConfig) -> dict[str, Any]:
    """The part of the config that changes the trained model or where it lives.

    Left out on purpose (changing them must not start a new job): data (the prepared content hash
    stands for it), evaluation, gate, budget, pricing, serving, job (timeouts, polling, quota
    behaviour), tags, schedule, and connection settings (profile, endpoint, retries, timeouts).
    Hyperparameters are the resolved string map (preset + overrides), so equivalent spellings match.
    """
    from tasks.catalog import load_catalog, resolve_hyperparameters

    d = config.model_dump(mode="json")
    try:
        spec = load_catalog().spec(config.base_model, config.customization_type)
        hps: Any = resolve_hyperparameters(spec, config.preset, config.hyperparameters) if spec.hyperparameters else {}
    except ValueError:
        hps = {"preset": config.preset, "overrides": d["hyperparameters"]}
    return {
        "name": config.name,
        "base_model": config.base_model,
        "customization_type": d["customization_type"],
        "hyperparameters": hps,
        "distillation": d["distillation"],
        "rft": d["rft"],
        "aws": {k: d["aws"][k] for k in ("region", "bucket", "prefix", "kms_key_id")},
    }


def compute_run_key(config: PipelineConfig, content_hash: str) -> str:
    blob = json.dumps({"config": _model_relevant(config), "data": content_hash},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Name patterns (botocore 1.44 `bedrock` model; REF §2.2, §2.7, §2.8). We only ever produce lowercase
# alphanumerics joined by single hyphens, which satisfies all of them at once.
JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME_RE = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")
PT_NAME_RE = re.compile(r"([0-9a-zA-Z][_-]?)+")
TOKEN_RE = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?")
BUCKET_RE = re.compile(r"[a-z0-9][-a-z0-9]{1,61}[a-z0-9]")


class ResourceNames(BaseModel):
    run_key: str
    bucket: str
    role: str
    job: str
    custom_model: str
    provisioned: str
    deployment: str
    job_token: str
    pt_token: str
    deployment_token: str

    def job_attempt(self, n: int) -> str:
        """Attempt 1 is the plain name; a rerun after Failed/Stopped uses ``-a2``, ``-a3``, ..."""
        return self.job if n <= 1 else f"{self.job}-a{n}"

    def model_attempt(self, n: int) -> str:
        return self.custom_model if n <= 1 else f"{self.custom_model}-a{n}"

    def job_token_attempt(self, n: int) -> str:
        return self.job_token if n <= 1 else f"{self.job_token}-a{n}"

    @staticmethod
    def attempt_of(job_name: str, base: str) -> int | None:
        """1 for ``base``, n for ``base-an``; None for anything else."""
        if job_name == base:
            return 1
        m = re.fullmatch(re.escape(base) + r"-a(\d+)", job_name)
        return int(m.group(1)) if m else None


def default_bucket(region: str, account: str | None, name: str) -> str:
    """``bedrock-forge-<12 hex>-<region>``: the hex is a hash of the account id when known (unique per
    account without putting the account id into manifests and URIs), else of the config name."""
    seed = account if account else f"name:{name}"
    return f"bedrock-forge-{hashlib.sha256(seed.encode()).hexdigest()[:12]}-{region}"


def resource_names(config: PipelineConfig, run_key: str, account: str | None = None) -> ResourceNames:
    """Deterministic names for one run. ``config.name`` is already lowercase alnum + single hyphens, ≤32."""
    base = f"{config.name}-{run_key}"                      # ≤ 45 chars
    names = ResourceNames(
        run_key=run_key,
        bucket=config.aws.bucket or default_bucket(config.aws.region, account, config.name),
        role=config.aws.role_name or f"bedrock-forge-{base}",   # IAM: ≤64
        job=f"forge-{base}",                                     # ≤51, attempts ≤ 55 (< 63)
        custom_model=f"forge-{base}",
        provisioned=f"forge-{base}-pt",
        deployment=f"forge-{base}-dep",
        job_token=f"forge-{run_key}-job",
        pt_token=f"forge-{run_key}-pt",
        deployment_token=f"forge-{run_key}-dep",
    )
    for value, rx, limit in ((names.job_attempt(99), JOB_NAME_RE, 63), (names.model_attempt(99), MODEL_NAME_RE, 63),
                             (names.provisioned, PT_NAME_RE, 63), (names.deployment, MODEL_NAME_RE, 63),
                             (names.job_token_attempt(99), TOKEN_RE, 256)):
        if len(value) > limit or not rx.fullmatch(value):
            raise ValueError(f"derived name {value!r} breaks Bedrock's name rules: shorten config.name")
    if len(names.role) > 64:
        raise ValueError(f"aws.role_name {names.role!r} is longer than IAM's 64 characters")
    if not BUCKET_RE.fullmatch(names.bucket) or ".." in names.bucket:
        raise ValueError(f"aws.bucket {names.bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, "
                         "digits, '-')")
    return names


_TAG_RE = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")   # REF §2.9


def standard_tags(run_key: str, flow_run_id: str, extra: dict[str, str] | None = None,
                  expires_in_hours: float | None = None, now: datetime | None = None) -> dict[str, str]:
    """Tags for everything the pipeline creates. ``expires_in_hours`` only for billing resources."""
    tags: dict[str, str] = {}
    for k, v in (extra or {}).items():
        if k in RESERVED_TAGS:
            raise ValueError(f"config.tags: {k!r} is reserved by bedrock-forge; use another key")
        if not _TAG_RE.fullmatch(k) or not _TAG_RE.fullmatch(str(v)) or not 1 <= len(k) <= 128 or len(str(v)) > 256:
            raise ValueError(f"config.tags: {k!r}={v!r}: tags allow letters, digits, spaces and ._:/=+@- "
                             "(key 1-128, value ≤256 chars)")
        tags[k] = str(v)
    tags.update({MANAGED_BY_KEY: MANAGED_BY_VALUE, RUN_KEY_TAG: run_key, FLOW_RUN_TAG: flow_run_id})
    if expires_in_hours is not None:
        t = (now or datetime.now(UTC)) + timedelta(hours=expires_in_hours)
        tags[EXPIRES_TAG] = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return tags


def to_tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """Bedrock's tag shape: lowercase ``key``/``value`` (REF §2.9)."""
    return [{"key": k, "value": v} for k, v in tags.items()]


def to_iam_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    """IAM and S3 use ``Key``/``Value``."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def parse_expiry(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def bedrock_tags(clients: Clients, arn: str) -> dict[str, str]:
    """Tags of a Bedrock resource as a dict (raises ClientError, e.g. ResourceNotFoundException)."""
    resp = clients.bedrock.list_tags_for_resource(resourceARN=arn)
    return {t["key"]: t["value"] for t in resp.get("tags", [])}


def is_managed(tags: dict[str, str]) -> bool:
    return tags.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE


class Backoff:
    """Capped exponential polling intervals: ``start``, ×``factor`` per poll, at most ``cap`` seconds."""

    def __init__(self, start: float = 0.5, factor: float = 1.5, cap: float = 60.0):
        self.next, self.factor, self.cap = min(start, cap), factor, cap

    def __call__(self) -> float:
        cur = self.next
        self.next = min(self.cap, self.next * self.factor)
        return cur
