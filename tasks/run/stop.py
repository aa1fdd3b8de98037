"""A stop request (Ctrl-C) that cannot be lost.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread happens to be. Raised inside a
finalizer, a logging handler or a library's ``except BaseException`` it is swallowed ("Exception ignored in ..."),
and the run went on to "succeeded" although the operator pressed Ctrl-C (fault matrix row ``ctrl-c``, once in
~20 runs, issue 15). So the signal handler also records the request here, and the run checks it where stopping is
safe and cheap: at every step boundary (``flows/context.py``) and while evaluation waits for model calls
(``tasks/evaluate.py``). A swallowed interrupt is then re-raised within one check, and the run's ``finally``
deletes its serving resources as for any Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()
_reason: list[str] = []


def request(reason: str) -> None:
    """Record that the run must stop (idempotent; the first reason wins)."""
    if not _requested.is_set():
        _reason.append(reason)
        _requested.set()


def requested() -> bool:
    return _requested.is_set()


def raise_if_requested() -> None:
    """Raise ``KeyboardInterrupt`` when a stop was requested: a no-op otherwise."""
    if _requested.is_set():
        raise KeyboardInterrupt(_reason[0] if _reason else "stop requested")


def clear() -> None:
    _requested.clear()
    _reason.clear()


@contextmanager
def ctrl_c_recorded() -> Iterator[None]:
    """While in the block, SIGINT records a stop request and raises ``KeyboardInterrupt`` (Python's default
    behaviour plus the record). Main thread only, and not where SIGINT is ignored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        yield      # SIG_IGN: started as a background job of a non-interactive shell, which ignores Ctrl-C by design
        return

    def on_sigint(signum, frame):
        request("Ctrl-C (SIGINT)")
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
