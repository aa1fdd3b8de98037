"""Re-evaluate an existing custom model: provision → evaluate → teardown (docs/design.md §1, §6).

As the run itself does (flows/customize.py): with a production section the lineage's champion is the third model
on the same examples (its recorded outputs on this test split reused, else its production serving called) and
the gate's rule against it applies; with ``evaluation.judge`` the judge compares custom with base (and champion)
after the teardown, its cache next to the run's output.

For on-call and for "did the model drift against new test data?": the customization run already
happened; this flow serves its custom model again (or uses a provisioned throughput / deployment
that is already serving it), runs the same evaluation as ``customize_model`` and tears down what it
created. The results land next to the run's manifest under ``evaluations/<timestamp>/`` and in the
manifest's ``evaluations`` list; the run's own ``metrics``/``gate`` are left as they were.

Cleanup is layered as in ``flows/customize.py``: ``try/finally`` inside ``serving`` (layer 1), the
same state hooks (layer 2), and the sweeper (layer 3) through the ``forge-expires-at`` tag.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger

from flows.context import QualityGateFailed, fetch_from_runs_uri, flow_run_id, runs_root
from flows.customize import release_serving, serving
from tasks import evaluate as evaluate_stage
from tasks.aws.clients import account_id, make_clients
from tasks.aws.logs import install_log_redaction
from tasks.aws.redact import unredact
from tasks.aws.tags import standard_tags
from tasks.catalog import load_catalog
from tasks.config import PipelineConfig
from tasks.prepare import prepare_task
from tasks.run.manifest import Manifest, new_run_id
from tasks.run.names import compute_run_key, resource_names
from tasks.run.store import store_of
from tasks.run.types import PreparedData, ServingEndpoint, TrainingResult
from tasks.upload import fetch_split

if TYPE_CHECKING:
    import pandas as pd

    from tasks.aws.clients import Clients
    from tasks.evaluate import EvaluationResult

install_log_redaction()   # account ids out of every log line a run writes (tasks/aws/logs.py)


def _existing_endpoint(arn: str, model_arn: str) -> ServingEndpoint:
    kind = "deployment" if ":custom-model-deployment/" in arn else "provisioned"
    return ServingEndpoint(kind=kind, arn=arn, name=arn.rsplit("/", 1)[-1], model_arn=model_arn,
                           status="InService", adopted=True)


def _recorded_inputs(manifest: Manifest, account: str) -> tuple[PreparedData | None, TrainingResult | None]:
    """The prepared data and the finished job recorded by a customization run."""
    out = manifest.step_output("prepare")
    prepared = PreparedData.model_validate(out) if out else None
    out = manifest.step_output("poll")
    training = TrainingResult.model_validate(unredact(out, account)) if out else None
    return prepared, training


def _model_to_evaluate(training: TrainingResult | None, custom_model_arn: str | None,
                       serving_arn: str | None) -> tuple[str | None, TrainingResult]:
    """The custom model ARN (given, else the run's) and the training record the report shows for it."""
    model_arn = custom_model_arn or (training.custom_model_arn if training else None)
    if not model_arn and not serving_arn:
        raise ValueError("no custom model to evaluate: the run has no finished job; pass custom_model_arn")
    if training is None or (custom_model_arn and custom_model_arn != training.custom_model_arn):
        training = TrainingResult(job_arn="", job_name="", status="Completed", custom_model_arn=model_arn or "",
                                  custom_model_name=(model_arn or "").rsplit("/", 1)[-1])
    return model_arn, training


def fetch_run(runs_dir: str, run_id: str, runs_uri: str) -> None:
    """The run's manifest from its S3 copy into ``runs_dir`` (the local cache) when this machine has none: an
    on-call evaluation from another machine than the one that ran it (flows/context.py fetch_from_runs_uri)."""
    if (Path(runs_dir) / run_id / "manifest.json").exists():
        return
    if fetch_from_runs_uri(runs_dir, run_id, runs_uri) is None:
        raise FileNotFoundError(f"no run {run_id!r} under {runs_dir} nor under {runs_uri}")


def _attach_store(manifest: Manifest, clients: Clients, account: str) -> None:
    """A customization run's manifest is also kept in its bucket (as flows/customize.py does after upload)."""
    store = store_of(clients.s3, manifest.doc)
    if store is not None:
        manifest.attach(store, account)


def _run_config(run_id: str | None, runs_dir: str,
                config: PipelineConfig | None) -> tuple[Manifest | None, PipelineConfig]:
    """The run's manifest (when run_id is given) and the configuration to evaluate with."""
    manifest: Manifest | None = None
    if run_id:
        manifest = Manifest.find(runs_dir, run_id)
        config = config or PipelineConfig.model_validate(manifest.doc.config)
    if config is None:
        raise ValueError("give run_id (a finished customization run) or config + custom_model_arn")
    return manifest, config


def _evaluation_inputs(manifest: Manifest | None, config: PipelineConfig, runs_dir: str, clients: Clients,
                       account: str, custom_model_arn: str | None, serving_arn: str | None,
                       ) -> tuple[Manifest, PreparedData, str | None, TrainingResult]:
    """The manifest to record in (created for an evaluation-only run), the test data and the model."""
    prepared, training = _recorded_inputs(manifest, account) if manifest is not None else (None, None)
    if manifest is None:  # an evaluation-only run gets its own folder and manifest
        manifest = Manifest.create(runs_dir, new_run_id(config.name), config.model_dump(mode="json"))
        manifest.update(kind="evaluation", flow_run_id=flow_run_id())
    test_uri = ((manifest.doc.resources or {}).get("data") or {}).get("test")
    if prepared is not None and prepared.test is not None and not Path(prepared.test.path).exists() and test_uri:
        # prepared on another machine: the uploaded copy, checked against the recorded hash
        prepared = prepared.model_copy(update={"test": fetch_split(clients, test_uri, prepared.test,
                                                                   manifest.run_dir / "fetched")})
    if prepared is None or prepared.test is None or not Path(prepared.test.path).exists():
        prepared = prepare_task(config, str(manifest.run_dir / "prepared"))
    if prepared.test is None:
        raise ValueError("the prepared data has no test split: set data.split.test > 0")
    model_arn, training = _model_to_evaluate(training, custom_model_arn, serving_arn)
    return manifest, prepared, model_arn, training


def _champion(clients: Clients, config: PipelineConfig, manifest: Manifest, output: str | None,
              prepared: PreparedData, account: str, log: Any):
    """The lineage's champion, compared with as in the run itself (flows/customize.py ``_champion_of_lineage``),
    when the config has a production section and the run has an output in S3: its recorded outputs on this test
    split reused, else its production serving called. None: no production section, no champion yet, or the model
    re-evaluated is the champion (then it is gated against the base model only). ``output``: the run's output
    URI (``resources.data.output``)."""
    if config.production.mode == "none" or not output or prepared.test is None:
        return None
    family = load_catalog().family_of(config.base_model)
    champion = evaluate_stage.champion_plan_task(
        clients, config, output_uri=output, test_sha256=prepared.test.sha256, invoke_shape=family.invoke_shape,
        run_id=manifest.run_id, account=account)
    if champion is not None:
        log.info("champion %s of %s: %s", champion.run_id, config.name,
                 "its recorded outputs on this test split" if champion.recorded else "its production serving")
    return champion


def _collect_outputs(clients: Clients, config: PipelineConfig, prepared: PreparedData, account: str,
                     model_arn: str | None, serving_arn: str | None, out_dir: Path, log: Any,
                     champion: Any = None) -> pd.DataFrame:
    """Call the models on the test split (base, custom, and the champion when there is one): on the given
    endpoint, else on one served (and deleted) here."""
    run_key = compute_run_key(config, prepared.content_hash)
    names = resource_names(config, run_key, account=account)
    family = load_catalog().family_of(config.base_model)
    tags = standard_tags(run_key, flow_run_id(), config.tags, expires_in_hours=config.serving.max_hours)
    if serving_arn:
        endpoint = _existing_endpoint(serving_arn, model_arn or "")
        return evaluate_stage.collect_outputs_task(clients, config, prepared, family, endpoint, str(out_dir),
                                                   champion)

    def torn_down(r) -> None:
        log.info("teardown: deleted %s, already gone %s", r.deleted or "-", r.already_gone or "-")

    with serving(clients, config, names, model_arn, tags, run_key, on_teardown=torn_down, owner=flow_run_id(),
                 run_dir=out_dir) as endpoint:
        outputs = evaluate_stage.collect_outputs_task(clients, config, prepared, family, endpoint,
                                                      str(out_dir), champion)
    return outputs


def _publish(clients: Clients, config: PipelineConfig, manifest: Manifest, evaluation: EvaluationResult,
             stamp: str) -> EvaluationResult:
    """The report in S3 next to the run's output (``evaluation/reeval-<stamp>/``) with artifacts linking there; an
    evaluation-only run has no bucket of its own: its artifacts name the files without linking them."""
    output = ((manifest.doc.resources or {}).get("data") or {}).get("output")
    if output:
        return evaluate_stage.publish_report_task(clients, output, f"reeval-{stamp}", evaluation, config.aws.region)
    from tasks.evaluation.report import publish_artifacts

    publish_artifacts(evaluation)
    return evaluation


def _record_evaluation(manifest: Manifest, evaluation: EvaluationResult, stamp: str, model_arn: str | None,
                       serving_arn: str | None, out_dir: Path, log: Any) -> dict:
    """Write the evaluation into the manifest (and finish an evaluation-only run); raise when the gate fails."""
    record = {"at": stamp, "model": model_arn, "serving": serving_arn or "provisioned for this evaluation",
              "metrics": {k: evaluation.metrics.get(k) for k in ("base", "custom", "comparison")},
              "gate": evaluation.gate.model_dump(mode="json"), "report": evaluation.files}
    for k in ("champion", "comparison_vs_champion"):      # against the lineage's champion (issue 19)
        if evaluation.metrics.get(k) is not None:
            record["metrics"][k] = evaluation.metrics[k]
    if evaluation.metrics.get("champion_run_id"):
        record["champion"] = evaluation.metrics["champion_run_id"]
    if evaluation.metrics.get("judge"):
        record["judge"] = {k: v for k, v in evaluation.metrics["judge"].items() if k != "rubric"}
    manifest.add_evaluation(record)
    if manifest.doc.kind == "evaluation":
        manifest.set_metrics(**record["metrics"])
        manifest.update(gate=record["gate"], report=evaluation.files)
        manifest.finish("succeeded" if evaluation.gate.passed else "gate_failed")
    log.info("evaluation written to %s; gate %s", out_dir, "PASSED" if evaluation.gate.passed else "FAILED")
    if not evaluation.gate.passed:
        gate = evaluation.gate
        raise QualityGateFailed(f"quality gate failed: {gate.rule} — {'; '.join(gate.reasons)}")
    return record


@flow(name="evaluate-model", on_failure=[release_serving], on_crashed=[release_serving],
      on_cancellation=[release_serving], log_prints=True)
def evaluate_model(
    run_id: str | None = None,
    runs_dir: str | None = None,
    config: PipelineConfig | None = None,
    custom_model_arn: str | None = None,
    serving_arn: str | None = None,
    runs_uri: str | None = None,
) -> dict:
    """Evaluate an existing custom model against its base model on the held-out test split.

    Args:
        run_id: A finished customization run (its manifest supplies config, test split and model).
        runs_dir: Folder holding one sub-folder per run; empty: the worker's FORGE_RUNS_DIR, else "runs".
        config: The run configuration; needed when run_id is not given.
        custom_model_arn: The custom model to evaluate (default: the run's model).
        serving_arn: A provisioned throughput or deployment ARN already serving the model: it is used
            as is and NOT deleted afterwards. Empty = provision one for this evaluation and delete it.
        runs_uri: Where the runs' state is in S3 (s3://BUCKET/PREFIX/runs/; default $FORGE_RUNS_URI): a run_id
            this machine has no folder for is read from there.
    """
    log = get_run_logger()
    runs_dir = runs_root(runs_dir)
    runs_uri = runs_uri or os.environ.get("FORGE_RUNS_URI")
    if run_id and runs_uri:
        fetch_run(runs_dir, run_id, runs_uri)
    manifest, config = _run_config(run_id, runs_dir, config)
    clients = make_clients(config.aws, pool_size=max(16, 2 * config.evaluation.concurrency))
    account = account_id(clients)
    if manifest is not None:
        _attach_store(manifest, clients, account)
    manifest, prepared, model_arn, training = _evaluation_inputs(manifest, config, runs_dir, clients, account,
                                                                 custom_model_arn, serving_arn)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = manifest.run_dir / "evaluations" / stamp
    output = ((manifest.doc.resources or {}).get("data") or {}).get("output")   # None: an evaluation-only run
    champion = _champion(clients, config, manifest, output, prepared, account, log)
    outputs = _collect_outputs(clients, config, prepared, account, model_arn, serving_arn, out_dir, log, champion)
    # the judge and the scoring need no serving resource: they run after the teardown
    judge = evaluate_stage.judge_outputs_task(clients, config, outputs, output)
    evaluation = evaluate_stage.score_outputs_task(outputs, config, prepared, training, str(out_dir), judge)
    evaluation = _publish(clients, config, manifest, evaluation, stamp)
    record = _record_evaluation(manifest, evaluation, stamp, model_arn, serving_arn, out_dir, log)
    return {"run_id": manifest.run_id, "evaluation_dir": str(out_dir), "gate": record["gate"],
            "report": evaluation.files}
