"""Where moto's S3 differs from S3 in a way the pipeline would trip over, and how we bridge it.

moto (5.2) evaluates a bucket policy's statements *without their conditions*
(``moto.s3.models.FakeBucket.get_permission`` -> ``IAMPolicy.is_action_permitted``). A TLS-only
bucket policy — ``Deny s3:* when aws:SecureTransport = false``, which AWS recommends
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html) and which
``tasks/upload.py`` sets — therefore denies *every* request in moto, HTTPS or not.

The emulator stands in for an HTTPS endpoint, so it evaluates ``aws:SecureTransport`` as true:
statements conditioned only on ``aws:SecureTransport`` are kept or dropped as AWS would decide them
for a TLS request; any other statement goes to moto unchanged. The stored policy is untouched
(GetBucketPolicy returns exactly what was put).
"""

from __future__ import annotations

import json
from typing import Any

_PATCHED = False


def _applies_over_tls(stmt: dict[str, Any]) -> bool | None:
    """True/False when the statement's only condition is aws:SecureTransport; None otherwise."""
    cond = stmt.get("Condition")
    if not cond:
        return None
    if set(cond) != {"Bool"} or set(cond["Bool"]) != {"aws:SecureTransport"}:
        return None
    want = cond["Bool"]["aws:SecureTransport"]
    want = want[0] if isinstance(want, list) and want else want
    return str(want).lower() == "true"


def policy_as_seen_over_tls(policy: str) -> str:
    doc = json.loads(policy)
    stmts = doc.get("Statement", [])
    if isinstance(stmts, dict):
        stmts = [stmts]
    kept = []
    for s in stmts:
        verdict = _applies_over_tls(s)
        if verdict is None:
            kept.append(s)
        elif verdict:
            kept.append({k: v for k, v in s.items() if k != "Condition"})
    doc["Statement"] = kept
    return json.dumps(doc)


def apply() -> None:
    """Patch moto's bucket-policy check once per process (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        raw = self.policy.decode() if isinstance(self.policy, bytes) else self.policy
        return IAMPolicy(policy_as_seen_over_tls(raw)).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission
    _PATCHED = True
