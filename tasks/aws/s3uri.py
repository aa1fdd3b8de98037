"""``s3://bucket/key`` URIs: the one place that splits and joins them.

``split_s3_uri("s3://b/p/k.json") == ("b", "p/k.json")``; a bucket-only URI has the key ``""``.
``s3_uri("b", "p/k.json") == "s3://b/p/k.json"``. Keys are kept as they are (no normalisation).
"""

from __future__ import annotations

SCHEME = "s3://"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` URI; ValueError for anything else or a URI without a bucket."""
    if not isinstance(uri, str) or not uri.startswith(SCHEME):
        raise ValueError(f"not an S3 URI (expected s3://bucket/key): {uri!r}")
    bucket, _, key = uri[len(SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI without a bucket name: {uri!r}")
    return bucket, key


def s3_uri(bucket: str, key: str = "") -> str:
    """``s3://bucket/key`` (``s3://bucket/`` for an empty key)."""
    if not bucket or "/" in bucket:
        raise ValueError(f"not an S3 bucket name: {bucket!r}")
    return f"{SCHEME}{bucket}/{key}"


def child_key(prefix: str, name: str) -> str:
    """``name`` under a key prefix: ``child_key("out/", "a.json") == "out/a.json"``; ``""`` gives ``name``."""
    return f"{prefix.rstrip('/')}/{name}".lstrip("/")
