"""Where every machine can read a run: its manifest in S3, next to the run's data (issue 18).

``s3://<run bucket>/<prefix>/runs/<run_id>/manifest.json`` — the run's bucket is the one `upload` creates, so the
copy starts once the bucket exists (after the upload step) and the local ``RUNS_DIR/<run_id>/manifest.json``
stays as the cache it always was. `forge status --runs-uri s3://...` and `forge rerun RUN_ID --runs-uri ...` read
it from any machine with AWS access and no local state.

Concurrent writers (the flow, its watchdog, a cancellation hook in another process) cannot lose each other's
updates: every write is conditional on the ETag this writer last saw (S3 conditional writes, ``If-Match`` /
``If-None-Match: *``, https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html); on
412 PreconditionFailed the writer re-reads the object, re-applies its own change to it and tries again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.s3json import PreconditionLost, get_json, is_missing, put_json
from tasks.aws.s3uri import child_key, s3_uri, split_s3_uri
from tasks.run.names import check_run_id

MANIFEST = "manifest.json"
MAX_CONFLICTS = 8


class StoreConflict(PreconditionLost):
    """The object changed since this writer read it (412), or appeared when it expected none."""


@dataclass(frozen=True)
class S3RunStore:
    """The runs folder in S3: ``runs_uri`` is ``s3://bucket/prefix/runs/``."""

    s3: Any
    bucket: str
    prefix: str          # key prefix ending in "/" (or "")

    @classmethod
    def at(cls, s3: Any, runs_uri: str) -> S3RunStore:
        bucket, key = split_s3_uri(runs_uri)
        return cls(s3, bucket, key if not key or key.endswith("/") else key + "/")

    @classmethod
    def of_run(cls, s3: Any, bucket: str, aws_prefix: str) -> S3RunStore:
        """The default runs folder of a run: ``<aws.prefix>/runs/`` in its bucket."""
        return cls(s3, bucket, child_key(aws_prefix, "runs/"))

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.prefix)

    def key(self, run_id: str) -> str:
        return f"{self.prefix}{check_run_id(run_id)}/{MANIFEST}"

    def get(self, run_id: str) -> tuple[dict, str] | None:
        """(manifest, ETag), or None when the run has no copy here."""
        return get_json(self.s3, self.bucket, self.key(run_id))

    def put(self, run_id: str, body: dict, etag: str | None) -> str:
        """Write if the object is still at ``etag`` (None: only if there is none); the new ETag.
        ``StoreConflict`` when another writer got there first."""
        try:
            return put_json(self.s3, self.bucket, self.key(run_id), body, etag)
        except PreconditionLost as err:
            raise StoreConflict(str(err)) from err

    def put_file(self, run_id: str, name: str, path: str | Path, content_type: str = "application/json") -> str:
        """A file of the run (e.g. the prepared data's report) next to its manifest: ``<run id>/<name>``; not written
        again when the copy there has the same content (its ETag is the MD5 of a single-part upload), so a rerun
        writes nothing. Returns its s3:// URI."""
        import hashlib

        key = f"{self.prefix}{check_run_id(run_id)}/{name}"
        body = Path(path).read_bytes()
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        try:
            if self.s3.head_object(Bucket=self.bucket, Key=key).get("ETag", "").strip('"') == md5:
                return s3_uri(self.bucket, key)
        except ClientError as err:
            if not is_missing(err):
                raise
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return s3_uri(self.bucket, key)

    def run_ids(self) -> list[str]:
        """The runs with a manifest here, oldest name first."""
        ids: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix,
                                                                       Delimiter="/"):
            for cp in page.get("CommonPrefixes") or []:
                ids.append(cp["Prefix"][len(self.prefix):].rstrip("/"))
        return sorted(ids)


def store_of(s3: Any, doc: Any) -> S3RunStore | None:
    """The store a run's manifest is kept in, from the manifest itself (its uploaded data's bucket and the
    config's ``aws.prefix``); None before the upload step (no bucket yet)."""
    data = (doc.resources or {}).get("data") if hasattr(doc, "resources") else None
    uri = data.get("output") or data.get("train") if isinstance(data, dict) else None
    if not uri:
        return None
    prefix = ((doc.config or {}).get("aws") or {}).get("prefix") or ""
    return S3RunStore.of_run(s3, split_s3_uri(uri)[0], prefix)


def write_through(store: S3RunStore, run_id: str, etag: str | None, doc_json: Callable[[], dict],
                  reapply: Callable[[dict], None] | None) -> tuple[str, dict | None]:
    """Push ``doc_json()``; on a conflict read the current copy, hand it to ``reapply`` (which makes it the
    writer's document with this writer's change applied again) and retry. Returns (ETag, the remote copy that was
    adopted or None). Without ``reapply`` a conflict overwrites (the writer's whole document wins)."""
    adopted: dict | None = None
    for _ in range(MAX_CONFLICTS):
        try:
            return store.put(run_id, doc_json(), etag), adopted
        except StoreConflict:
            current = store.get(run_id)
            if current is None:
                etag = None
                continue
            adopted, etag = current
            if reapply is not None:
                reapply(adopted)
    raise StoreConflict(f"{store.key(run_id)}: {MAX_CONFLICTS} conflicting writes in a row")
