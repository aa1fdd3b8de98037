"""The run manifest: the lineage of one run, written progressively to RUNS_DIR/<run_id>/manifest.json.

Keys are a contract (DESIGN.md §8): run_id, run_key, status, config, data, steps, resources,
metrics, gate, cost, timings. Every write is atomic (temp file + rename), so a crashed run still
leaves a readable manifest of what it did. Account ids inside ARNs are redacted before writing
(`arn:aws:...:<account>:...`), so the file can be shared and published as an artifact.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STEPS = ["prepare", "upload", "create-role", "customize", "poll", "provision", "evaluate", "teardown"]

_ACCOUNT_IN_ARN = re.compile(r"(arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:)(\d{12})(:)")
REDACTED = "<account>"


def redact(value: Any) -> Any:
    """Replace 12-digit account ids inside ARNs, recursively."""
    if isinstance(value, str):
        return _ACCOUNT_IN_ARN.sub(lambda m: m.group(1) + REDACTED + m.group(3), value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def unredact(value: Any, account_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(f":{REDACTED}:", f":{account_id}:")
    if isinstance(value, dict):
        return {k: unredact(v, account_id) for k, v in value.items()}
    if isinstance(value, list):
        return [unredact(v, account_id) for v in value]
    return value


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id(name: str) -> str:
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class Manifest:
    """In-memory manifest with atomic, thread-safe persistence after every change."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, run_id: str, config: dict[str, Any]) -> Manifest:
        path = Path(runs_dir) / run_id / "manifest.json"
        if path.exists():
            m = cls.load(path)
            m.data["config"] = redact(config)
            m.data["status"] = "running"
            m.data.setdefault("attempts", 0)
            m.data["attempts"] += 1
            m.save()
            return m
        data = {
            "run_id": run_id,
            "run_key": None,
            "status": "running",
            "config": redact(config),
            "data": {},
            "steps": {},
            "resources": {},
            "metrics": {},
            "gate": {},
            "cost": {"estimated_usd": None, "billed": {}},
            "timings": {"started": now_iso()},
            "attempts": 1,
        }
        m = cls(path, data)
        m.save()
        return m

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        p = Path(path)
        if p.is_dir():
            p = p / "manifest.json"
        return cls(p, json.loads(p.read_text(encoding="utf-8")))

    @classmethod
    def find(cls, runs_dir: str | Path, run_id: str) -> Manifest:
        p = Path(runs_dir) / run_id / "manifest.json"
        if not p.exists():
            raise FileNotFoundError(f"no run {run_id!r} under {runs_dir} (expected {p})")
        return cls.load(p)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    # -- updates -----------------------------------------------------------------------
    def save(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(redact(self.data), fh, indent=2, sort_keys=False, default=str)
                fh.write("\n")
            os.replace(tmp, self.path)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def step_started(self, step: str) -> None:
        s = self.data["steps"].setdefault(step, {})
        s.update({"status": "running", "started": now_iso(), "ended": None})
        s.pop("error", None)
        self.save()

    def step_done(self, step: str, *, adopted: bool = False, output: Any = None, status: str = "completed") -> None:
        s = self.data["steps"].setdefault(step, {"started": now_iso()})
        s.update({"status": status, "ended": now_iso(), "adopted": bool(adopted)})
        if output is not None:
            s["output"] = output
        self._timing(step, s)
        self.save()

    def step_failed(self, step: str, error: BaseException | str) -> None:
        s = self.data["steps"].setdefault(step, {"started": now_iso()})
        s.update({"status": "failed", "ended": now_iso(), "error": str(error)[:2000]})
        self._timing(step, s)
        self.save()

    def _timing(self, step: str, s: dict[str, Any]) -> None:
        try:
            t0 = datetime.fromisoformat(s["started"])
            t1 = datetime.fromisoformat(s["ended"])
            self.data["timings"][step] = round((t1 - t0).total_seconds(), 3)
        except (KeyError, TypeError, ValueError):
            pass

    def add_resource(self, kind: str, value: Any) -> None:
        self.data["resources"][kind] = value
        self.save()

    def step_output(self, step: str) -> Any:
        s = self.data["steps"].get(step) or {}
        return s.get("output") if s.get("status") == "completed" else None

    def first_unfinished_step(self) -> str | None:
        for step in STEPS:
            if (self.data["steps"].get(step) or {}).get("status") != "completed":
                return step
        return None

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["timings"]["ended"] = now_iso()
        try:
            t0 = datetime.fromisoformat(self.data["timings"]["started"])
            self.data["timings"]["total_seconds"] = round((datetime.now(UTC) - t0).total_seconds(), 3)
        except (KeyError, ValueError):
            pass
        self.save()
