"""Retry and polling policy for AWS steps: the thin Prefect wrappers every stage's ``@task`` uses, and the
capped backoff long waits poll with (docs/design.md §4).

Prefect is imported inside ``aws_task`` / ``wait_task``, never at module import, so the stage modules (and
``tasks/estimate.py``, a data verb) import without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.aws.errors import is_transient


def transient_retry_condition(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only errors classified transient (docs/design.md §4)."""
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as err:  # noqa: BLE001 - the state may re-raise its exception
        exc = err
    return isinstance(exc, BaseException) and is_transient(exc)


def aws_task(fn: Callable, name: str, retries: int = 3) -> Any:
    """Thin Prefect wrapper for a get-or-create AWS step: retries only transient errors, backoff 2/4/8 s with
    jitter. No Prefect cache: the step itself asks AWS (the source of truth) what exists."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.tasks import exponential_backoff

    return task(name=name, retries=retries, retry_delay_seconds=exponential_backoff(2), retry_jitter_factor=0.5,
                retry_condition_fn=transient_retry_condition, cache_policy=NO_CACHE)(fn)


def wait_task(fn: Callable, name: str) -> Any:
    """Prefect wrapper for long waits: no task retries (a rerun re-adopts the resource and waits again)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, retries=0, cache_policy=NO_CACHE)(fn)


class Backoff:
    """Capped exponential polling intervals: ``start``, ×``factor`` per poll, at most ``cap`` seconds."""

    def __init__(self, start: float = 0.5, factor: float = 1.5, cap: float = 60.0):
        self.next, self.factor, self.cap = min(start, cap), factor, cap

    def __call__(self) -> float:
        cur = self.next
        self.next = min(self.cap, self.next * self.factor)
        return cur
