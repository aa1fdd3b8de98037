"""tasks/aws/retry.py: Prefect retries only transient errors; capped backoff."""

from __future__ import annotations

from tasks.aws import errors as aws_errors
from tasks.aws import retry as aws_retry
from tests.support.aws import client_error


class _State:
    def __init__(self, exc):
        self.exc = exc

    def result(self, raise_on_failure=True):
        return self.exc


def test_retry_condition_only_retries_transient():
    assert aws_retry.transient_retry_condition(None, None, _State(client_error("ThrottlingException", 429)))
    assert not aws_retry.transient_retry_condition(None, None, _State(client_error("ValidationException", 400)))
    assert not aws_retry.transient_retry_condition(None, None, _State(aws_errors.StageError("quota")))


def test_backoff_grows_by_its_factor_up_to_the_cap():
    b = aws_retry.Backoff(start=0.5, factor=2, cap=3)
    assert [b() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert aws_retry.Backoff(start=10, cap=2)() == 2
