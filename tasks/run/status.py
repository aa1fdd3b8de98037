"""What `forge status` says a run is: the manifest's word checked against Prefect and the run's S3 heartbeat.

A manifest says "running" until its run writes an end; a run whose process died with no watchdog left to write
"interrupted" (a lost machine) says "running" forever. So the state shown is judged from three sources, each
optional, none trusted alone:

- the manifest (local folder or its S3 copy, tasks/run/store.py): status, the step that is running, serving;
- Prefect's flow-run state of the latest attempt (when a Prefect API is configured): Crashed, Cancelled,
  Cancelling — Prefect's zombie automation (``forge deploy --apply``) marks a run whose heartbeats stopped Crashed;
- the serving heartbeat in S3 (tasks/run/liveness.py) while the run serves: older than ``STALE_AFTER_S`` means the
  owner is dead, whatever anyone says.

Plain functions over plain values: the CLI gathers the inputs (tests/tasks/run/test_status.py is the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.run.liveness import STALE_AFTER_S, Heartbeat

TERMINAL = ("succeeded", "failed", "gate_failed", "interrupted")
NO_HEARTBEAT = "crashed (no heartbeat)"


@dataclass(frozen=True)
class RunState:
    """``label``: what to show; ``step``: the step running (or the one that failed); ``why``: the evidence;
    ``serving``: serving ARNs the manifest records and does not record deleted."""

    label: str
    step: str | None = None
    why: str = ""
    serving: list[str] = field(default_factory=list)


def current_step(doc: dict[str, Any]) -> str | None:
    """The step recorded running, else the last one that failed."""
    steps = doc.get("steps") or {}
    running = [s for s, rec in steps.items() if (rec or {}).get("status") == "running"]
    if running:
        return running[-1]
    failed = [s for s, rec in steps.items() if (rec or {}).get("status") == "failed"]
    return failed[-1] if failed else None


def recorded_serving(doc: dict[str, Any]) -> list[str]:
    """Serving the run recorded (``resources.serving.arn``) and its teardown does not record gone."""
    serving = (doc.get("resources") or {}).get("serving") or {}
    arn = serving.get("arn") if isinstance(serving, dict) else None
    if not arn:
        return []
    td = doc.get("teardown") or {}
    gone = set(td.get("deleted") or []) | set(td.get("already_gone") or [])
    return [] if arn in gone else [arn]


def heartbeat_location_of(doc: dict[str, Any], bucket: str | None = None) -> tuple[str, str] | None:
    """(bucket, key) of the run's serving heartbeat, from its manifest (None before the upload step)."""
    from tasks.aws.s3uri import split_s3_uri
    from tasks.run.liveness import heartbeat_location

    run_key = doc.get("run_key")
    output = ((doc.get("resources") or {}).get("data") or {}).get("output")
    if not run_key or not output:
        return None
    prefix = ((doc.get("config") or {}).get("aws") or {}).get("prefix", "bedrock-forge")
    return heartbeat_location(bucket or split_s3_uri(output)[0], prefix, run_key)


def judge(doc: dict[str, Any], *, prefect: dict[str, Any] | None = None, heartbeat: Heartbeat | None = None,
          stale_after_s: float = STALE_AFTER_S) -> RunState:
    """The state to show. ``prefect``: the latest attempt's flow-run ``state`` ({"type", "name", "message"}) or
    None when no Prefect API answered; ``heartbeat``: the serving heartbeat read from S3, or None if not read."""
    status = doc.get("status") or "running"
    step, serving = current_step(doc), recorded_serving(doc)
    ptype = str((prefect or {}).get("type") or "").upper()
    pmsg = str((prefect or {}).get("message") or "")
    stale = heartbeat is not None and heartbeat.age_s is not None and heartbeat.age_s > stale_after_s
    beat = (f"serving heartbeat {heartbeat.age_s:.0f} s old (stale after {stale_after_s:g} s)"
            if heartbeat is not None and heartbeat.age_s is not None else "")

    def state(label: str, why: str) -> RunState:
        return RunState(label=label, step=step, why=why, serving=serving)

    if status in TERMINAL:
        if ptype == "CANCELLED" and status in ("interrupted", "failed"):
            return state("cancelled", f"the manifest says {status}; Prefect says Cancelled")
        return state(status, "the manifest")
    # the manifest says running: believe it only as far as the other sources allow
    if ptype == "CRASHED":
        label = NO_HEARTBEAT if "heartbeat" in pmsg.lower() or stale else "crashed"
        return state(label, f"Prefect says Crashed ({pmsg[:120]})" if pmsg else "Prefect says Crashed")
    if stale:
        return state(NO_HEARTBEAT, beat + (f"; Prefect says {prefect.get('name')}" if prefect else ""))
    if ptype == "CANCELLED":
        return state("cancelled", "Prefect says Cancelled; the manifest was not ended (its process died?)")
    if ptype == "CANCELLING":
        return state("cancelling", "Prefect says Cancelling" + (f"; {beat}" if beat else ""))
    waiting = doc.get("waiting") or {}
    if waiting and ptype in ("", "RUNNING", "PENDING", "SCHEDULED", "PAUSED"):
        return RunState(label="waiting for quota", step=waiting.get("step") or step, serving=serving,
                        why=f"{waiting.get('limit')} ({waiting.get('in_use')}/{waiting.get('limit_value')} in use, "
                            f"needs {waiting.get('needs')}) since {waiting.get('since')}")
    if ptype in ("FAILED", "COMPLETED"):
        return state("failed" if ptype == "FAILED" else "ended (manifest not updated)",
                     f"Prefect says {prefect.get('name')}; the manifest was not ended")
    if ptype in ("RUNNING", "PENDING", "SCHEDULED", "PAUSED"):
        return state("running", f"Prefect says {prefect.get('name')}" + (f"; {beat}" if beat else ""))
    if beat:
        return state("running", beat)
    return state("running (unconfirmed)", "no Prefect state and no serving heartbeat to check it against")
