"""Account ids out of everything a run prints or stores, so those can be shared.

- ``redact(value)``: the account id field of every ARN becomes ``<account>``, recursively (manifests,
  evaluation records, log lines); ``unredact(value, account)`` puts the caller's account back when a recorded
  ARN is used again. ARN format: ``arn:partition:service:region:account-id:resource``
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html); S3 bucket and object ARNs have no
  account field, so nothing is touched there.
- ``redact_text(text, account=None)`` / ``redact_obj(value, account=None)``: for printed or stored artifacts
  (``forge sweep`` output, the evaluation record in S3, error messages): ARNs as above, plus bare 12-digit account
  ids (``"Account": "123456789012"``, ``account 123456789012``) that stand alone — not part of a longer number,
  a word, a hyphenated name or a dotted value — plus, when ``account`` is known, that account id wherever it
  appears as a whole number (e.g. inside a bucket name ``logs-123456789012``).
"""

from __future__ import annotations

import re
from typing import Any

_ACCOUNT_IN_ARN = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)(\d{12})(:)")
# a bare 12-digit number standing alone: no letter, digit, '-', '_', '.' or '/' around it
_BARE_ACCOUNT = re.compile(r"(?<![\w./-])\d{12}(?![\w./-])")
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


def redact_text(text: str, account: str | None = None) -> str:
    """``text`` with account ids in ARNs, bare standalone 12-digit ids and (when given) ``account`` redacted."""
    out = _ACCOUNT_IN_ARN.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    out = _BARE_ACCOUNT.sub(REDACTED, out)
    if account and re.fullmatch(r"\d{12}", account):
        out = re.sub(rf"(?<!\d){account}(?!\d)", REDACTED, out)
    return out


def redact_obj(value: Any, account: str | None = None) -> Any:
    """``redact_text`` over every string of a JSON-like value (dict keys included); tuples become lists."""
    if isinstance(value, str):
        return redact_text(value, account)
    if isinstance(value, dict):
        return {(redact_text(k, account) if isinstance(k, str) else k): redact_obj(v, account)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v, account) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and account and str(value) == account:
        return REDACTED
    return value
