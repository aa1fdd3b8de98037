"""Tags on everything the pipeline creates: ``managed-by=bedrock-forge``, ``forge-run-key``,
``forge-flow-run-id``, ``forge-run-id`` (the run that created it: its owner), and for billing resources
``forge-expires-at`` (the sweeper's last-resort clock) and ``forge-heartbeat`` (where the owner's liveness
heartbeat lives in S3; the sweeper deletes a resource whose heartbeat went stale), docs/design.md §3.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

MANAGED_BY_KEY = "managed-by"
MANAGED_BY_VALUE = "bedrock-forge"
RUN_KEY_TAG = "forge-run-key"
FLOW_RUN_TAG = "forge-flow-run-id"
EXPIRES_TAG = "forge-expires-at"
RUN_ID_TAG = "forge-run-id"          # the forge run that created the resource: only it stops/deletes it on cancel
HEARTBEAT_TAG = "forge-heartbeat"    # s3://bucket/key of the owner's heartbeat (tasks/evaluation/lease.py)
RESERVED_TAGS = (MANAGED_BY_KEY, RUN_KEY_TAG, FLOW_RUN_TAG, EXPIRES_TAG, RUN_ID_TAG, HEARTBEAT_TAG)


_TAG_RE = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")   # docs/bedrock-facts.md §2.9


def fits_tag_value(value: str) -> bool:
    """A value Bedrock accepts as a tag value (docs/bedrock-facts.md §2.9)."""
    return len(value) <= 256 and bool(_TAG_RE.fullmatch(value))


def standard_tags(run_key: str, flow_run_id: str, extra: dict[str, str] | None = None,
                  expires_in_hours: float | None = None, now: datetime | None = None, *,
                  run_id: str | None = None, heartbeat: str | None = None) -> dict[str, str]:
    """Tags for everything the pipeline creates. ``expires_in_hours`` and ``heartbeat`` only for billing
    resources; ``run_id``: the forge run creating the resource (its owner)."""
    tags: dict[str, str] = {}
    for k, v in (extra or {}).items():
        if k in RESERVED_TAGS:
            raise ValueError(f"config.tags: {k!r} is reserved by bedrock-forge; use another key")
        if not _TAG_RE.fullmatch(k) or not _TAG_RE.fullmatch(str(v)) or not 1 <= len(k) <= 128 or len(str(v)) > 256:
            raise ValueError(f"config.tags: {k!r}={v!r}: tags allow letters, digits, spaces and ._:/=+@- "
                             "(key 1-128, value ≤256 chars)")
        tags[k] = str(v)
    tags.update({MANAGED_BY_KEY: MANAGED_BY_VALUE, RUN_KEY_TAG: run_key, FLOW_RUN_TAG: flow_run_id})
    if run_id and fits_tag_value(run_id):
        tags[RUN_ID_TAG] = run_id
    if heartbeat and fits_tag_value(heartbeat):
        tags[HEARTBEAT_TAG] = heartbeat
    if expires_in_hours is not None:
        t = (now or datetime.now(UTC)) + timedelta(hours=expires_in_hours)
        tags[EXPIRES_TAG] = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return tags


def to_tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """Bedrock's tag shape: lowercase ``key``/``value`` (docs/bedrock-facts.md §2.9)."""
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


def bedrock_tags(clients: Any, arn: str) -> dict[str, str]:
    """Tags of a Bedrock resource as a dict (raises ClientError, e.g. ResourceNotFoundException)."""
    resp = clients.bedrock.list_tags_for_resource(resourceARN=arn)
    return {t["key"]: t["value"] for t in resp.get("tags", [])}


def is_managed(tags: dict[str, str]) -> bool:
    return tags.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE
