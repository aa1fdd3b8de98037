"""Shared fixtures.

- ``prefect_backend`` (session, autouse): one Prefect test harness for the whole run.
- ``emulator`` (session): one local Bedrock emulator (``emulator.testing.running_emulator``) on a
  free port with a high speed factor; ``aws_env`` points boto3 at it through standard settings only.
- ``fresh_emulator`` (function): a private emulator for tests that inject faults or restart it.
"""

from __future__ import annotations

import os

import pytest

from tests.support import DUMMY_ENV

# Settings are read at `import prefect`: set them before anything imports it.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

@pytest.fixture(scope="session")
def prefect_backend():
    """Opt-in (tests that run flows/tasks request it): temp DB + API subprocess, started once."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    from emulator.testing import running_emulator

    with running_emulator(speed=2000.0, state_dir=tmp_path_factory.mktemp("emulator-state")) as emu:
        yield emu


@pytest.fixture
def fresh_emulator(tmp_path):
    from emulator.testing import running_emulator

    with running_emulator(speed=2000.0, state_dir=tmp_path / "emulator-state") as emu:
        yield emu


@pytest.fixture
def aws_env(monkeypatch, emulator):
    """Point every boto3 client at the session emulator, the way a user would: env vars only."""
    for k, v in DUMMY_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.url)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(k, raising=False)
    return emulator
