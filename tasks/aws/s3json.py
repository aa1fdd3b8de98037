"""One JSON document in S3 with conditional writes: the run state (tasks/run/store.py) and the model registry
(tasks/registry) are both kept this way.

``get_json`` returns (document, ETag) or None when there is none; ``put_json`` writes only if the object is still
at the ETag this writer read (``If-Match``), or only if there is none yet (``If-None-Match: *``), and raises
``PreconditionLost`` when another writer got there first (412/409) or deleted it meanwhile
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError


class PreconditionLost(RuntimeError):
    """The object changed since this writer read it, appeared when it expected none, or was deleted."""


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _status(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_missing(err: ClientError) -> bool:
    return _code(err) in ("NoSuchKey", "404", "NotFound") or _status(err) == 404


def get_json(s3: Any, bucket: str, key: str) -> tuple[Any, str] | None:
    """(parsed document, ETag), or None when the object does not exist (a missing bucket too: S3 answers both
    with 404). A body that is not JSON raises ValueError; any other error (AccessDenied, throttling) is raised:
    unknown is not "none"."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if is_missing(err):
            return None
        raise
    return json.loads(obj["Body"].read()), obj["ETag"]


def put_json(s3: Any, bucket: str, key: str, body: Any, etag: str | None) -> str:
    """Write ``body`` if the object is still at ``etag`` (None: only if there is none); the new ETag."""
    cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        out = s3.put_object(Bucket=bucket, Key=key, ContentType="application/json",
                            Body=json.dumps(body, indent=2, default=str).encode(), **cond)
    except ClientError as err:
        if _status(err) in (409, 412) or _code(err) in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise PreconditionLost(f"{key} changed under this writer") from err
        if etag and is_missing(err):
            raise PreconditionLost(f"{key} was deleted under this writer") from err
        raise
    return out["ETag"]
