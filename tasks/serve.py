"""Provision stage: serve the custom model for evaluation, the cheapest way the model allows.

- ``serving.mode``: ``on_demand`` → a custom model deployment (docs/bedrock-facts.md §2.8); ``provisioned`` →
  Provisioned Throughput (docs/bedrock-facts.md §2.7); ``auto`` → a deployment when the catalog says the family
  supports it in this region (``on_demand_deployment`` + ``on_demand_regions``), else Provisioned Throughput.
  The decision is ``tasks.run.plan.serving_kind``, the same function the cost guard prices with.
- Provisioned Throughput: no commitment unless ``serving.commitment`` names one (a committed PT cannot be
  deleted before its term ends, docs/bedrock-facts.md §8); model units capped by ``serving.max_model_units``
  (``tasks.run.plan.model_units``); tags carry ``forge-expires-at`` so the sweeper deletes a forgotten one.
- Get-or-create by deterministic name (list + exact match) plus a deterministic ``clientRequestToken``.
  A managed resource of ours in ``Failed`` state is deleted and created again.
- ``wait_serving`` polls with capped backoff until InService / Active; Failed → error with its message.
"""

from __future__ import annotations

import time

from tasks.aws.clients import Clients
from tasks.aws.errors import (
    QuotaExceeded,
    StageError,
    error_code,
    is_name_taken,
    is_transient,
    stage_error,
)
from tasks.aws.logs import get_logger
from tasks.aws.retry import Backoff, aws_task, wait_task
from tasks.aws.tags import EXPIRES_TAG, bedrock_tags, is_managed, standard_tags, to_tag_list
from tasks.config import PipelineConfig
from tasks.run.names import ResourceNames
from tasks.run.plan import family_of, model_units, on_demand_available, serving_kind
from tasks.run.types import ServingEndpoint

READY = {"provisioned": "InService", "deployment": "Active"}
_sleep = time.sleep
_monotonic = time.monotonic


class ServingFailed(StageError):
    pass


def find_pt(clients: Clients, name: str) -> dict | None:
    for page in clients.bedrock.get_paginator("list_provisioned_model_throughputs").paginate(nameContains=name):
        for s in page.get("provisionedModelSummaries", []):
            if s.get("provisionedModelName") == name:
                return s
    return None


def find_deployment(clients: Clients, name: str) -> dict | None:
    for page in clients.bedrock.get_paginator("list_custom_model_deployments").paginate(nameContains=name):
        for s in page.get("modelDeploymentSummaries", []):
            if s.get("customModelDeploymentName") == name:   # docs/bedrock-facts.md §2.8: list uses this field name
                return s
    return None


def quota_error(kind: str, err) -> QuotaExceeded:
    msg = err.response.get("Error", {}).get("Message", "")
    if kind == "provisioned":
        what = ("the no-commitment Provisioned Throughput model-unit quota is used up (accounts start with 2 MUs, "
                "docs/bedrock-facts.md §2.7)")
        fix = ("delete provisioned throughputs you no longer need (`forge sweep` deletes expired bedrock-forge ones; "
               "`aws bedrock list-provisioned-model-throughputs` lists all), lower serving.model_units, or request "
               "more model units in Service Quotas")
    else:
        what = "the custom model deployment quota is full"
        fix = ("delete unused deployments (`forge sweep` for expired bedrock-forge ones) or request an increase in "
               "Service Quotas")
    return QuotaExceeded(f"{what}: {msg}. To free it: {fix}.", code="ServiceQuotaExceededException")


def _delete_failed(clients: Clients, kind: str, arn: str) -> None:
    tags = bedrock_tags(clients, arn)
    if not is_managed(tags):
        raise StageError(f"{kind} {arn} is Failed and not managed by bedrock-forge: delete it by hand or rename "
                         "the config")
    if kind == "provisioned":
        clients.bedrock.delete_provisioned_model_throughput(provisionedModelId=arn)
    else:
        clients.bedrock.delete_custom_model_deployment(customModelDeploymentIdentifier=arn)


def adoptable(clients: Clients, kind: str, found: dict | None, arn_key: str, token: str,
               custom_model_arn: str) -> tuple[dict | None, str]:
    """The existing resource of our name if it can be adopted, and the create token to use otherwise.

    One that Failed, or serves another model, is deleted and replaced: the original token would replay the
    deleted create, so the new one is derived from the ARN it replaces.
    """
    if found and (found["status"] == "Failed" or found.get("modelArn") not in (None, custom_model_arn)):
        what = "provisioned throughput" if kind == "provisioned" else "deployment"
        get_logger().warning("%s %s is %s (model %s): replacing it", what, found.get("provisionedModelName")
                             or found.get("customModelDeploymentName"), found["status"], found.get("modelArn"))
        _delete_failed(clients, kind, found[arn_key])
        return None, f"{token}-r-{found[arn_key].rsplit('/', 1)[-1]}"
    return found, token


def provision(clients: Clients, config: PipelineConfig, names: ResourceNames, custom_model_arn: str,
              tags: dict[str, str]) -> ServingEndpoint:
    """Get-or-create the serving resource for ``custom_model_arn``; does not wait for it."""
    from botocore.exceptions import ClientError

    kind = serving_kind(config, region=clients.region)
    if EXPIRES_TAG not in tags:   # billing resources always carry an expiry for the sweeper (docs/design.md §3)
        tags = {**tags, EXPIRES_TAG: standard_tags("-", "-", {}, config.serving.max_hours)[EXPIRES_TAG]}
    try:
        if kind == "provisioned":
            return _provision_pt(clients, config, names, custom_model_arn, tags)
        return _provision_deployment(clients, config, names, custom_model_arn, tags)
    except ClientError as err:
        if error_code(err) == "ServiceQuotaExceededException":
            raise quota_error(kind, err) from None
        if is_name_taken(err):   # created concurrently under our name: adopt it
            found = _created_meanwhile(clients, kind, names)
            if found:
                arn = found.get("provisionedModelArn") or found["customModelDeploymentArn"]
                return ServingEndpoint(kind=kind, arn=arn, name=names.provisioned if kind == "provisioned" else
                                       names.deployment, model_arn=found.get("modelArn") or custom_model_arn,
                                       model_units=found.get("modelUnits"), status=found["status"], adopted=True)
        raise stage_error(f"provision {kind} for {custom_model_arn}", err) from err


def _created_meanwhile(clients: Clients, kind: str, names: ResourceNames) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return find_pt(clients, names.provisioned) if kind == "provisioned" else \
            find_deployment(clients, names.deployment)
    except ClientError:
        return None


def _provision_pt(clients: Clients, config: PipelineConfig, names: ResourceNames, custom_model_arn: str,
                  tags: dict[str, str]) -> ServingEndpoint:
    log = get_logger()
    units = model_units(config)
    found, token = adoptable(clients, "provisioned", find_pt(clients, names.provisioned), "provisionedModelArn",
                              names.pt_token, custom_model_arn)
    if found:
        log.info("adopting provisioned throughput %s (%s)", names.provisioned, found["status"])
        return ServingEndpoint(kind="provisioned", arn=found["provisionedModelArn"], name=names.provisioned,
                               model_arn=found.get("modelArn") or custom_model_arn,
                               model_units=found.get("modelUnits"), status=found["status"], adopted=True)
    req = {"modelUnits": units, "provisionedModelName": names.provisioned, "modelId": custom_model_arn,
           "tags": to_tag_list(tags), "clientRequestToken": token}
    if config.serving.commitment:   # only when the config says so explicitly (docs/design.md §3.4)
        req["commitmentDuration"] = config.serving.commitment
    arn = clients.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"]
    log.info("created provisioned throughput %s (%d MU, %s)", names.provisioned, units,
             config.serving.commitment or "no commitment")
    return ServingEndpoint(kind="provisioned", arn=arn, name=names.provisioned, model_arn=custom_model_arn,
                           model_units=units, status="Creating")


def _provision_deployment(clients: Clients, config: PipelineConfig, names: ResourceNames, custom_model_arn: str,
                          tags: dict[str, str]) -> ServingEndpoint:
    log = get_logger()
    family = family_of(config)
    if not on_demand_available(family, clients.region):
        log.warning("serving.mode=on_demand, but the catalog lists on-demand deployment for %s only in %s; "
                    "trying anyway (Bedrock decides)", family.display, family.on_demand_regions or "no region")
    found, token = adoptable(clients, "deployment", find_deployment(clients, names.deployment),
                              "customModelDeploymentArn", names.deployment_token, custom_model_arn)
    if found:
        log.info("adopting deployment %s (%s)", names.deployment, found["status"])
        return ServingEndpoint(kind="deployment", arn=found["customModelDeploymentArn"], name=names.deployment,
                               model_arn=found.get("modelArn") or custom_model_arn, status=found["status"],
                               adopted=True)
    arn = clients.bedrock.create_custom_model_deployment(
        modelDeploymentName=names.deployment, modelArn=custom_model_arn,
        description=f"bedrock-forge evaluation of run {names.run_key}", tags=to_tag_list(tags),
        clientRequestToken=token)["customModelDeploymentArn"]
    log.info("created on-demand deployment %s", names.deployment)
    return ServingEndpoint(kind="deployment", arn=arn, name=names.deployment, model_arn=custom_model_arn,
                           status="Creating")


def wait_serving(clients: Clients, endpoint: ServingEndpoint, timeout_s: float,
                 max_interval_s: float = 30.0, initial_interval_s: float = 0.5) -> ServingEndpoint:
    """Poll until InService (PT) / Active (deployment). Failed → ServingFailed with the service's message."""
    from botocore.exceptions import ClientError

    log = get_logger()
    started, backoff, last = _monotonic(), Backoff(start=initial_interval_s, cap=max_interval_s), None
    while True:
        try:
            if endpoint.kind == "provisioned":
                cur = clients.bedrock.get_provisioned_model_throughput(provisionedModelId=endpoint.arn)
            else:
                cur = clients.bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=endpoint.arn)
        except ClientError as err:
            if is_transient(err):
                _sleep(backoff())
                continue
            raise stage_error(f"wait for {endpoint.kind} {endpoint.name}", err) from err
        status = cur["status"]
        if status != last:
            log.info("%s %s: %s after %.0f s", "provisioned throughput" if endpoint.kind == "provisioned" else
                     "deployment", endpoint.name, status, _monotonic() - started)
            last = status
        if status == READY[endpoint.kind]:
            return endpoint.model_copy(update={"status": status,
                                               "model_units": cur.get("modelUnits", endpoint.model_units)})
        if status == "Failed":
            raise ServingFailed(f"{endpoint.kind} {endpoint.name} failed: {cur.get('failureMessage') or 'no message'} "
                                "(it is deleted by teardown; rerun from provision)", code="Failed")
        waited = _monotonic() - started
        if waited >= timeout_s:
            raise StageError(f"{endpoint.kind} {endpoint.name} still {status} after {timeout_s / 60:.0f} min; "
                             "rerun from provision to adopt it and wait again", code="Timeout")
        _sleep(min(backoff(), max(0.05, timeout_s - waited)))


provision_task = aws_task(provision, name="provision")
wait_serving_task = wait_task(wait_serving, name="wait-serving")
