"""Liveness of a run that holds a serving resource, kept in S3 — it does not depend on Prefect.

While a run serves (from just before it creates its provisioned throughput or deployment until that is
deleted) it writes a small JSON object every ``HEARTBEAT_S`` seconds:
``s3://<run bucket>/<prefix>/output/<run key>/serving/heartbeat.json`` =
``{"owner": <flow run id>, "run_id": ..., "heartbeat": <epoch seconds>, "host": ..., "pid": ...}``.
The serving resource carries the object's address in its ``forge-heartbeat`` tag, so the sweeper
(``tasks/teardown.py: sweep``) can judge the owner without a Prefect server: a heartbeat older than
``STALE_AFTER_S`` (or gone while the resource still lives) means the owner is dead or finished without
deleting it — delete. A live heartbeat protects the resource whatever Prefect says about the flow run.

Why S3: the run already writes there (the same bucket and credentials), it is strongly consistent, and a
read costs nothing that bills by the hour. Why these numbers: a beat every 20 s and a stale bound of 120 s
(6 missed beats) tolerate a slow S3 call or a long GC pause, and with the sweep deployment every 5 min the
worst case from a lost worker to the delete is 120 + 300 s (docs/operations.md); the run's own watchdog
(``flows/watchdog.py``) normally deletes within seconds.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tasks.aws.s3uri import s3_uri, split_s3_uri

HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0


def heartbeat_location(bucket: str, prefix: str, run_key: str) -> tuple[str, str]:
    """(bucket, key) of a run key's serving heartbeat: next to the job output (tasks/upload.py)."""
    base = prefix.strip("/")
    return bucket, f"{base + '/' if base else ''}output/{run_key}/serving/heartbeat.json"


def heartbeat_uri(bucket: str, prefix: str, run_key: str) -> str:
    return s3_uri(*heartbeat_location(bucket, prefix, run_key))


def write_heartbeat(s3: Any, bucket: str, key: str, owner: str, run_id: str | None = None) -> None:
    body = {"owner": owner, "run_id": run_id, "heartbeat": time.time(), "host": socket.gethostname(),
            "pid": os.getpid()}
    s3.put_object(Bucket=bucket, Key=key, ContentType="application/json", Body=json.dumps(body).encode())


@dataclass(frozen=True)
class Heartbeat:
    """What the sweeper reads: ``age_s`` None when the object is gone (the owner finished or never began)."""

    age_s: float | None
    owner: str | None = None
    run_id: str | None = None


def read_heartbeat(s3: Any, uri: str, now: float | None = None) -> Heartbeat:
    """The owner's last beat. Raises on anything but "not there" (AccessDenied, throttling): unknown ≠ dead."""
    bucket, key = split_s3_uri(uri)
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - classified below
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return Heartbeat(age_s=None)
        raise
    try:
        body = json.loads(obj["Body"].read())
        beat = float(body["heartbeat"])
    except (ValueError, KeyError, TypeError):
        # unreadable body: fall back on when S3 last saw a write
        modified = obj.get("LastModified")
        beat = modified.timestamp() if modified is not None else 0.0
        body = {}
    return Heartbeat(age_s=max(0.0, (now or time.time()) - beat), owner=body.get("owner"),
                     run_id=body.get("run_id"))


@contextmanager
def repeating(fn: Callable[[], None], interval_s: float, name: str) -> Iterator[None]:
    """Call ``fn`` every ``interval_s`` from a daemon thread while the body runs (a failing call is skipped: a
    missed beat only matters after the stale bound); stop it afterwards."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass

    threading.Thread(target=loop, name=name, daemon=True).start()
    try:
        yield
    finally:
        stop.set()


@contextmanager
def beating(s3: Any, bucket: str, key: str, owner: str, run_id: str | None = None,
            interval_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Write the heartbeat now (raises if S3 refuses: serving must not start unwatched), then every
    ``interval_s`` while the body runs; delete it afterwards."""
    write_heartbeat(s3, bucket, key, owner, run_id)
    try:
        with repeating(lambda: write_heartbeat(s3, bucket, key, owner, run_id), interval_s, "forge-heartbeat"):
            yield
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - a leftover heartbeat goes stale by itself
            pass
