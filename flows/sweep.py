"""The janitor: delete managed billing resources that outlived their run (docs/design.md §3, layer 3).

Catches what ``finally`` and the flow hooks cannot: a worker killed with SIGKILL, a dead server.
A provisioned throughput or deployment is deleted when it carries ``managed-by=bedrock-forge`` and its run is
gone (``tasks.teardown.sweep_verdict``): its ``forge-expires-at`` has passed, or the heartbeat its run keeps in S3
is stale or gone (whatever Prefect says: a lost worker leaves its flow run "Running"), or — for a resource made
before heartbeats — the Prefect flow run that created it is terminal. Nothing without the tag is touched. A run
costs a handful of read calls (List*, ListTagsForResource and one S3 GetObject per managed resource).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from tasks.aws.clients import make_clients
from tasks.aws.logs import install_log_redaction
from tasks.aws.redact import redact
from tasks.config import AwsConfig
from tasks.run.liveness import STALE_AFTER_S
from tasks.run.types import TeardownReport
from tasks.teardown import sweep

install_log_redaction()   # account ids out of every log line a run writes (tasks/aws/logs.py)

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def flow_run_terminal(flow_run_id: str) -> bool | None:
    """True/False from the Prefect API; None when unknown (no API configured, not found, unreachable)."""
    if not flow_run_id or flow_run_id == "local" or not os.environ.get("PREFECT_API_URL"):
        return None
    try:
        from uuid import UUID

        from prefect import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
        return run.state is not None and run.state.type.value in TERMINAL
    except Exception:  # noqa: BLE001 - unknown is a valid answer; expiry still applies
        return None


def sweep_now(region: str = "us-east-1", dry_run: bool = False, now: datetime | None = None,
              endpoint_url: str | None = None, stale_after_s: float | None = None) -> TeardownReport:
    clients = make_clients(AwsConfig(region=region, endpoint_url=endpoint_url))
    return sweep(clients, now=now or datetime.now(UTC), is_flow_run_terminal=flow_run_terminal, dry_run=dry_run,
                 stale_after_s=STALE_AFTER_S if stale_after_s is None else stale_after_s)


@flow(name="sweep-resources", log_prints=True)
def sweep_resources(dry_run: bool = False, region: str = "us-east-1",
                    stale_after_seconds: float = STALE_AFTER_S) -> dict:
    """Delete bedrock-forge billing resources whose run is gone: heartbeat stale, expired, or flow run ended.

    Args:
        dry_run: Only list what would be deleted.
        region: AWS region to sweep.
        stale_after_seconds: A resource whose run has not heartbeaten for this long is deleted.
    """
    report = sweep_now(region=region, dry_run=dry_run, stale_after_s=stale_after_seconds)
    log = get_run_logger()
    shown = {**redact(report.model_dump(mode="json")),
             "reasons": {redact(k): redact(v) for k, v in report.reasons.items()}}
    log.info("sweep (%s): %s %d resource(s): %s", region, "would delete" if dry_run else "deleted",
             len(report.deleted), redact([f"{a} ({report.reasons.get(a, '')})" for a in report.deleted]) or "-")
    for kept in shown["kept"]:
        log.info("sweep kept %s", kept)
    for err in shown["errors"]:
        log.error("sweep error: %s", err)
    if report.alive:
        raise RuntimeError(f"sweep could not delete {shown['alive']}: {shown['errors']}")
    return shown
