"""AWS error classification: what Prefect task retries may retry, and one-line messages people can act on.

``is_transient`` decides what is retried (throttling, 5xx, timeouts, connection errors); everything
else fails fast with ``describe_error``: the service message plus a hint of what to do
(https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html; the classification is our policy).
"""

from __future__ import annotations

# docs/bedrock-facts.md §2.11: retryable codes; botocore's standard mode retries most of them already, Prefect task
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
    "AccessDeniedException": "the caller lacks a permission (docs/bedrock-facts.md §7 lists what the pipeline "
                             "needs: bedrock:*, iam:PassRole on the service role, s3 put/get); or model access is "
                             "not enabled for this base model in the Bedrock console",
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
