"""The fault matrix's judge: what the emulator's ledger says happened (calls made, resources created).

Plain functions over the ledger dict (``EmulatorHandle.ledger()``). The call filter and the live-serving
check are the emulator's own helpers (``emulator.testing``), shared with the flow tests; this module adds
what only the matrix needs: which calls carried an injected fault, and which creates were duplicates.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from emulator.testing import SERVING_TYPES, alive_serving
from emulator.testing import ledger_calls as calls

__all__ = ["INJECTED", "JOB_TYPE", "SERVING_TYPES", "alive_serving", "calls", "double_production", "duplicates",
           "injected"]

JOB_TYPE = "model-customization-job"

INJECTED = ("ThrottlingException", "ServiceUnavailableException", "InternalServerException")


def injected(ledger: dict) -> list[dict]:
    """Calls answered with an injected error (a normal 404 of a lookup is not one)."""
    return [c for c in ledger["calls"] if c.get("error") in INJECTED]


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _interval(r: dict, end_states: tuple[str, ...]) -> tuple[datetime, datetime | None]:
    hist = r.get("history") or []
    start = _t(hist[0]["t"])
    end = next((_t(h["t"]) for h in hist if h["state"] in end_states), None)
    return start, end


def duplicates(ledger: dict) -> list[str]:
    """Duplicate creates, judged from the resources the emulator holds (every create is one resource)."""
    out: list[str] = []
    by_name: dict[tuple[str, str], list[dict]] = defaultdict(list)
    jobs_by_key: dict[str, list[dict]] = defaultdict(list)
    for r in ledger["resources"].values():
        if r["type"] == JOB_TYPE or r["type"] in SERVING_TYPES:
            by_name[(r["type"], r["name"])].append(r)
        if r["type"] == JOB_TYPE and (r.get("tags") or {}).get("forge-run-key"):
            jobs_by_key[r["tags"]["forge-run-key"]].append(r)
    for (typ, name), rs in by_name.items():
        if typ == JOB_TYPE:
            if len(rs) > 1:
                out.append(f"{len(rs)} jobs named {name}")
            continue
        # a serving resource may be created again after the last one was deleted (one per serving window)
        ivs = sorted(_interval(r, ("Deleted", "Failed")) for r in rs)
        for (_s1, e1), (s2, _e2) in zip(ivs, ivs[1:], strict=False):
            if e1 is None or e1 > s2:
                out.append(f"two {typ} named {name} alive at once")
    for key, rs in jobs_by_key.items():
        ivs = sorted(_interval(r, ("Failed", "Stopped")) for r in rs)
        for (_s1, e1), (s2, _e2) in zip(ivs, ivs[1:], strict=False):
            if e1 is None or e1 > s2:
                out.append(f"a second job for run key {key} while the first had not ended Failed/Stopped")
    out += double_production(ledger)
    return out


def double_production(ledger: dict) -> list[str]:
    """A lineage with more than one production serving (forge-role=production) alive at the end: blue/green may
    hold two for the moment of a switch, never afterwards."""
    by_lineage: dict[str, list[str]] = defaultdict(list)
    for arn in alive_serving(ledger, production=True):
        tags = ledger["resources"][arn].get("tags") or {}
        if tags.get("forge-role") == "production":
            by_lineage[tags.get("forge-lineage", "?")].append(arn)
    return [f"{len(arns)} production servings of lineage {lineage} alive" for lineage, arns in by_lineage.items()
            if len(arns) > 1]

