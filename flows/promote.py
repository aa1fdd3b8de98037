"""After evaluate: record the run's model in its lineage's registry and, when the gate passed and the config asks
(``production.mode`` on-demand | provisioned), promote it to production serving blue/green (tasks/promote.py).

Composition only: ``promote_if_gate_passed(ctx)`` is what flows/customize.py calls once the evaluation's gate
verdict is in the manifest (after the evaluation serving's teardown: the evaluation PT is deleted whatever the
promotion does). It writes two manifest keys:

- ``promotion``: ``lineage``, ``registry`` (the registry document's s3:// address), ``version`` (this run id),
  ``status`` (its registry status: candidate / rejected / champion / not-champion / retired ...), ``promoted``,
  ``champion`` (after this run), ``previous_champion``, ``serving`` (kind, arn, name, model_units of the champion's
  production serving when this run is it), ``retired`` (production servings this run deleted), ``note``,
  ``already`` (a rerun: nothing left to do), ``reason`` (why there was no promotion);
- ``resources.production_serving``: the production serving this run brought up (when it is the champion).

A production serving that could not be retired (``alive``) fails the run loudly (``TeardownFailed``), as a
serving that outlives teardown does.
"""

from __future__ import annotations

from typing import Any

from flows.context import RunContext, TeardownFailed
from tasks import promote as promote_stage
from tasks.aws.logs import get_logger
from tasks.registry import Registry, record_version, store_for_config, version_from_manifest


class ProductionRetireFailed(TeardownFailed):
    """An old champion's production serving could not be deleted: two production servings bill."""

    def __init__(self, lineage: str, alive: list[str], errors: list[str] | None = None):
        self.alive, self.errors = list(alive), list(errors or [])
        RuntimeError.__init__(self, f"promotion of {lineage}: the old production serving is STILL BILLING: "
                                    f"{', '.join(self.alive)}. The sweep never deletes production serving: rerun the "
                                    "run (it finishes the retirement) or delete it with `aws bedrock "
                                    "delete-custom-model-deployment` / `delete-provisioned-model-throughput` once the "
                                    "cause (e.g. a missing permission) is fixed")


def _champion_of(reg: Registry) -> str | None:
    return reg.champion.run_id if reg.champion else None


def promote_if_gate_passed(ctx: RunContext, *, timeout_s: float = promote_stage.WAIT_TIMEOUT_S,
                           initial_interval_s: float = 0.5, smoke_prompt: str = promote_stage.SMOKE_PROMPT
                           ) -> dict[str, Any]:
    """Record this run's version; promote it when its gate passed and production.mode is not none. Returns the
    ``promotion`` record written to the manifest."""
    log = get_logger()
    doc = ctx.manifest.data
    store = store_for_config(ctx.clients, ctx.config, ctx.account)
    version = version_from_manifest(doc, ctx.account)
    base = {"lineage": ctx.config.name, "registry": store.uri, "version": ctx.run_id}
    before = store.read()
    reason = None
    if not version.gate_passed:
        reason = "the quality gate did not pass"
    elif ctx.config.production.mode == "none":
        reason = "production.mode is none"
    if reason is not None:
        reg = record_version(store, version)
        rec = {**base, "status": reg.version(ctx.run_id).status, "promoted": False, "champion": _champion_of(reg),
               "previous_champion": _champion_of(before), "reason": reason, "note": f"recorded, not promoted: {reason}"}
        ctx.manifest.update(promotion=rec)
        log.info("registry %s: version %s recorded (%s), not promoted: %s", store.uri, ctx.run_id, rec["status"],
                 reason)
        return rec
    result = promote_stage.promote(ctx.clients, ctx.config, store, version, timeout_s=timeout_s,
                                   initial_interval_s=initial_interval_s, smoke_prompt=smoke_prompt)
    reg = store.read()
    serving = result.serving.model_dump(mode="json", include={"kind", "arn", "name", "model_units"}) \
        if result.promoted and result.serving else None
    rec = {**base, "status": reg.version(ctx.run_id).status, "promoted": result.promoted,
           "champion": result.champion, "previous_champion": _champion_of(before) if not result.already else
           (reg.champion.previous if reg.champion else None), "serving": serving, "retired": result.retired,
           "note": result.note, "already": result.already}
    ctx.manifest.update(promotion=rec)
    if serving:
        ctx.manifest.add_resource("production_serving", serving)
    log.info("lineage %s: %s (champion %s)", ctx.config.name, result.note, result.champion)
    if result.alive:
        raise ProductionRetireFailed(ctx.config.name, result.alive)
    return rec
