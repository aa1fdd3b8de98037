"""Fixtures of the emulator's own tests: private emulators at ``SPEED`` (tests/support/emulator.py).

- ``private_emu`` (function): a fresh emulator for tests that inject faults, reset or fill quotas.
- ``fresh`` (function): the same, with boto3 clients: ``(handle, clients)``.
"""

from __future__ import annotations

import pytest

from emulator.testing import boto3_clients, running_emulator
from tests.support.emulator import SPEED


@pytest.fixture
def private_emu(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "state") as h:
        yield h


@pytest.fixture
def fresh(private_emu):
    """A private emulator and its clients (quota tests fill the account)."""
    return private_emu, boto3_clients(private_emu.url)
