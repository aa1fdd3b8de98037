"""On-call rollback from the Prefect UI (issue 19): a lineage's previous champion (or version ``to``) back into
production serving, blue/green, and the current champion's production serving retired — what
``forge rollback LINEAGE --config CFG [--to RUN_ID]`` does, as the ``rollback`` deployment (deployments/prefect.yaml).

Composition only; the logic is tasks/promote.py ``rollback`` (get-or-create the target's serving, wait, smoke test,
the registry's champion switch, retire the old serving). This flow adds:

- the lineage's config, typed: ``config`` (the ``PipelineConfig`` the customize flow takes, validated by Prefect
  against the same model) or ``config_path`` (a YAML file on the worker, ``tasks.config.load_config``); its
  ``aws`` section says where the registry is (``s3://<run bucket>/<aws.prefix>/registry/<name>/``), so any worker
  on any machine finds it: no local run state is read;
- the target pinned before the ``rollback`` task runs: ``to``, else the champion's ``previous`` read now. The task
  retries transient AWS errors (tasks/aws/retry.py) and a retry is then safe: rolling back to a version that is
  already champion only finishes the retirement. The pin is also kept as the flow-run label ``forge.rollback-to``,
  so a Retry of a failed run from the UI goes to the same version instead of rolling back one step further;
- the outcome logged and published as the markdown artifact ``rollback-<lineage>`` (the champion now, its
  serving, what was retired, anything STILL BILLING: tasks/promote.py ``result_lines``, as the CLI prints them);
- a failed flow run when nothing was rolled back (``RollbackRefused``: no champion, nothing to roll back to, no
  such version, production.mode none) or when a production serving could not be retired
  (``RollbackRetireFailed``: two servings bill), each message saying what to do next.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.context import flow_run_id
from flows.promote import ProductionRetireFailed
from tasks import promote as promote_stage
from tasks.aws.clients import account_id, make_clients
from tasks.aws.errors import describe_error
from tasks.aws.logs import install_log_redaction
from tasks.aws.redact import redact
from tasks.aws.retry import aws_task
from tasks.config import ConfigError, PipelineConfig, load_config
from tasks.registry import (
    ChampionChanged,
    Registry,
    RegistryError,
    RegistryStore,
    check_lineage,
    store_for_config,
)
from tasks.run.names import InvalidRunId, check_run_id

__all__ = ["PIN_LABEL", "RollbackRefused", "RollbackRetireFailed", "rollback_lineage", "rollback_task"]

install_log_redaction()   # account ids out of every log line a run writes (tasks/aws/logs.py)

PIN_LABEL = "forge.rollback-to"

# the stage, as a task: retries only errors tasks/aws/errors.py classifies transient (throttling, 5xx, timeouts)
rollback_task = aws_task(promote_stage.rollback, name="rollback")


class RollbackRefused(ValueError):
    """Nothing was rolled back (bad parameters, no champion, nothing to roll back to, no such version): production
    is as it was. The message says why and what to set."""


class RollbackRetireFailed(ProductionRetireFailed):
    """The rollback switched the champion but a production serving could not be deleted: two servings bill."""

    def __init__(self, lineage: str, champion: str | None, alive: list[str]):
        self.alive, self.errors = list(alive), []
        self.next_step = (f"once the cause is fixed (e.g. a missing bedrock:Delete* permission), run the rollback "
                          f"deployment again with to={champion} (it only finishes the retirement), or delete it with "
                          "`aws bedrock delete-custom-model-deployment` / `delete-provisioned-model-throughput`; the "
                          "sweep never deletes production serving")
        RuntimeError.__init__(
            self, f"rollback of {lineage}: {champion or 'the version brought back'} is the champion, but the old "
                  f"production serving is STILL BILLING: {', '.join(self.alive)}. Next: {self.next_step}")


# -- parameters -------------------------------------------------------------------------------------------------
def lineage_config(config: PipelineConfig | None, config_path: str | None) -> PipelineConfig:
    """The lineage's config: ``config`` as given (Prefect validated it as a ``PipelineConfig``), else
    ``config_path`` loaded the way every config file is (``load_config``: located problems)."""
    config_path = config_path or None   # an emptied text field of the UI form
    if (config is None) == (config_path is None):
        raise RollbackRefused("give the lineage's config once: `config` (the run form's typed config) or "
                              "`config_path` (a YAML file on the worker), not both — clear config_path to use config"
                              if config is not None else
                              "give the lineage's config: `config` (the run form's typed config) or `config_path` "
                              "(a YAML file on the worker, relative to the repo root, e.g. examples/banking77.yaml)")
    if config is not None:
        return config
    try:
        return load_config(config_path)
    except ConfigError as err:
        raise RollbackRefused("config_path: the config does not load:\n" + "\n".join(err.problems)) from None
    except OSError as err:
        raise RollbackRefused(f"config_path {config_path}: cannot read the config: {err.strerror or err}") from None


def checked_parameters(config: PipelineConfig, to: str | None, lineage: str | None) -> str | None:
    """``to`` as a run id (None: the previous champion); ``lineage``, when given, must be the config's name."""
    if lineage:
        try:
            check_lineage(lineage)
        except RegistryError as err:
            raise RollbackRefused(str(err)) from None
        if lineage != config.name:
            raise RollbackRefused(f"lineage {lineage!r}: the config names {config.name!r} (a lineage is a config's "
                                  "name): pass that lineage's config")
    to = to or None     # an emptied text field of the UI form
    if to is not None:
        try:
            check_run_id(to)
        except InvalidRunId as err:
            raise RollbackRefused(f"to: {err}") from None
    return to


# -- the target, pinned -----------------------------------------------------------------------------------------
def _client_call(fn) -> Any:
    """``fn(client)`` against the Prefect API of this flow run; None outside one or when it fails (best effort)."""
    fr = flow_run_id()
    if fr == "local":
        return None
    try:
        from uuid import UUID

        from prefect import get_client

        with get_client(sync_client=True) as client:
            return fn(client, UUID(fr))
    except Exception:  # noqa: BLE001 - a label is a safeguard, not the record (the registry is)
        return None


def pinned_earlier() -> str | None:
    """The version an earlier attempt of this flow run pinned (a Retry from the UI), from its label."""
    labels = _client_call(lambda c, fr: c.read_flow_run(fr).labels) or {}
    value = labels.get(PIN_LABEL)
    return value if isinstance(value, str) and value else None


def pin(target: str) -> None:
    _client_call(lambda c, fr: c.update_flow_run_labels(fr, {PIN_LABEL: target}))


def target_of(reg: Registry, to: str | None) -> str | None:
    """``to``; else what an earlier attempt of this flow run pinned; else the champion's previous one (None: the
    stage refuses, saying why)."""
    if to is not None:
        return to
    earlier = pinned_earlier()
    if earlier is not None:
        return earlier
    return reg.champion.previous if reg.champion else None


# -- what on-call reads -----------------------------------------------------------------------------------------
def _versions(reg: Registry) -> str:
    return ", ".join(f"{v.run_id} ({v.status})" for v in reg.versions) or "none"


def _ui_text(err: BaseException) -> str:
    """The stage's message without the CLI's flag hint (the UI has a `to` field)."""
    return str(err).replace(" (name a version with --to RUN_ID)", "").rstrip()


def refusal(lineage: str, reg: Registry, err: BaseException) -> str:
    """The stage's refusal, with the next step for someone in the UI (not at a shell)."""
    code = getattr(err, "code", "")
    text = _ui_text(err)
    if code == "NoPrevious" or isinstance(err, RegistryError):
        nxt = f"set `to` to the run id of a version to serve (versions: {_versions(reg)})"
    elif code == "NoChampion":
        nxt = ("check that the config's name, aws.bucket, aws.prefix and aws.region are the lineage's (`forge models "
               f"{lineage} --config CFG` shows its registry); a first champion comes from a run whose gate passed")
    elif code == "ProductionDisabled":
        nxt = "use the lineage's config, whose production.mode (on-demand | provisioned) says how to serve it"
    else:
        nxt = "fix the cause above and run the rollback deployment again"
    return f"rollback of {lineage} refused: {text}. Nothing was changed in production. Next: {nxt}"


def markdown(lineage: str, store: RegistryStore, lines: list[str], outcome: str, nxt: str | None = None) -> str:
    head, *rest = lines
    body = [f"# Rollback of `{lineage}`: {outcome}", "", head, ""]
    body += [f"- {ln.strip()}" for ln in rest]
    body += ["", f"Registry: `{store.uri}`"]
    if nxt:
        body += ["", f"**Next:** {nxt}"]
    return "\n".join(redact(body)) + "\n"


def _publish(lineage: str, text: str, description: str) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=f"rollback-{lineage}", markdown=text, description=redact(description))
    except Exception as err:  # noqa: BLE001 - publishing is best effort; the registry is the record
        get_run_logger().warning("could not publish the rollback artifact: %s", err)


# -- the flow ---------------------------------------------------------------------------------------------------
@flow(name="rollback-lineage", log_prints=True)
def rollback_lineage(
    config: PipelineConfig | None = None,
    config_path: str | None = None,
    to: str | None = None,
    lineage: str | None = None,
) -> dict:
    """On-call: put a lineage's previous champion (or version `to`) back into production serving, blue/green, and
    retire the current champion's production serving. Fails when nothing was rolled back or a serving still bills.

    Args:
        config: The lineage's run configuration (its name is the lineage; aws says where the registry is,
            production how to serve). Leave empty when config_path is set.
        config_path: Or: the lineage's config YAML on the worker, relative to the repo root
            (e.g. examples/banking77.yaml).
        to: The run id of the version to bring back; empty: the champion's previous one. Versions and their
            run ids: `forge models LINEAGE --config CFG`.
        lineage: Optional confirmation: when set, it must be the config's name.
    """
    log = get_run_logger()
    config = lineage_config(config, config_path)
    to = checked_parameters(config, to, lineage)
    name = config.name
    try:
        promote_stage.production_kind(config, config.aws.region)   # production.mode none: before any AWS call
    except promote_stage.PromotionRefused as err:
        raise RollbackRefused(f"rollback of {name} refused: {err}. Nothing was changed. Next: use the lineage's "
                              "config, whose production.mode says how to serve the version brought back") from None
    clients = make_clients(config.aws)
    store = store_for_config(clients, config, account_id(clients))
    got = store.get()
    if got is None:
        raise RollbackRefused(f"rollback of {name} refused: no registry for lineage {name!r} at {store.uri}. Nothing "
                              "was changed. Next: check the config's name, aws.bucket, aws.prefix and aws.region (a "
                              "run of this config records its registry after its evaluation)")
    reg = got[0]
    was = reg.champion.run_id if reg.champion else None
    target = target_of(reg, to)
    if target is not None:
        pin(target)
    log.info("rollback of %s: champion %s → %s (registry %s)", name, was or "none", target or "?", store.uri)
    try:
        res = rollback_task(clients, config, store, to=target)
    except (promote_stage.PromotionRefused, RegistryError) as err:
        msg = refusal(name, reg, err)
        _publish(name, markdown(name, store, [f"refused: {_ui_text(err)}", f"  champion: {was or 'none'} (unchanged)"],
                                "refused", msg.split("Next: ", 1)[-1]), f"{name}: refused")
        raise RollbackRefused(msg) from None
    except ChampionChanged as err:   # a promotion (or another rollback) switched first
        raise RuntimeError(f"rollback of {name} to {target}: {err}. Next: `forge models {name} --config CFG` shows "
                           "the champion and any production serving that is NOT the champion's (the one this "
                           "rollback brought up may still bill: delete it, or run the rollback again with `to` "
                           "set)") from None
    except Exception as err:  # noqa: BLE001 - an AWS step failed (after its retries): say what to do next
        nxt = (f"fix the cause, then run the rollback deployment again with to={target or 'RUN_ID'}: it adopts the "
               "serving it may have created and never serves a version twice")
        raise RuntimeError(f"rollback of {name} to {target or '?'} failed: {describe_error(err)}. Next: {nxt}") \
            from err
    lines = promote_stage.result_lines(res)
    for line in lines:
        (log.error if "STILL BILLING" in line else log.info)("%s", line)
    if res.alive:
        failed = RollbackRetireFailed(name, res.champion, res.alive)
        _publish(name, markdown(name, store, lines, "STILL BILLING", failed.next_step),
                 f"{name}: {res.champion} champion; STILL BILLING {len(res.alive)}")
        raise failed
    if not res.promoted:   # the champion changed under the rollback (a concurrent promotion won)
        msg = (f"rollback of {name} to {res.run_id} did not switch: the champion is {res.champion or 'none'} "
               f"({res.note}). Next: `forge models {name} --config CFG`, then run the rollback again with `to` set")
        _publish(name, markdown(name, store, lines, "not switched", msg.split("Next: ", 1)[-1]), f"{name}: refused")
        raise RollbackRefused(msg)
    outcome = "nothing left to do" if res.already else f"rolled back from {was}"
    _publish(name, markdown(name, store, lines, outcome), f"{name}: {res.champion} is champion ({outcome})")
    return redact({**res.model_dump(mode="json"), "registry": store.uri,
                   "rolled_back_from": None if res.already else was})
