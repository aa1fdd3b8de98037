"""What a flow run carries from step to step: the ``RunContext`` (docs/design.md §1, §8).

One object instead of a dozen positional arguments: the config, the AWS clients, the run manifest and
folder, the flow-run id, the resume point (``rerun_from``), and — once prepare has fixed the run key —
the account, the deterministic resource names and the standard tags. ``RunContext.step`` is the ONE way
a step runs: it records start and end in the manifest, reuses the recorded output of a completed
upstream step when resuming, and records the failure before re-raising. ``settle`` marks steps adopted
or skipped in one go.

Also here, shared by the flows: the flow-run id, the run's error text, and the flow's exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.context import FlowRunContext
from pydantic import BaseModel

from tasks.aws.clients import account_id, make_clients
from tasks.aws.redact import unredact
from tasks.aws.tags import standard_tags
from tasks.catalog import load_catalog
from tasks.config import PipelineConfig
from tasks.run import stop
from tasks.run.manifest import STEPS, Manifest, RerunStep, Step, new_run_id
from tasks.run.names import ResourceNames, compute_run_key, resource_names
from tasks.run.types import StartPoint

M = TypeVar("M", bound=BaseModel)


class QualityGateFailed(RuntimeError):
    """The evaluation ran and the custom model did not pass the configured gate."""


class RunRefused(RuntimeError):
    """A guard refused to spend money (budget, model-unit cap, commitment)."""


class TeardownFailed(RuntimeError):
    """A billing resource could not be deleted after every retry: the run must not report success."""

    def __init__(self, alive: list[str], errors: list[str] | None = None):
        self.alive = list(alive)
        self.errors = list(errors or [])
        super().__init__(
            "teardown failed: STILL BILLING: " + ", ".join(self.alive)
            + (f" ({'; '.join(self.errors)})" if self.errors else "")
            + ". The sweep deletes it once this run's heartbeat is gone (`forge sweep`, or the scheduled sweep "
              "deployment); to delete it now: `aws bedrock delete-provisioned-model-throughput "
              "--provisioned-model-id ARN` (a deployment: `aws bedrock delete-custom-model-deployment "
              "--custom-model-deployment-identifier ARN`) once the cause (e.g. a missing permission) is fixed")


def flow_run_id() -> str:
    """The id of the Prefect flow run we are in; ``"local"`` outside one."""
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else "local"


def error_text(err: BaseException) -> str:
    """``Type: message``; a termination signal (empty message) says which signal stopped the run."""
    text = str(err)
    sig = getattr(err, "signal", None)
    if not text and isinstance(sig, int):
        import signal

        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        text = (f"the process running the flow received {name} (a worker cancel or shutdown); serving resources "
                "are released by the run's cleanup, else by `forge sweep`; resume with `forge rerun RUN_ID`")
    return f"{type(err).__name__}: {text or 'no message'}"


def is_interruption(err: BaseException) -> bool:
    """Ctrl-C or a termination signal (a worker stop, a cancel): the run was stopped, not broken."""
    from prefect.exceptions import ExternalSignal

    return isinstance(err, KeyboardInterrupt | ExternalSignal)


def runs_root(runs_dir: str | None) -> str:
    """Where run folders live: the flow parameter, else ``FORGE_RUNS_DIR`` (a worker's environment), else ``runs``."""
    import os

    return runs_dir or os.environ.get("FORGE_RUNS_DIR") or "runs"


def name_flow_run(flow_run_id_: str, run_id: str) -> None:
    """Name the Prefect flow run after the forge run id, so a run in the UI matches `forge status` (best effort)."""
    if not flow_run_id_ or flow_run_id_ == "local":
        return
    try:
        from uuid import UUID

        from prefect import get_client

        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(flow_run_id_), name=run_id)
    except Exception:  # noqa: BLE001 - a name is a convenience
        pass


def label_failed_step(flow_run_id_: str, step: str) -> None:
    """Label the Prefect flow run with the step that failed (``forge.failed-step``), so the failure notification
    names it and its rerun command (forge/commands/deploy.py FAILED_STEP_LABEL). Best effort, like the name."""
    if not flow_run_id_ or flow_run_id_ == "local":
        return
    try:
        from uuid import UUID

        from prefect import get_client

        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(UUID(flow_run_id_), {"forge.failed-step": step})
    except Exception:  # noqa: BLE001 - a label is a convenience
        pass


def config_of_run(runs_dir: str, run_id: str | None) -> PipelineConfig:
    """The config recorded in an existing run's manifest (a rerun given only its run id). Not in the local runs
    folder (a worker on another machine): fetched from the S3 runs folder of ``FORGE_RUNS_URI`` into it."""
    if not run_id:
        raise ValueError("config is required unless run_id names an existing run")
    try:
        manifest = Manifest.find(runs_dir, run_id)
    except FileNotFoundError:
        manifest = fetch_from_runs_uri(runs_dir, run_id)
        if manifest is None:
            raise
    return PipelineConfig.model_validate(unredacted_config(manifest.doc.config))


def unredacted_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with the caller's account id back in its ARNs: the manifest stores configs redacted
    (tasks/aws/redact.py), so an RFT grader or KMS key ARN reads ``arn:...:<account>:...`` there, which AWS would
    refuse. The account is the one the run's AWS settings reach (STS GetCallerIdentity: needs no permission)."""
    import json

    from tasks.aws.clients import lenient_aws_config
    from tasks.aws.redact import REDACTED

    if REDACTED not in json.dumps(raw):
        return raw
    return unredact(raw, account_id(make_clients(lenient_aws_config((raw or {}).get("aws")))))


def fetch_from_runs_uri(runs_dir: str, run_id: str, runs_uri: str | None = None) -> Manifest | None:
    """The run's manifest from the S3 runs folder ``runs_uri`` (default ``FORGE_RUNS_URI``), saved into the local
    runs folder (its cache, as `forge rerun --runs-uri` does). None: no such folder or run."""
    import os

    uri = runs_uri or os.environ.get("FORGE_RUNS_URI")
    if not uri:
        return None
    from tasks.config import AwsConfig
    from tasks.run.store import S3RunStore

    aws = AwsConfig(region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1")
    try:
        found = S3RunStore.at(make_clients(aws).s3, uri).get(run_id)
    except Exception:  # noqa: BLE001 - unreadable: as if absent (the caller says the run is not found)
        return None
    return _save_fetched(runs_dir, run_id, found[0]) if found else None


def _save_fetched(runs_dir: str, run_id: str, doc: dict) -> Manifest:
    m = Manifest(Path(runs_dir) / run_id / "manifest.json", doc)
    m.save()
    return m


# -- Prefect's Retry: the same forge run -----------------------------------------------------------
def flow_run_count() -> int:
    """How many times this flow run has entered Running (Prefect's ``run_count``): > 1 on a Retry."""
    ctx = FlowRunContext.get()
    return int(getattr(ctx.flow_run, "run_count", 0) or 0) if ctx and ctx.flow_run else 0


def _flow_run_name() -> str | None:
    ctx = FlowRunContext.get()
    return getattr(ctx.flow_run, "name", None) if ctx and ctx.flow_run else None


def _lists(doc: dict | Any, fr_id: str) -> bool:
    ids = doc.get("flow_run_ids") if isinstance(doc, dict) else getattr(doc, "flow_run_ids", None)
    return fr_id in (ids or [])


def find_run_of_flow_run(runs_dir: str, fr_id: str, *, name: str | None = None,
                         stores: list[Any] | None = None) -> str | None:
    """The forge run an earlier attempt of flow run ``fr_id`` created: a manifest whose ``flow_run_ids`` lists it.
    Looked for under the flow run's ``name`` (flows are named after their forge run id) in the local runs folder,
    then in every local manifest (newest first), then under ``name`` in each S3 run store of ``stores`` (fetched
    into the local folder). None when no run lists this flow run."""
    from tasks.run.names import check_run_id

    root = Path(runs_dir)
    if name:
        try:
            check_run_id(name)
            p = root / name / "manifest.json"
            if p.exists() and _lists(Manifest.load(p).doc, fr_id):
                return name
        except (ValueError, OSError):
            pass
    candidates = sorted(root.glob("*/manifest.json"), key=lambda q: q.stat().st_mtime, reverse=True) \
        if root.is_dir() else []
    for p in candidates:
        try:
            if fr_id in p.read_text(encoding="utf-8") and _lists(Manifest.load(p).doc, fr_id):
                return p.parent.name
        except (OSError, ValueError):
            continue
    if name:
        for store in stores or []:
            try:
                check_run_id(name)
                found = store.get(name)
            except Exception:  # noqa: BLE001 - an unreadable store: the next one
                continue
            if found and _lists(found[0], fr_id):
                _save_fetched(runs_dir, name, found[0])
                return name
    return None


def resume_point(manifest: Manifest) -> RerunStep | None:
    """Where a resumed run starts: the first step not completed or skipped (teardown → evaluate, poll →
    customize: a rerun at poll re-checks the job from customize), None for a finished run (everything adopts)."""
    for step in STEPS:
        rec = manifest.doc.steps.get(step)
        if rec is None or rec.status not in ("completed", "skipped"):
            return {"teardown": "evaluate", "poll": "customize"}.get(step, step)   # type: ignore[return-value]
    return None


def _run_stores(config: PipelineConfig, clients: Any) -> list[Any]:
    """The S3 runs folders a run of ``config`` may be kept in: ``FORGE_RUNS_URI`` and the run bucket's default."""
    import os

    from tasks.run.names import default_bucket
    from tasks.run.store import S3RunStore

    stores = []
    if os.environ.get("FORGE_RUNS_URI"):
        try:
            stores.append(S3RunStore.at(clients.s3, os.environ["FORGE_RUNS_URI"]))
        except ValueError:
            pass
    try:
        bucket = config.aws.bucket or default_bucket(config.aws.region, account_id(clients), config.name)
        stores.append(S3RunStore.of_run(clients.s3, bucket, config.aws.prefix))
    except Exception:  # noqa: BLE001 - no AWS identity: the local folder only
        pass
    return stores


def _never(_out: Any) -> bool:
    return False


def _prepared_here(prepared: Any) -> bool:
    """Every split file a recorded prepare output names exists on this machine."""
    files = [getattr(prepared, s, None) for s in ("train", "validation", "test")]
    return all(Path(f.path).is_file() for f in files if f is not None and getattr(f, "path", None))


@dataclass
class RunContext:
    """One customization run in flight. Built by ``open``; ``bind_run_key`` completes it after prepare."""

    config: PipelineConfig
    manifest: Manifest
    clients: Any
    flow_run_id: str
    family: str
    rerun_from: RerunStep | None = None
    allow_rerun_failed_job: bool = False
    account: str | None = None
    run_key: str | None = None
    names: ResourceNames | None = None
    tags: dict[str, str] = field(default_factory=dict)
    start: StartPoint | None = None          # where the job starts (start_from); bind_run_key sets it

    @classmethod
    def open(cls, config: PipelineConfig, runs_dir: str, run_id: str | None, rerun_from: RerunStep | None,
             allow_rerun_failed_job: bool) -> RunContext:
        """Create (or continue) the run's manifest, record this flow run in it, make the clients.

        Prefect's Retry (the UI sets the failed flow run back to Scheduled/AwaitingRetry, the same flow run runs
        again with ``run_count`` > 1 and the same parameters): without a ``run_id`` the run this flow run created
        on its earlier attempt is found (``find_run_of_flow_run``: local runs folder, else the S3 run store) and
        resumed at its first unfinished step, as `forge rerun RUN_ID` would, instead of starting a new run id."""
        fr_id = flow_run_id()
        clients = make_clients(config.aws, pool_size=max(16, 2 * config.evaluation.concurrency))
        resumed = None
        if run_id is None and fr_id != "local" and flow_run_count() > 1:
            resumed = find_run_of_flow_run(runs_dir, fr_id, name=_flow_run_name(),
                                           stores=_run_stores(config, clients))
            if resumed is not None and rerun_from is None:
                rerun_from = resume_point(Manifest.find(runs_dir, resumed))
                if rerun_from is not None and STEPS.index(rerun_from) <= STEPS.index("customize"):
                    allow_rerun_failed_job = True   # as `forge rerun`: a job that ended Failed gets a new attempt
            run_id = resumed
        manifest = Manifest.create(runs_dir, run_id or new_run_id(config.name), config.model_dump(mode="json"))
        manifest.update(flow_run_id=fr_id, rerun_from=rerun_from,
                        flow_run_ids=[*(manifest.doc.flow_run_ids or []), fr_id])
        name_flow_run(fr_id, manifest.run_id)
        if resumed is not None:
            get_run_logger().info("retry of flow run %s (run %d): resuming forge run %s %s", fr_id,
                                  flow_run_count(), resumed,
                                  f"from step {rerun_from}" if rerun_from else "(finished: everything adopts)")
        return cls(config=config, manifest=manifest, clients=clients, flow_run_id=fr_id,
                   family=load_catalog().family_of(config.base_model), rerun_from=rerun_from,
                   allow_rerun_failed_job=allow_rerun_failed_job)

    @property
    def log(self):
        return get_run_logger()

    @property
    def run_dir(self) -> Path:
        return self.manifest.run_dir

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def bind_run_key(self, content_hash: str, start: StartPoint | None = None) -> None:
        """The prepared data (and the custom model the job continues from, ``start``) fix the run key; with the
        account (read-only STS) it fixes every name."""
        self.start = start
        self.run_key = compute_run_key(self.config, content_hash, start.custom_model if start else None)
        self.account = self.account or account_id(self.clients)   # the default bucket name is per account
        self.names = resource_names(self.config, self.run_key, account=self.account)
        self.manifest.update(run_key=self.run_key)
        self.log.info("run key %s (job %s)", self.run_key, self.names.job)

    def bind_tags(self) -> None:
        self.tags = standard_tags(self.run_key, self.flow_run_id, self.config.tags, run_id=self.run_id)

    def serving_tags(self) -> dict[str, str]:
        """The tags of a serving resource: the standard ones plus ``forge-expires-at`` (the last net);
        ``serving`` adds ``forge-heartbeat`` (the sweeper's main signal)."""
        return standard_tags(self.run_key, self.flow_run_id, self.config.tags,
                             expires_in_hours=self.config.serving.max_hours, run_id=self.run_id)

    # -- steps ---------------------------------------------------------------------------
    def resumes_after(self, step: Step) -> bool:
        """Resuming at a later step than ``step``: its recorded output is reused."""
        return self.rerun_from is not None and STEPS.index(step) < STEPS.index(self.rerun_from)

    def recorded(self, step: Step, model: type[M]) -> M | None:
        """A completed upstream step's recorded output, when resuming at a later step."""
        if not self.resumes_after(step):
            return None
        out = self.manifest.step_output(step)
        if out is None:
            return None
        if self.account:
            out = unredact(out, self.account)
        value = model.model_validate(out)
        if step == "prepare" and not _prepared_here(value):
            # recorded on another machine (a run fetched from S3, a Retry on another worker): its files are not
            # here; prepare again (deterministic: the same content hash, so the same run key and resources)
            self.log.info("step prepare: the recorded files are not on this machine: preparing again")
            return None
        return value

    def step(self, name: Step, model: type[M], run: Callable[[], M], *,
             record: Callable[[M], None] | None = None, adopted: Callable[[M], bool] = _never) -> M:
        """Run one step: reuse its recorded output when resuming after it, else ``run()``; then
        ``record(out)`` what the manifest keeps of it, and mark it done (``adopted(out)``). A failure is
        recorded against the step and re-raised (a termination signal too)."""
        out = self.recorded(name, model)
        log = self.log
        stop.raise_if_requested()   # a Ctrl-C swallowed somewhere still stops the run here (tasks/run/stop.py)
        log.info("step %s: started", name)
        self.manifest.step_started(name)
        try:
            if out is None:
                out = run()
            if record is not None:
                record(out)
            stop.raise_if_requested()
            self.manifest.step_done(name, adopted=adopted(out), output=out.model_dump(mode="json"))
        except BaseException as err:  # noqa: BLE001 - recorded, then re-raised (TerminationSignal too)
            self.manifest.step_failed(name, err)
            label_failed_step(self.flow_run_id, name)
            log.error("step %s: failed: %s", name, err)
            raise
        return out

    def settle(self, steps: tuple[str, ...], *, adopted: bool = False, skipped: bool = False) -> None:
        """Mark ``steps`` done without running them: adopted (their result already exists) or skipped."""
        self.manifest.steps_settled(steps, adopted=adopted, status="skipped" if skipped else "completed")

    def result(self, **extra: Any) -> dict:
        """What the flow returns."""
        return {"run_id": self.run_id, "status": "succeeded", "manifest": str(self.manifest.path), **extra}
