"""Length, pattern and enum limits of request members, read from botocore's service model
(``botocore.session.get_session().get_service_model("bedrock")``) instead of written by hand. botocore's client
does not check them (docs/bedrock-facts.md §1); Bedrock does, with the ValidationException text below.

``check(op, "jobName", value)`` checks one member of an operation's input (a dotted path: ``jobTags.key``,
``trainingDataConfig.s3Uri``; a list's members are reached through the list's name). A member the model gives
no limit passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from emulator.bedrock.exceptions import validation


@dataclass(frozen=True)
class Limit:
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] = ()

    @property
    def regex(self) -> re.Pattern | None:
        return _compile(self.pattern) if self.pattern else None


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern:
    return re.compile(pattern)


@lru_cache(maxsize=2)
def _model(service: str):
    import botocore.session
    return botocore.session.get_session().get_service_model(service)


@lru_cache(maxsize=512)
def limit(op: str, path: str, service: str = "bedrock") -> Limit:
    """The botocore limits of ``path`` in ``op``'s input shape."""
    shape = _model(service).operation_model(op).input_shape
    for part in path.split("."):
        while shape.type_name == "list":
            shape = shape.member
        shape = shape.members[part]
    while shape.type_name == "list" and not (shape.metadata.get("min") or shape.metadata.get("max")):
        shape = shape.member
    meta = shape.metadata
    enum = tuple(shape.enum) if shape.type_name == "string" and shape.enum else ()
    return Limit(meta.get("min"), meta.get("max"), meta.get("pattern"), enum)


def _err(field: str, value: Any, what: str):
    return validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                      f"Member must {what}")


def check_len(field: str, value: str, lo: int | None, hi: int | None) -> None:
    lo = 0 if lo is None else lo
    if len(value) < lo or (hi is not None and len(value) > hi):
        raise _err(field, value, f"have length between {lo} and {hi}")


def check_pattern(field: str, value: str, pattern: re.Pattern, hint: str = "") -> None:
    if not pattern.fullmatch(value):
        raise _err(field, value, f"satisfy regular expression pattern: {pattern.pattern}"
                   + (f" ({hint})" if hint else ""))


def check_enum(field: str, value: Any, allowed: list[str] | tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise _err(field, value, f"satisfy enum value set: [{', '.join(allowed)}]")


def check(op: str, path: str, value: Any, *, field: str | None = None, hint: str = "",
          service: str = "bedrock") -> None:
    """Check ``value`` against the limits botocore's model gives ``op``'s input member ``path``."""
    if value is None:
        return
    lim = limit(op, path, service)
    field = field or path
    if lim.enum:
        check_enum(field, value, lim.enum)
        return
    if isinstance(value, str):
        if lim.min is not None or lim.max is not None:
            check_len(field, value, lim.min, lim.max)
        if lim.regex is not None:
            check_pattern(field, value, lim.regex, hint)
    elif isinstance(value, int) and not isinstance(value, bool):
        if (lim.min is not None and value < lim.min) or (lim.max is not None and value > lim.max):
            raise _err(field, value, f"have value between {lim.min} and {lim.max}")


S3_URI_HINT = "bucket names are lowercase; keys may use letters, digits, -!_*'(). and /, no empty segment"


def parse_s3_uri(field: str, uri: Any) -> tuple[str, str]:
    """(bucket, key) of an S3 URI member, checked against botocore's S3Uri limits (no ``s3://b//k``)."""
    if not isinstance(uri, str) or not uri:
        raise validation(f"{field} is required")
    lim = limit("CreateModelCustomizationJob", "trainingDataConfig.s3Uri")
    check_len(field, uri, lim.min, lim.max)
    if lim.regex is not None:
        check_pattern(field, uri, lim.regex, S3_URI_HINT)
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key
