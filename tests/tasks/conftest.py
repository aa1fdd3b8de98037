"""Fixtures for the stage tests against the emulator (helpers in tests/support/aws.py).

- ``env``: the session emulator (shared, fast; tests use unique run names).
- ``fresh_env``: a private emulator (fault rules, exact ledger counts), with customize's back-off shortened.
- ``moto_clients``: the pipeline's clients (``make_clients``) on moto's in-process mock, dummy credentials.
"""

from __future__ import annotations

import pytest

from tasks.aws.clients import make_clients
from tasks.config import AwsConfig
from tests.support.aws import use_fresh_emulator, use_session_emulator


@pytest.fixture
def env(monkeypatch, aws_env):
    return use_session_emulator(monkeypatch, aws_env)


@pytest.fixture
def fresh_env(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


@pytest.fixture
def moto_clients(monkeypatch):
    from moto import mock_aws

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    with mock_aws():
        yield make_clients(AwsConfig(region="us-east-1"))
