"""tasks/aws/errors.py: transient/permanent classification, one-line messages, StageError, lost races."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from tasks.aws import errors as aws_errors
from tests.support.aws import client_error


@pytest.mark.parametrize("code,status", [("ThrottlingException", 429), ("ServiceUnavailableException", 503),
                                         ("InternalServerException", 500), ("ModelNotReadyException", 429),
                                         ("SomethingNew", 502), ("ModelTimeoutException", 408)])
def test_transient_errors(code, status):
    assert aws_errors.is_transient(client_error(code, status))


@pytest.mark.parametrize("code,status", [("ValidationException", 400), ("AccessDeniedException", 403),
                                         ("ResourceNotFoundException", 404), ("ServiceQuotaExceededException", 400),
                                         ("ConflictException", 400), ("ModelErrorException", 424)])
def test_permanent_errors(code, status):
    assert not aws_errors.is_transient(client_error(code, status))


def test_connection_problems_are_transient_and_plain_bugs_are_not():
    assert aws_errors.is_transient(EndpointConnectionError(endpoint_url="http://x"))
    assert aws_errors.is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert not aws_errors.is_transient(ValueError("bad"))
    assert not aws_errors.is_transient(aws_errors.StageError("x"))


def test_describe_error_has_operation_service_message_and_hint():
    text = aws_errors.describe_error(client_error("ServiceQuotaExceededException", 400, "Too many jobs"))
    assert "CreateModelCustomizationJob" in text and "Too many jobs" in text and "Service Quotas" in text
    assert "Traceback" not in text
    wrapped = aws_errors.stage_error("create job x", client_error("ValidationException", 400, "bad epochCount"))
    assert (
        isinstance(wrapped, aws_errors.StageError)
        and "create job x" in str(wrapped)
        and "bad epochCount" in str(wrapped)
    )
    assert isinstance(
        aws_errors.stage_error("x", client_error("ServiceQuotaExceededException", 400)), aws_errors.QuotaExceeded
    )
    throttled = client_error("ThrottlingException", 429)
    assert aws_errors.stage_error("x", throttled) is throttled  # transient errors pass through for Prefect retries


@pytest.mark.parametrize(
    "code, message, taken",
    [
        ("ConflictException", "A job with that token exists", True),
        ("ValidationException", "A model customization job named forge-x already exists.", True),
        ("ValidationException", "epochCount=99 is out of range", False),
        ("ThrottlingException", "Rate exceeded", False),
    ],
)
def test_is_name_taken_adopts_on_either_spelling_of_a_lost_race(code, message, taken):
    from botocore.exceptions import ClientError

    from tasks.aws.errors import is_name_taken

    err = ClientError({"Error": {"Code": code, "Message": message}}, "CreateModelCustomizationJob")
    assert is_name_taken(err) is taken
