"""Fault injection: rules read from a file (``--faults FILE``) or ``POST /_emulator/faults``.

A rule (docs/emulator.md, Faults):
    {"operation": "InvokeModel" | "CreateModelCustomizationJob" | "PutObject" | ... | "*",
     "error": "ThrottlingException" | "ServiceUnavailableException" | "InternalServerException" | null,
     "rate": 0..1, "count": N | null, "latency_ms": N,
     "job_outcome": "Failed" | "Stuck", "pt_outcome": "Failed"}
``rate`` is the probability that a matching call is hit (default 1); ``count`` caps how many calls
are hit (null = unlimited). ``latency_ms`` is added to every hit call. ``job_outcome`` applies to
jobs created while the rule is active (operation defaults to CreateModelCustomizationJob) and
``pt_outcome`` to provisioned throughputs (and deployments) created while it is active.
Operation names are the AWS API names; S3/IAM/STS operations match too (e.g. "PutObject",
"CreateRole", "GetCallerIdentity").
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

ERRORS = {
    # code -> HTTP status (botocore service model, docs/bedrock-facts.md §2.11)
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "InternalServerException": 500,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ValidationException": 400,
    "ModelNotReadyException": 429,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
}


class FaultConfigError(ValueError):
    pass


@dataclass
class Rule:
    operation: str = "*"
    error: str | None = None
    rate: float = 1.0
    count: int | None = None
    latency_ms: float = 0.0
    job_outcome: str | None = None
    pt_outcome: str | None = None
    hits: int = 0

    def matches(self, operation: str) -> bool:
        return self.operation in ("*", operation)


def parse_rules(rules: object, where: str = "faults") -> list[Rule]:
    if isinstance(rules, dict) and "rules" in rules:
        rules = rules["rules"]
    if not isinstance(rules, list):
        raise FaultConfigError(f"{where}: expected a JSON list of rules (or {{\"rules\": [...]}}), "
                               f"got {type(rules).__name__}")
    out: list[Rule] = []
    allowed = {"operation", "error", "rate", "count", "latency_ms", "job_outcome", "pt_outcome"}
    for i, r in enumerate(rules):
        if not isinstance(r, dict):
            raise FaultConfigError(f"{where}[{i}]: a rule must be an object")
        unknown = set(r) - allowed
        if unknown:
            raise FaultConfigError(f"{where}[{i}]: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        err = r.get("error")
        if err is not None and err not in ERRORS:
            raise FaultConfigError(f"{where}[{i}].error: {err!r} is not one of {sorted(ERRORS)} (or null)")
        if r.get("job_outcome") not in (None, "Failed", "Stuck"):
            raise FaultConfigError(f"{where}[{i}].job_outcome: must be \"Failed\" or \"Stuck\"")
        if r.get("pt_outcome") not in (None, "Failed"):
            raise FaultConfigError(f"{where}[{i}].pt_outcome: must be \"Failed\"")
        rate = float(r.get("rate", 1.0) if r.get("rate") is not None else 1.0)
        if not 0.0 <= rate <= 1.0:
            raise FaultConfigError(f"{where}[{i}].rate: must be between 0 and 1, got {rate}")
        op = r.get("operation") or ("CreateModelCustomizationJob" if r.get("job_outcome") else
                                    "CreateProvisionedModelThroughput" if r.get("pt_outcome") else "*")
        out.append(Rule(operation=str(op), error=err, rate=rate,
                        count=None if r.get("count") is None else int(r["count"]),
                        latency_ms=float(r.get("latency_ms") or 0.0),
                        job_outcome=r.get("job_outcome"), pt_outcome=r.get("pt_outcome")))
    return out


def load_file(path: str | Path) -> list[Rule]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FaultConfigError(f"{p}: fault file not found") from None
    except json.JSONDecodeError as e:
        raise FaultConfigError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from None
    return parse_rules(data, where=str(p))


@dataclass
class Decision:
    error: str | None = None
    latency_ms: float = 0.0


@dataclass
class Faults:
    rules: list[Rule] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)

    def set_rules(self, rules: list[Rule]) -> None:
        with self._lock:
            self.rules = list(rules)

    def to_list(self) -> list[dict]:
        return [{k: v for k, v in r.__dict__.items()} for r in self.rules]

    def _take(self, r: Rule) -> bool:
        if r.count is not None and r.hits >= r.count:
            return False
        if r.rate < 1.0 and self._rng.random() >= r.rate:
            return False
        r.hits += 1
        return True

    def on_call(self, operation: str, *, named_only: bool = False) -> Decision:
        """Errors / latency for one call (rules without job/pt outcome). ``named_only``: only rules that name
        ``operation`` (the Price List calls: a ``*`` rule written for Bedrock must not also hit them, nor have its
        seeded sequence shifted by them)."""
        d = Decision()
        with self._lock:
            for r in self.rules:
                if r.job_outcome or r.pt_outcome or not r.matches(operation):
                    continue
                if named_only and r.operation != operation:
                    continue
                if (r.error is None and r.latency_ms <= 0):
                    continue
                if not self._take(r):
                    continue
                d.latency_ms += r.latency_ms
                if r.error and d.error is None:
                    d.error = r.error
        return d

    def outcome(self, kind: str, operation: str) -> str | None:
        """``kind`` = "job_outcome" | "pt_outcome": the forced outcome for a resource created now."""
        with self._lock:
            for r in self.rules:
                val = getattr(r, kind)
                if val and r.matches(operation) and self._take(r):
                    return val
        return None
