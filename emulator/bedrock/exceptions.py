"""Typed Bedrock errors. Each carries the exception name AWS puts in ``x-amzn-errortype`` and the HTTP status of
the error shape in botocore's service models (``bedrock`` 2023-04-20, ``bedrock-runtime`` 2023-09-30), read from
those models rather than written by hand. ``ApiError(code, message)`` stays the general form (fault injection
raises any modelled code by name)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def error_statuses() -> dict[str, int]:
    """Error shape name -> httpStatusCode, from botocore's bedrock and bedrock-runtime models."""
    import botocore.session
    out: dict[str, int] = {}
    session = botocore.session.get_session()
    for service in ("bedrock", "bedrock-runtime"):
        model = session.get_service_model(service)
        for name in model.shape_names:
            meta = model.shape_for(name).metadata
            if meta.get("exception") and meta.get("error", {}).get("httpStatusCode"):
                out.setdefault(name, int(meta["error"]["httpStatusCode"]))
    return out


STATUS: dict[str, int] = error_statuses()


class ApiError(Exception):
    """A Bedrock error answer: ``{"message": ...}`` with ``x-amzn-errortype: <code>`` and the modelled status."""

    code = "InternalServerException"

    def __init__(self, code: str | None = None, message: str = "", status: int | None = None):
        super().__init__(message)
        if code:
            self.code = code
        self.message = message
        self.status = status or STATUS.get(self.code, 400)


class _Typed(ApiError):
    def __init__(self, message: str):
        super().__init__(None, message)


class ValidationException(_Typed):
    code = "ValidationException"


class ResourceNotFoundException(_Typed):
    code = "ResourceNotFoundException"


class ConflictException(_Typed):
    code = "ConflictException"


class ServiceQuotaExceededException(_Typed):
    code = "ServiceQuotaExceededException"


class TooManyTagsException(_Typed):
    code = "TooManyTagsException"


class ThrottlingException(_Typed):
    code = "ThrottlingException"


class AccessDeniedException(_Typed):
    code = "AccessDeniedException"


def validation(msg: str) -> ValidationException:
    return ValidationException(msg)


def not_found(msg: str) -> ResourceNotFoundException:
    return ResourceNotFoundException(msg)
