"""A lease on "serving and evaluating this model", kept in S3 next to the evaluation record.

Two runs of the same config (a schedule and a UI trigger, say) share a run key, so they adopt the same
job and the same provisioned throughput. Without coordination the first to finish deletes the PT while
the second is still calling it. With the lease, one run serves and evaluates; the other waits for the
evaluation record it writes and reuses it (docs/design.md §2: AWS is the source of truth, no Prefect server
needed).

The lease is one small JSON object, ``<output prefix>/evaluation/<eval key>.lease``:
``{"owner": <flow run id>, "heartbeat": <epoch seconds>}``. Its holder refreshes it every
``HEARTBEAT_S``; a lease not refreshed for ``STALE_S`` belongs to a dead run (SIGKILL, lost worker) and
is taken over. Acquiring writes the lease, waits ``SETTLE_S`` and reads it back: S3 is strongly
consistent, so of two runs that write within the settle window both read the last writer and exactly
one goes on. ``acquire_or_wait`` is the whole protocol of a run: take the lease, or wait for the peer's
recorded evaluation (and take the lease over when the peer goes away without one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tasks.aws.s3uri import child_key, split_s3_uri
from tasks.run.liveness import repeating

HEARTBEAT_S = 20.0
STALE_S = 90.0
SETTLE_S = 1.0
PEER_POLL_S = 2.0     # how often a waiting run looks for the peer's record

T = TypeVar("T")


def lease_key(output_uri: str, eval_key: str) -> tuple[str, str]:
    bucket, prefix = split_s3_uri(output_uri)
    return bucket, child_key(prefix, f"evaluation/{eval_key}.lease")


def read_lease(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception as exc:  # noqa: BLE001 - absent or unreadable = no lease
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return None
        if isinstance(exc, ValueError):
            return None
        raise


def held_by_other(lease: dict | None, owner: str, now: float | None = None, ours: Iterable[str] = ()) -> bool:
    """A live lease of another run. ``ours``: earlier attempts of this same run (a rerun supersedes them:
    on-call reruns a run whose earlier attempt died holding the lease)."""
    if not lease or lease.get("owner") == owner or lease.get("owner") in set(ours):
        return False
    return (now or time.time()) - float(lease.get("heartbeat", 0)) < STALE_S


def _write(s3: Any, bucket: str, key: str, owner: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, ContentType="application/json",
                  Body=json.dumps({"owner": owner, "heartbeat": time.time()}).encode())


def acquire(s3: Any, bucket: str, key: str, owner: str, *, ours: Iterable[str] = (), settle_s: float = SETTLE_S,
            sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Take the lease; return None when we hold it, else the owner of the live lease we lost to."""
    current = read_lease(s3, bucket, key)
    if held_by_other(current, owner, ours=ours):
        return current["owner"]
    _write(s3, bucket, key, owner)
    sleep(settle_s)
    current = read_lease(s3, bucket, key)
    return current["owner"] if held_by_other(current, owner, ours=ours) else None


@dataclass(frozen=True)
class LeaseOutcome(Generic[T]):
    """``recorded`` is the peer's evaluation (reuse it, serve nothing); None: we hold the lease, serve."""

    recorded: T | None = None
    peer: str | None = None        # the flow run whose record was reused


def acquire_or_wait(s3: Any, bucket: str, key: str, owner: str, load_recorded: Callable[[], T | None], *,
                    deadline: float, ours: Iterable[str] = (), poll_s: float = PEER_POLL_S,
                    settle_s: float = SETTLE_S, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep,
                    on_wait: Callable[[str], None] | None = None) -> LeaseOutcome[T]:
    """Take the lease, or wait for the evaluation a live peer records (``load_recorded()``, polled every
    ``poll_s`` until ``deadline`` on ``clock``). When the peer's lease goes away without a record (it
    finished without one, or died and went stale) the lease is taken again. ``on_wait(peer)`` is called
    each time the run starts waiting for a peer. Raises ``RuntimeError`` at the deadline (a live peer held
    the lease that long without recording an evaluation)."""
    ours = list(ours)
    while True:
        peer = acquire(s3, bucket, key, owner, ours=ours, settle_s=settle_s, sleep=sleep)
        if peer is None:
            return LeaseOutcome()
        if on_wait is not None:
            on_wait(peer)
        while clock() < deadline:
            recorded = load_recorded()
            if recorded is not None:
                return LeaseOutcome(recorded=recorded, peer=peer)
            if not held_by_other(read_lease(s3, bucket, key), owner, ours=ours):
                break   # the peer finished without a record, or died: take the lease
            sleep(poll_s)
        else:
            raise RuntimeError(f"flow run {peer} held the evaluation lease for longer than serving.max_hours")


@contextmanager
def holding(s3: Any, bucket: str, key: str, owner: str, heartbeat_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Refresh the lease from a daemon thread while the body runs; delete it afterwards."""
    try:
        with repeating(lambda: _write(s3, bucket, key, owner), heartbeat_s, "forge-lease"):
            yield
    finally:
        try:
            if (read_lease(s3, bucket, key) or {}).get("owner") == owner:
                s3.delete_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - a leftover lease goes stale by itself
            pass
