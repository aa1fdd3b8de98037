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
from typing import Any

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


def _api_configured() -> bool:
    """A Prefect API to ask (the setting, from the environment or a settings context): without one, asking would
    start a temporary server that knows no runs."""
    try:
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    except Exception:  # noqa: BLE001
        return bool(os.environ.get("PREFECT_API_URL"))


def flow_run_terminal(flow_run_id: str) -> bool | None:
    """True/False from the Prefect API; None when unknown (no API configured, not found, unreachable)."""
    if not flow_run_id or flow_run_id == "local" or not _api_configured():
        return None
    try:
        from uuid import UUID

        from prefect import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
        return run.state is not None and run.state.type.value in TERMINAL
    except Exception:  # noqa: BLE001 - unknown is a valid answer; expiry still applies
        return None


def stuck_cancellations(older_than_s: float, now: datetime | None = None) -> list[Any]:
    """bedrock-forge flow runs in Cancelling for longer than ``older_than_s``: a live worker acts on a cancel
    within seconds, so these belong to a dead worker and nothing else will ever finish them. [] without an API."""
    if not _api_configured():
        return []
    try:
        from prefect import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING])),
                            tags=FlowRunFilterTags(all_=["bedrock-forge"]))
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=flt, limit=200)
    except Exception:  # noqa: BLE001 - unknown: nothing to settle this time
        return []
    now = now or datetime.now(UTC)
    return [r for r in runs if r.state and r.state.timestamp
            and (now - r.state.timestamp).total_seconds() > older_than_s]


def settle_cancellations(clients: Any, older_than_s: float, dry_run: bool = False,
                         now: datetime | None = None) -> list[str]:
    """What a dead worker's cancellation never did: delete the run's serving resources, stop its job (as the
    on_cancellation hook would), then mark the flow run Cancelled. Returns lines saying what was done."""
    from prefect import get_client
    from prefect.states import Cancelled

    from tasks.customize import stop_jobs_of_flow_run
    from tasks.teardown import teardown_run

    done: list[str] = []
    for run in stuck_cancellations(older_than_s, now):
        fr = str(run.id)
        if dry_run:
            done.append(f"flow run {fr} stuck in Cancelling: would delete its serving, stop its job, mark it Cancelled")
            continue
        report = teardown_run(clients, fr)
        stopped = stop_jobs_of_flow_run(clients, fr)
        if not report.alive:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run.id, Cancelled(message="cancelled by the sweep: its worker was gone "
                                                            "(serving deleted, job stopped)"), force=True)
        done.append(f"flow run {fr} stuck in Cancelling: deleted {report.deleted or '-'}, stopped {stopped or '-'}"
                    + (f", STILL BILLING {report.alive}" if report.alive else ", marked Cancelled"))
    return done


def sweep_now(region: str = "us-east-1", dry_run: bool = False, now: datetime | None = None,
              endpoint_url: str | None = None, stale_after_s: float | None = None) -> TeardownReport:
    clients = make_clients(AwsConfig(region=region, endpoint_url=endpoint_url))
    bound = STALE_AFTER_S if stale_after_s is None else stale_after_s
    settled = settle_cancellations(clients, bound, dry_run=dry_run, now=now)
    report = sweep(clients, now=now or datetime.now(UTC), is_flow_run_terminal=flow_run_terminal, dry_run=dry_run,
                   stale_after_s=bound)
    report.settled.extend(settled)
    return report


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
    for line in shown["settled"]:
        log.warning("sweep: %s", line)
    for err in shown["errors"]:
        log.error("sweep error: %s", err)
    if report.alive:
        raise RuntimeError(f"sweep could not delete {shown['alive']}: {shown['errors']}")
    return shown
