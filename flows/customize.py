"""The customization flow: prepare → upload → create role → customize → poll → provision → evaluate → teardown.

Wiring only: each step is a task from ``tasks/`` whose logic lives in plain functions. This module
adds what only a flow can: the order, the run manifest, resume (``rerun_from``), and cleanup in
layers (DESIGN.md §3):

1. serving resources live inside ``try/finally`` around evaluation;
2. ``on_failure`` / ``on_crashed`` / ``on_cancellation`` hooks delete what this flow run tagged
   (and stop the job it started, on cancellation) — for exits that skip ``finally``;
3. ``flows/sweep.py`` catches the rest (SIGKILL): everything billable carries ``forge-expires-at``.

AWS is the source of truth: every AWS step adopts what exists under the run's deterministic names,
so a rerun on a fresh machine (no Prefect cache, no manifest) still never duplicates a job or a
provisioned throughput. A finished evaluation is recorded in S3 next to the job output; a rerun
that finds it makes no mutating AWS call at all.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext

from tasks import customize as customize_stage
from tasks import evaluate as evaluate_stage
from tasks import iam as iam_stage
from tasks import lease
from tasks import serve as serve_stage
from tasks import teardown as teardown_stage
from tasks import upload as upload_stage
from tasks.aws import (
    account_id,
    compute_run_key,
    make_clients,
    resource_names,
    standard_tags,
)
from tasks.catalog import load_catalog
from tasks.config import PipelineConfig
from tasks.estimate import check_budget, estimate_cost
from tasks.manifest import STEPS, Manifest, new_run_id, unredact
from tasks.prepare import prepare_task
from tasks.types import (
    JobInfo,
    PreparedData,
    RoleInfo,
    ServingEndpoint,
    TrainingResult,
    UploadedData,
)

PROVISION_TIMEOUT_S = 3 * 3600   # provisioning takes minutes; give up (and tear down) after 3 h


# the steps an operator can rerun from (a dropdown in the Prefect UI's rerun-step form)
Step = Literal["prepare", "upload", "create-role", "customize", "poll", "provision", "evaluate"]
assert list(get_args(Step)) == STEPS[:-1], "Step must list the manifest's steps but teardown"


class QualityGateFailed(RuntimeError):
    """The evaluation ran and the custom model did not pass the configured gate."""


class RunRefused(RuntimeError):
    """A guard refused to spend money (budget, model-unit cap, commitment)."""


# ---------------------------------------------------------------------------------------------
# cleanup hooks (layer 2) — they run in whatever process finalizes the run, so they share no
# memory with it: everything is found again by the flow-run-id tag.
# ---------------------------------------------------------------------------------------------
def _config_from_flow_run(flow_run) -> PipelineConfig | None:
    params = getattr(flow_run, "parameters", None) or {}
    raw = params.get("config")
    if raw is None and params.get("run_id"):
        try:
            raw = Manifest.find(params.get("runs_dir", "runs"), params["run_id"]).data["config"]
        except (FileNotFoundError, KeyError):
            return None
    if raw is None:
        return None
    return raw if isinstance(raw, PipelineConfig) else PipelineConfig.model_validate(raw)


def _failed_before_spending(state) -> bool:
    """The run stopped on bad input or a spend guard, before it created anything: nothing to clean up, and
    no AWS call either (a bad-data run must make none). Unknown → False: clean up as usual."""
    from tasks.validate import DataValidationError

    try:
        exc = state.result(raise_on_failure=False)
    except BaseException:  # noqa: BLE001 - the state may re-raise; then we do not know
        return False
    return isinstance(exc, DataValidationError | RunRefused)


def release_serving(flow, flow_run, state) -> None:
    """on_failure / on_crashed: delete billing resources tagged with this flow run."""
    config = _config_from_flow_run(flow_run)
    if config is None or _failed_before_spending(state):
        return
    clients = make_clients(config.aws)
    report = teardown_stage.teardown_run(clients, flow_run_id=str(flow_run.id))
    print(f"[{state.name}] cleanup hook: deleted {report.deleted or 'nothing'}; already gone {report.already_gone or '-'}")


def release_and_stop(flow, flow_run, state) -> None:
    """on_cancellation: delete serving resources and stop the job this run started (configurable)."""
    release_serving(flow, flow_run, state)
    config = _config_from_flow_run(flow_run)
    if config is None or not config.job.stop_on_cancel:
        return
    clients = make_clients(config.aws)
    stopped = customize_stage.stop_jobs_of_flow_run(clients, str(flow_run.id))
    print(f"[{state.name}] stopped customization jobs: {stopped or 'none running'}")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _flow_run_id() -> str:
    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx and ctx.flow_run else "local"


@contextmanager
def _step(manifest: Manifest, name: str):
    log = get_run_logger()
    log.info("step %s: started", name)
    manifest.step_started(name)
    try:
        yield
    except BaseException as err:  # noqa: BLE001 - recorded, then re-raised (TerminationSignal too)
        manifest.step_failed(name, err)
        log.error("step %s: failed: %s", name, err)
        raise


def _reuse(manifest: Manifest, step: str, rerun_from: str | None, model: type, account: str | None):
    """A completed upstream step's recorded output, when resuming at a later step."""
    if rerun_from is None or STEPS.index(step) >= STEPS.index(rerun_from):
        return None
    out = manifest.step_output(step)
    if out is None:
        return None
    if account:
        out = unredact(out, account)
    return model.model_validate(out)


def _error_text(err: BaseException) -> str:
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


def _evaluation_key(run_key: str, config: PipelineConfig, test_sha: str | None) -> str:
    import hashlib

    blob = json.dumps(
        {"run_key": run_key, "evaluation": config.evaluation.model_dump(mode="json"),
         "gate": config.gate.model_dump(mode="json"), "test": test_sha},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    runs_dir: str = "runs",
    allow_rerun_failed_job: bool = False,
) -> dict:
    """Customize a Bedrock model on your data, evaluate it against its base model, tear down serving.

    Args:
        config: The run configuration (base model, data, training, serving, evaluation, gate, budget).
            May be omitted when rerunning an existing run_id: its manifest holds the config.
        rerun_from: On-call: rerun from this step (prepare, upload, create-role, customize, poll,
            provision, evaluate), reusing the recorded results of the steps before it.
        run_id: Reuse this run's folder and manifest (set together with rerun_from to resume).
        runs_dir: Folder holding one sub-folder per run (manifest, prepared data, report).
        allow_rerun_failed_job: If the run's job ended Failed/Stopped, start a new attempt.
    """
    log = get_run_logger()
    if rerun_from is not None and rerun_from not in STEPS:
        raise ValueError(f"rerun_from must be one of {', '.join(STEPS[:-1])}, got {rerun_from!r}")
    if config is None:
        if not run_id:
            raise ValueError("config is required unless run_id names an existing run")
        config = PipelineConfig.model_validate(Manifest.find(runs_dir, run_id).data["config"])
    if rerun_from == "poll":
        # a rerun at poll re-checks the job from AWS: adopted while running or finished, a new attempt when it
        # ended Failed/Stopped (re-polling a failed job would only fail again)
        rerun_from = "customize"
    if rerun_from is not None and STEPS.index(rerun_from) <= STEPS.index("customize"):
        allow_rerun_failed_job = True   # an explicit rerun: a job that ended Failed/Stopped gets a new attempt

    run_id = run_id or new_run_id(config.name)
    manifest = Manifest.create(runs_dir, run_id, config.model_dump(mode="json"))
    manifest.update(flow_run_id=_flow_run_id(), rerun_from=rerun_from,
                    flow_run_ids=[*manifest.data.get("flow_run_ids", []), _flow_run_id()])
    run_dir = manifest.run_dir
    log.info("run %s — manifest: %s", run_id, manifest.path)

    try:
        result = _run(config, manifest, run_dir, rerun_from, allow_rerun_failed_job)
    except QualityGateFailed:
        manifest.finish("gate_failed")
        raise
    except BaseException as err:
        manifest.data["error"] = _error_text(err)[:2000]
        manifest.finish("failed")
        raise
    manifest.finish("succeeded")
    _publish_manifest(manifest)
    return result


def _run(config: PipelineConfig, manifest: Manifest, run_dir: Path, rerun_from: str | None,
         allow_rerun_failed_job: bool) -> dict:
    log = get_run_logger()
    clients = make_clients(config.aws, pool_size=max(16, 2 * config.evaluation.concurrency))
    flow_run_id = _flow_run_id()
    catalog = load_catalog()
    family = catalog.family_of(config.base_model)

    # 1. prepare (local; cached on inputs + source)
    prepared = _reuse(manifest, "prepare", rerun_from, PreparedData, None)
    with _step(manifest, "prepare"):
        if prepared is None:
            prepared = prepare_task(config, str(run_dir / "prepared"), refresh=rerun_from == "prepare")
        manifest.update(data={
            "format": prepared.format,
            "content_hash": prepared.content_hash,
            "counts": {s: getattr(prepared, s).records for s in ("train", "validation", "test") if getattr(prepared, s)},
            "sha256": {s: getattr(prepared, s).sha256 for s in ("train", "validation", "test") if getattr(prepared, s)},
            "label_like": prepared.label_like,
            "report": prepared.report_path,
        })
        manifest.step_done("prepare", output=prepared.model_dump(mode="json"))

    run_key = compute_run_key(config, prepared.content_hash)
    account = account_id(clients)   # read-only (STS); the default bucket name is per account
    names = resource_names(config, run_key, account=account)
    manifest.update(run_key=run_key)
    log.info("run key %s (job %s)", run_key, names.job)

    # spend guard before anything that costs money
    estimate = estimate_cost(config, prepared)
    manifest.data["cost"]["estimated_usd"] = estimate.total_usd          # None when a price is unknown
    manifest.data["cost"]["known_usd"] = estimate.known_usd              # the items with a known price
    manifest.data["cost"]["estimate"] = estimate.model_dump(mode="json")
    manifest.save()
    log.info("cost estimate: %s", estimate.summary_line())
    try:
        check_budget(estimate, config)
    except Exception as err:
        manifest.step_failed("upload", f"refused before spending: {err}")
        raise RunRefused(str(err)) from err

    tags = standard_tags(run_key, flow_run_id, config.tags)

    # 2. upload
    uploaded = _reuse(manifest, "upload", rerun_from, UploadedData, None)
    with _step(manifest, "upload"):
        if uploaded is None:
            bucket = names.bucket
            upload_stage.ensure_bucket_task(clients, bucket, config.aws.region, config.aws.kms_key_id)
            uploaded = upload_stage.upload_task(clients, prepared, bucket, config.aws.prefix, run_key)
        manifest.add_resource("data", {"train": uploaded.train_uri, "validation": uploaded.validation_uri,
                                       "test": uploaded.test_uri, "output": uploaded.output_uri})
        manifest.step_done("upload", adopted=bool(uploaded.skipped), output=uploaded.model_dump(mode="json"))

    # 3. create role
    role = _reuse(manifest, "create-role", rerun_from, RoleInfo, account)
    with _step(manifest, "create-role"):
        if role is None:
            role = iam_stage.ensure_role_task(clients, config, names, uploaded, account, tags)
        manifest.add_resource("role", role.role_arn)
        manifest.step_done("create-role", adopted=not role.created and not role.updated, output=role.model_dump(mode="json"))

    # 4. customize (get-or-create the job)
    job = _reuse(manifest, "customize", rerun_from, JobInfo, account)
    with _step(manifest, "customize"):
        if job is None:
            job = customize_stage.start_job_task(clients, config, names, role.role_arn, uploaded, tags,
                                                 rerun=allow_rerun_failed_job)
        manifest.add_resource("job", job.job_arn)
        manifest.step_done("customize", adopted=job.adopted, output=job.model_dump(mode="json"))

    # 5. poll to the end
    training = _reuse(manifest, "poll", rerun_from, TrainingResult, account)
    with _step(manifest, "poll"):
        if training is None:
            training = customize_stage.wait_for_job_task(
                clients, job.job_arn, timeout_s=config.job.timeout_hours * 3600,
                max_interval_s=config.job.poll_max_interval_seconds,
                stop_on_timeout=config.job.stop_on_timeout,
            )
        manifest.add_resource("custom_model", training.custom_model_arn)
        manifest.data["metrics"]["training"] = {
            "final_training_loss": training.final_training_loss,
            "final_validation_loss": training.final_validation_loss,
            "steps": len(training.training_metrics),
        }
        manifest.step_done("poll", adopted=job.adopted, output=training.model_dump(mode="json"))

    # 6–8. provision → evaluate → teardown, serving always released (layer 1)
    eval_key = _evaluation_key(run_key, config, prepared.test.sha256 if prepared.test else None)
    recorded = None
    if rerun_from not in ("provision", "evaluate"):
        recorded = evaluate_stage.load_recorded_evaluation(clients, uploaded.output_uri, eval_key)
    if recorded is not None:
        log.info("evaluation %s already recorded in S3: reusing it, no serving resource needed", eval_key)
        for step in ("provision", "evaluate", "teardown"):
            manifest.step_started(step)
            manifest.step_done(step, adopted=True)
        evaluation = recorded
    elif not config.evaluation.enabled or prepared.test is None:
        for step in ("provision", "evaluate", "teardown"):
            manifest.step_started(step)
            manifest.step_done(step, status="skipped")
        evaluation = None
    else:
        evaluation = _evaluate_once(clients, config, manifest, names, run_key, flow_run_id, training,
                                    prepared, family, run_dir, uploaded, eval_key)

    if evaluation is None:
        return {"run_id": manifest.data["run_id"], "status": "succeeded", "manifest": str(manifest.path)}

    manifest.data["metrics"].update({k: evaluation.metrics[k] for k in ("base", "custom", "comparison") if k in evaluation.metrics})
    manifest.data["gate"] = evaluation.gate.model_dump(mode="json")
    manifest.data["report"] = evaluation.files
    manifest.save()
    if not evaluation.gate.passed:
        raise QualityGateFailed(f"quality gate failed: {evaluation.gate.rule} — {'; '.join(evaluation.gate.reasons)}")
    return {"run_id": manifest.data["run_id"], "status": "succeeded", "manifest": str(manifest.path),
            "gate": evaluation.gate.model_dump(mode="json")}


@contextmanager
def serving(clients, config: PipelineConfig, names, model_arn: str, tags: dict[str, str], run_key: str, *,
            on_provisioned=None, on_teardown=None):
    """Serve ``model_arn`` (provisioned throughput or on-demand deployment) for the ``with`` body and
    ALWAYS delete it afterwards, whatever the body did (cleanup layer 1, DESIGN.md §3).

    ``on_provisioned(endpoint)`` runs once the endpoint is in service; ``on_teardown(report)`` after
    the deletion. A resource whose create call went through but whose wait failed is still deleted:
    the endpoint is known from the moment ``provision`` returns.
    """
    endpoint: ServingEndpoint | None = None
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


PEER_POLL_S = 2.0


def _evaluate_once(clients, config, manifest, names, run_key, flow_run_id, training, prepared, family, run_dir,
                   uploaded, eval_key):
    """Serve and evaluate under the run key's lease (tasks/lease.py): when another run of the same config
    is already doing it, wait for its recorded evaluation instead of sharing (and losing) its PT."""
    import time

    log = get_run_logger()
    bucket, key = lease.lease_key(uploaded.output_uri, eval_key)
    # a live peer is waited for at most serving.max_hours; a dead one's lease goes stale after STALE_S
    deadline = time.monotonic() + max(config.serving.max_hours * 3600, 2 * lease.STALE_S)
    ours = manifest.data.get("flow_run_ids", [])   # earlier attempts of this run: a rerun supersedes them
    while True:
        peer = lease.acquire(clients.s3, bucket, key, flow_run_id, ours=ours)
        if peer is None:
            break
        log.info("another run of this model (flow run %s) is serving and evaluating it: waiting for its "
                 "recorded evaluation instead of sharing its provisioned throughput", peer)
        while time.monotonic() < deadline:
            recorded = evaluate_stage.load_recorded_evaluation(clients, uploaded.output_uri, eval_key)
            if recorded is not None:
                log.info("reusing the evaluation recorded by flow run %s", peer)
                for step in ("provision", "evaluate", "teardown"):
                    manifest.step_started(step)
                    manifest.step_done(step, adopted=True)
                return recorded
            if not lease.held_by_other(lease.read_lease(clients.s3, bucket, key), flow_run_id, ours=ours):
                break   # the peer finished without a record, or died: serve ourselves
            time.sleep(PEER_POLL_S)
        else:
            raise RuntimeError(f"flow run {peer} held the evaluation lease for longer than serving.max_hours")
    with lease.holding(clients.s3, bucket, key, flow_run_id):
        return _serve_and_evaluate(clients, config, manifest, names, run_key, flow_run_id, training, prepared,
                                   family, run_dir, uploaded, eval_key)


def _serve_and_evaluate(clients, config, manifest, names, run_key, flow_run_id, training, prepared, family,
                        run_dir, uploaded, eval_key):
    log = get_run_logger()
    serving_tags = standard_tags(run_key, flow_run_id, config.tags, expires_in_hours=config.serving.max_hours)

    def provisioned(endpoint: ServingEndpoint) -> None:
        manifest.add_resource("serving", endpoint.model_dump(mode="json"))
        manifest.step_done("provision", adopted=endpoint.adopted, output=endpoint.model_dump(mode="json"))
        log.info("step provision: %s %s is %s", endpoint.kind, endpoint.arn, endpoint.status)

    def torn_down(report) -> None:
        manifest.data["teardown"] = report.model_dump(mode="json")
        if report.errors:
            manifest.step_failed("teardown", "; ".join(report.errors))
        else:
            manifest.step_done("teardown")
        log.info("step teardown: deleted %s, already gone %s", report.deleted or "-", report.already_gone or "-")

    manifest.step_started("provision")
    out_dir = str(run_dir / "evaluation")
    try:
        with serving(clients, config, names, training.custom_model_arn, serving_tags, run_key,
                     on_provisioned=provisioned, on_teardown=torn_down) as endpoint:
            manifest.step_started("evaluate")
            # only the model calls need the serving resource: it is released before scoring
            outputs = evaluate_stage.collect_outputs_task(clients, config, prepared, family, endpoint, out_dir)
            manifest.step_started("teardown")
        evaluation = evaluate_stage.score_outputs_task(outputs, config, prepared, training, out_dir)
        evaluate_stage.record_evaluation_task(clients, uploaded.output_uri, eval_key, evaluation)
        manifest.step_done("evaluate")
    except BaseException as err:
        for step in ("provision", "evaluate"):
            if (manifest.data["steps"].get(step) or {}).get("status") == "running":
                manifest.step_failed(step, err)
        raise
    # extra data (custom model, uploaded data) only on success and only when the config asks
    if config.serving.delete_custom_model or config.serving.delete_data:
        report = teardown_stage.teardown_task(
            clients, run_key=run_key, endpoints=[], delete_custom_model=config.serving.delete_custom_model,
            custom_model_arn=training.custom_model_arn, delete_data=config.serving.delete_data, uploaded=uploaded)
        manifest.data["teardown"]["deleted"] = manifest.data["teardown"].get("deleted", []) + report.deleted
        manifest.save()
    return evaluation


def _publish_manifest(manifest: Manifest) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        body = json.dumps(json.loads(manifest.path.read_text()), indent=2)
        create_markdown_artifact(key="run-manifest", markdown=f"# Run manifest\n\n```json\n{body}\n```\n",
                                 description=f"manifest of {manifest.data['run_id']}")
    except Exception as err:  # noqa: BLE001 - publishing is best effort; the file is the record
        get_run_logger().warning("could not publish manifest artifact: %s", err)


if __name__ == "__main__":  # python -m flows.customize examples/banking77.yaml
    import sys

    from tasks.config import load_config

    print(customize_model(load_config(sys.argv[1]), runs_dir=os.environ.get("FORGE_RUNS_DIR", "runs")))
