"""tasks/run/stop.py: a Ctrl-C is recorded as well as raised, so one swallowed somewhere still stops the run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tasks.run import stop


@pytest.fixture(autouse=True)
def _clean():
    """Python's own SIGINT handler, whatever this process inherited (a suite started in the background of a
    non-interactive shell runs with SIGINT ignored)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    stop.clear()
    yield
    stop.clear()
    signal.signal(signal.SIGINT, before)


def test_sigint_inside_the_block_raises_and_is_recorded():
    with pytest.raises(KeyboardInterrupt):
        with stop.ctrl_c_recorded():
            assert not stop.requested()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)          # the handler runs at the next bytecode: never reached
    assert stop.requested()
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
        stop.raise_if_requested()


def test_the_previous_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with stop.ctrl_c_recorded():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_an_ignored_sigint_stays_ignored():
    """A background job of a non-interactive shell ignores Ctrl-C by design: not turned into a stop."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop.ctrl_c_recorded():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert not stop.requested()
    finally:
        signal.signal(signal.SIGINT, before)


def test_no_request_no_raise():
    stop.raise_if_requested()
    stop.request("first")
    stop.request("second")
    with pytest.raises(KeyboardInterrupt, match="first"):
        stop.raise_if_requested()
