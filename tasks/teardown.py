"""Teardown stage and the sweeper's logic: delete billing resources, idempotently, and only our own.

Every delete first reads the resource's tags; anything without ``managed-by=bedrock-forge`` is reported
in ``skipped_unmanaged`` and left alone. "Already gone" (ResourceNotFound) counts as success.

- ``teardown``: the run's serving resources (those passed in, plus any PT/deployment tagged with the run
  key), optionally the custom model (after serving is gone) and the uploaded data objects.
- ``teardown_run``: every managed PT/deployment tagged with a flow run id (the flow's failure hooks).
- ``sweep``: managed PTs/deployments whose run is gone: ``forge-expires-at`` passed, or the owner's heartbeat
  (``forge-heartbeat``, tasks/run/liveness.py) stale or gone, or (no heartbeat tag) the flow run terminal.
  A failing delete is retried for ``DELETE_RETRY_S`` whatever the error; what still bills is in ``alive``.

Production serving (``forge-role=production``, tasks/promote.py, issue 19) is never deleted here: ``teardown``,
``teardown_run`` and ``sweep`` keep it (listed in ``kept``), ``live_billing`` lists it as kept, and
``delete_managed`` refuses it unless the promotion stage asks (``production=True``, retiring an old champion).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from tasks.aws.clients import Clients
from tasks.aws.errors import describe_error, error_code
from tasks.aws.logs import get_logger
from tasks.aws.retry import Backoff, aws_task
from tasks.aws.s3uri import split_s3_uri
from tasks.aws.tags import (
    EXPIRES_TAG,
    FLOW_RUN_TAG,
    HEARTBEAT_TAG,
    MANAGED_BY_KEY,
    MANAGED_BY_VALUE,
    RUN_ID_TAG,
    RUN_KEY_TAG,
    bedrock_tags,
    is_managed,
    parse_expiry,
)
from tasks.registry import LINEAGE_TAG, PRODUCTION, is_production
from tasks.run import liveness
from tasks.run.liveness import STALE_AFTER_S, Heartbeat
from tasks.run.types import ServingEndpoint, TeardownReport, UploadedData

_sleep = time.sleep
DELETE_RETRY_S = 60.0       # retry a failing delete (any error) this long before the run fails loudly
CONFLICT_RETRY_S = DELETE_RETRY_S   # the former name


def _serving_summaries(clients: Clients) -> list[tuple[str, str, dict]]:
    """(kind, arn, list summary) of every provisioned throughput and custom model deployment in the Region."""
    b = clients.bedrock
    found = [("provisioned", s["provisionedModelArn"], s)
             for p in b.get_paginator("list_provisioned_model_throughputs").paginate()
             for s in p.get("provisionedModelSummaries", [])]
    found += [("deployment", s["customModelDeploymentArn"], s)
              for p in b.get_paginator("list_custom_model_deployments").paginate()
              for s in p.get("modelDeploymentSummaries", [])]
    return found


def billing_resources(clients: Clients) -> list[tuple[str, str, dict]]:
    """(kind, arn, tags) of every provisioned throughput and custom model deployment in the region."""
    out: list[tuple[str, str, dict]] = []
    for kind, arn, _summary in _serving_summaries(clients):
        try:
            out.append((kind, arn, bedrock_tags(clients, arn)))
        except Exception as err:  # noqa: BLE001 - gone between list and tags, or no permission
            if error_code(err) != "ResourceNotFoundException":
                out.append((kind, arn, {}))
    return out


def live_billing(clients: Clients, *, now: datetime, stale_after_s: float = STALE_AFTER_S) -> list[dict]:
    """Every live managed PT/deployment in the Region, for people (``forge resources``): kind, ARN, status, the
    forge run and flow run that own it, age, the owner's heartbeat age, expiry, and what the sweep would do."""
    rows: list[dict] = []
    for kind, arn, summary in _serving_summaries(clients):
        status, created = summary.get("status"), summary.get("creationTime") or summary.get("createdAt")
        try:
            tags = bedrock_tags(clients, arn)
        except Exception:  # noqa: BLE001 - gone meanwhile, or not ours to read
            continue
        if not is_managed(tags):
            continue
        beat: Heartbeat | None = None
        if tags.get(HEARTBEAT_TAG):
            try:
                beat = liveness.read_heartbeat(clients.s3, tags[HEARTBEAT_TAG])
            except Exception:  # noqa: BLE001 - shown as unknown (the verdict reads it again and says why)
                beat = None

        def heartbeat(uri: str, b: Heartbeat | None = beat) -> Heartbeat:
            return b if b is not None else liveness.read_heartbeat(clients.s3, uri)

        delete, why = sweep_verdict(tags, now=now, stale_after_s=stale_after_s, is_flow_run_terminal=lambda _r: None,
                                    heartbeat=heartbeat)
        role = PRODUCTION if is_production(tags) else "run"
        rows.append({"kind": kind, "arn": arn, "status": status, "run_id": tags.get(RUN_ID_TAG),
                     "flow_run_id": tags.get(FLOW_RUN_TAG), "run_key": tags.get(RUN_KEY_TAG),
                     "age_s": (now - created).total_seconds() if isinstance(created, datetime) else None,
                     "heartbeat_age_s": beat.age_s if beat is not None else None,
                     "expires_at": tags.get(EXPIRES_TAG), "sweep": ("delete: " if delete else "keep: ") + why,
                     "role": role, "lineage": tags.get(LINEAGE_TAG),
                     "model_units": summary.get("modelUnits"), "model_arn": summary.get("modelArn"),
                     "commitment": summary.get("commitmentDuration")})
    return rows


def _production_kept(arn: str, tags: dict[str, str]) -> str:
    return (f"{arn}: production serving of lineage {tags.get(LINEAGE_TAG) or '?'} (version "
            f"{tags.get(RUN_ID_TAG) or '?'}): never deleted by teardown or the sweep; `forge rollback` / a "
            "promotion retires it")


def _kind_of(arn: str) -> str:
    if ":provisioned-model/" in arn:
        return "provisioned"
    if ":custom-model-deployment/" in arn:
        return "deployment"
    if ":custom-model/" in arn:
        return "custom-model"
    return "unknown"


def delete_managed(clients: Clients, arn: str, report: TeardownReport, *, require: dict[str, str] | None = None,
                   known_tags: dict | None = None, dry_run: bool = False, production: bool = False) -> None:
    """Delete one Bedrock resource if it is managed (and matches ``require`` tags); record the outcome.
    Production serving (``forge-role=production``) only with ``production=True`` (the promotion stage)."""
    from botocore.exceptions import ClientError

    log = get_logger()
    kind = _kind_of(arn)
    try:
        tags = known_tags if known_tags is not None else bedrock_tags(clients, arn)
    except ClientError as err:
        if error_code(err) == "ResourceNotFoundException":
            report.already_gone.append(arn)
        else:   # cannot tell whose it is: not deleted, so it may still bill — never reported as gone
            report.errors.append(f"{arn}: {describe_error(err)}")
            if kind in ("provisioned", "deployment"):
                report.alive.append(arn)
        return
    if not is_managed(tags) or any(tags.get(k) != v for k, v in (require or {}).items()):
        report.skipped_unmanaged.append(arn)
        return
    if is_production(tags) and not production:
        report.kept.append(_production_kept(arn, tags))
        return
    if dry_run:
        report.deleted.append(arn)
        return
    deadline, backoff = time.monotonic() + DELETE_RETRY_S, Backoff(start=0.5, factor=2, cap=10)
    while True:
        try:
            if kind == "provisioned":
                clients.bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
            elif kind == "deployment":
                clients.bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)
            elif kind == "custom-model":
                clients.bedrock.delete_custom_model(modelIdentifier=arn)
            else:
                report.errors.append(f"{arn}: not a resource teardown knows how to delete")
                return
            report.deleted.append(arn)
            log.info("deleted %s %s", kind, arn)
            return
        except ClientError as err:
            code = error_code(err)
            if code == "ResourceNotFoundException":
                report.already_gone.append(arn)
                return
            if time.monotonic() < deadline:
                # any error class: a delete is idempotent, and giving up leaves a resource billing by the hour
                # (Conflict while a PT still references the model, throttling, 5xx, a transient AccessDenied
                # while a policy propagates)
                log.warning("delete %s failed (%s): retrying", arn, code or describe_error(err))
                _sleep(backoff())
                continue
            report.errors.append(f"{arn}: {describe_error(err)} (after {DELETE_RETRY_S:g} s of retries)")
            if kind in ("provisioned", "deployment"):
                report.alive.append(arn)
            return


def _delete_objects(clients: Clients, uploaded: UploadedData, report: TeardownReport) -> None:
    from botocore.exceptions import ClientError

    for uri in (uploaded.train_uri, uploaded.validation_uri, uploaded.test_uri):
        if not uri:
            continue
        _, key = split_s3_uri(uri)   # the URIs upload wrote, all in uploaded.bucket
        try:
            tagset = clients.s3.get_object_tagging(Bucket=uploaded.bucket, Key=key).get("TagSet", [])
        except ClientError as err:
            if error_code(err) in ("NoSuchKey", "404", "NotFound"):
                report.already_gone.append(uri)
            else:
                report.errors.append(f"{uri}: {describe_error(err)}")
            continue
        if {"Key": MANAGED_BY_KEY, "Value": MANAGED_BY_VALUE} not in tagset:
            report.skipped_unmanaged.append(uri)
            continue
        try:
            clients.s3.delete_object(Bucket=uploaded.bucket, Key=key)
            report.deleted.append(uri)
        except ClientError as err:
            report.errors.append(f"{uri}: {describe_error(err)}")


def teardown(clients: Clients, *, run_key: str, endpoints: Iterable[ServingEndpoint | None] = (),
             delete_custom_model: bool = False, custom_model_arn: str | None = None, delete_data: bool = False,
             uploaded: UploadedData | None = None) -> TeardownReport:
    """Delete the run's serving resources (and optionally its model and data). Safe to call repeatedly."""
    report = TeardownReport()
    arns = [e.arn for e in endpoints if e is not None]
    try:   # belt and braces: anything billable tagged with this run key, e.g. created before a crash
        arns += [arn for _, arn, tags in billing_resources(clients)
                 if is_managed(tags) and tags.get(RUN_KEY_TAG) == run_key and arn not in arns
                 and not is_production(tags)]
    except Exception as err:  # noqa: BLE001 - still delete what we were given
        report.errors.append(f"listing serving resources: {describe_error(err)}")
    for arn in arns:
        delete_managed(clients, arn, report, require={RUN_KEY_TAG: run_key})
    if delete_custom_model and custom_model_arn:
        delete_managed(clients, custom_model_arn, report, require={RUN_KEY_TAG: run_key})
    if delete_data and uploaded is not None:
        _delete_objects(clients, uploaded, report)
    return report


def teardown_run(clients: Clients, flow_run_id: str) -> TeardownReport:
    """Delete every managed PT/deployment tagged with ``forge-flow-run-id = flow_run_id``."""
    report = TeardownReport()
    try:
        resources = billing_resources(clients)
    except Exception as err:  # noqa: BLE001 - hooks must not raise
        report.errors.append(f"listing serving resources: {describe_error(err)}")
        return report
    for _, arn, tags in resources:
        if is_managed(tags) and tags.get(FLOW_RUN_TAG) == flow_run_id:
            if is_production(tags):
                report.kept.append(_production_kept(arn, tags))
                continue
            delete_managed(clients, arn, report, known_tags=tags)
    return report


def sweep_verdict(tags: dict[str, str], *, now: datetime, heartbeat: Callable[[str], Heartbeat],
                  is_flow_run_terminal: Callable[[str], bool | None],
                  stale_after_s: float = STALE_AFTER_S) -> tuple[bool, str]:
    """Delete this managed resource? (yes/no, why). In order:

    0. production serving (``forge-role=production``): keep, always (it is retired by a promotion/rollback);
    1. ``forge-expires-at`` passed: delete (the last net, whatever else is true);
    2. a ``forge-heartbeat`` tag: the owner's heartbeat decides, whatever Prefect says — fresh: keep; stale
       beyond ``stale_after_s`` or gone: delete; unreadable (no permission, throttled): keep until expiry;
    3. no heartbeat tag (made by an older version): delete when the creating flow run is terminal.
    """
    if is_production(tags):
        return False, (f"production serving of lineage {tags.get(LINEAGE_TAG) or '?'}: never swept "
                       "(`forge rollback` / a promotion retires it)")
    expires = parse_expiry(tags.get(EXPIRES_TAG))
    if expires is not None and expires < now:
        return True, f"expired at {tags[EXPIRES_TAG]}"
    until = f"expires {tags[EXPIRES_TAG]}" if expires else "no expiry tag"
    uri = tags.get(HEARTBEAT_TAG)
    if uri:
        try:
            beat = heartbeat(uri)
        except Exception as err:  # noqa: BLE001 - unknown is not dead
            return False, f"heartbeat unreadable ({describe_error(err)}): kept, {until}"
        if beat.age_s is None:
            return True, "its run's heartbeat is gone (the run ended without deleting it)"
        if beat.age_s > stale_after_s:
            return True, f"heartbeat stale: last beat {beat.age_s:.0f} s ago (> {stale_after_s:g} s)"
        return False, f"live: heartbeat {beat.age_s:.0f} s ago (flow run {beat.owner or '?'}), {until}"
    run = tags.get(FLOW_RUN_TAG)
    if run:
        try:
            terminal = is_flow_run_terminal(run)
        except Exception:  # noqa: BLE001 - unknown: expiry still applies later
            terminal = None
        if terminal is True:
            return True, f"flow run {run} has ended"
        return False, f"flow run {run} {'running' if terminal is False else 'state unknown'}, {until}"
    return False, f"no heartbeat or flow-run tag, {until}"


def sweep(clients: Clients, *, now: datetime, is_flow_run_terminal: Callable[[str], bool | None],
          dry_run: bool = False, stale_after_s: float = STALE_AFTER_S,
          read_heartbeat: Callable[[str], Heartbeat] | None = None) -> TeardownReport:
    """Delete (or with ``dry_run`` only list, in ``deleted``) managed billing resources whose run is gone
    (``sweep_verdict``); every one kept is listed in ``kept`` with why."""
    report = TeardownReport()
    try:
        resources = billing_resources(clients)
    except Exception as err:  # noqa: BLE001
        report.errors.append(f"listing serving resources: {describe_error(err)}")
        return report
    beat = read_heartbeat or (lambda uri: liveness.read_heartbeat(clients.s3, uri))
    for _, arn, tags in resources:
        if not is_managed(tags):
            report.skipped_unmanaged.append(arn)
            continue
        delete, why = sweep_verdict(tags, now=now, heartbeat=beat, is_flow_run_terminal=is_flow_run_terminal,
                                    stale_after_s=stale_after_s)
        if delete:
            get_logger().info("sweep: %s %s: %s", "would delete" if dry_run else "deleting", arn, why)
            report.reasons[arn] = why
            delete_managed(clients, arn, report, known_tags=tags, dry_run=dry_run)
        else:
            report.kept.append(f"{arn}: {why}")
    return report


teardown_task = aws_task(teardown, name="teardown")
