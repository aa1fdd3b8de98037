"""The run manifest: the lineage of one run, written progressively to RUNS_DIR/<run_id>/manifest.json.

Keys are a contract (docs/design.md §8): run_id, run_key, status, config, data, steps, resources,
metrics, gate, cost, timings. ``RunManifest`` is that contract as a pydantic model; the keys a run adds
(attempts, flow_run_id, flow_run_ids, rerun_from, error, report, teardown, kind, evaluations, guard) are
typed fields too, and unknown keys are kept (``extra="allow"``), so older and newer manifests load.

On disk it is the same JSON as ever: only the keys a run actually wrote are dumped (``exclude_unset``),
every write is atomic (temp file + rename), so a crashed run still leaves a readable manifest of what it
did, and account ids inside ARNs are redacted before writing (``arn:aws:...:<account>:...``), so the file
can be shared and published as an artifact.

``Manifest`` owns the file: it records steps, guards, resources and the final status, and saves after
every change.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from tasks.aws.redact import redact
from tasks.run.names import check_run_id

# The pipeline's steps, in order: the ONE definition (flows, `forge rerun --from`, `forge status` use it).
Step = Literal["prepare", "upload", "create-role", "customize", "poll", "provision", "evaluate", "teardown"]
STEPS: list[str] = list(get_args(Step))

# The steps an operator can rerun from: all but teardown (it always follows provision). The flow's
# ``rerun_from`` parameter has this type (a dropdown in the Prefect UI's rerun-step form).
RerunStep = Literal["prepare", "upload", "create-role", "customize", "poll", "provision", "evaluate"]
RERUN_STEPS: list[str] = list(get_args(RerunStep))
assert RERUN_STEPS == STEPS[:-1], "RerunStep must list the steps but teardown"

# The serving steps: recorded together when they are adopted (a recorded evaluation) or skipped.
SERVING_STEPS: tuple[str, ...] = ("provision", "evaluate", "teardown")

# The spend guard between prepare and upload (tasks/estimate.py ``check_budget``): it is not a step one
# can rerun from; a refusal is recorded under ``steps[GUARD]`` and a rerun resumes at upload.
GUARD = "guard"

StepStatus = Literal["running", "completed", "failed", "skipped"]
RunStatus = Literal["running", "succeeded", "failed", "gate_failed", "interrupted"]

CORE_KEYS = ("run_id", "run_key", "status", "config", "data", "steps", "resources", "metrics", "gate", "cost",
             "timings")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id(name: str) -> str:
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


class _Record(BaseModel):
    """A manifest section: unknown keys kept; assignments validated (and so written)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)


class StepRecord(_Record):
    """``steps.<step>``: what one step did and when."""

    status: StepStatus | None = None
    started: str | None = None
    ended: str | None = None
    adopted: bool | None = None
    error: str | None = None
    output: Any = None           # the step's typed result (tasks/run/types.py), reused by a rerun
    guard: str | None = None     # steps.guard only: which spend guard refused


class DataRecord(_Record):
    """``data``: what prepare produced (hashes, counts)."""

    format: str | None = None
    content_hash: str | None = None
    counts: dict[str, int] | None = None
    sha256: dict[str, str] | None = None
    label_like: bool | None = None
    report: str | None = None


class MetricsRecord(_Record):
    base: dict[str, Any] | None = None
    custom: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    training: dict[str, Any] | None = None


class GateRecord(_Record):
    rule: str | None = None
    passed: bool | None = None


class CostRecord(_Record):
    estimated_usd: float | None = None      # None when a price is unknown
    billed: dict[str, Any] = Field(default_factory=dict)
    known_usd: float | None = None          # the items with a known price
    estimate: dict[str, Any] | None = None  # the whole CostEstimate

    def model_post_init(self, _context: Any) -> None:
        self.__pydantic_fields_set__.update(("estimated_usd", "billed"))


class RunManifest(_Record):
    """The manifest document (docs/design.md §8), plus the keys runs add. Dump with ``to_json``."""

    run_id: str
    run_key: str | None = None
    status: RunStatus = "running"
    config: dict[str, Any] = Field(default_factory=dict)
    data: DataRecord = Field(default_factory=DataRecord)
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    metrics: MetricsRecord = Field(default_factory=MetricsRecord)
    gate: GateRecord = Field(default_factory=GateRecord)
    cost: CostRecord = Field(default_factory=CostRecord)
    timings: dict[str, Any] = Field(default_factory=dict)
    attempts: int | None = None
    kind: str | None = None                 # "evaluation" for an evaluation-only run (flows/evaluate.py)
    flow_run_id: str | None = None          # the Prefect flow run of the latest attempt ("local" without one)
    rerun_from: str | None = None
    flow_run_ids: list[str] | None = None   # every attempt's flow run (a rerun supersedes their leases)
    error: str | None = None                # ``Type: message`` of what failed the run
    report: dict[str, Any] | None = None    # evaluation files (report_md, charts, ...)
    teardown: dict[str, Any] | None = None  # the TeardownReport of the serving resources
    evaluations: list[dict[str, Any]] | None = None   # re-evaluations (flows/evaluate.py)
    waiting: dict[str, Any] | None = None   # waiting for a quota slot now: limit, in_use, limit_value, since
    quota_waits: list[dict[str, Any]] | None = None   # every quota wait of the run (flows/quota.py)
    promotion: dict[str, Any] | None = None   # the registry verdict and what the promotion did (flows/promote.py)

    def model_post_init(self, _context: Any) -> None:
        # the §8 keys are always written, even when an older manifest lacked one
        self.__pydantic_fields_set__.update(CORE_KEYS)

    def to_json(self) -> dict[str, Any]:
        """The JSON-able dict of the keys this run wrote (not yet redacted)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def step(self, step: str) -> StepRecord | None:
        return self.steps.get(step)

    def step_status(self, step: str) -> str | None:
        rec = self.steps.get(step)
        return rec.status if rec else None


class Manifest:
    """The manifest file of one run: a ``RunManifest`` (``doc``) saved atomically after every change.

    Thread-safe: serving callbacks and the flow may record at the same time.
    """

    def __init__(self, path: Path, doc: RunManifest | dict[str, Any]):
        self.path = Path(path)
        self.doc = doc if isinstance(doc, RunManifest) else RunManifest.model_validate(doc)
        self._lock = threading.RLock()
        self._store: Any = None        # tasks/run/store.py, once attached
        self._account: str | None = None
        self._etag: str | None = None

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | Path, run_id: str, config: dict[str, Any]) -> Manifest:
        """A new run's manifest, or the next attempt of an existing one (same folder, attempts + 1)."""
        path = Path(runs_dir) / check_run_id(run_id) / "manifest.json"   # a name, never a path
        if path.exists():
            m = cls.load(path)
            m.doc.config = redact(config)
            m.doc.status = "running"
            m.doc.attempts = (m.doc.attempts or 0) + 1
            m.save()
            return m
        doc = RunManifest(run_id=run_id, config=redact(config), timings={"started": now_iso()}, attempts=1)
        m = cls(path, doc)
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
        """The manifest of ``run_id`` under ``runs_dir``; ``InvalidRunId`` (a ValueError) for an id that is a
        path (tasks/run/names.py), FileNotFoundError when there is no such run."""
        p = Path(runs_dir) / check_run_id(run_id) / "manifest.json"
        if not p.exists():
            raise FileNotFoundError(f"no run {run_id!r} under {runs_dir} (expected {p})")
        return cls.load(p)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def run_id(self) -> str:
        return self.doc.run_id

    @property
    def data(self) -> dict[str, Any]:
        """A JSON snapshot of the manifest (as a dict). Read-only: change it through the methods or ``doc``."""
        with self._lock:
            return self.doc.to_json()

    # -- updates -----------------------------------------------------------------------
    def attach(self, store: Any, account: str | None = None) -> None:
        """Also keep this manifest in ``store`` (``tasks/run/store.py``: S3, readable from every machine) from now
        on: pushed at once (adopting the copy already there, e.g. an earlier attempt's, when it is newer) and after
        every change. ``account`` un-redacts a copy read back from the store."""
        from tasks.run.store import write_through

        with self._lock:
            self._store, self._account = store, account
            current = store.get(self.run_id)
            self._etag = current[1] if current else None
            self._etag, _ = write_through(store, self.run_id, self._etag, self._body, None)

    @property
    def store(self) -> Any:
        return self._store

    def _body(self) -> dict[str, Any]:
        return redact(self.doc.to_json())

    def save(self) -> None:
        """Write the file (and the store's copy, when attached); the document as it is wins."""
        self._save(None)

    def _change(self, change: Any) -> None:
        """Apply ``change()`` (it edits ``self.doc``) and save. When the store's copy changed meanwhile (another
        writer), the change is applied again to that copy, so neither writer's update is lost."""
        with self._lock:
            change()
            self._save(change)

    def _save(self, change: Any) -> None:
        """Write the file, then push to the store: the redacted body is made once and serves both; only a
        conflict's re-apply (the document changed) makes it again, for the push and the file."""
        with self._lock:
            body = self._body()
            self._write_file(body)
            if self._store is None:
                return
            from tasks.run.store import write_through

            current = [body]      # None once a re-apply changed the document

            def body_now() -> dict[str, Any]:
                if current[0] is None:
                    current[0] = self._body()
                return current[0]

            def reapply(remote: dict[str, Any]) -> None:
                from tasks.aws.redact import unredact

                current[0] = None
                self.doc = RunManifest.model_validate(unredact(remote, self._account) if self._account else remote)
                change()

            self._etag, adopted = write_through(self._store, self.run_id, self._etag, body_now,
                                                reapply if change is not None else None)
            if adopted is not None and change is not None:
                self._write_file(body_now())

    def _write_file(self, body: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(body, fh, indent=2, sort_keys=False, default=str)
                fh.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def update(self, **fields: Any) -> None:
        """Set top-level keys (validated: ``data=``, ``gate=`` ... take dicts or records) and save."""
        def change() -> None:
            for k, v in fields.items():
                setattr(self.doc, k, v)
        self._change(change)

    def _set_step(self, step: str, changes: dict[str, Any], *, drop: tuple[str, ...] = (),
                  default_started: bool = False) -> StepRecord:
        rec = self.doc.steps.get(step)
        d = rec.model_dump(exclude_unset=True) if rec is not None else {}
        if default_started and rec is None:
            d["started"] = now_iso()
        for k in drop:
            d.pop(k, None)
        d.update(changes)
        new = StepRecord.model_validate(d)
        self.doc.steps[step] = new
        return new

    def step_started(self, step: str) -> None:
        at = now_iso()
        self._change(lambda: self._set_step(step, {"status": "running", "started": at, "ended": None},
                                            drop=("error",)))

    def step_done(self, step: str, *, adopted: bool = False, output: Any = None, status: str = "completed") -> None:
        changes: dict[str, Any] = {"status": status, "ended": now_iso(), "adopted": bool(adopted)}
        if output is not None:
            changes["output"] = output
        self._change(lambda: self._timing(step, self._set_step(step, changes, default_started=True)))

    def step_failed(self, step: str, error: BaseException | str) -> None:
        changes = {"status": "failed", "ended": now_iso(), "error": str(error)[:2000]}
        self._change(lambda: self._timing(step, self._set_step(step, changes, default_started=True)))

    def steps_settled(self, steps: tuple[str, ...] | list[str], *, adopted: bool = False,
                      status: str = "completed") -> None:
        """Record several steps as done at once: adopted (their result exists) or ``status="skipped"``."""
        at = now_iso()

        def change() -> None:
            for step in steps:
                self._set_step(step, {"status": "running", "started": at, "ended": None}, drop=("error",))
                self._timing(step, self._set_step(step, {"status": status, "ended": at, "adopted": bool(adopted)}))
        self._change(change)

    def guard_passed(self) -> None:
        """The spend guard let the run through; a refusal recorded by an earlier attempt is cleared."""
        with self._lock:
            if GUARD in self.doc.steps:
                at = now_iso()
                self._change(lambda: self._timing(GUARD, self._set_step(GUARD, {"status": "completed", "ended": at},
                                                                        drop=("error",))))

    def guard_refused(self, guard: str, error: BaseException | str) -> None:
        """A spend guard refused before anything was spent: recorded as its own step (not upload's)."""
        at = now_iso()

        def change() -> None:
            self.doc.steps[GUARD] = StepRecord(status="failed", started=at, ended=at, guard=guard,
                                               error=f"refused before spending: {error}"[:2000])
            self._timing(GUARD, self.doc.steps[GUARD])
        self._change(change)

    def _timing(self, step: str, s: StepRecord) -> None:
        try:
            t0 = datetime.fromisoformat(s.started or "")
            t1 = datetime.fromisoformat(s.ended or "")
            self.doc.timings[step] = round((t1 - t0).total_seconds(), 3)
        except (TypeError, ValueError):
            pass

    def add_resource(self, kind: str, value: Any) -> None:
        self._change(lambda: self.doc.resources.__setitem__(kind, value))

    def set_metrics(self, **metrics: Any) -> None:
        """Set ``metrics.<name>`` sections (base, custom, comparison, training) and save."""
        def change() -> None:
            for k, v in metrics.items():
                setattr(self.doc.metrics, k, v)
        self._change(change)

    def set_cost_estimate(self, estimated_usd: float | None, known_usd: float | None,
                          estimate: dict[str, Any]) -> None:
        def change() -> None:
            self.doc.cost.estimated_usd = estimated_usd
            self.doc.cost.known_usd = known_usd
            self.doc.cost.estimate = estimate
        self._change(change)

    def add_evaluation(self, record: dict[str, Any]) -> None:
        self._change(lambda: setattr(self.doc, "evaluations", [*(self.doc.evaluations or []), record]))

    # -- reading -----------------------------------------------------------------------
    def step_output(self, step: str) -> Any:
        """The recorded output of a completed step (None for any other status)."""
        s = self.doc.steps.get(step)
        return s.output if s is not None and s.status == "completed" else None

    def first_unfinished_step(self) -> str | None:
        for step in STEPS:
            if self.doc.step_status(step) != "completed":
                return step
        return None

    def finish(self, status: RunStatus) -> None:
        ended = datetime.now(UTC)

        def change() -> None:
            self.doc.status = status
            self.doc.timings["ended"] = ended.isoformat(timespec="seconds")
            try:
                t0 = datetime.fromisoformat(self.doc.timings["started"])
                self.doc.timings["total_seconds"] = round((ended - t0).total_seconds(), 3)
            except (KeyError, TypeError, ValueError):
                pass
        self._change(change)
