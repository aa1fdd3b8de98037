"""Promotion stage (issue 19): put a lineage's new champion into production serving, blue/green.

``promote`` runs only when the config asks (``production.mode`` on-demand | provisioned) and the version's gate
passed; in order:

1. the version is recorded in the lineage's registry (tasks/registry) and its custom model tagged
   ``forge-lineage`` / ``forge-version``;
2. *green*: the production serving of this version, get-or-create by a deterministic name
   (``production_name(lineage, run id)``): an on-demand custom model deployment where the catalog lists the family in
   this Region (no hourly bill, docs/bedrock-facts.md §2.8), else Provisioned Throughput (docs/bedrock-facts.md §2.7)
   — with a commitment only when ``production.commitment`` is written (and ``allow_commitment``);
3. wait until Active / InService, then a smoke-test invoke must answer;
4. the registry's champion switch, a compare-and-swap on the champion read in step 1: a concurrent promotion that
   switched first wins, this one retires its own serving and records itself ``not-champion``;
5. *blue* retired: the old champion's production serving is deleted.

The champion's custom model carries ``forge-role=production`` too (moved from the model it replaced), so no
teardown deletes it (``serving.delete_custom_model`` on a rerun). Production serving is tagged
``managed-by=bedrock-forge``, ``forge-role=production``, ``forge-lineage``,
``forge-version`` and ``forge-run-id`` (the run id) and carries no run key, flow-run id, heartbeat or expiry: the
run's teardown, the failure hooks and the sweeper never touch it (tasks/teardown.py skips ``forge-role=production``).

A rerun is safe at every point: interrupted between "green up" and "registry switched", it adopts the same serving
by name and finishes (never two production servings); interrupted after the switch, it sees itself champion and
only retires the old serving (``previous_serving_arn`` in the registry). ``rollback`` brings the previous
champion's serving back (get-or-create), switches, and retires the current one.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from pydantic import BaseModel, Field

from tasks.aws.clients import Clients
from tasks.aws.errors import QuotaExceeded, StageError, describe_error, error_code, is_transient, stage_error
from tasks.aws.logs import get_logger
from tasks.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE, RUN_ID_TAG, fits_tag_value, to_tag_list
from tasks.config import PipelineConfig
from tasks.registry import (
    LINEAGE_TAG,
    PRODUCTION,
    ROLE_TAG,
    VERSION_TAG,
    Champion,
    ChampionChanged,
    ModelVersion,
    Registry,
    RegistryError,
    RegistryStore,
    is_production,
    record_version,
    set_status,
    switch_champion,
    tag_custom_model,
)
from tasks.run import plan
from tasks.run.plan import ServingKind, family_of
from tasks.run.types import ServingEndpoint, TeardownReport

SMOKE_PROMPT = "Reply with one word: ready?"
SMOKE_ATTEMPTS = 3
WAIT_TIMEOUT_S = 3600.0
_sleep = time.sleep


class PromotionRefused(StageError):
    """Promotion cannot start: production.mode none, a gate that did not pass, no version to roll back to."""


class SmokeTestFailed(StageError):
    """The new production serving is up but does not answer: the registry is not switched."""


class PromotionResult(BaseModel):
    lineage: str
    run_id: str                              # the version promoted (or rolled back to)
    promoted: bool                           # it is the champion now
    champion: str | None                     # the champion after this call
    serving: ServingEndpoint | None = None   # the champion's production serving
    retired: list[str] = Field(default_factory=list)   # production servings deleted by this call
    alive: list[str] = Field(default_factory=list)     # servings this call meant to delete and could not
    already: bool = False                    # nothing was left to do (a rerun)
    note: str = ""


# -- names, kind, tags ------------------------------------------------------------------------------------------
def production_name(lineage: str, run_id: str) -> str:
    """Deterministic name of a version's production serving: ``forge-<lineage>-prod-<10 hex of lineage/run id>``
    (≤ 54 chars, inside the PT and deployment name patterns, docs/bedrock-facts.md §2.7, §2.8)."""
    return f"forge-{lineage}-prod-{hashlib.sha256(f'{lineage}/{run_id}'.encode()).hexdigest()[:10]}"


def production_kind(config: PipelineConfig, region: str | None = None) -> ServingKind:
    """tasks/run/plan.py ``production_kind``; ``production.mode: none`` is refused (nothing to promote into)."""
    kind = plan.production_kind(config, region)
    if kind is None:
        raise PromotionRefused("production.mode is none: set production.mode to on-demand or provisioned to serve "
                               "the champion", code="ProductionDisabled")
    return kind


def production_tags(config: PipelineConfig, lineage: str, run_id: str) -> dict[str, str]:
    """The user's tags + managed-by, forge-role=production, forge-lineage, forge-version/forge-run-id (run id).
    No run key, flow-run id, heartbeat or expiry: nothing that cleans up a run matches it."""
    tags = {k: v for k, v in config.tags.items()}
    tags.update({MANAGED_BY_KEY: MANAGED_BY_VALUE, ROLE_TAG: PRODUCTION, LINEAGE_TAG: lineage})
    if fits_tag_value(run_id):
        tags[VERSION_TAG] = run_id
        tags[RUN_ID_TAG] = run_id
    return tags


# -- green: get-or-create, wait, smoke test ----------------------------------------------------------------------
def _find(clients: Clients, kind: ServingKind, name: str) -> dict | None:
    from tasks.serve import find_deployment, find_pt

    return find_pt(clients, name) if kind == "provisioned" else find_deployment(clients, name)


def _endpoint(kind: ServingKind, found: dict, name: str, model_arn: str, adopted: bool) -> ServingEndpoint:
    arn = found.get("provisionedModelArn") or found.get("customModelDeploymentArn")
    return ServingEndpoint(kind=kind, arn=arn, name=name, model_arn=found.get("modelArn") or model_arn,
                           model_units=found.get("modelUnits"), status=found.get("status"), adopted=adopted)


def ensure_production(clients: Clients, config: PipelineConfig, lineage: str, version: ModelVersion,
                      attempt: int = 0) -> ServingEndpoint:
    """Get-or-create the production serving of ``version`` (does not wait). ``attempt`` goes into the create
    token (the registry's switch count), so serving a version again after its serving was retired creates anew."""
    from botocore.exceptions import ClientError

    from tasks.serve import adoptable, quota_error

    kind = production_kind(config, clients.region)
    name = production_name(lineage, version.run_id)
    arn_key = "provisionedModelArn" if kind == "provisioned" else "customModelDeploymentArn"
    token = f"{name}-{attempt}"
    log = get_logger()
    try:
        found, token = adoptable(clients, kind, _find(clients, kind, name), arn_key, token, version.custom_model_arn)
        if found:
            log.info("production serving %s adopted (%s)", name, found["status"])
            return _endpoint(kind, found, name, version.custom_model_arn, adopted=True)
        tags = to_tag_list(production_tags(config, lineage, version.run_id))
        if kind == "provisioned":
            units = config.production.model_units
            req: dict[str, Any] = {"modelUnits": units, "provisionedModelName": name,
                                   "modelId": version.custom_model_arn, "tags": tags, "clientRequestToken": token}
            if config.production.commitment:   # only when written explicitly (docs/design.md §3.4)
                req["commitmentDuration"] = config.production.commitment
            arn = clients.bedrock.create_provisioned_model_throughput(**req)["provisionedModelArn"]
            log.info("created production provisioned throughput %s (%d MU, %s)", name, units,
                     config.production.commitment or "no commitment")
            return ServingEndpoint(kind=kind, arn=arn, name=name, model_arn=version.custom_model_arn,
                                   model_units=units, status="Creating")
        arn = clients.bedrock.create_custom_model_deployment(
            modelDeploymentName=name, modelArn=version.custom_model_arn, tags=tags, clientRequestToken=token,
            description=f"bedrock-forge production serving of {lineage} version {version.run_id}",
        )["customModelDeploymentArn"]
        log.info("created production deployment %s", name)
        return ServingEndpoint(kind=kind, arn=arn, name=name, model_arn=version.custom_model_arn, status="Creating")
    except ClientError as err:
        if error_code(err) == "ServiceQuotaExceededException":
            raise quota_error(kind, err) from None
        found = _find(clients, kind, name)
        if found and found.get("status") != "Failed":   # created concurrently under our name: adopt it
            return _endpoint(kind, found, name, version.custom_model_arn, adopted=True)
        raise stage_error(f"production serving {name} for {version.custom_model_arn}", err) from err


def smoke_test(clients: Clients, config: PipelineConfig, endpoint: ServingEndpoint,
               prompt: str = SMOKE_PROMPT) -> str:
    """One invoke through the new serving; it must answer with text. Throttling/5xx retried a few times."""
    from tasks.evaluation.invoke import invoke_text

    shape = family_of(config).invoke_shape
    last: BaseException | None = None
    for i in range(SMOKE_ATTEMPTS):
        try:
            out = invoke_text(clients.bedrock_runtime, endpoint.arn, shape, prompt=prompt, max_tokens=16,
                              temperature=0.0)
        except Exception as err:  # noqa: BLE001 - classified below
            last = err
            if is_transient(err) and i + 1 < SMOKE_ATTEMPTS:
                _sleep(0.5 * 2 ** i)
                continue
            break
        if out.text and out.text.strip():
            return out.text
        last = RuntimeError("an empty answer")
    raise SmokeTestFailed(f"production serving {endpoint.name} ({endpoint.arn}) did not pass the smoke test: "
                          f"{describe_error(last) if last else 'no answer'}; the registry was not switched — fix "
                          "the serving (or delete it) and promote again", code="SmokeTestFailed")


def bring_up(clients: Clients, config: PipelineConfig, lineage: str, version: ModelVersion, attempt: int,
             timeout_s: float, smoke_prompt: str, initial_interval_s: float) -> ServingEndpoint:
    from tasks.serve import wait_serving

    ep = ensure_production(clients, config, lineage, version, attempt)
    ep = wait_serving(clients, ep, timeout_s, initial_interval_s=initial_interval_s)
    smoke_test(clients, config, ep, smoke_prompt)
    return ep


# -- blue: retire ------------------------------------------------------------------------------------------------
def retire(clients: Clients, lineage: str, arn: str | None, report: TeardownReport) -> None:
    """Delete one production serving of ``lineage`` (only a managed one tagged forge-role=production and this
    lineage; gone already counts as done)."""
    from tasks.teardown import delete_managed

    if not arn:
        return
    delete_managed(clients, arn, report, require={ROLE_TAG: PRODUCTION, LINEAGE_TAG: lineage}, production=True)


def production_servings(clients: Clients, lineage: str) -> list[tuple[str, str, dict]]:
    """(kind, arn, tags) of every live production serving of ``lineage`` in the Region."""
    from tasks.aws.tags import is_managed
    from tasks.teardown import billing_resources

    return [(k, a, t) for k, a, t in billing_resources(clients)
            if is_managed(t) and is_production(t) and t.get(LINEAGE_TAG) == lineage]


def _result(lineage: str, run_id: str, reg: Registry, serving: ServingEndpoint | None, report: TeardownReport,
            note: str, already: bool = False) -> PromotionResult:
    champ = reg.champion.run_id if reg.champion else None
    return PromotionResult(lineage=lineage, run_id=run_id, promoted=champ == run_id, champion=champ,
                           serving=serving, retired=report.deleted, alive=report.alive, already=already, note=note)


def _champion_serving(clients: Clients, reg: Registry) -> ServingEndpoint | None:
    c = reg.champion
    if c is None or not c.serving_arn or not c.serving_kind:
        return None
    try:
        if c.serving_kind == "provisioned":
            cur = clients.bedrock.get_provisioned_model_throughput(provisionedModelId=c.serving_arn)
            name = cur.get("provisionedModelName")
        else:
            cur = clients.bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=c.serving_arn)
            name = cur.get("modelDeploymentName") or cur.get("customModelDeploymentName")
    except Exception:  # noqa: BLE001 - the registry says what it should be; gone is shown as such
        return None
    return ServingEndpoint(kind=c.serving_kind, arn=c.serving_arn, name=name or "", model_arn=c.custom_model_arn,
                           model_units=cur.get("modelUnits"), status=cur.get("status"), adopted=True)


def protect_champion_model(clients: Clients, champion_model_arn: str, old_model_arn: str | None) -> None:
    """``forge-role=production`` on the champion's custom model (teardown never deletes it, e.g. with
    ``serving.delete_custom_model`` on a rerun), removed from the model it replaced. Only when missing / present:
    a rerun makes no mutating call. Best effort: the registry is the record."""
    from tasks.aws.tags import bedrock_tags

    try:
        if bedrock_tags(clients, champion_model_arn).get(ROLE_TAG) != PRODUCTION:
            clients.bedrock.tag_resource(resourceARN=champion_model_arn,
                                         tags=to_tag_list({ROLE_TAG: PRODUCTION}))
        if old_model_arn and old_model_arn != champion_model_arn and ROLE_TAG in bedrock_tags(clients, old_model_arn):
            clients.bedrock.untag_resource(resourceARN=old_model_arn, tagKeys=[ROLE_TAG])
    except Exception as err:  # noqa: BLE001
        get_logger().warning("could not move forge-role=production to custom model %s: %s", champion_model_arn,
                             describe_error(err))


def _model_of(reg: Registry, run_id: str | None) -> str | None:
    v = reg.version(run_id) if run_id else None
    return v.custom_model_arn if v else None


# -- the operations ---------------------------------------------------------------------------------------------
def _before_switch(lineage: str, run_id: str, serving: ServingEndpoint) -> None:
    """Between "new serving up" and "registry switched" (a seam for the fault tests)."""


def promote(clients: Clients, config: PipelineConfig, store: RegistryStore, version: ModelVersion, *,
            force: bool = False, timeout_s: float = WAIT_TIMEOUT_S, smoke_prompt: str = SMOKE_PROMPT,
            initial_interval_s: float = 0.5) -> PromotionResult:
    """Make ``version`` the champion of ``config.name``, blue/green (see the module docstring). ``force``
    promotes a version whose gate did not pass (a person's explicit decision, ``forge promote --force``)."""
    log = get_logger()
    lineage = config.name
    production_kind(config, clients.region)          # production.mode none: refused before any AWS call
    if not version.gate_passed and not force:
        raise PromotionRefused(f"version {version.run_id} of {lineage} did not pass its quality gate "
                               f"({version.gate.get('rule') or 'no gate recorded'}); promote it anyway with "
                               "--force", code="GateNotPassed")
    reg = record_version(store, version)
    try:
        tag_custom_model(clients, version.custom_model_arn, lineage, version.run_id)
    except Exception as err:  # noqa: BLE001 - the registry entry is the record; the tag is the mirror
        log.warning("could not tag custom model %s: %s", version.custom_model_arn, describe_error(err))
    report = TeardownReport()
    recorded = reg.version(version.run_id)
    if recorded is not None and recorded.status in ("retired", "not-champion", "rolled-back") and not force:
        # a rerun of a week that lost (or was replaced since): production is not changed by it
        return _result(lineage, version.run_id, reg, _champion_serving(clients, reg), report,
                       f"version is {recorded.status} ({recorded.note or '-'}): not promoted again without --force",
                       already=True)
    if reg.champion and reg.champion.run_id == version.run_id:   # a rerun after the switch: finish the retirement
        protect_champion_model(clients, version.custom_model_arn, _model_of(reg, reg.champion.previous))
        retire(clients, lineage, reg.champion.previous_serving_arn, report)
        return _result(lineage, version.run_id, reg, _champion_serving(clients, reg), report,
                       "already the champion", already=not report.deleted)
    expected = reg.champion.run_id if reg.champion else None
    if "vs_champion" in version.gate and not force and version.gate.get("champion") != expected:
        # judged against another champion than today's (one was promoted meanwhile): its win says nothing here
        reg = set_status(store, version.run_id, "not-champion",
                         f"evaluated against {version.gate.get('champion') or 'no champion'}, the champion is now "
                         f"{expected or 'none'}")
        return _result(lineage, version.run_id, reg, _champion_serving(clients, reg), report,
                       f"not promoted: evaluated against {version.gate.get('champion') or 'no champion'}, "
                       f"the champion is now {expected or 'none'}")
    old_serving = reg.champion.serving_arn if reg.champion else None
    green = bring_up(clients, config, lineage, version, len(reg.switches), timeout_s, smoke_prompt,
                     initial_interval_s)
    _before_switch(lineage, version.run_id, green)
    try:
        reg = switch_champion(store, expected, Champion(run_id=version.run_id,
                                                        custom_model_arn=version.custom_model_arn,
                                                        serving_arn=green.arn, serving_kind=green.kind))
    except ChampionChanged as lost:   # another promotion won: ours is a non-champion version, its serving goes
        retire(clients, lineage, green.arn, report)
        reg = set_status(store, version.run_id, "not-champion",
                         f"lost the champion switch to {lost.actual or 'none'} (expected {expected or 'none'})")
        log.warning("promotion of %s lost: the champion is now %s; its production serving retired",
                    version.run_id, lost.actual)
        return _result(lineage, version.run_id, reg, None, report, f"lost to {lost.actual}")
    protect_champion_model(clients, version.custom_model_arn, _model_of(reg, expected))
    retire(clients, lineage, old_serving if old_serving != green.arn else None, report)
    log.info("promoted %s to champion of %s (serving %s); retired %s", version.run_id, lineage, green.arn,
             report.deleted or "-")
    return _result(lineage, version.run_id, reg, green, report,
                   f"replaced {expected}" if expected else "first champion of the lineage")


def rollback(clients: Clients, config: PipelineConfig, store: RegistryStore, *, to: str | None = None,
             timeout_s: float = WAIT_TIMEOUT_S, smoke_prompt: str = SMOKE_PROMPT,
             initial_interval_s: float = 0.5) -> PromotionResult:
    """Bring the previous champion (or version ``to``) back: its serving up (get-or-create), the switch, the
    current champion's serving retired. With ``to`` already champion: only the retirement is finished."""
    lineage = config.name
    production_kind(config, clients.region)
    reg = store.read()
    cur = reg.champion
    report = TeardownReport()
    if to is not None and cur is not None and cur.run_id == to:
        protect_champion_model(clients, cur.custom_model_arn, None)
        retire(clients, lineage, cur.previous_serving_arn, report)
        return _result(lineage, to, reg, _champion_serving(clients, reg), report, "already the champion",
                       already=not report.deleted)
    if cur is None:
        raise PromotionRefused(f"lineage {lineage} has no champion to roll back ({store.uri})", code="NoChampion")
    target_id = to or cur.previous
    if target_id is None:
        raise PromotionRefused(f"champion {cur.run_id} of {lineage} replaced no earlier champion: nothing to roll "
                               "back to (name a version with --to RUN_ID)", code="NoPrevious")
    target = reg.version(target_id)
    if target is None:
        raise RegistryError(f"lineage {lineage}: no version of run {target_id} in {store.uri}")
    green = bring_up(clients, config, lineage, target, len(reg.switches), timeout_s, smoke_prompt,
                     initial_interval_s)
    _before_switch(lineage, target.run_id, green)
    try:
        reg = switch_champion(store, cur.run_id, Champion(run_id=target.run_id,
                                                          custom_model_arn=target.custom_model_arn,
                                                          serving_arn=green.arn, serving_kind=green.kind,
                                                          previous=target.replaced), reason="rollback")
    except ChampionChanged as lost:
        # a promotion (or another rollback) switched the champion meanwhile: the serving brought up here would bill
        # for nothing, unless the new champion is served by it (the same version, adopted by name)
        reg = store.read()
        now = reg.champion
        if now is None or now.serving_arn != green.arn:
            retire(clients, lineage, green.arn, report)
        get_logger().warning("rollback of %s to %s lost: the champion is now %s; the serving it brought up %s",
                             lineage, target.run_id, lost.actual, "retired" if report.deleted else "kept")
        return _result(lineage, target.run_id, reg, _champion_serving(clients, reg), report,
                       f"not rolled back: the champion changed to {lost.actual or 'none'} meanwhile (expected "
                       f"{cur.run_id}); look at `forge models {lineage}` and roll back again if still needed")
    protect_champion_model(clients, target.custom_model_arn, cur.custom_model_arn)
    retire(clients, lineage, cur.serving_arn if cur.serving_arn != green.arn else None, report)
    return _result(lineage, target.run_id, reg, green, report, f"rolled back from {cur.run_id}")


# -- what a person reads ----------------------------------------------------------------------------------------
def result_lines(res: PromotionResult) -> list[str]:
    """The outcome of ``promote`` / ``rollback`` in lines a person reads: who is champion now (and why), its
    production serving, what was retired, what is STILL BILLING. Pure (no AWS call, no redaction): ``forge
    promote`` / ``forge rollback`` print them, flows/rollback.py logs them and puts them in its artifact."""
    head = {True: f"{res.run_id} is the champion of {res.lineage}", False: f"{res.run_id} was not promoted"}
    lines = [head[res.promoted] + (" (nothing left to do)" if res.already else "") + f": {res.note}"]
    if res.serving:
        lines.append(f"  production serving: {res.serving.kind} {res.serving.arn} ({res.serving.status})")
    for arn in res.retired:
        lines.append(f"  retired: {arn}")
    for arn in res.alive:
        lines.append(f"  STILL BILLING (could not retire): {arn}")
    if not res.promoted:
        lines.append(f"  champion: {res.champion or 'none'}")
    return lines


__all__ = ["PromotionRefused", "PromotionResult", "QuotaExceeded", "SmokeTestFailed", "ensure_production",
           "production_kind", "production_name", "production_servings", "production_tags", "promote",
           "result_lines", "retire", "rollback", "smoke_test"]
