"""`forge deploy [--pool NAME] [--apply]`: the work pool, its queue and every deployment in one command.

Reads ``deployments/prefect.yaml`` (the single description of the deployments; Prefect's own
``prefect deploy --all --prefect-file deployments/prefect.yaml`` reads the same file). Without
``--apply`` it only checks: every entrypoint loads, every schedule parses, every fixed parameter fits
its flow's signature, and prints the plan. With ``--apply`` it creates the process work pool and the
work queue when missing and registers (creates or updates) each deployment against the Prefect API in
``PREFECT_API_URL``. Re-running it is safe: an existing deployment is updated in place (``PATCH``) and keeps its
schedules — same schedule objects, so a schedule or a deployment an operator paused stays paused, and an interval
keeps its anchor — unless the file's schedule itself changed (then that one is replaced). With
``FORGE_NOTIFY_WEBHOOK_URL`` set it also installs the failure notifications: a webhook block and the automation of
``deployments/automations/notify-on-failure.json`` (Failed/Crashed runs tagged ``bedrock-forge``: run id, failed
step, error, the rerun command and a link to the run in the UI at ``PREFECT_UI_URL``).

Flow runs of these deployments start in the repo root on the worker (a ``set_working_directory``
pull step): relative paths in parameters resolve there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
DEFAULT_POOL = "forge-process"
DEFAULT_QUEUE = "forge"


class DeployError(ValueError):
    """A problem in the deployments file or its entrypoints, formatted for people."""


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
class WorkPoolRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class ScheduleSpec(BaseModel):
    """One entry of ``schedules:`` as prefect.yaml writes it: ``cron`` or ``interval`` (seconds)."""

    model_config = ConfigDict(extra="forbid")
    cron: str | None = None
    interval: float | None = Field(None, gt=0)
    timezone: str | None = None
    active: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'interval' (seconds)")
        return self

    def to_prefect(self):
        """The Prefect schedule object; raises ValueError on a bad cron string or timezone."""
        from prefect.schedules import Cron, Interval

        if self.cron is not None:
            return Cron(self.cron, timezone=self.timezone, active=self.active)
        return Interval(timedelta(seconds=self.interval), timezone=self.timezone, active=self.active)


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    entrypoint: str = Field(..., pattern=r"^[\w./-]+\.py:\w+$")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    work_pool: WorkPoolRef
    schedules: list[ScheduleSpec] = Field(default_factory=list)

    @property
    def entry_file(self) -> str:
        return self.entrypoint.rsplit(":", 1)[0]


class DeploymentsFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    deployments: list[DeploymentSpec]

    @model_validator(mode="after")
    def _unique(self) -> DeploymentsFile:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate deployment names: {', '.join(dupes)}")
        return self

    def get(self, name: str) -> DeploymentSpec:
        for d in self.deployments:
            if d.name == name:
                return d
        raise KeyError(name)


def load_deployments_file(path: str | Path = DEFAULT_FILE) -> DeploymentsFile:
    """Parse and shape-check the deployments file; errors name the file and the field."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(f"{p}: file not found (expected deployments/prefect.yaml in the repo)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise DeployError(f"{p}{f':{mark.line + 1}' if mark else ''}: not valid YAML: "
                          f"{getattr(err, 'problem', err)}") from None
    try:
        return DeploymentsFile.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = list(e["loc"])
            if len(loc) >= 2 and loc[0] == "deployments" and isinstance(loc[1], int):
                items = (raw or {}).get("deployments") or []
                name = (items[loc[1]].get("name", loc[1])
                        if loc[1] < len(items) and isinstance(items[loc[1]], dict) else loc[1])
                loc = [f"deployments[{name}]", *loc[2:]]
            lines.append(f"{p}: {'.'.join(map(str, loc))}: {e['msg'].removeprefix('Value error, ')}")
        raise DeployError("\n".join(lines)) from None


# ---------------------------------------------------------------------------------------------
# checks (no server needed)
# ---------------------------------------------------------------------------------------------
def load_flow(spec: DeploymentSpec, root: Path = REPO_ROOT):
    """Import the deployment's flow from ``root``; DeployError says which entrypoint and why."""
    from prefect.flows import load_flow_from_entrypoint

    path = root / spec.entry_file
    if not path.is_file():
        raise DeployError(f"deployment {spec.name!r}: entrypoint file {spec.entry_file} not found under {root}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return load_flow_from_entrypoint(f"{path}:{spec.entrypoint.rsplit(':', 1)[1]}")
    except Exception as err:  # noqa: BLE001 - any import error becomes one line naming the entrypoint
        raise DeployError(f"deployment {spec.name!r}: cannot load {spec.entrypoint}: "
                          f"{type(err).__name__}: {err}") from None


def check_deployment(spec: DeploymentSpec, root: Path = REPO_ROOT):
    """Load the flow, parse the schedules, validate fixed parameters. Returns (flow, schedules)."""
    flow = load_flow(spec, root)
    schedules = []
    for i, s in enumerate(spec.schedules):
        try:
            schedules.append(s.to_prefect())
        except (ValueError, TypeError) as err:
            raise DeployError(f"deployment {spec.name!r}: schedules[{i}]: {err}") from None
    try:
        flow.validate_parameters(spec.parameters)
    except Exception as err:  # noqa: BLE001 - prefect raises ParameterTypeError / SignatureMismatchError
        raise DeployError(f"deployment {spec.name!r}: parameters do not fit {spec.entrypoint}: {err}") from None
    return flow, schedules


# ---------------------------------------------------------------------------------------------
# apply (needs PREFECT_API_URL)
# ---------------------------------------------------------------------------------------------
def ensure_pool(pool: str = DEFAULT_POOL, queue: str = DEFAULT_QUEUE) -> tuple[bool, bool]:
    """Create the process work pool and its queue when missing. Returns (pool_created, queue_created)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    pool_created = queue_created = False
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
            if existing.type != "process":
                raise DeployError(f"work pool {pool!r} exists with type {existing.type!r}; "
                                  "use --pool with another name or delete it (prefect work-pool delete)")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(
                name=pool, type="process", description="bedrock-forge flow runs (process worker)",
                base_job_template=ProcessWorker.get_default_base_job_template()))
            pool_created = True
        try:
            client.read_work_queue_by_name(queue, work_pool_name=pool)
        except ObjectNotFound:
            client.create_work_queue(name=queue, work_pool_name=pool,
                                     description="bedrock-forge deployments")
            queue_created = True
    return pool_created, queue_created


def apply_deployment(spec: DeploymentSpec, *, pool: str, queue: str | None, root: Path = REPO_ROOT,
                     echo=lambda *_: None):
    """Create or update one deployment; flow runs start in ``root``. Returns the deployment id.

    Prefect's own apply (``POST /deployments``, an upsert) deletes and recreates every schedule and sets
    ``paused: false`` (prefect/server/models/deployments.py ``create_deployment``; RunnerDeployment
    ``reconcile_paused``): each ``forge deploy --apply`` reset the sweep's interval anchor and un-paused a paused
    deployment or schedule. So an existing deployment is updated with ``PATCH`` (no ``paused``, no ``schedules``:
    both stay as they are on the server) and its schedules are reconciled one by one (``sync_schedules``)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.runner.storage import LocalStorage

    flow, schedules = check_deployment(spec, root)
    deployment = flow.to_deployment(
        name=spec.name, description=spec.description, tags=spec.tags, parameters=spec.parameters,
        schedules=schedules, work_pool_name=pool, work_queue_name=queue,
        job_variables=with_flow_heartbeats(spec.work_pool.job_variables), enforce_parameter_schema=True,
    )
    deployment.entrypoint = spec.entrypoint          # relative to the repo root, not to our cwd
    deployment.storage = LocalStorage(str(root))     # pull step: set_working_directory(root)
    if not spec.schedules:
        deployment.schedules = []
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_deployment_by_name(f"{flow.name}/{spec.name}")
        except ObjectNotFound:
            existing = None
        if existing is None:
            return deployment.apply()
        client.update_deployment(existing.id, _update_of(deployment))
        kept, made, dropped = sync_schedules(client, existing.id, deployment.schedules)
    if made or dropped:
        echo(f"  {spec.name}: schedules kept {len(kept)}, replaced {len(dropped)} by {len(made)}")
    paused = [s for s in kept if not s.active]
    if existing.paused or paused:
        echo(f"  {spec.name}: kept as the operator left it: "
             + ", ".join((["deployment paused"] if existing.paused else [])
                         + [f"schedule {describe_schedule(s.schedule)} paused" for s in paused]))
    return existing.id


def _update_of(deployment):
    """What ``RunnerDeployment._create`` would send, as a PATCH: every field but ``paused`` and ``schedules``."""
    from prefect.client.schemas.actions import DeploymentUpdate

    pull = deployment.storage.to_pull_step() if deployment.storage else None
    return DeploymentUpdate(
        version=deployment.version, description=deployment.description, tags=deployment.tags,
        parameters=deployment.model_dump(mode="json", include={"parameters"})["parameters"],
        work_pool_name=deployment.work_pool_name, work_queue_name=deployment.work_queue_name,
        job_variables=deployment.job_variables, entrypoint=deployment.entrypoint,
        path=None if deployment.storage else deployment._path,
        pull_steps=pull if isinstance(pull, list) else ([pull] if pull else []),
        parameter_openapi_schema=deployment._parameter_openapi_schema.model_dump(exclude_unset=True),
        enforce_parameter_schema=deployment.enforce_parameter_schema,
    )


def schedule_key(schedule, parameters: dict | None = None) -> tuple:
    """What makes two schedules the same one: kind, expression, timezone, parameters — not an interval's
    anchor (``Interval(...)`` without one anchors at the time it is built, so each apply would differ)."""
    tz = getattr(schedule, "timezone", None) or "UTC"
    params = json.dumps(parameters or {}, sort_keys=True, default=str)
    if getattr(schedule, "cron", None) is not None:
        return ("cron", schedule.cron, tz, getattr(schedule, "day_or", True), params)
    if getattr(schedule, "interval", None) is not None:
        return ("interval", schedule.interval.total_seconds(), tz, params)
    return ("rrule", getattr(schedule, "rrule", repr(schedule)), tz, params)


def sync_schedules(client, deployment_id, wanted) -> tuple[list, list, list]:
    """Keep the server's schedules that the file still describes (untouched: id, ``active``, anchor), delete
    those it no longer does, create the new ones with the file's ``active``. Returns (kept, created, deleted)."""
    have = list(client.read_deployment_schedules(deployment_id))
    kept, missing = [], []
    for w in wanted:
        match = next((h for h in have if schedule_key(h.schedule, h.parameters)
                      == schedule_key(w.schedule, w.parameters)), None)
        if match is None:
            missing.append(w)
        else:
            have.remove(match)
            kept.append(match)
    for h in have:
        client.delete_deployment_schedule(deployment_id, h.id)
    made = client.create_deployment_schedules(deployment_id, [(w.schedule, w.active) for w in missing]) \
        if missing else []
    return kept, made, have


def describe_schedule(schedule) -> str:
    if getattr(schedule, "cron", None):
        return f"cron {schedule.cron!r}"
    if getattr(schedule, "interval", None) is not None:
        return f"every {schedule.interval.total_seconds():g} s"
    return repr(schedule)


# Prefect's zombie detection (https://docs.prefect.io/v3/advanced/detect-zombie-flows, Prefect >= 3.1.8): flow runs
# of deployments emit a heartbeat event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (>= 30); an automation marks
# a run Crashed when none arrives within ZOMBIE_WITHIN_S, so a run whose worker was killed does not stay Running
# (and the failure notifications fire). Serving resources do not wait for this: they follow the run's own S3
# heartbeat (tasks/run/liveness.py).
FLOW_HEARTBEAT_S = 30
ZOMBIE_WITHIN_S = 90
ZOMBIE_ENV = "FORGE_ZOMBIE_WITHIN_S"     # a shorter bound for tests (never below one heartbeat + 5 s)


def zombie_within_s() -> int:
    raw = os.environ.get(ZOMBIE_ENV, "").strip()
    if not raw:
        return ZOMBIE_WITHIN_S
    try:
        return max(FLOW_HEARTBEAT_S + 5, int(float(raw)))
    except (ValueError, OverflowError):     # "inf": int() overflows (a zombie bound that never fires)
        raise DeployError(f"{ZOMBIE_ENV}={raw!r}: seconds, e.g. {ZOMBIE_ENV}=90") from None
ZOMBIE_AUTOMATION = "bedrock-forge: crash zombie flow runs"


def with_flow_heartbeats(job_variables: dict[str, Any]) -> dict[str, Any]:
    """The deployment's job variables with the flow-run heartbeat switched on and the flow run's output not
    piped through the worker (values already set win). ``stream_output: false``: with a pipe, a flow run whose
    worker was killed dies at its next log line (BrokenPipeError → SystemExit) although it was healthy —
    measured in bench/leak.md; its logs still reach the Prefect API and the UI."""
    env = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_S), **(job_variables.get("env") or {})}
    return {"stream_output": False, **job_variables, "env": env}


def zombie_automation():
    """The automation of Prefect's "detect zombie flows" guide, limited to bedrock-forge's flow runs."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    within = zombie_within_s()
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="Marks a bedrock-forge flow run Crashed when its heartbeats stop (a killed worker or machine), "
                    "so the UI tells the truth and failure notifications fire. Installed by `forge deploy --apply`.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "tag",
                                                 "prefect.resource.id": "prefect.tag.bedrock-forge"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"marked Crashed: no heartbeat for {within} s (worker or machine lost); "
                                            "its serving resources are deleted by the run's watchdog or the sweep")],
    )


def upsert_automation(wanted) -> tuple[str, bool]:
    """Create ``wanted`` (a prefect Automation), or update the one of the same name to it: (id, created). The one
    get-or-update of every automation forge deploy installs."""
    from prefect.automations import Automation

    try:
        have = Automation.read(name=wanted.name)
    except ValueError:
        return str(wanted.create().id), True
    wanted.id = have.id
    wanted.update()
    return str(have.id), False


def ensure_zombie_automation() -> tuple[str, bool]:
    """Get-or-create (by name) the zombie automation. Returns (id, created)."""
    return upsert_automation(zombie_automation())


# A crashed customize run resumes by itself (issue 18 part 5, two workers standing in for two machines): when a
# machine is lost its flow runs stop heart-beating, the zombie automation above marks them Crashed, and this one
# starts the rerun-step deployment with the crashed run's forge run id (flow runs are named after it: flows/context.py
# name_flow_run). Any worker picks it up; with FORGE_RUNS_URI set a worker without the run's folder fetches its
# manifest from S3, and every step adopts what exists (the job keeps running on Bedrock meanwhile). Only runs of the
# customize deployment are resumed, once: a crashed resume (an on-call deployment run) is left to on-call. Failed
# runs are not resumed (an error, not a lost machine: the failure notification tells on-call).
RESUME_AUTOMATION = "bedrock-forge: resume crashed customize runs"
CUSTOMIZE_DEPLOYMENT = "customize-model/customize"
RERUN_DEPLOYMENT = "customize-model/rerun-step"


def resume_automation(customize_id: str, rerun_id: str):
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=RESUME_AUTOMATION,
        description="Starts the rerun-step deployment for the forge run of a Crashed customize flow run (a lost "
                    "worker or machine): the run resumes on any worker, adopting its job. Installed by forge deploy.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
            match_related=ResourceSpecification({"prefect.resource.role": "deployment",
                                                 "prefect.resource.id": f"prefect.deployment.{customize_id}"}),
            posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[RunDeployment(source="selected", deployment_id=rerun_id,
                               parameters={"run_id": "{{ flow_run.name }}"})],
    )


def ensure_resume_automation(rerun_id: str | None = None) -> tuple[str | None, bool]:
    """Get-or-update (by name) the resume automation; (None, False) when either deployment is not registered."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            customize_id = str(client.read_deployment_by_name(CUSTOMIZE_DEPLOYMENT).id)
            rerun_id = rerun_id or str(client.read_deployment_by_name(RERUN_DEPLOYMENT).id)
    except ObjectNotFound:
        return None, False
    return upsert_automation(resume_automation(customize_id, rerun_id))


# Failure notifications (issue 18 part 6): a webhook block from FORGE_NOTIFY_WEBHOOK_URL and the automation of
# deployments/automations/notify-on-failure.json. The flow records the step that failed as the flow-run label
# FAILED_STEP_LABEL; the message template reads it (https://docs.prefect.io/v3/automate/events/automations-triggers
# "Sending notifications with automations": flow_run, flow, deployment are in the template's context).
NOTIFY_ENV = "FORGE_NOTIFY_WEBHOOK_URL"
NOTIFY_FILE = REPO_ROOT / "deployments" / "automations" / "notify-on-failure.json"
NOTIFY_BLOCK = "bedrock-forge-on-call"
FAILED_STEP_LABEL = "forge.failed-step"
BLOCK_PLACEHOLDER = "REPLACE_WITH_BLOCK_DOCUMENT_ID"
UI_LINK = "{{ flow_run|ui_url }}"      # resolved by the server's PREFECT_UI_URL, often unset there ("None")


def webhook_block(url: str):
    """A Custom Webhook block POSTing ``{"text": subject + body, "subject", "body"}`` (Slack's incoming-webhook
    shape plus the parts). The URL (a secret for Slack and most chat tools) is kept in the block's ``secrets``,
    which the API and UI show obfuscated, and put in at send time."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    if not url.startswith(("https://", "http://")):
        raise DeployError(f"{NOTIFY_ENV} must be an http(s) URL")
    return CustomWebhookNotificationBlock(
        name="bedrock-forge on-call", url="{{webhookUrl}}", method="POST",
        json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"},
        secrets={"webhookUrl": url})


def notify_automation(block_id, ui_url: str | None, path: Path = NOTIFY_FILE):
    """The automation of ``path`` with the block's id, and the run's UI link spelled out from ``ui_url`` (the
    deploying side's PREFECT_UI_URL) instead of the server's ``ui_url`` filter."""
    from prefect.automations import Automation

    text = path.read_text(encoding="utf-8").replace(BLOCK_PLACEHOLDER, str(block_id))
    body = json.loads(text)
    if ui_url:
        link = f"{ui_url.rstrip('/')}/runs/flow-run/{{{{ flow_run.id }}}}"
        for action in body.get("actions", []):
            for key in ("subject", "body"):
                if isinstance(action.get(key), str):
                    action[key] = action[key].replace(UI_LINK, link)
    return Automation.model_validate(body)


def ensure_notifications(echo=print) -> str | None:
    """With FORGE_NOTIFY_WEBHOOK_URL set: save the webhook block and get-or-update the notify automation (by
    name). Returns the automation id; None (and says so) when the variable is unset."""
    from prefect.settings import PREFECT_UI_URL

    url = os.environ.get(NOTIFY_ENV, "").strip()
    if not url:
        echo(f"notifications: {NOTIFY_ENV} not set, none installed (docs/operations.md, 'Notifications on failure')")
        return None
    block_id = webhook_block(url).save(NOTIFY_BLOCK, overwrite=True)
    ui_url = PREFECT_UI_URL.value()
    wanted = notify_automation(block_id, ui_url)
    auto_id, created = upsert_automation(wanted)
    verb = "created" if created else "updated"
    echo(f"automation {wanted.name!r} (Failed/Crashed runs tagged bedrock-forge → webhook block "
         f"{NOTIFY_BLOCK!r}, UI links to {ui_url or 'the server’s PREFECT_UI_URL'}): {verb} {auto_id}")
    return auto_id


# Bedrock's account quotas as Prefect global concurrency limits (issue 18 part 5; names, defaults and their sources:
# tasks/run/quota.py). Get-or-create: a limit an operator edited (Prefect UI → Concurrency → Global) keeps its value
# on re-apply; only an explicit --training-jobs / --pt-model-units sets it again.
def ensure_quota_limits(regions: list[str] | None = None, *, training_jobs: int | None = None,
                        pt_model_units: int | None = None, echo=print) -> dict[str, tuple[int, str]]:
    """Get-or-create the quota limits of ``regions`` (default: FORGE_QUOTA_REGIONS, else the default Region).
    Values: the explicit arguments, else FORGE_QUOTA_* / the catalog (only for a limit that does not exist yet).
    Returns {name: (limit, "created" | "kept" | "set")}."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    from tasks.run import quota

    try:
        values = quota.default_values()
    except ValueError as err:
        raise DeployError(str(err)) from None
    explicit = {quota.TRAINING_JOBS: training_jobs, quota.PT_MODEL_UNITS: pt_model_units}
    for kind, value in explicit.items():
        if value is not None:
            if value < 0:
                raise DeployError(f"{kind}: a limit must be >= 0, got {value}")
            values[kind] = value
    out: dict[str, tuple[int, str]] = {}
    with get_client(sync_client=True) as client:
        for spec in quota.limit_specs(quota.regions_of(given=regions), values):
            try:
                have = client.read_global_concurrency_limit_by_name(spec.name)
            except ObjectNotFound:
                have = None
            if have is None:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=spec.name, limit=spec.limit))
                out[spec.name] = (spec.limit, "created")
            elif explicit[spec.kind] is not None and have.limit != spec.limit:
                client.update_global_concurrency_limit(spec.name, GlobalConcurrencyLimitUpdate(limit=spec.limit))
                out[spec.name] = (spec.limit, "set")
            else:
                out[spec.name] = (have.limit, "kept")
            limit, verb = out[spec.name]
            echo(f"concurrency limit {spec.name!r} = {limit} ({verb}; {spec.description})")
    return out


def deploy_all(path: str | Path = DEFAULT_FILE, *, pool: str | None = None, root: Path = REPO_ROOT,
               only: list[str] | None = None, echo=print, quota_regions: list[str] | None = None,
               training_jobs: int | None = None, pt_model_units: int | None = None) -> dict[str, str]:
    """``forge deploy --apply``: pool + queue + every deployment. Returns {deployment name: id}."""
    spec = load_deployments_file(path)
    chosen = [d for d in spec.deployments if not only or d.name in only]
    missing = sorted(set(only or []) - {d.name for d in spec.deployments})
    if missing:
        raise DeployError(f"{path}: no deployment named {', '.join(missing)} "
                          f"(have: {', '.join(d.name for d in spec.deployments)})")
    ids: dict[str, str] = {}
    pools = {(pool or d.work_pool.name, d.work_pool.work_queue_name or DEFAULT_QUEUE) for d in chosen}
    for p, q in sorted(pools):
        made_pool, made_queue = ensure_pool(p, q)
        echo(f"work pool {p!r} (process): {'created' if made_pool else 'exists'}; "
             f"queue {q!r}: {'created' if made_queue else 'exists'}")
    for d in chosen:
        dep_id = apply_deployment(d, pool=pool or d.work_pool.name,
                                  queue=d.work_pool.work_queue_name or DEFAULT_QUEUE, root=root, echo=echo)
        ids[d.name] = str(dep_id)
        echo(f"deployment {d.name!r} ← {d.entrypoint} {describe_schedules(d)}: {dep_id}")
    auto_id, created = ensure_zombie_automation()
    echo(f"automation {ZOMBIE_AUTOMATION!r} (Crashed after {zombie_within_s()} s without a flow-run heartbeat): "
         f"{'created' if created else 'updated'} {auto_id}")
    ensure_notifications(echo)
    ensure_quota_limits(quota_regions, training_jobs=training_jobs, pt_model_units=pt_model_units, echo=echo)
    if not only or "rerun-step" in ids:
        auto_id, created = ensure_resume_automation(ids.get("rerun-step"))
        if auto_id:
            echo(f"automation {RESUME_AUTOMATION!r} (a Crashed customize run → the rerun-step deployment with its "
                 f"run id): {'created' if created else 'updated'} {auto_id}")
    return ids


def describe_schedules(d: DeploymentSpec) -> str:
    if not d.schedules:
        return "(on demand)"
    parts = [f"cron {s.cron!r} {s.timezone or 'UTC'}" if s.cron else f"every {s.interval:g} s" for s in d.schedules]
    return "(" + "; ".join(parts) + ")"


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy", help="create the work pool + queue and register the Prefect deployments",
        description="Check deployments/prefect.yaml (entrypoints load, schedules parse, parameters fit); "
                    "with --apply create the process work pool and queue and register every deployment "
                    "on the Prefect API in PREFECT_API_URL.")
    p.add_argument("--pool", default=None, help=f"work pool name (default: the file's, {DEFAULT_POOL})")
    p.add_argument("--apply", action="store_true", help="register on the Prefect server (default: plan only)")
    p.add_argument("--file", default=str(DEFAULT_FILE), help="deployments file (default: deployments/prefect.yaml)")
    p.add_argument("--only", action="append", metavar="NAME", help="only this deployment (repeatable)")
    p.add_argument("--quota-region", action="append", metavar="REGION", dest="quota_regions",
                   help="create the Bedrock quota limits for this Region (repeatable; default $FORGE_QUOTA_REGIONS, "
                        "else the default Region)")
    p.add_argument("--training-jobs", type=int, default=None, metavar="N",
                   help="set bedrock-training-jobs:<region> to N (default: $FORGE_QUOTA_TRAINING_JOBS or AWS's "
                        "default, only when the limit is created; an existing limit keeps its value)")
    p.add_argument("--pt-model-units", type=int, default=None, metavar="N",
                   help="set bedrock-pt-model-units:<region> to N (default: $FORGE_QUOTA_PT_MODEL_UNITS or AWS's "
                        "default, only when the limit is created)")
    p.set_defaults(func=cmd_deploy)


def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        if not args.apply:
            return _plan(args)
        if not os.environ.get("PREFECT_API_URL"):
            print("forge deploy --apply: PREFECT_API_URL is not set. Point it at your Prefect server, e.g.\n"
                  "  export PREFECT_API_URL=http://127.0.0.1:4200/api   (make stack prints it)",
                  file=sys.stderr)
            return 2
        deploy_all(args.file, pool=args.pool, only=args.only, quota_regions=getattr(args, "quota_regions", None),
                   training_jobs=getattr(args, "training_jobs", None),
                   pt_model_units=getattr(args, "pt_model_units", None))
    except DeployError as err:
        print(f"forge deploy: {err}", file=sys.stderr)
        return 2
    print("done: start a worker with `prefect worker start --pool "
          f"{args.pool or DEFAULT_POOL}` (make stack does)")
    return 0


def _plan(args: argparse.Namespace) -> int:
    spec = load_deployments_file(args.file)
    problems = 0
    for d in spec.deployments:
        if args.only and d.name not in args.only:
            continue
        try:
            flow, _ = check_deployment(d)
        except DeployError as err:
            print(f"  PROBLEM {err}", file=sys.stderr)
            problems += 1
            continue
        pool = args.pool or d.work_pool.name
        print(f"  {flow.name}/{d.name}: {d.entrypoint} → pool {pool!r} queue "
              f"{d.work_pool.work_queue_name or DEFAULT_QUEUE!r} {describe_schedules(d)}")
    if problems:
        print(f"{problems} problem(s); nothing registered", file=sys.stderr)
        return 2
    print(f"  notifications: {'a webhook block and the failure automation' if os.environ.get(NOTIFY_ENV) else 'none'}"
          f" ({NOTIFY_ENV} {'set' if os.environ.get(NOTIFY_ENV) else 'not set'})")
    from tasks.run import quota

    try:
        values = quota.default_values()
    except ValueError as err:
        print(f"  PROBLEM {err}", file=sys.stderr)
        return 2
    for kind, flag in ((quota.TRAINING_JOBS, "training_jobs"), (quota.PT_MODEL_UNITS, "pt_model_units")):
        if getattr(args, flag, None) is not None:
            values[kind] = getattr(args, flag)
    specs = quota.limit_specs(quota.regions_of(given=getattr(args, "quota_regions", None)), values)
    print("  quota limits (created when missing; an existing one keeps its value unless set by a flag): "
          + ", ".join(f"{s.name}={s.limit}" for s in specs))
    print("plan ok; run `forge deploy --apply` to register (needs PREFECT_API_URL)")
    return 0
