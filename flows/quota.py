"""Bedrock quotas across runs, the Prefect part (issue 18 part 5): take slots of the global concurrency limits
``forge deploy --apply`` creates (names and what each step takes: tasks/run/quota.py), wait visibly when they are
full, hold them with a lease that expires when the run dies.

- ``take(claim, ...)`` → a ``Slot`` (or None: no such limit / no Prefect API — a missing limit is no limit, said
  once per process in the run's log). Before blocking, the limit is read: when it is full the run logs the limit
  and its use, ``on_wait`` marks the manifest, and the flow run's state is renamed "Waiting for quota" (a Running
  state, so the UI shows it; Prefect counts the rename as a run start: ``run_count`` goes up by one). The wait is
  bounded (``timeout_s``): ``QuotaWaitTimeout`` names the limit.
- The slot is held by Prefect's ``concurrency()`` with ``lease_duration``: a thread renews the lease while the run
  lives; a SIGKILLed run stops renewing and the server's repossessor frees the slot once the lease expired
  (prefect/server/services/repossessor.py, every 15 s by default) — a dead run never holds a slot for ever.
  https://docs.prefect.io/v3/concepts/global-concurrency-limits
- ``job_slot_needed``: whether the customize step takes a slot for this run's job (an adopted job of a live peer
  does not: tasks/run/quota.py ``job_slot``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from tasks.run.quota import Claim, job_slot, waiting_line

WAITING_STATE = "Waiting for quota"

_said: set[str] = set()
_said_lock = threading.Lock()


class QuotaWaitTimeout(TimeoutError):
    """A run waited for a quota slot longer than its bound."""


def _once(log, key: str, msg: str, *args: Any) -> None:
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    log.info(msg, *args)


def read_limit(name: str) -> tuple[str, Any]:
    """("ok", limit) | ("missing", None) | ("no-api", error text)."""
    try:
        from prefect import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.settings import PREFECT_API_URL
    except Exception as err:  # noqa: BLE001
        return "no-api", str(err)
    if not PREFECT_API_URL.value():
        return "no-api", "PREFECT_API_URL is not set"
    try:
        with get_client(sync_client=True) as client:
            return "ok", client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return "missing", None
    except Exception as err:  # noqa: BLE001 - an unreachable API is no coordination, not a failed run
        return "no-api", f"{type(err).__name__}: {err}"


def rename_state(flow_run_id: str, name: str | None, message: str | None = None) -> bool:
    """Set the flow run's Running state's name (``None``: plain "Running"). Best effort; True when set."""
    if not flow_run_id or flow_run_id == "local":
        return False
    try:
        from uuid import UUID

        from prefect import get_client
        from prefect.states import Running

        state = Running(name=name, message=message) if name else Running(message=message)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(UUID(flow_run_id), state, force=True)
        return True
    except Exception:  # noqa: BLE001 - a state name is a convenience
        return False


def flow_run_state(flow_run_id: str | None) -> str | None:
    """The Prefect state type of a flow run (``RUNNING`` ...), None when unknown."""
    if not flow_run_id or flow_run_id == "local":
        return None
    try:
        from uuid import UUID

        from prefect import get_client

        with get_client(sync_client=True) as client:
            fr = client.read_flow_run(UUID(flow_run_id))
        return fr.state.type.value if fr.state else None
    except Exception:  # noqa: BLE001
        return None


class Slot:
    """Slots taken from one limit; ``release()`` gives them back (idempotent; also on ``with`` exit)."""

    def __init__(self, claim: Claim, cm: AbstractContextManager, waited_s: float):
        self.claim = claim
        self.waited_s = waited_s
        self._cm = cm
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._cm.__exit__(None, None, None)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def take(claim: Claim, *, log: logging.Logger | Any, flow_run_id: str, timeout_s: float, lease_s: float,
         on_wait: Callable[[str, int, int], None] | None = None,
         on_taken: Callable[[float], None] | None = None) -> Slot | None:
    """Take ``claim.slots`` of limit ``claim.name``, waiting up to ``timeout_s``. None: not coordinated (no limit of
    that name, or no Prefect API). ``on_wait(line, active, limit)`` runs once when the run has to wait,
    ``on_taken(waited_s)`` once the slots are held after a wait."""
    status, limit = read_limit(claim.name)
    if status == "missing":
        _once(log, "missing:" + claim.name, "quota: no Prefect concurrency limit %r: Bedrock quota not coordinated "
              "across runs (`forge deploy --apply` creates it)", claim.name)
        return None
    if status == "no-api":
        _once(log, "no-api", "quota: no Prefect API (%s): Bedrock quotas not coordinated across runs", limit)
        return None
    if not limit.active:
        _once(log, "inactive:" + claim.name, "quota: limit %r is inactive: not coordinated", claim.name)
        return None
    if claim.slots > limit.limit:
        raise QuotaWaitTimeout(f"{claim.name}: this run needs {claim.slots} slot(s) ({claim.what}) but the limit is "
                               f"{limit.limit}: it could never start. Raise the limit (Prefect UI: Concurrency) or "
                               "ask for less")
    waited = limit.active_slots + claim.slots > limit.limit
    t0 = time.monotonic()
    if waited:
        line = waiting_line(claim.name, limit.active_slots, limit.limit, claim.slots, claim.what)
        log.warning(line)
        if on_wait is not None:
            on_wait(line, limit.active_slots, limit.limit)
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    cm = _concurrency(claim, flow_run_id, timeout_s, lease_s)
    try:
        cm.__enter__()
    except TimeoutError as err:
        raise QuotaWaitTimeout(f"waited {time.monotonic() - t0:.0f} s (the bound) for {claim.slots} slot(s) of "
                               f"{claim.name} ({claim.what}); still full. Raise the limit if the account's quota "
                               "allows, or run later") from err
    except ConcurrencySlotAcquisitionError as err:
        # the API refused the request itself (not a full limit): the run goes on uncoordinated, and says so; the
        # steps still wait out a ServiceQuotaExceeded from Bedrock (job.on_quota_full)
        log.warning("quota: could not take %s from %s (%s): going on without coordination", claim.what, claim.name,
                    err)
        return None
    waited_s = time.monotonic() - t0
    if waited:
        log.info("quota: took %d slot(s) of %s after waiting %.1f s", claim.slots, claim.name, waited_s)
        if on_taken is not None:
            on_taken(waited_s)
    else:
        log.info("quota: took %d slot(s) of %s (%s)", claim.slots, claim.name, claim.what)
    return Slot(claim, cm, waited_s)


def _concurrency(claim: Claim, flow_run_id: str, timeout_s: float, lease_s: float) -> AbstractContextManager:
    from prefect.concurrency.sync import concurrency

    holder = None
    if flow_run_id and flow_run_id != "local":
        from uuid import UUID

        from prefect.client.schemas.objects import ConcurrencyLeaseHolder

        holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(flow_run_id))
    # renewal failures are logged, not fatal: a training job keeps running whatever the API does
    return concurrency(claim.name, occupy=claim.slots, timeout_seconds=timeout_s, lease_duration=lease_s,
                       strict=False, holder=holder, raise_on_lease_renewal_failure=False)


def job_slot_needed(clients: Any, latest: dict | None, *, will_create: bool, run_id: str,
                    flow_run_ids: list[str]) -> tuple[bool, str]:
    """Whether the customize step takes a training slot for the run's job (tasks/run/quota.py ``job_slot``): reads
    the job's tags (who created it) and, for another run's job, that flow run's Prefect state. Read-only."""
    from tasks.aws.tags import FLOW_RUN_TAG, RUN_ID_TAG, bedrock_tags

    tags: dict[str, str] = {}
    if latest is not None and not will_create and latest.get("status") == "InProgress":
        try:
            tags = bedrock_tags(clients, latest["jobArn"]) or {}
        except Exception:  # noqa: BLE001 - unknown creator: job_slot counts the job
            tags = {}
    creator = tags.get(FLOW_RUN_TAG)
    ours = creator in flow_run_ids if creator else False
    decision, why = job_slot(
        latest.get("status") if latest else None, will_create=will_create, job_run_id=tags.get(RUN_ID_TAG),
        our_run_id=run_id, creator_flow_run=creator, our_flow_runs=flow_run_ids,
        creator_state=None if (not creator or ours) else flow_run_state(creator))
    return decision == "take", why
