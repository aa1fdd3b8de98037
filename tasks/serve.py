"""Provision stage: serve the custom model for evaluation, the cheapest way the model allows.

- ``serving.mode``: ``on_demand`` → a custom model deployment (REF §2.8); ``provisioned`` → Provisioned
  Throughput (REF §2.7); ``auto`` → a deployment when the catalog says the family supports it in this
  region (``on_demand_deployment`` + ``on_demand_regions``), else Provisioned Throughput.
- Provisioned Throughput: no commitment unless ``serving.commitment`` names one (a committed PT cannot be
  deleted before its term ends, REF §8); model units capped by ``serving.max_model_units``; tags carry
  ``forge-expires-at`` so the sweeper deletes a forgotten one.
- Get-or-create by deterministic name (list + exact match) plus a deterministic ``clientRequestToken``.
  A managed resource of ours in ``Failed`` state is deleted and created again.
- ``wait_serving`` polls with capped backoff until InService / Active; Failed → error with its message.
"""

from __future__ import annotations

import time

from tasks.aws import (
    EXPIRES_TAG,
    Backoff,
    Clients,
    QuotaExceeded,
    ResourceNames,
    StageError,
    aws_task,
    bedrock_tags,
    error_code,
    get_logger,
    is_managed,
    is_name_taken,
    is_transient,
    stage_error,
    standard_tags,
    to_tag_list,
    wait_task,
)
from tasks.catalog import load_catalog
from tasks.config import PipelineConfig
from tasks.types import ServingEndpoint

READY = {"provisioned": "InService", "deployment": "Active"}
_sleep = time.sleep
_monotonic = time.monotonic


class ServingFailed(StageError):
    pass


def serving_kind(config: PipelineConfig, region: str) -> str:
    """'deployment' or 'provisioned' for this config (see the module docstring)."""
    mode = config.serving.mode
    if mode == "provisioned":
        return "provisioned"
    if mode == "on_demand":
        return "deployment"
    fam = load_catalog().family_of(config.base_model)
    return "deployment" if fam.on_demand_deployment and region in fam.on_demand_regions else "provisioned"


def _find_pt(clients: Clients, name: str) -> dict | None:
    for page in clients.bedrock.get_paginator("list_provisioned_model_throughputs").paginate(nameContains=name):
        for s in page.get("provisionedModelSummaries", []):
            if s.get("provisionedModelName") == name:
                return s
    return None


def _find_deployment(clients: Clients, name: str) -> dict | None:
    for page in clients.bedrock.get_paginator("list_custom_model_deployments").paginate(nameContains=name):
        for s in page.get("modelDeploymentSummaries", []):
            if s.get("customModelDeploymentName") == name:   # REF §2.8: list uses this field name
                return s
    return None


def _quota_error(kind: str, err) -> QuotaExceeded:
    msg = err.response.get("Error", {}).get("Message", "")
    if kind == "provisioned":
        what = ("the no-commitment Provisioned Throughput model-unit quota is used up (accounts start with 2 MUs, "
                "REF §2.7)")
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


def provision(clients: Clients, config: PipelineConfig, names: ResourceNames, custom_model_arn: str,
              tags: dict[str, str]) -> ServingEndpoint:
    """Get-or-create the serving resource for ``custom_model_arn``; does not wait for it."""
    from botocore.exceptions import ClientError

    log = get_logger()
    kind = serving_kind(config, clients.region)
    units = min(config.serving.model_units, config.serving.max_model_units)
    if EXPIRES_TAG not in tags:   # billing resources always carry an expiry for the sweeper (DESIGN.md §3)
        tags = {**tags, EXPIRES_TAG: standard_tags("-", "-", {}, config.serving.max_hours)[EXPIRES_TAG]}
    try:
        if kind == "provisioned":
            found = _find_pt(clients, names.provisioned)
            token = names.pt_token
            if found and (found["status"] == "Failed" or found.get("modelArn") not in (None, custom_model_arn)):
                log.warning("provisioned throughput %s is %s (model %s): replacing it", names.provisioned,
                            found["status"], found.get("modelArn"))
                _delete_failed(clients, kind, found["provisionedModelArn"])
                # the original token would replay the deleted create: derive a new one from what it replaces
                token = f"{names.pt_token}-r-{found['provisionedModelArn'].rsplit('/', 1)[-1]}"
                found = None
            if found:
                log.info("adopting provisioned throughput %s (%s)", names.provisioned, found["status"])
                return ServingEndpoint(kind="provisioned", arn=found["provisionedModelArn"], name=names.provisioned,
                                       model_arn=found.get("modelArn") or custom_model_arn,
                                       model_units=found.get("modelUnits"), status=found["status"], adopted=True)
            req = {"modelUnits": units, "provisionedModelName": names.provisioned, "modelId": custom_model_arn,
                   "tags": to_tag_list(tags), "clientRequestToken": token}
            if config.serving.commitment:   # only when the config says so explicitly (DESIGN.md §3.4)
                req["commitmentDuration"] = config.serving.commitment
            arn = clients.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"]
            log.info("created provisioned throughput %s (%d MU, %s)", names.provisioned, units,
                     config.serving.commitment or "no commitment")
            return ServingEndpoint(kind="provisioned", arn=arn, name=names.provisioned, model_arn=custom_model_arn,
                                   model_units=units, status="Creating")
        fam = load_catalog().family_of(config.base_model)
        if not (fam.on_demand_deployment and clients.region in fam.on_demand_regions):
            log.warning("serving.mode=on_demand, but the catalog lists on-demand deployment for %s only in %s; "
                        "trying anyway (Bedrock decides)", fam.display, fam.on_demand_regions or "no region")
        found = _find_deployment(clients, names.deployment)
        token = names.deployment_token
        if found and (found["status"] == "Failed" or found.get("modelArn") not in (None, custom_model_arn)):
            log.warning("deployment %s is %s: replacing it", names.deployment, found["status"])
            _delete_failed(clients, kind, found["customModelDeploymentArn"])
            token = f"{names.deployment_token}-r-{found['customModelDeploymentArn'].rsplit('/', 1)[-1]}"
            found = None
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
    except ClientError as err:
        if error_code(err) == "ServiceQuotaExceededException":
            raise _quota_error(kind, err) from None
        if is_name_taken(err):   # created concurrently under our name: adopt it
            try:
                found = _find_pt(clients, names.provisioned) if kind == "provisioned" else \
                    _find_deployment(clients, names.deployment)
            except ClientError:
                found = None
            if found:
                arn = found.get("provisionedModelArn") or found["customModelDeploymentArn"]
                return ServingEndpoint(kind=kind, arn=arn, name=names.provisioned if kind == "provisioned" else
                                       names.deployment, model_arn=found.get("modelArn") or custom_model_arn,
                                       model_units=found.get("modelUnits"), status=found["status"], adopted=True)
        raise stage_error(f"provision {kind} for {custom_model_arn}", err) from err


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
            return endpoint.model_copy(update={"status": status, "model_units": cur.get("modelUnits", endpoint.model_units)})
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
