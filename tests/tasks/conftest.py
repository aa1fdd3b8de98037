"""Fixtures for the stage tests against the emulator (helpers in tests/support/aws.py).

- ``env``: the session emulator (shared, fast; tests use unique run names).
- ``fresh_env``: a private emulator (fault rules, exact ledger counts), with customize's back-off shortened.
"""

from __future__ import annotations

import pytest

from tests.support.aws import use_fresh_emulator, use_session_emulator


@pytest.fixture
def env(monkeypatch, aws_env):
    return use_session_emulator(monkeypatch, aws_env)


@pytest.fixture
def fresh_env(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)
