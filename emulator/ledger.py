"""The ledger: every call, every resource with its state history, billing counters.

Served as JSON by ``GET /_emulator/ledger`` (shape in docs/emulator.md; the CLI contract is docs/design.md §8):
    {"calls": [{"t", "service", "operation", "mutating", "status", "error"}],
     "resources": {ARN: {"type", "name", "state", "history": [{"t", "state"}], "tags"}},
     "billing": {"pt_model_unit_seconds", "deployment_seconds", "training_token_epochs"}}
Times are ISO-8601 virtual time (see clock.py); each call also carries ``real_t`` (epoch seconds,
real time) so benchmarks can measure real rates.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

MAX_CALLS = 200_000


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[dict] = []
        self.resources: dict[str, dict] = {}

    # -- calls ---------------------------------------------------------------------------
    def record_call(self, *, t: float, service: str, operation: str, mutating: bool, status: int,
                    error: str | None) -> None:
        with self._lock:
            self.calls.append({"t": iso(t), "real_t": round(time.time(), 6), "service": service,
                               "operation": operation, "mutating": mutating, "status": status, "error": error})
            if len(self.calls) > MAX_CALLS:
                del self.calls[: len(self.calls) - MAX_CALLS]

    # -- resources -----------------------------------------------------------------------
    def record_state(self, arn: str, *, rtype: str, name: str, state: str, t: float) -> None:
        with self._lock:
            r = self.resources.setdefault(arn, {"type": rtype, "name": name, "state": None, "history": [], "tags": {}})
            if r["state"] != state:
                r["state"] = state
                r["history"].append({"t": iso(t), "state": state})

    def set_tags(self, arn: str, tags: dict[str, str]) -> None:
        with self._lock:
            if arn in self.resources:
                self.resources[arn]["tags"] = dict(tags)

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        with self._lock:
            return {"calls": list(self.calls[-5_000:]), "resources": {k: {**v, "history": list(v["history"]),
                                                                              "tags": dict(v["tags"])}
                                                                          for k, v in self.resources.items()}}

    def load(self, d: dict) -> None:
        with self._lock:
            self.calls = list(d.get("calls", []))
            self.resources = dict(d.get("resources", {}))

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.resources.clear()
