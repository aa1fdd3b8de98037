"""Customize + poll stages: start (or adopt) the customization job, wait for it, stop it on cancel.

- ``start_job`` is get-or-create. ``list_model_customization_jobs`` has no tag filter (docs/bedrock-facts.md §2.5), so
  our jobs are found by their deterministic name (``names.job`` and attempts ``-a2``, ``-a3``...) and confirmed
  by their ``forge-run-key`` tag. InProgress/Completed → adopted. Failed/Stopped → a new attempt only when
  ``rerun=True``. Every create carries a deterministic ``clientRequestToken`` (docs/bedrock-facts.md §1), so even a
  create whose response was lost adopts the same job on retry.
- Training quota full (``ServiceQuotaExceededException``) → wait for a free slot up to
  ``job.quota_wait_minutes`` (``on_quota_full: wait``) or fail with a hint (``fail``).
- A freshly created service role may not be assumable for a short while (docs/bedrock-facts.md §7): that specific error
  is retried with backoff for about a minute.
- ``wait_for_job`` polls with capped backoff (0.5 s ×1.5 up to ``max_interval_s``), logs progress and keeps
  a Prefect progress artifact; it honours a timeout (the job keeps running unless ``stop_on_timeout``) and
  survives a worker restart by re-adoption (the next run adopts the job and waits again).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from tasks.aws.clients import Clients
from tasks.aws.errors import QuotaExceeded, StageError, error_code, is_name_taken, is_transient, stage_error
from tasks.aws.logs import get_logger
from tasks.aws.retry import Backoff, aws_task, wait_task
from tasks.aws.s3uri import split_s3_uri
from tasks.aws.tags import FLOW_RUN_TAG, RUN_ID_TAG, RUN_KEY_TAG, bedrock_tags, is_managed, to_tag_list
from tasks.catalog import CustomizationType, load_catalog, resolve_hyperparameters
from tasks.config import PipelineConfig
from tasks.run.names import ResourceNames
from tasks.run.types import JobInfo, StartPoint, TrainingResult, UploadedData

ADOPTABLE = ("InProgress", "Completed")
ENDED = ("Failed", "Stopped", "Stopping")
ROLE_WAIT_S = 60.0          # docs/bedrock-facts.md §7: a new role can take up to about a minute to become assumable

_sleep = time.sleep         # tests may replace these
_monotonic = time.monotonic


class JobNeedsRerun(StageError):
    """The run's job ended Failed/Stopped and the caller did not ask for a new attempt."""


class JobFailed(StageError):
    pass


class JobTimeout(StageError):
    pass


# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------
def find_attempts(clients: Clients, names: ResourceNames) -> list[tuple[int, dict]]:
    """(attempt, job summary) of every job named after this run, oldest attempt first."""
    found: dict[int, dict] = {}
    pages = clients.bedrock.get_paginator("list_model_customization_jobs").paginate(nameContains=names.job)
    for page in pages:
        for s in page.get("modelCustomizationJobSummaries", []):
            n = ResourceNames.attempt_of(s.get("jobName", ""), names.job)
            if n is not None:
                found[n] = s
    return sorted(found.items())


MAX_LINEAGE_DEPTH = 32     # custom models of custom models followed to their foundation model


def foundation_of(clients: Clients, model_arn: str, got: dict | None = None) -> str:
    """The foundation model id a custom model descends from. GetCustomModel's ``baseModelArn`` is a custom model's
    ARN for a model customized from a custom model (botocore: ``ModelArn``), so the chain is followed."""
    model = model_arn
    for _ in range(MAX_LINEAGE_DEPTH):
        got = got or clients.bedrock.get_custom_model(modelIdentifier=model)
        base = str(got.get("baseModelArn") or "")
        if ":custom-model/" not in base:
            return base.split("foundation-model/", 1)[-1]
        model, got = base, None
    raise StageError(f"{model_arn}: more than {MAX_LINEAGE_DEPTH} custom models deep; its foundation model is unknown")


def resolve_start(clients: Clients, config: PipelineConfig, champion: Any | None) -> StartPoint:
    """Where this run's job starts (``config.start_from``; issue 19): the base model, or ``champion`` (the
    registry's ``Champion`` of the lineage, None while it has none: then the base model). The champion must be an
    Active custom model whose foundation model is ``config.base_model`` (the catalog's checks, hyperparameters and
    prices are the base model's); anything else stops the run here, before the job, with how to fix it. Reads only
    (GetCustomModel)."""
    if config.start_from == "base":
        return StartPoint(model=config.base_model, reason="start_from base")
    if champion is None:
        return StartPoint(model=config.base_model,
                          reason=f"start_from champion: lineage {config.name} has no champion yet, so the base model")
    arn, run = champion.custom_model_arn, champion.run_id
    fix = (f"`forge models {config.name}` shows the lineage; `forge rollback {config.name}` restores the previous "
           "champion, or set start_from: base")
    try:
        got = clients.bedrock.get_custom_model(modelIdentifier=arn)
        if got.get("modelStatus", "Active") != "Active":
            raise StageError(f"start_from champion: the champion of lineage {config.name} (run {run}) is "
                             f"{got.get('modelStatus')}, not Active: {fix}")
        foundation = foundation_of(clients, arn, got)
    except ClientError as err:
        if error_code(err) in ("ResourceNotFoundException", "ValidationException"):
            raise StageError(f"start_from champion: the champion of lineage {config.name} (run {run}) is {arn}, "
                             f"which Bedrock does not have ({error_code(err)}): {fix}") from None
        raise
    if foundation != config.base_model:
        raise StageError(f"start_from champion: the champion of lineage {config.name} (run {run}) is a custom "
                         f"model of {foundation!r}, this config's base_model is {config.base_model!r}: "
                         f"a job continues a custom model of its own base model only. Set base_model: "
                         f"{foundation} to continue it, or start_from: base")
    return StartPoint(model=arn, champion_run=run,
                      reason=f"start_from champion: continues run {run}'s model (the lineage's champion)")


def build_job_request(config: PipelineConfig, names: ResourceNames, role_arn: str, uploaded: UploadedData,
                      tags: dict[str, str], attempt: int = 1, start_model: str | None = None) -> dict[str, Any]:
    """The create_model_customization_job arguments for every customization type (docs/bedrock-facts.md §2.2, §2.3).
    ``start_model``: the custom model the job continues from (``resolve_start``); None = the base model."""
    ctype = config.customization_type
    spec = load_catalog().spec(config.base_model, ctype)
    req: dict[str, Any] = {
        "jobName": names.job_attempt(attempt),
        "customModelName": names.model_attempt(attempt),
        "roleArn": role_arn,
        "baseModelIdentifier": start_model or config.base_model,
        "customizationType": ctype.value,
        "trainingDataConfig": {"s3Uri": uploaded.train_uri},
        "outputDataConfig": {"s3Uri": uploaded.output_uri},
        "clientRequestToken": names.job_token_attempt(attempt),
        "jobTags": to_tag_list(tags),
        "customModelTags": to_tag_list(tags),
    }
    if uploaded.validation_uri:
        req["validationDataConfig"] = {"validators": [{"s3Uri": uploaded.validation_uri}]}
    if spec.hyperparameters:
        # docs/bedrock-facts.md §1: a string -> string map; the catalog resolves preset + overrides and
        # range-checks them
        req["hyperParameters"] = resolve_hyperparameters(spec, config.preset, config.hyperparameters)
    elif config.hyperparameters and ctype != CustomizationType.REINFORCEMENT_FINE_TUNING:
        raise StageError(f"config.hyperparameters: {ctype.value} on {config.base_model} takes no hyperparameters "
                         f"(got {', '.join(config.hyperparameters)}): remove them")
    if ctype == CustomizationType.DISTILLATION:
        assert config.distillation is not None  # the config validator guarantees it
        teacher: dict[str, Any] = {"teacherModelIdentifier": config.distillation.teacher_model}
        if config.distillation.max_response_length:
            teacher["maxResponseLengthForInference"] = config.distillation.max_response_length
        req["customizationConfig"] = {"distillationConfig": {"teacherModelConfig": teacher}}
    elif ctype == CustomizationType.REINFORCEMENT_FINE_TUNING:
        assert config.rft is not None
        rft: dict[str, Any] = {"graderConfig": {"lambdaGrader": {"lambdaArn": config.rft.grader_lambda_arn}}}
        hps = {**config.rft.hyperparameters, **config.hyperparameters}
        if hps:   # docs/bedrock-facts.md §2.3: typed numbers here, not strings
            rft["hyperParameters"] = {k: _typed(v) for k, v in hps.items()}
        req["customizationConfig"] = {"rftConfig": rft}
    if config.aws.kms_key_id:
        req["customModelKmsKeyId"] = config.aws.kms_key_id
    return req


def _typed(v: Any) -> int | float | str:
    if isinstance(v, int | float):
        return v
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f
    except ValueError:
        return str(v)


def _is_role_not_ready(err: BaseException) -> bool:
    code = error_code(err)
    msg = str(getattr(err, "response", {}).get("Error", {}).get("Message", "")).lower()
    if "is not authorized to perform" in msg and "sts:assumerole" not in msg:
        return False    # the caller lacks a permission (iam:PassRole ...): permanent, not IAM propagation
    return code in ("ValidationException", "AccessDeniedException") and "role" in msg and (
        "assume" in msg or "not authorized" in msg or "trust" in msg or "could not" in msg)


def _resumes_own_job(have: dict | None, tags: dict[str, str]) -> bool:
    """The job was created by this same forge run (``forge-run-id``), in an earlier flow run of it."""
    return bool(have and tags.get(FLOW_RUN_TAG) and tags.get(RUN_ID_TAG)
                and have.get(RUN_ID_TAG) == tags[RUN_ID_TAG])


def _adopt(clients: Clients, names: ResourceNames, n: int, summary: dict, tags: dict[str, str]) -> JobInfo:
    arn = summary["jobArn"]
    try:
        have = bedrock_tags(clients, arn)
    except Exception:  # noqa: BLE001 - tags are a confirmation; the deterministic name already matched
        have = None
    if have is not None and have and (not is_managed(have) or have.get(RUN_KEY_TAG) not in (None, names.run_key)):
        raise StageError(f"job {summary['jobName']} exists but is not tagged as this run's "
                         f"({RUN_KEY_TAG}={names.run_key}): rename the config (name) or delete that job")
    if _resumes_own_job(have, tags) and have.get(FLOW_RUN_TAG) != tags[FLOW_RUN_TAG] \
            and summary["status"] == "InProgress":
        # the same forge run resumed (a rerun after a crash): re-tag so a cancellation of *this* flow run stops
        # its own job (best effort). A duplicate run of the same config only adopts: it never takes ownership,
        # so cancelling the duplicate cannot stop the original's job.
        try:
            clients.bedrock.tag_resource(resourceARN=arn, tags=[{"key": FLOW_RUN_TAG, "value": tags[FLOW_RUN_TAG]}])
        except Exception:  # noqa: BLE001
            pass
    return JobInfo(job_arn=arn, job_name=summary["jobName"], status=summary["status"], adopted=True, attempt=n)


def start_job(clients: Clients, config: PipelineConfig, names: ResourceNames, role_arn: str, uploaded: UploadedData,
              tags: dict[str, str], rerun: bool = False, start_model: str | None = None) -> JobInfo:
    """Adopt this run's job if it is running or done; else create it (a new attempt on an explicit rerun)."""
    adopted, attempt = _adopt_or_next_attempt(clients, names, tags, rerun)
    if adopted is not None:
        return adopted
    req = build_job_request(config, names, role_arn, uploaded, tags, attempt, start_model=start_model)
    return _create_job(clients, config, names, req, tags, attempt)


def _adopt_or_next_attempt(clients: Clients, names: ResourceNames, tags: dict[str, str],
                           rerun: bool) -> tuple[JobInfo | None, int]:
    """(the adopted job, -) when the latest attempt is running or done; else (None, the attempt to create). An
    attempt that ended Failed/Stopped is only followed by a new one on an explicit rerun."""
    from botocore.exceptions import ClientError

    log = get_logger()
    try:
        attempts = find_attempts(clients, names)
    except ClientError as err:
        raise stage_error("list customization jobs", err) from err
    if not attempts:
        return None, 1
    n, latest = attempts[-1]
    status = latest["status"]
    if status in ADOPTABLE:
        log.info("adopting job %s (%s)", latest["jobName"], status)
        return _adopt(clients, names, n, latest, tags), n
    if not rerun:
        why = ""
        try:
            why = (clients.bedrock.get_model_customization_job(jobIdentifier=latest["jobArn"])
                   .get("failureMessage") or "")
        except ClientError:
            pass
        raise JobNeedsRerun(
            f"job {latest['jobName']} of this run ended {status}{': ' + why if why else ''}. Fix the cause, then "
            f"start a new attempt: `forge rerun RUN_ID --from customize` (flow parameter "
            f"allow_rerun_failed_job=true).", code=status)
    log.info("job %s ended %s: starting attempt %d", latest["jobName"], status, n + 1)
    return None, n + 1


def _create_job(clients: Clients, config: PipelineConfig, names: ResourceNames, req: dict[str, Any],
                tags: dict[str, str], attempt: int) -> JobInfo:
    """CreateModelCustomizationJob with its retries: a name already taken (a lost answer) is adopted; a full
    quota waits (``job.on_quota_full``); a role IAM has not propagated yet is retried for ``ROLE_WAIT_S``."""
    from botocore.exceptions import ClientError

    log = get_logger()
    start = _monotonic()
    quota_deadline = start + config.job.quota_wait_minutes * 60
    role_deadline = start + ROLE_WAIT_S
    backoff = Backoff(start=1.0, factor=2.0, cap=60.0)
    while True:
        try:
            arn = clients.bedrock.create_model_customization_job(**req)["jobArn"]
            log.info("started job %s (attempt %d): %s", req["jobName"], attempt, arn)
            return JobInfo(job_arn=arn, job_name=req["jobName"], status="InProgress", adopted=False, attempt=attempt)
        except ClientError as err:
            code = error_code(err)
            if is_name_taken(err):      # created concurrently / earlier with a lost response: adopt
                for n, s in find_attempts(clients, names):
                    if n == attempt:
                        return _adopt(clients, names, n, s, tags)
                raise stage_error(f"create job {req['jobName']}", err) from err
            if code == "ServiceQuotaExceededException":
                if config.job.on_quota_full == "wait" and _monotonic() < quota_deadline:
                    log.warning("training-job quota full; waiting for a free slot (up to %g min): %s",
                                config.job.quota_wait_minutes, err.response.get("Error", {}).get("Message", ""))
                    _sleep(min(backoff(), max(0.0, quota_deadline - _monotonic())))
                    continue
                raise _quota_full(config, req, err, code) from None
            if _is_role_not_ready(err) and _monotonic() < role_deadline:
                log.info("service role not assumable yet (IAM propagation); retrying")
                _sleep(min(backoff(), max(0.1, role_deadline - _monotonic())))
                continue
            raise stage_error(f"create job {req['jobName']}", err) from err


def _quota_full(config: PipelineConfig, req: dict[str, Any], err: Any, code: str) -> QuotaExceeded:
    return QuotaExceeded(
        f"create job {req['jobName']}: the concurrent model-customization-job quota is full "
        f"({err.response.get('Error', {}).get('Message', '')}). Wait for running jobs to finish, stop "
        "one you do not need, or request a higher 'model customization jobs' quota in Service Quotas"
        + (f"; waited {config.job.quota_wait_minutes:g} min" if config.job.on_quota_full == "wait"
           else "; set job.on_quota_full: wait to queue instead"), code=code)


# ---------------------------------------------------------------------------------------------
# wait
# ---------------------------------------------------------------------------------------------
def _sub_status(job: dict) -> str | None:
    details = job.get("statusDetails") or {}
    for stage, label in (("validationDetails", "validation"), ("dataProcessingDetails", "data processing"),
                         ("trainingDetails", "training")):
        st = (details.get(stage) or {}).get("status")
        if st == "InProgress":
            return label
    return None


def metric_keys(output_uri: str, job_arn: str) -> tuple[str, str, list[str]]:
    """(bucket, training CSV key, candidate validation CSV keys) per docs/bedrock-facts.md §6 (both validation
    paths)."""
    bucket, prefix = split_s3_uri(output_uri)
    job_id = job_arn.rsplit("/", 1)[-1]
    base = f"{prefix.rstrip('/')}/model-customization-job-{job_id}/".lstrip("/")
    return (bucket, f"{base}training_artifacts/step_wise_training_metrics.csv",
            [f"{base}validation_artifacts/post_fine_tuning_validation/validation_metrics.csv",
             f"{base}validation_artifacts/validation_metrics.csv"])


def _read_csv(clients: Clients, bucket: str, key: str) -> list[dict] | None:
    import pandas as pd
    from botocore.exceptions import ClientError

    try:
        body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if error_code(err) in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403"):
            return None
        raise
    if not body.strip():
        return []
    df = pd.read_csv(io.BytesIO(body))
    return df.where(df.notna(), None).to_dict("records")


def read_metrics(clients: Clients, output_uri: str, job_arn: str) -> tuple[list[dict], list[dict]]:
    bucket, train_key, val_keys = metric_keys(output_uri, job_arn)
    train = _read_csv(clients, bucket, train_key) or []
    val: list[dict] = []
    for k in val_keys:
        rows = _read_csv(clients, bucket, k)
        if rows is not None:
            val = rows
            break
    return train, val


def _last(rows: list[dict], col: str) -> float | None:
    for r in reversed(rows):
        v = r.get(col)
        if v is not None:
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
    return None


def _progress_pct(job: dict, status: str, train_rows: list[dict]) -> float:
    if status == "Completed":
        return 100.0
    sub = _sub_status(job)
    if sub == "validation":
        return 5.0
    if sub == "data processing":
        return 15.0
    epochs = None
    try:
        epochs = float((job.get("hyperParameters") or {}).get("epochCount"))
    except (TypeError, ValueError):
        pass
    if train_rows and epochs:
        ep = _last(train_rows, "epoch_number") or 0.0
        return min(95.0, 20.0 + 75.0 * (ep + 1) / epochs)
    return 20.0


class _Progress:
    """Best-effort Prefect progress artifact (only inside a flow/task run)."""

    def __init__(self, job_name: str):
        self.id = None
        self.ok = True
        self.key = ("job-progress-" + "".join(c if c.isalnum() else "-" for c in job_name.lower()))[:100]

    def update(self, pct: float, description: str) -> None:
        if not self.ok:
            return
        try:
            from prefect.context import FlowRunContext, TaskRunContext

            if TaskRunContext.get() is None and FlowRunContext.get() is None:
                self.ok = False
                return
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self.id is None:
                self.id = create_progress_artifact(progress=pct, key=self.key, description=description)
            else:
                update_progress_artifact(artifact_id=self.id, progress=pct, description=description)
        except Exception:  # noqa: BLE001 - progress display must never fail the wait
            self.ok = False


def wait_for_job(clients: Clients, job_arn: str, timeout_s: float, max_interval_s: float = 60,
                 stop_on_timeout: bool = False, progress: Callable[[dict], None] | None = None,
                 initial_interval_s: float = 0.5) -> TrainingResult:
    """Poll the job to an end state. Completed → TrainingResult with both metric tables; else a clear error."""
    started = _monotonic()
    backoff = Backoff(start=initial_interval_s, factor=1.5, cap=max_interval_s)
    watch = _Watch()
    while True:
        job = _poll(clients, job_arn, backoff)
        if job is None:
            continue
        status, name = job["status"], job.get("jobName", job_arn)
        elapsed = _elapsed(job, started)
        watch.report(clients, job, elapsed, backoff, progress)
        if status == "Completed":
            return _training_result(clients, job, elapsed)
        _raise_if_ended(job, name, status)
        waited = _monotonic() - started
        if waited >= timeout_s:
            _timed_out(clients, job_arn, name, status, timeout_s, stop_on_timeout)
        _sleep(min(backoff(), max(0.05, timeout_s - waited)))


def _poll(clients: Clients, job_arn: str, backoff: Backoff) -> dict | None:
    """One GetModelCustomizationJob; None after a transient error (slept: a wait never dies of a throttled poll)."""
    from botocore.exceptions import ClientError

    try:
        return clients.bedrock.get_model_customization_job(jobIdentifier=job_arn)
    except ClientError as err:
        if is_transient(err):
            get_logger().warning("poll of %s: %s; retrying", job_arn, err.response.get("Error", {}).get("Code"))
            _sleep(backoff())
            return None
        raise stage_error(f"poll job {job_arn}", err) from err


class _Watch:
    """What a wait tells people while it polls: a log line when it changes, the progress artifact, a callback."""

    def __init__(self) -> None:
        self.polls = 0
        self.last_line: str | None = None
        self.artifact: _Progress | None = None
        self.train_rows: list[dict] = []

    def report(self, clients: Clients, job: dict, elapsed: float, backoff: Backoff,
               progress: Callable[[dict], None] | None) -> None:
        self.polls += 1
        status, name = job["status"], job.get("jobName", job.get("jobArn"))
        self.artifact = self.artifact or _Progress(name)
        if status == "InProgress" and (self.polls % 3 == 1 or backoff.next >= 10):
            try:   # latest training loss, when the job already writes its metrics file
                self.train_rows = read_metrics(clients, job["outputDataConfig"]["s3Uri"],
                                               job["jobArn"])[0] or self.train_rows
            except Exception:  # noqa: BLE001 - progress only
                pass
        loss = _last(self.train_rows, "training_loss")
        sub = _sub_status(job)
        line = f"job {name}: {status}" + (f" ({sub})" if sub else "") + f", {elapsed / 60:.1f} min" + (
            f", training loss {loss:.4g}" if loss is not None else "")
        if line != self.last_line:
            get_logger().info(line)
            self.last_line = line
        self.artifact.update(_progress_pct(job, status, self.train_rows), line)
        if progress is not None:
            try:
                progress({"job": name, "status": status, "sub_status": sub, "elapsed_s": round(elapsed, 1),
                          "training_loss": loss})
            except Exception:  # noqa: BLE001
                pass


def _raise_if_ended(job: dict, name: str, status: str) -> None:
    if status == "Failed":
        raise JobFailed(f"job {name} failed: {job.get('failureMessage') or 'no failure message'} "
                        "(fix the data or settings it names, then rerun with a new attempt: "
                        "`forge rerun RUN_ID --from customize`)", code="Failed")
    if status == "Stopped":
        raise JobFailed(f"job {name} was stopped before it finished; rerun from customize to start a new attempt",
                        code="Stopped")


def _timed_out(clients: Clients, job_arn: str, name: str, status: str, timeout_s: float, stop: bool) -> None:
    if stop:
        stop_job(clients, job_arn)
        raise JobTimeout(f"job {name} still {status} after {timeout_s / 3600:.2f} h: stopped it "
                         "(job.stop_on_timeout)", code="Timeout")
    raise JobTimeout(f"job {name} still {status} after {timeout_s / 3600:.2f} h (job.timeout_hours). It keeps "
                     "running: rerun the flow to adopt it and wait again, or set job.stop_on_timeout",
                     code="Timeout")


def _elapsed(job: dict, started: float) -> float:
    ct = job.get("creationTime")
    if isinstance(ct, datetime):
        end = job.get("endTime") if isinstance(job.get("endTime"), datetime) else datetime.now(ct.tzinfo)
        return max(0.0, (end - ct).total_seconds())
    return _monotonic() - started


def _training_result(clients: Clients, job: dict, elapsed: float) -> TrainingResult:
    from botocore.exceptions import ClientError

    model_arn = job.get("outputModelArn")
    model_name = job.get("outputModelName", "")
    try:
        if not model_arn:
            model_arn = clients.bedrock.get_custom_model(modelIdentifier=model_name)["modelArn"]
        train, val = read_metrics(clients, job["outputDataConfig"]["s3Uri"], job["jobArn"])
    except ClientError as err:
        raise stage_error(f"read results of job {job.get('jobName')}", err) from err
    final_train = _last(train, "training_loss")
    if final_train is None:
        final_train = (job.get("trainingMetrics") or {}).get("trainingLoss")
    final_val = _last(val, "validation_loss")
    if final_val is None and job.get("validationMetrics"):
        final_val = job["validationMetrics"][-1].get("validationLoss")
    return TrainingResult(job_arn=job["jobArn"], job_name=job["jobName"], status="Completed",
                          custom_model_arn=model_arn, custom_model_name=model_name, training_metrics=train,
                          validation_metrics=val, final_training_loss=final_train, final_validation_loss=final_val,
                          elapsed_seconds=elapsed)


# ---------------------------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------------------------
def stop_job(clients: Clients, job_arn: str) -> bool:
    """Stop a running job; False if it was not running any more (Conflict/Validation on a finished job)."""
    from botocore.exceptions import ClientError

    try:
        clients.bedrock.stop_model_customization_job(jobIdentifier=job_arn)
        return True
    except ClientError as err:
        if error_code(err) in ("ConflictException", "ValidationException", "ResourceNotFoundException"):
            return False
        raise stage_error(f"stop job {job_arn}", err) from err


def stop_jobs_of_flow_run(clients: Clients, flow_run_id: str) -> list[str]:
    """Stop every InProgress managed job tagged with this flow run id. Returns the stopped job ARNs."""
    from botocore.exceptions import ClientError

    stopped = []
    pages = clients.bedrock.get_paginator("list_model_customization_jobs").paginate(statusEquals="InProgress")
    for page in pages:
        for s in page.get("modelCustomizationJobSummaries", []):
            try:
                tags = bedrock_tags(clients, s["jobArn"])
            except ClientError:
                continue
            if is_managed(tags) and tags.get(FLOW_RUN_TAG) == flow_run_id and stop_job(clients, s["jobArn"]):
                stopped.append(s["jobArn"])
    return stopped


start_job_task = aws_task(start_job, name="customize")
wait_for_job_task = wait_task(wait_for_job, name="poll")
