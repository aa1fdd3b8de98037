"""The customization flow: prepare → guard → upload → create role → customize → poll → provision → evaluate →
teardown.

Wiring only: each step is a task from ``tasks/`` whose logic lives in plain functions; what a run carries
from step to step is its ``RunContext`` (flows/context.py), whose one ``step`` helper records every step in
the run manifest (tasks/run/manifest.py) and reuses recorded results on resume (``rerun_from``). This
module adds what only a flow can: the order, and cleanup in layers (docs/design.md §3):

1. serving resources live inside ``try/finally`` around evaluation (``serving``);
2. ``on_failure`` / ``on_crashed`` / ``on_cancellation`` hooks delete what this flow run tagged
   (and stop the job it started, on cancellation) — for exits that skip ``finally``;
3. ``flows/sweep.py`` catches the rest (SIGKILL): everything billable carries ``forge-expires-at``.

AWS is the source of truth: every AWS step adopts what exists under the run's deterministic names,
so a rerun on a fresh machine (no Prefect cache, no manifest) still never duplicates a job or a
provisioned throughput. A finished evaluation is recorded in S3 next to the job output; a rerun
that finds it makes no mutating AWS call at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from flows import quota as flow_quota
from flows import watchdog
from flows.context import (
    QualityGateFailed,
    RunContext,
    RunRefused,
    TeardownFailed,
    config_of_run,
    error_text,
    is_interruption,
    runs_root,
)
from flows.promote import promote_if_gate_passed
from tasks import customize as customize_stage
from tasks import evaluate as evaluate_stage
from tasks import iam as iam_stage
from tasks import serve as serve_stage
from tasks import teardown as teardown_stage
from tasks import upload as upload_stage
from tasks.aws.clients import account_id, lenient_aws_config, make_clients
from tasks.aws.logs import install_log_redaction
from tasks.aws.redact import unredact
from tasks.aws.s3uri import s3_uri
from tasks.aws.tags import HEARTBEAT_TAG, fits_tag_value
from tasks.config import PipelineConfig
from tasks.estimate import check_budget, estimate_cost, live_prices
from tasks.evaluate import EvaluationResult
from tasks.evaluation import lease
from tasks.preflight import PreflightRefused, preflight_run
from tasks.prepare import prepare_task
from tasks.registry import store_for_config
from tasks.run import liveness, stop
from tasks.run import quota as quota_rules
from tasks.run.manifest import SERVING_STEPS, STEPS, Manifest, RerunStep, now_iso
from tasks.run.plan import model_units, serving_kind
from tasks.run.store import S3RunStore
from tasks.run.types import (
    JobInfo,
    PreparedData,
    RoleInfo,
    ServingEndpoint,
    StartPoint,
    TrainingResult,
    UploadedData,
)

__all__ = ["QualityGateFailed", "RunRefused", "Step", "TeardownFailed", "customize_model", "release_and_stop",
           "release_serving", "serving"]

install_log_redaction()   # account ids out of every log line a run writes (tasks/aws/logs.py)

PROVISION_TIMEOUT_S = 3 * 3600   # provisioning takes minutes; give up (and tear down) after 3 h

# the steps an operator can rerun from (a dropdown in the Prefect UI's rerun-step form): tasks/run/manifest.py
Step = RerunStep


# ---------------------------------------------------------------------------------------------
# cleanup hooks (layer 2) — they run in whatever process finalizes the run, so they share no
# memory with it: everything is found again by the flow-run-id tag.
# ---------------------------------------------------------------------------------------------
def _config_section(flow_run, section: str) -> dict | None:
    """One section (``aws``, ``job``) of the run's config, read from the flow-run parameters (or the manifest of
    the ``run_id`` parameter) WITHOUT validating the rest of the config: a hook must work for a config that no
    longer validates (flow parameters turn NaN/Inf into null). None: no config to go by."""
    params = getattr(flow_run, "parameters", None) or {}
    raw = params.get("config")
    if raw is None and params.get("run_id"):
        try:
            raw = Manifest.find(runs_root(params.get("runs_dir")), params["run_id"]).doc.config
        except Exception:  # noqa: BLE001 - no manifest here (another machine): go by the environment
            raw = {}
    if raw is None:
        return None
    if isinstance(raw, PipelineConfig):
        return getattr(raw, section).model_dump(mode="json")
    part = raw.get(section) if isinstance(raw, dict) else None
    return part if isinstance(part, dict) else {}


def _failed_before_spending(state) -> bool:
    """The run stopped on bad input or a spend guard, before it created anything: nothing to clean up, and
    no AWS call either (a bad-data run must make none). Unknown → False: clean up as usual."""
    from tasks.data.problems import DataValidationError

    try:
        exc = state.result(raise_on_failure=False)
    except BaseException:  # noqa: BLE001 - the state may re-raise; then we do not know
        return False
    return isinstance(exc, DataValidationError | RunRefused)


def _hook_logger(flow, flow_run):
    """The flow run's own logger, so what a hook did (or why it failed) shows in the UI's run log."""
    try:
        from prefect.logging.loggers import flow_run_logger

        return flow_run_logger(flow_run, flow)
    except Exception:  # noqa: BLE001
        import logging

        return logging.getLogger("bedrock-forge.hooks")


def _clients_of(flow_run):
    aws = _config_section(flow_run, "aws")
    return None if aws is None else make_clients(lenient_aws_config(aws))


def release_serving(flow, flow_run, state) -> None:
    """on_failure / on_crashed: delete billing resources tagged with this flow run. Never raises: a failure is
    logged to the run's log (the sweep still catches what is left)."""
    log = _hook_logger(flow, flow_run)
    try:
        if _failed_before_spending(state):
            return
        clients = _clients_of(flow_run)
        if clients is None:
            return
        report = teardown_stage.teardown_run(clients, flow_run_id=str(flow_run.id))
        msg = (f"[{state.name}] cleanup hook: deleted {report.deleted or 'nothing'}; "
               f"already gone {report.already_gone or '-'}")
        log.info(msg)
        print(msg)
        if report.alive or report.errors:
            log.error("[%s] cleanup hook: STILL BILLING %s: %s — the sweep owns them now", state.name,
                      report.alive or "-", report.errors)
    except Exception as err:  # noqa: BLE001 - a hook must not crash; say so where the UI shows it
        log.error("[%s] cleanup hook failed: %s — the heartbeat sweep deletes what is left", state.name,
                  error_text(err))


def release_and_stop(flow, flow_run, state) -> None:
    """on_cancellation: delete serving resources and stop the job this run started (configurable). Only jobs
    tagged with this flow run are stopped: a duplicate run that adopted another run's job never stops it."""
    release_serving(flow, flow_run, state)
    log = _hook_logger(flow, flow_run)
    try:
        job = _config_section(flow_run, "job") or {}
        if job.get("stop_on_cancel", True) is False:
            return
        clients = _clients_of(flow_run)
        if clients is None:
            return
        stopped = customize_stage.stop_jobs_of_flow_run(clients, str(flow_run.id))
        msg = f"[{state.name}] stopped customization jobs: {stopped or 'none running'}"
        log.info(msg)
        print(msg)
    except Exception as err:  # noqa: BLE001
        log.error("[%s] stopping the job failed: %s", state.name, error_text(err))


# ---------------------------------------------------------------------------------------------
# the flow
# ---------------------------------------------------------------------------------------------
@flow(
    name="customize-model",
    on_failure=[release_serving],
    on_crashed=[release_serving],
    on_cancellation=[release_and_stop],
    log_prints=True,
)
def customize_model(
    config: PipelineConfig | None = None,
    rerun_from: Step | None = None,
    run_id: str | None = None,
    runs_dir: str | None = None,
    allow_rerun_failed_job: bool = False,
) -> dict:
    """Customize a Bedrock model on your data, evaluate it against its base model, tear down serving.

    Args:
        config: The run configuration (base model, data, training, serving, evaluation, gate, budget).
            May be omitted when rerunning an existing run_id: its manifest holds the config.
        rerun_from: On-call: rerun from this step (prepare, upload, create-role, customize, poll,
            provision, evaluate), reusing the recorded results of the steps before it.
        run_id: Reuse this run's folder and manifest (set together with rerun_from to resume).
        runs_dir: Folder holding one sub-folder per run (manifest, prepared data, report); empty: the
            worker's FORGE_RUNS_DIR, else "runs".
        allow_rerun_failed_job: If the run's job ended Failed/Stopped, start a new attempt.
    """
    if rerun_from is not None and rerun_from not in STEPS:
        raise ValueError(f"rerun_from must be one of {', '.join(STEPS[:-1])}, got {rerun_from!r}")
    runs_dir = runs_root(runs_dir)
    if config is None:
        config = config_of_run(runs_dir, run_id)
    if rerun_from == "poll":
        # a rerun at poll re-checks the job from AWS: adopted while running or finished, a new attempt when it
        # ended Failed/Stopped (re-polling a failed job would only fail again)
        rerun_from = "customize"
    if rerun_from is not None and STEPS.index(rerun_from) <= STEPS.index("customize"):
        allow_rerun_failed_job = True   # an explicit rerun: a job that ended Failed/Stopped gets a new attempt

    ctx = RunContext.open(config, runs_dir, run_id, rerun_from, allow_rerun_failed_job)
    manifest = ctx.manifest
    ctx.log.info("run %s — manifest: %s", ctx.run_id, manifest.path)
    try:
        result = _run(ctx)
    except QualityGateFailed:
        manifest.finish("gate_failed")
        raise
    except BaseException as err:
        manifest.update(error=error_text(err)[:2000])
        manifest.finish("interrupted" if is_interruption(err) else "failed")
        raise
    manifest.finish("succeeded")
    _publish_manifest(manifest)
    return result


def _run(ctx: RunContext) -> dict:
    """The pipeline, in the order of its diagram (docs/design.md §1)."""
    _live_preflight(ctx)
    prepared = ctx.step("prepare", PreparedData, lambda: _prepare(ctx), record=lambda p: _record_data(ctx, p))
    ctx.bind_run_key(prepared.content_hash, _start_point(ctx))
    _spend_guard(ctx, prepared)
    ctx.bind_tags()
    uploaded = ctx.step("upload", UploadedData, lambda: _upload(ctx, prepared),
                        record=lambda u: _record_upload(ctx, u, prepared), adopted=lambda u: bool(u.skipped))
    role = ctx.step("create-role", RoleInfo,
                    lambda: iam_stage.ensure_role_task(ctx.clients, ctx.config, ctx.names, uploaded, ctx.account,
                                                       ctx.tags),
                    record=lambda r: ctx.manifest.add_resource("role", r.role_arn),
                    adopted=lambda r: not r.created and not r.updated)
    with ExitStack() as held:   # the job's training slot (flows/quota.py), from its create call until it is terminal
        job = ctx.step("customize", JobInfo, lambda: _start_job(ctx, role, uploaded, held),
                       record=lambda j: ctx.manifest.add_resource("job", j.job_arn), adopted=lambda j: j.adopted)
        training = ctx.step("poll", TrainingResult, lambda: _wait_for_job(ctx, job),
                            record=lambda t: _record_training(ctx, t), adopted=lambda _t: job.adopted)
    evaluation = provision_evaluate_teardown(ctx, EvaluationPlan.of(ctx, prepared, uploaded, training))
    return _verdict(ctx, evaluation)


# -- prepare / guard / upload / customize / poll: what each step does and what it records -------------
def _prepare(ctx: RunContext) -> PreparedData:
    """Local; cached on inputs + source (``refresh`` when on-call reruns prepare itself)."""
    return prepare_task(ctx.config, str(ctx.run_dir / "prepared"), refresh=ctx.rerun_from == "prepare")


def _record_data(ctx: RunContext, prepared: PreparedData) -> None:
    splits = {s: getattr(prepared, s) for s in ("train", "validation", "test") if getattr(prepared, s)}
    ctx.manifest.update(data={
        "format": prepared.format,
        "content_hash": prepared.content_hash,
        "counts": {s: f.records for s, f in splits.items()},
        "sha256": {s: f.sha256 for s, f in splits.items()},
        "label_like": prepared.label_like,
        "report": prepared.report_path,
    })


def _live_preflight(ctx: RunContext) -> None:
    """Read-only, before anything is created: is the base model (and teacher) customizable this way, here, now
    (tasks/preflight.py: GetFoundationModel)? A refusal is recorded as the ``pre-flight`` guard."""
    try:
        report = preflight_run(ctx.clients, ctx.config)
    except PreflightRefused as err:
        ctx.manifest.guard_refused("pre-flight", err)
        raise RunRefused(str(err)) from err
    for warning in report.warnings:
        ctx.log.warning("pre-flight: %s", warning)


def _spend_guard(ctx: RunContext, prepared: PreparedData) -> None:
    """Before anything that costs money: estimate, record, refuse over budget / caps (tasks/estimate.py)."""
    estimate = estimate_cost(ctx.config, prepared, live_prices(getattr(ctx.clients, "pricing", None), ctx.config))
    ctx.manifest.set_cost_estimate(estimate.total_usd, estimate.known_usd, estimate.model_dump(mode="json"))
    ctx.log.info("cost estimate: %s", estimate.summary_line())
    try:
        check_budget(estimate, ctx.config)
    except Exception as err:
        ctx.manifest.guard_refused(_guard_name(str(err)), err)
        raise RunRefused(str(err)) from err
    ctx.manifest.guard_passed()


def _guard_name(message: str) -> str:
    """Which spend guard refused (check_budget's message says what to change)."""
    return "model-unit cap" if message.startswith("serving.model_units") else "budget"


def _upload(ctx: RunContext, prepared: PreparedData) -> UploadedData:
    aws = ctx.config.aws
    upload_stage.check_media(prepared.media, ctx.names.bucket)   # before CreateBucket: media in another bucket
    upload_stage.ensure_bucket_task(ctx.clients, ctx.names.bucket, aws.region, aws.kms_key_id)
    return upload_stage.upload_task(ctx.clients, prepared, ctx.names.bucket, aws.prefix, ctx.run_key)


def _record_upload(ctx: RunContext, uploaded: UploadedData, prepared: PreparedData) -> None:
    data = {"train": uploaded.train_uri, "validation": uploaded.validation_uri, "test": uploaded.test_uri,
            "output": uploaded.output_uri}
    # from here on the manifest is also in the run's bucket, readable from any machine (tasks/run/store.py), and
    # the prepared data's report next to it (not written again when unchanged)
    store = S3RunStore.of_run(ctx.clients.s3, uploaded.bucket, ctx.config.aws.prefix)
    ctx.manifest.add_resource("data", data)
    ctx.manifest.attach(store, ctx.account)
    if Path(prepared.report_path).is_file():
        ctx.manifest.add_resource("data", {**data, "report": store.put_file(ctx.run_id, "prepare-report.json",
                                                                             prepared.report_path)})
    ctx.log.info("run state: %s", ctx.manifest.store.uri + ctx.run_id + "/manifest.json")


def _start_point(ctx: RunContext) -> StartPoint:
    """Where the job starts (``start_from``, issue 19). ``champion``: the lineage's champion as the registry names it
    on the run's first pass (GETs only: the registry, GetCustomModel), recorded as ``resources.start_from``, so a
    rerun continues from the same model even after the champion changed."""
    config = ctx.config
    recorded = (ctx.manifest.doc.resources or {}).get("start_from")
    if not recorded and config.start_from == "base":
        return customize_stage.resolve_start(ctx.clients, config, None)     # no AWS call
    ctx.account = ctx.account or account_id(ctx.clients)                    # bind_run_key reuses it
    if recorded:
        return StartPoint.model_validate(unredact(recorded, ctx.account))
    found = store_for_config(ctx.clients, config, ctx.account).get()
    start = customize_stage.resolve_start(ctx.clients, config, found[0].champion if found else None)
    ctx.manifest.add_resource("start_from", start.model_dump(mode="json"))
    ctx.log.info("%s (%s)", start.reason, start.model)
    return start


def _start_job(ctx: RunContext, role: RoleInfo, uploaded: UploadedData, held: ExitStack) -> JobInfo:
    """Get-or-create the job under the run's deterministic name. Resumed here (`forge rerun --from customize`), the
    recorded role may have lost the run's policy (released after its last job, or pruned): put it back first.
    Before the create call the run takes a training-job slot (waits while the quota is full); none for a job that
    holds no quota or whose slot a live peer holds."""
    if ctx.resumes_after("create-role"):
        iam_stage.ensure_role_task(ctx.clients, ctx.config, ctx.names, uploaded, ctx.account, ctx.tags)
    attempts = customize_stage.find_attempts(ctx.clients, ctx.names)
    latest = attempts[-1][1] if attempts else None
    will_create = latest is None or (latest.get("status") in customize_stage.ENDED and ctx.allow_rerun_failed_job)
    slot = _training_slot(ctx, latest, will_create)
    if slot is not None:
        held.enter_context(slot)
    job = customize_stage.start_job_task(ctx.clients, ctx.config, ctx.names, role.role_arn, uploaded, ctx.tags,
                                         rerun=ctx.allow_rerun_failed_job,
                                         start_model=ctx.start.custom_model if ctx.start else None)
    if slot is not None and will_create and job.adopted:   # a duplicate run created it first: its slot, not ours
        keep, why = flow_quota.job_slot_needed(ctx.clients, {"status": job.status, "jobArn": job.job_arn},
                                               will_create=False, run_id=ctx.run_id,
                                               flow_run_ids=ctx.manifest.doc.flow_run_ids or [])
        if not keep:
            slot.release()
            ctx.log.info("quota: released the training slot: %s", why)
    return job


def _training_slot(ctx: RunContext, latest: dict | None, will_create: bool) -> flow_quota.Slot | None:
    needed, why = flow_quota.job_slot_needed(ctx.clients, latest, will_create=will_create, run_id=ctx.run_id,
                                             flow_run_ids=ctx.manifest.doc.flow_run_ids or [])
    if not needed:
        ctx.log.info("quota: no training slot taken: %s", why)
        return None
    return _take(ctx, "customize", quota_rules.training_claim(ctx.config.aws.region))


def _take(ctx: RunContext, step: str, claim: quota_rules.Claim) -> flow_quota.Slot | None:
    """Take ``claim`` for ``step``; while waiting the manifest says so (``waiting``) and the flow run's state is
    "Waiting for quota"; every wait is recorded under ``quota_waits``."""
    since = now_iso()

    def waiting(line: str, active: int, limit: int) -> None:
        ctx.manifest.update(waiting={"step": step, "for": "quota", "limit": claim.name, "in_use": active,
                                     "limit_value": limit, "needs": claim.slots, "since": since, "message": line})
        flow_quota.rename_state(ctx.flow_run_id, flow_quota.WAITING_STATE, line)

    def taken(waited_s: float) -> None:
        waits = [*(getattr(ctx.manifest.doc, "quota_waits", None) or []),
                 {"step": step, "limit": claim.name, "slots": claim.slots, "since": since,
                  "waited_s": round(waited_s, 1)}]
        ctx.manifest.update(waiting=None, quota_waits=waits)
        flow_quota.rename_state(ctx.flow_run_id, None, f"took {claim.slots} slot(s) of {claim.name}")

    try:
        return flow_quota.take(claim, log=ctx.log, flow_run_id=ctx.flow_run_id,
                               timeout_s=quota_rules.wait_seconds(ctx.config.job.quota_wait_minutes),
                               lease_s=quota_rules.lease_seconds(), on_wait=waiting, on_taken=taken)
    except BaseException:
        if getattr(ctx.manifest.doc, "waiting", None):
            ctx.manifest.update(waiting=None)
        raise


def _wait_for_job(ctx: RunContext, job: JobInfo) -> TrainingResult:
    jc = ctx.config.job
    return customize_stage.wait_for_job_task(ctx.clients, job.job_arn, timeout_s=jc.timeout_hours * 3600,
                                             max_interval_s=jc.poll_max_interval_seconds,
                                             stop_on_timeout=jc.stop_on_timeout)


def _record_training(ctx: RunContext, training: TrainingResult) -> None:
    ctx.manifest.add_resource("custom_model", training.custom_model_arn)
    ctx.manifest.set_metrics(training={
        "final_training_loss": training.final_training_loss,
        "final_validation_loss": training.final_validation_loss,
        "steps": len(training.training_metrics),
    })


def _verdict(ctx: RunContext, evaluation: EvaluationResult | None) -> dict:
    """Record the evaluation's metrics, gate and report; a failed gate fails the run (exit 3)."""
    if evaluation is None:
        return ctx.result()
    m = ctx.manifest
    m.set_metrics(**{k: evaluation.metrics[k] for k in ("base", "custom", "comparison", "champion",
                                                         "comparison_vs_champion") if k in evaluation.metrics})
    m.update(gate=evaluation.gate.model_dump(mode="json"), report=evaluation.files)
    if evaluation.metrics.get("judge"):
        m.update(judge={k: v for k, v in evaluation.metrics["judge"].items() if k != "rubric"})
    gate = evaluation.gate
    promotion = None
    if ctx.config.production.mode != "none":
        # the lineage's registry records this version (rejected when the gate failed) and a passed gate promotes
        # it blue/green (flows/promote.py); the evaluation serving is already deleted whatever happens here
        promotion = promote_if_gate_passed(ctx)
    if not gate.passed:
        raise QualityGateFailed(f"quality gate failed: {gate.rule} — {'; '.join(gate.reasons)}")
    return ctx.result(gate=gate.model_dump(mode="json"), **({"promotion": promotion} if promotion else {}))


# -- provision → evaluate → teardown ------------------------------------------------------------------
def evaluation_key(run_key: str, config: PipelineConfig, test_sha: str | None) -> str:
    """The key of a recorded evaluation: the model (run key), how it is evaluated, and on what."""
    # issue 19's fields count only when set, so the keys of evaluations recorded before them stay the same
    ev = config.evaluation.model_dump(mode="json", exclude={"champion_concurrency"})
    if ev.get("judge") is None:
        ev.pop("judge", None)
    gate = config.gate.model_dump(mode="json")
    for k, default in (("champion_metrics", []), ("champion_min_delta", 0.0),
                       ("require_ci_above_zero_vs_champion", False)):
        if gate.get(k) == default:
            gate.pop(k, None)
    blob = json.dumps({"run_key": run_key, "evaluation": ev, "gate": gate, "test": test_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_evaluation_key = evaluation_key   # the former private name


@dataclass(frozen=True)
class EvaluationPlan:
    """What serving and evaluating the trained model needs from the steps before it."""

    prepared: PreparedData
    uploaded: UploadedData
    training: TrainingResult
    eval_key: str

    @classmethod
    def of(cls, ctx: RunContext, prepared: PreparedData, uploaded: UploadedData,
           training: TrainingResult) -> EvaluationPlan:
        test_sha = prepared.test.sha256 if prepared.test else None
        return cls(prepared, uploaded, training, evaluation_key(ctx.run_key, ctx.config, test_sha))

    def load_recorded(self, ctx: RunContext) -> EvaluationResult | None:
        return evaluate_stage.load_recorded_evaluation(ctx.clients, self.uploaded.output_uri, self.eval_key)


def provision_evaluate_teardown(ctx: RunContext, plan: EvaluationPlan) -> EvaluationResult | None:
    """Reuse an evaluation recorded in S3, skip when there is nothing to evaluate, else serve and evaluate
    (serving always released, layer 1). None: skipped."""
    if ctx.rerun_from not in ("provision", "evaluate"):
        recorded = plan.load_recorded(ctx)
        if recorded is not None:
            ctx.log.info("evaluation %s already recorded in S3: reusing it, no serving resource needed",
                         plan.eval_key)
            _release_leftovers(ctx)
            ctx.settle(SERVING_STEPS, adopted=True)
            return recorded
    if not ctx.config.evaluation.enabled or plan.prepared.test is None:
        ctx.settle(SERVING_STEPS, skipped=True)
        return None
    return _evaluate_once(ctx, plan)


def _release_leftovers(ctx: RunContext) -> None:
    """A serving resource an earlier attempt failed to delete although it recorded its evaluation (e.g. a delete
    refused until a permission was fixed): delete it now, unless a live run is serving it (fresh heartbeat).
    Read-only calls when there is nothing to delete, so a rerun of a finished run stays free."""
    uri = liveness.heartbeat_uri(ctx.names.bucket, ctx.config.aws.prefix, ctx.run_key)
    try:
        beat = liveness.read_heartbeat(ctx.clients.s3, uri)
    except Exception:  # noqa: BLE001 - unknown owner: leave it to the sweep
        return
    if beat.age_s is not None and beat.age_s < liveness.STALE_AFTER_S:
        return
    report = teardown_stage.teardown_task(ctx.clients, run_key=ctx.run_key)
    if report.deleted or report.alive:
        ctx.log.warning("deleted serving left by an earlier attempt: %s", report.deleted or "-")
        ctx.manifest.update(teardown=report.model_dump(mode="json"))
    if report.alive:
        raise TeardownFailed(report.alive, report.errors)


@contextmanager
def serving(clients, config: PipelineConfig, names, model_arn: str, tags: dict[str, str], run_key: str, *,
            on_provisioned=None, on_teardown=None, owner: str = "local", run_id: str | None = None,
            run_dir: Path | None = None):
    """Serve ``model_arn`` (provisioned throughput or on-demand deployment) for the ``with`` body and
    ALWAYS delete it afterwards, whatever the body did (cleanup layer 1, docs/design.md §3).

    While it serves, the run heartbeats in S3 (tasks/run/liveness.py; the resource's ``forge-heartbeat`` tag
    says where) and a watchdog process (flows/watchdog.py) stands by to delete the resource if this process
    dies first. ``on_provisioned(endpoint)`` runs once the endpoint is in service; ``on_teardown(report)``
    after the deletion. A resource whose create call went through but whose wait failed is still deleted.
    A deletion that fails after its retries raises ``TeardownFailed`` (with the ARNs still billing) when the
    body succeeded; when the body failed, its error propagates and the report says what is left.
    """
    bucket, key = liveness.heartbeat_location(names.bucket, config.aws.prefix, run_key)
    beat_uri = s3_uri(bucket, key)
    tags = {**tags, HEARTBEAT_TAG: beat_uri} if fits_tag_value(beat_uri) else tags
    manifest = str(run_dir / "manifest.json") if run_dir and (run_dir / "manifest.json").exists() else None
    watch = watchdog.guard(config.aws.model_dump(mode="json"), run_key, beat_uri, manifest,
                           str(run_dir / "watchdog.log") if run_dir else None)
    endpoint: ServingEndpoint | None = None
    report = None
    try:
        with liveness.beating(clients.s3, bucket, key, owner, run_id):
            try:
                endpoint = serve_stage.provision_task(clients, config, names, model_arn, tags)
                endpoint = serve_stage.wait_serving_task(clients, endpoint, timeout_s=PROVISION_TIMEOUT_S)
                if on_provisioned:
                    on_provisioned(endpoint)
                yield endpoint
            finally:
                report = teardown_stage.teardown_task(
                    clients, run_key=run_key, endpoints=[endpoint] if endpoint else [],
                    delete_custom_model=False, custom_model_arn=model_arn, delete_data=False, uploaded=None,
                )
                if on_teardown:
                    on_teardown(report)
    finally:
        watch.release()
    if report is not None and report.alive:
        raise TeardownFailed(report.alive, report.errors)


PEER_POLL_S = lease.PEER_POLL_S


def _evaluate_once(ctx: RunContext, plan: EvaluationPlan) -> EvaluationResult:
    """Serve and evaluate under the run key's lease (tasks/evaluation/lease.py): when another run of the same
    config is already doing it, wait for its recorded evaluation instead of sharing (and losing) its PT."""
    # one lease per model (run key): only one run serves it at a time, whatever evaluation it runs
    bucket, key = lease.lease_key(plan.uploaded.output_uri, "serving")
    # a live peer is waited for at most serving.max_hours; a dead one's lease goes stale after STALE_S
    deadline = time.monotonic() + max(ctx.config.serving.max_hours * 3600, 2 * lease.STALE_S)

    def waiting(peer: str) -> None:
        ctx.log.info("another run of this model (flow run %s) is serving and evaluating it: waiting for its "
                     "recorded evaluation instead of sharing its provisioned throughput", peer)

    outcome = lease.acquire_or_wait(ctx.clients.s3, bucket, key, ctx.flow_run_id, lambda: plan.load_recorded(ctx),
                                    deadline=deadline, ours=ctx.manifest.doc.flow_run_ids or [],
                                    poll_s=PEER_POLL_S, on_wait=waiting)
    if outcome.recorded is not None:
        ctx.log.info("reusing the evaluation recorded by flow run %s", outcome.peer)
        ctx.settle(SERVING_STEPS, adopted=True)
        return outcome.recorded
    with lease.holding(ctx.clients.s3, bucket, key, ctx.flow_run_id):
        return _serve_and_evaluate(ctx, plan)


def _serve_and_evaluate(ctx: RunContext, plan: EvaluationPlan) -> EvaluationResult:
    manifest, log, training = ctx.manifest, ctx.log, plan.training

    def provisioned(endpoint: ServingEndpoint) -> None:
        manifest.add_resource("serving", endpoint.model_dump(mode="json"))
        manifest.step_done("provision", adopted=endpoint.adopted, output=endpoint.model_dump(mode="json"))
        log.info("step provision: %s %s is %s", endpoint.kind, endpoint.arn, endpoint.status)

    def torn_down(report) -> None:
        manifest.update(teardown={**report.model_dump(mode="json"), "by": "finally"})
        if report.errors:
            manifest.step_failed("teardown", "; ".join(report.errors))
        else:
            manifest.step_done("teardown")
        log.info("step teardown: deleted %s, already gone %s", report.deleted or "-", report.already_gone or "-")

    manifest.step_started("provision")
    out_dir = str(ctx.run_dir / "evaluation")
    left: TeardownFailed | None = None
    champion = _champion_of_lineage(ctx, plan)
    try:
        try:
            with _serving_slots(ctx), serving(
                    ctx.clients, ctx.config, ctx.names, training.custom_model_arn, ctx.serving_tags(), ctx.run_key,
                    on_provisioned=provisioned, on_teardown=torn_down, owner=ctx.flow_run_id, run_id=ctx.run_id,
                    run_dir=ctx.run_dir) as endpoint:
                manifest.step_started("evaluate")
                # only the model calls need the serving resource: it is released before scoring
                outputs = evaluate_stage.collect_outputs_task(ctx.clients, ctx.config, plan.prepared, ctx.family,
                                                              endpoint, out_dir, champion)
                stop.raise_if_requested()   # a Ctrl-C swallowed during the calls (tasks/run/stop.py)
                manifest.step_started("teardown")
        except TeardownFailed as err:   # the outputs are in: score and record them, then fail loudly
            left = err
        evaluation = _score_and_record(ctx, plan, training, outputs, out_dir, champion)
        manifest.step_done("evaluate")
    except BaseException as err:
        for step in ("provision", "evaluate"):
            if manifest.doc.step_status(step) == "running":
                manifest.step_failed(step, err)
        raise
    if left is not None:
        raise left
    _delete_extras(ctx, plan)
    return evaluation


@contextmanager
def _serving_slots(ctx: RunContext):
    """The PT model-unit slots of a no-commitment Provisioned Throughput, from before its create call until after
    its teardown (an on-demand deployment takes none): tasks/run/quota.py ``serving_claims``."""
    sv = ctx.config.serving
    claims = quota_rules.serving_claims(serving_kind(ctx.config), model_units(ctx.config), sv.commitment,
                                        ctx.config.aws.region)
    with ExitStack() as held:
        for claim in claims:
            slot = _take(ctx, "provision", claim)
            if slot is not None:
                held.enter_context(slot)
        yield


def _champion_of_lineage(ctx: RunContext, plan: EvaluationPlan):
    """The lineage's champion (its registry in S3, read only) when the config has a production section: served next
    to this run's model on the same examples, or its recorded outputs on this test split reused. None on a
    lineage's first run and without a production section (the gate is against the base model, as before)."""
    if ctx.config.production.mode == "none":
        return None
    champion = evaluate_stage.champion_plan_task(
        ctx.clients, ctx.config, output_uri=plan.uploaded.output_uri, test_sha256=_test_sha(plan),
        invoke_shape=ctx.family.invoke_shape, run_id=ctx.run_id, account=ctx.account)
    if champion is not None:
        ctx.manifest.update(evaluation_champion={
            "run_id": champion.run_id, "served": champion.target is not None,
            "recorded_outputs": len(champion.recorded.outputs) if champion.recorded else 0})
    return champion


def _test_sha(plan: EvaluationPlan) -> str:
    return plan.prepared.test.sha256 if plan.prepared.test else ""


def _score_and_record(ctx: RunContext, plan: EvaluationPlan, training: TrainingResult, outputs, out_dir: str,
                      champion) -> EvaluationResult:
    """After the serving is gone: the judge (when configured), the scores, the report in S3 (artifacts linking
    there) and the evaluation record a rerun reuses; with a production section also the per-example outputs a
    later challenger on the same test split reuses instead of serving this model again."""
    if ctx.config.production.mode != "none":
        evaluate_stage.record_run_outputs_task(
            ctx.clients, output_uri=plan.uploaded.output_uri, df=outputs, test_sha256=_test_sha(plan),
            eval_cfg=ctx.config.evaluation, invoke_shape=ctx.family.invoke_shape, run_id=ctx.run_id,
            custom_model_arn=training.custom_model_arn, champion=champion)
    judge = evaluate_stage.judge_outputs_task(ctx.clients, ctx.config, outputs, plan.uploaded.output_uri)
    evaluation = evaluate_stage.score_outputs_task(outputs, ctx.config, plan.prepared, training, out_dir, judge)
    evaluation = evaluate_stage.publish_report_task(ctx.clients, plan.uploaded.output_uri, plan.eval_key,
                                                    evaluation, ctx.config.aws.region)
    evaluate_stage.record_evaluation_task(ctx.clients, plan.uploaded.output_uri, plan.eval_key, evaluation)
    return evaluation


def _delete_extras(ctx: RunContext, plan: EvaluationPlan) -> None:
    """Extra data (custom model, uploaded data): only on success and only when the config asks."""
    sv = ctx.config.serving
    # a model that may be promoted is kept: promotion comes after this (tasks/promote.py serves it)
    delete_model = sv.delete_custom_model and ctx.config.production.mode == "none"
    if not (delete_model or sv.delete_data):
        return
    report = teardown_stage.teardown_task(
        ctx.clients, run_key=ctx.run_key, endpoints=[], delete_custom_model=delete_model,
        custom_model_arn=plan.training.custom_model_arn, delete_data=sv.delete_data, uploaded=plan.uploaded)
    teardown = dict(ctx.manifest.doc.teardown or {})
    teardown["deleted"] = teardown.get("deleted", []) + report.deleted
    ctx.manifest.update(teardown=teardown)


def _publish_manifest(manifest: Manifest) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        body = json.dumps(json.loads(manifest.path.read_text()), indent=2)
        create_markdown_artifact(key="run-manifest", markdown=f"# Run manifest\n\n```json\n{body}\n```\n",
                                 description=f"manifest of {manifest.run_id}")
    except Exception as err:  # noqa: BLE001 - publishing is best effort; the file is the record
        get_run_logger().warning("could not publish manifest artifact: %s", err)


if __name__ == "__main__":  # python -m flows.customize examples/banking77.yaml
    import sys

    from tasks.config import load_config

    print(customize_model(load_config(sys.argv[1]), runs_dir=os.environ.get("FORGE_RUNS_DIR", "runs")))
