"""Account ids inside ARNs become ``<account>`` in everything a run writes or logs (manifests, evaluation
records, log lines), so those can be shared; ``unredact`` puts the caller's account back when a recorded
ARN is used again."""

from __future__ import annotations

import re
from typing import Any

_ACCOUNT_IN_ARN = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)(\d{12})(:)")
REDACTED = "<account>"


def redact(value: Any) -> Any:
    """Replace 12-digit account ids inside ARNs, recursively."""
    if isinstance(value, str):
        return _ACCOUNT_IN_ARN.sub(lambda m: m.group(1) + REDACTED + m.group(3), value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def unredact(value: Any, account_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(f":{REDACTED}:", f":{account_id}:")
    if isinstance(value, dict):
        return {k: unredact(v, account_id) for k, v in value.items()}
    if isinstance(value, list):
        return [unredact(v, account_id) for v in value]
    return value
