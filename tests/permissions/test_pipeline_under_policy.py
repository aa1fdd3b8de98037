"""The whole pipeline under exactly the policy `forge permissions` prints, on an emulator that enforces IAM
(issue 20, "Done when").

For every example config, and for the two kinds the examples lack (on-demand serving, reinforcement fine-tuning):

- an identity with exactly the worker policy runs the pipeline, reruns the finished run (`forge rerun RUN_ID`),
  resumes it from a step (on-call), resumes a run whose job is still training (the job is re-tagged), reads a
  finished job's model by name (the poll fallback) and is cancelled (the on_cancellation hook stops its job and
  deletes its serving); a sweeper identity sweeps (stale managed serving deleted, live and unmanaged kept, a stuck
  cancellation's job stopped); a read-only identity runs `forge resources` and the live pre-flight and cannot
  delete; an on-call identity reruns and sweeps. Everything succeeds and the emulator denies nothing;
- every statement is needed: replayed against the decisions those runs produced (the emulator's evaluator on the
  very requests, with the policy minus that statement), at least one request is denied, and it is an action of
  the statement; and every action of a policy was used, but the few named in ``ONLY_ON_FAILURE``;
- removing any one statement makes the step that needs it fail with AccessDenied naming the missing permission,
  read where a person reads it: the run's manifest (the failed step's error), the hook's log, the sweep's report.
  Where the pipeline treats a call as best effort by design, the run does not fail: then the denial in the
  emulator's log and its consequence are checked (``QUIET``). Real removal runs: every worker statement of every
  example config (and the on-demand variant's own); the sweeper's and read-only's for banking77 (the other configs'
  differ in names only: their statements are shown needed by the replay).

Removal runs of a config that serves use ``evaluation.max_examples: 10`` (the policy is asserted equal). All the
configs share one enforcing emulator (one account: the first config creates the bucket, the others find it, as
teams sharing an account do).
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from emulator.iam_enforce import AuthRequest, evaluate
from tests.permissions.emulator_coverage import seen_by_emulator
from tests.support import REPO_ROOT

# ~4 min quiet, 6-9 min under load: outside `make test` (whose budget is 20 min); `make test-permissions` runs it,
# and .ci/run runs that after the suite
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_backend"),
              pytest.mark.skipif(not os.environ.get("FORGE_PERMISSIONS_MATRIX"),
                                 reason="the whole-pipeline permissions matrix: `make test-permissions` "
                                        "(FORGE_PERMISSIONS_MATRIX=1), run by .ci/run after the suite")]

EXAMPLES = sorted(p.name for p in (REPO_ROOT / "examples").glob("*.yaml"))
ON_DEMAND, RFT, CHAMPION = "on-demand-serving", "reinforcement-fine-tuning", "start-from-champion"
JUDGE = "llm-judge"
SMALL_EVAL = {"max_examples": 10, "bootstrap_samples": 100}
# the LLM judge of the judge variant: an on-demand inference profile the catalog (tasks/catalog/catalog.yaml
# inference_profiles) and the emulator (emulator/facts/models.yaml) both know in us-east-1
JUDGE_MODEL = "us.amazon.nova-lite-v1:0"
# actions a successful run never calls: only on a failure path, or when AWS state drifted
ONLY_ON_FAILURE = {
    "s3:AbortMultipartUpload": "s3transfer aborts a failed multipart upload (files of 8 MiB and more)",
    "iam:UpdateAssumeRolePolicy": "only when the role's trust policy drifted from the run's",
    "iam:ListRolePolicies": "only when the role's inline policies are full (LimitExceeded): finished runs' are pruned",
    "iam:DeleteRolePolicy": "the same pruning; and release_run_policy, which the flow does not call (yet)",
}
# HEAD requests: S3 answers 403 with no body (no message to name the permission in), as AWS does
HEAD_ONLY = {"SetUpRunBucket": "HeadBucket", "UploadTrainingData": "HeadObject"}


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
def _raw(name: str) -> dict:
    """An example config as a dict, its data path made absolute (as load_config does)."""
    path = REPO_ROOT / "examples" / name
    raw = yaml.safe_load(path.read_text())
    raw["data"]["source"] = str((path.parent / raw["data"]["source"]).resolve())
    return raw


def raw_configs() -> dict[str, dict]:
    out = {name: _raw(name) for name in EXAMPLES}
    base = out["banking77.yaml"]
    od = copy.deepcopy(base)
    od.update(name="banking77-ondemand", serving={"mode": "on_demand", "max_hours": 1}, evaluation=dict(SMALL_EVAL))
    out[ON_DEMAND] = od
    rft = copy.deepcopy(base)
    rft.update(name="banking77-rft", base_model="amazon.nova-2-lite-v1:0:256k",
               customization_type="REINFORCEMENT_FINE_TUNING", preset=None, evaluation={"enabled": False},
               rft={"grader_lambda_arn": "arn:aws:lambda:us-east-1:111122223333:function:banking77-grader"})
    out[RFT] = rft
    champ = copy.deepcopy(base)     # a retrain that continues from the lineage's champion (issue 19 item 4)
    champ.update(name="banking77-champion", start_from="champion", evaluation=dict(SMALL_EVAL))
    out[CHAMPION] = champ
    judge = copy.deepcopy(base)     # the LLM judge (issue 19 item 5): invokes a judge model, keeps its cache in S3
    judge.update(name="banking77-judge", evaluation={**SMALL_EVAL, "judge": {"model": JUDGE_MODEL, "max_examples": 5}})
    out[JUDGE] = judge
    return out


RAW = raw_configs()


def config_of(raw: dict, seed: int | None = None, **over: Any):
    from tasks.config import PipelineConfig

    d = copy.deepcopy(raw)
    if seed is not None:   # another data seed: a new run key (role, job, names), the same policy
        d["data"]["split"] = {**d["data"].get("split", {}), "seed": 1000 + seed}
    for k, v in over.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    return PipelineConfig.model_validate(d)


def _policy(raw: dict, role: str, account: str = "111122223333"):
    from tasks.permissions import permission_policy

    return permission_policy(config_of(raw), role, account=account)


def _params(role: str, only_new_for_variants: bool = True) -> list[tuple[str, str]]:
    """(config, Sid) of every statement of ``role`` a run on the emulator can need (tests/permissions/
    emulator_coverage.py); a variant only adds the Sids the examples' policies lack."""
    seen: set[str] = set()
    out = []
    for name, raw in RAW.items():
        sids = [s for s in _policy(raw, role).sids() if seen_by_emulator(s)]
        if name in EXAMPLES or not only_new_for_variants:
            out += [(name, s) for s in sids]
            seen |= set(sids)
        else:
            out += [(name, s) for s in sids if s not in seen]
    return out


# ---------------------------------------------------------------------------------------------
# one config's world: identities, the runs made under the exact policies, and their decisions
# ---------------------------------------------------------------------------------------------
@dataclass
class World:
    name: str
    raw: dict
    lab: Any
    runs: Path
    policies: dict[str, Any] = field(default_factory=dict)
    identities: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    custom_model: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    decisions: dict[str, list[dict]] = field(default_factory=dict)
    seeds: int = 0

    @property
    def config(self):
        return config_of(self.raw)

    def serves(self) -> bool:
        from tasks.permissions import serves

        return serves(self.config)

    def next_seed(self) -> int:
        _SEEDS[0] += 1
        return _SEEDS[0]


def _flow(config=None, runs: Path | None = None, **kw):
    from flows.customize import customize_model

    return customize_model(config=config, runs_dir=str(runs), return_state=True, **kw)


def _manifest(runs: Path, run_id: str | None = None) -> dict:
    import json

    paths = sorted(runs.glob(f"{run_id or '*'}/manifest.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(paths[-1].read_text())


def _attempt_text(state, manifest: dict, since: str) -> str:
    """What a person reads of one attempt: the flow's failure and the errors of the steps it ran."""
    parts = [state.message or ""] if not state.is_completed() else []
    for step, rec in (manifest.get("steps") or {}).items():
        if rec.get("error") and (rec.get("started") or "") >= since:
            parts.append(f"{step}: {rec['error']}")
    return " | ".join(parts)


def _arn(world: World, value: str) -> str:
    """An ARN as a manifest records it (account redacted), made whole again."""
    from tasks.aws.redact import unredact

    return unredact(value, world.lab.account)


def _now_iso() -> str:
    from tasks.run.manifest import now_iso

    return now_iso()


def _service_role(world: World, train_uri: str) -> str:
    """A service role of the root's that may read the world's bucket (the run's own role loses its policy once its
    job is done: tasks/iam.py release_run_policy)."""
    import json as _json

    name = f"stuck-jobs-{world.name.split('.')[0]}"[:64]
    iam = world.lab.root("iam")
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except Exception:  # noqa: BLE001 - not made yet
        pass
    bucket = train_uri.split("/")[2]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="data", PolicyDocument=_json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject",
                                                                              "s3:ListBucket"],
                                                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
    return arn


def _stuck_job(world: World, flow_run_id: str) -> str:
    """A managed job still training (fault ``job_outcome: Stuck``), tagged with ``flow_run_id``, made by the root
    from the world's uploaded data and service role (the job a cancelled or a lost flow run leaves)."""
    m = _manifest(world.runs, world.run_id)
    data = m["resources"]["data"]
    u = uuid.uuid4().hex[:10]
    tags = [{"key": "managed-by", "value": "bedrock-forge"}, {"key": "forge-run-key", "value": u[:12]},
            {"key": "forge-flow-run-id", "value": flow_run_id}]
    cfg = world.config
    req = {"jobName": f"stuck-{u}", "customModelName": f"stuck-{u}", "roleArn": _service_role(world, data["train"]),
           "baseModelIdentifier": cfg.base_model, "customizationType": cfg.customization_type.value,
           "trainingDataConfig": {"s3Uri": data["train"]}, "outputDataConfig": {"s3Uri": data["output"]},
           "jobTags": tags, "customModelTags": tags}
    if cfg.distillation is not None:
        req["customizationConfig"] = {"distillationConfig": {"teacherModelConfig": {
            "teacherModelIdentifier": cfg.distillation.teacher_model}}}
    if cfg.rft is not None:
        req["customizationConfig"] = {"rftConfig": {"graderConfig": {"lambdaGrader": {
            "lambdaArn": cfg.rft.grader_lambda_arn}}}}
    world.lab.emu.set_faults([{"job_outcome": "Stuck", "count": 1}])
    try:
        return world.lab.root("bedrock").create_model_customization_job(**req)["jobArn"]
    finally:
        world.lab.emu.set_faults([])


def _job_state(world: World, job_arn: str) -> str:
    return world.lab.root("bedrock").get_model_customization_job(jobIdentifier=job_arn)["status"]


# -- worker scenarios --------------------------------------------------------------------------
def full_run(world: World, ident) -> dict:
    since = _now_iso()
    with world.lab.acting(ident):
        state = _flow(world.config, world.runs)
    m = _manifest(world.runs)
    return {"state": state, "manifest": m, "text": _attempt_text(state, m, since)}


def rerun(world: World, ident) -> dict:
    """`forge rerun RUN_ID` of the finished run: the config comes from its manifest. (Not for RFT: the manifest
    redacts the account id in the config's grader Lambda ARN, which then fails validation; the config is given.)"""
    since = _now_iso()
    with world.lab.acting(ident):
        state = _flow(world.config if world.config.rft else None, world.runs, run_id=world.run_id)
    m = _manifest(world.runs, world.run_id)
    return {"state": state, "manifest": m, "text": _attempt_text(state, m, since)}


def resume(world: World, ident, step: str | None = None) -> dict:
    """On-call: rerun the finished run from a step (``provision`` when the config serves, else ``customize``)."""
    step = step or ("provision" if world.serves() else "customize")
    cfg = config_of(world.raw, evaluation=SMALL_EVAL) if world.serves() else world.config
    since = _now_iso()
    with world.lab.acting(ident):
        state = _flow(cfg, world.runs, run_id=world.run_id, rerun_from=step)
    m = _manifest(world.runs, world.run_id)
    return {"state": state, "manifest": m, "text": _attempt_text(state, m, since)}


def fresh(world: World, ident) -> dict:
    """A new run of the config (another data seed): every create happens again."""
    cfg = config_of(world.raw, seed=world.next_seed(), evaluation=SMALL_EVAL)
    since = _now_iso()
    with world.lab.acting(ident):
        state = _flow(cfg, world.runs)
    m = _manifest(world.runs)
    return {"state": state, "manifest": m, "text": _attempt_text(state, m, since)}


def cancel(world: World, ident, caplog) -> dict:
    """The on_cancellation hook of a flow run that has a training job (and, when the config serves, a PT or a
    deployment): it runs in whatever process finalizes the run, with only the flow run's parameters."""
    from flows.customize import release_and_stop
    from tasks import serve
    from tasks.aws.clients import make_clients
    from tasks.aws.tags import standard_tags

    flow_run_id = str(uuid.uuid4())
    job = _stuck_job(world, flow_run_id)
    cfg = world.config
    endpoint = None
    if world.serves():
        from tasks.run.names import resource_names

        with world.lab.acting(ident):
            clients = make_clients(cfg.aws)
            names = resource_names(cfg, "c" * 12, account=world.lab.account)
            endpoint = serve.provision(clients, cfg, names, world.custom_model,
                                       standard_tags("c" * 12, flow_run_id, {}, expires_in_hours=1))
    flow_run = SimpleNamespace(id=flow_run_id, parameters={"config": cfg.model_dump(mode="json")})
    caplog.clear()
    with caplog.at_level(logging.INFO), world.lab.acting(ident):
        release_and_stop(None, flow_run, SimpleNamespace(name="Cancelling"))
    log = "\n".join(r.getMessage() for r in caplog.records)
    alive = world.lab.alive_serving()
    return {"job": job, "job_state": _job_state(world, job), "endpoint": endpoint,
            "endpoint_alive": bool(endpoint and endpoint.arn in alive), "text": log}


def resumed_job(world: World, ident) -> dict:
    """A run whose job is still training when its flow run ends (job.timeout_hours passes), resumed by `forge
    rerun`: the new flow run adopts the job and re-tags it with its own forge-flow-run-id."""
    from tasks.aws.tags import FLOW_RUN_TAG, bedrock_tags

    cfg = config_of(world.raw, seed=world.next_seed(), job={"timeout_hours": 0.0002, "poll_max_interval_seconds": 0.1})
    world.lab.emu.set_faults([{"job_outcome": "Stuck", "count": 1}])
    with world.lab.acting(ident):
        first = _flow(cfg, world.runs)
        run_id = _manifest(world.runs)["run_id"]
        m1 = _manifest(world.runs, run_id)
        job_arn = _arn(world, m1["resources"]["job"])
        before = bedrock_tags(SimpleNamespace(bedrock=world.lab.root("bedrock")), job_arn)[FLOW_RUN_TAG]
        _flow(cfg, world.runs, run_id=run_id, rerun_from="poll")
    world.lab.emu.set_faults([])
    after = bedrock_tags(SimpleNamespace(bedrock=world.lab.root("bedrock")), job_arn)[FLOW_RUN_TAG]
    world.lab.root("bedrock").stop_model_customization_job(jobIdentifier=job_arn)
    return {"first": first, "job": job_arn, "before": before, "after": after, "retagged": before != after}


def model_by_name(world: World, ident) -> dict:
    """The poll's fallback when GetModelCustomizationJob carries no outputModelArn: GetCustomModel by name."""
    from tasks import customize
    from tasks.aws.clients import make_clients

    m = _manifest(world.runs, world.run_id)
    job = world.lab.root("bedrock").get_model_customization_job(jobIdentifier=_arn(world, m["resources"]["job"]))
    job = {k: v for k, v in job.items() if k != "outputModelArn"}
    with world.lab.acting(ident):
        try:
            out = customize._training_result(make_clients(world.config.aws), job, 1.0)
            return {"model": out.custom_model_arn, "text": ""}
        except Exception as err:  # noqa: BLE001 - the test reads the message
            return {"model": None, "text": str(err)}


# -- sweeper / read-only scenarios ---------------------------------------------------------------
def _serving_to_sweep(world: World) -> dict:
    """As the root: a managed PT and a managed deployment whose run's heartbeat is gone (delete), a managed PT
    whose heartbeat is fresh (keep) and an unmanaged PT (never touched); and a stuck-cancellation job."""
    import json as _json

    from tasks.run.liveness import heartbeat_location
    from tasks.run.names import resource_names

    lab = world.lab
    b, s3 = lab.root("bedrock"), lab.root("s3")
    if not lab.nova_model:           # a managed Nova custom model the scenarios can deploy on demand
        from tests.support.aws import trained

        (world.runs / "nova").mkdir(exist_ok=True)
        with lab.acting(None):
            lab.nova_model = trained(world.runs / "nova", aws={"bucket": f"lab-nova-{lab.account}"})[1]
    names = resource_names(world.config, "s" * 12, account=lab.account)
    gone = "s3://" + "/".join(heartbeat_location(names.bucket, world.config.aws.prefix, uuid.uuid4().hex[:12]))
    bucket, live_key = heartbeat_location(names.bucket, world.config.aws.prefix, uuid.uuid4().hex[:12])
    s3.put_object(Bucket=bucket, Key=live_key, Body=_json.dumps({"owner": "x", "heartbeat": time.time()}).encode())

    def tags(heartbeat: str | None) -> list[dict]:
        t = {"managed-by": "bedrock-forge", "forge-run-key": "s" * 12, "forge-flow-run-id": "gone-run",
             "forge-expires-at": "2099-01-01T00:00:00Z"}
        if heartbeat:
            t["forge-heartbeat"] = heartbeat
        return [{"key": k, "value": v} for k, v in t.items()]

    u = uuid.uuid4().hex[:8]
    model = lab.nova_model
    stale_pt = b.create_provisioned_model_throughput(modelUnits=1, provisionedModelName=f"sweep-stale-{u}",
                                                     modelId=model, tags=tags(gone))["provisionedModelArn"]
    live_pt = b.create_provisioned_model_throughput(modelUnits=1, provisionedModelName=f"sweep-live-{u}",
                                                    modelId=model, tags=tags(f"s3://{bucket}/{live_key}"))[
        "provisionedModelArn"]
    stale_dep = b.create_custom_model_deployment(modelDeploymentName=f"sweep-stale-{u}", modelArn=model,
                                                 tags=tags(gone))["customModelDeploymentArn"]
    unmanaged = b.create_custom_model_deployment(modelDeploymentName=f"not-ours-{u}",
                                                 modelArn=model)["customModelDeploymentArn"]
    return {"stale_pt": stale_pt, "live_pt": live_pt, "stale_dep": stale_dep, "unmanaged": unmanaged}


def sweep(world: World, ident) -> dict:
    """`forge sweep`'s work (flows/sweep.py sweep_now) as ``ident``, and the stuck-cancellation step it runs for a
    flow run whose worker died while cancelling (stop_jobs_of_flow_run)."""
    from flows.sweep import sweep_now
    from tasks.aws.clients import make_clients
    from tasks.config import AwsConfig
    from tasks.customize import stop_jobs_of_flow_run

    made = _serving_to_sweep(world)
    flow_run_id = str(uuid.uuid4())
    job = _stuck_job(world, flow_run_id)
    with world.lab.acting(ident):
        report = sweep_now(region=world.config.aws.region)
        try:
            stopped, stop_error = stop_jobs_of_flow_run(make_clients(AwsConfig(region=world.config.aws.region)),
                                                        flow_run_id), ""
        except Exception as err:  # noqa: BLE001 - the test reads the message
            stopped, stop_error = [], str(err)
    alive = world.lab.alive_serving()
    text = " | ".join(report.errors + report.kept + [stop_error])
    return {**made, "report": report, "alive": alive, "job": job, "stopped": stopped,
            "job_state": _job_state(world, job), "text": text}


def readonly(world: World, ident) -> dict:
    """`forge resources` (live_billing), `forge validate --live` (the pre-flight) and `forge estimate --live` (the
    pre-flight and the Price List) as ``ident``; and a delete, which it must not be able to make."""
    from botocore.exceptions import ClientError

    from tasks.aws.clients import make_clients
    from tasks.config import AwsConfig
    from tasks.estimate import live_prices  # never raises: a denial is a note
    from tasks.preflight import preflight_run
    from tasks.run.names import resource_names
    from tasks.run.store import S3RunStore
    from tasks.teardown import live_billing

    made = _serving_to_sweep(world)
    out: dict[str, Any] = {**made, "rows": None, "preflight": None, "manifests": None, "text": ""}
    bucket = resource_names(world.config, "r" * 12, account=world.lab.account).bucket
    with world.lab.acting(ident):
        clients = make_clients(AwsConfig(region=world.config.aws.region))
        errors = []
        try:   # forge status --runs-uri s3://<bucket>/<prefix>/runs/
            store = S3RunStore.of_run(clients.s3, bucket, world.config.aws.prefix)
            out["manifests"] = {rid: (store.get(rid) or ({}, ""))[0].get("status") for rid in store.run_ids()}
        except Exception as err:  # noqa: BLE001
            errors.append(str(err))
        try:
            out["rows"] = live_billing(clients, now=datetime.now(UTC))
        except Exception as err:  # noqa: BLE001
            errors.append(str(err))
        try:
            out["preflight"] = preflight_run(make_clients(world.config.aws), world.config)
        except Exception as err:  # noqa: BLE001
            errors.append(str(err))
        out["prices"] = live_prices(make_clients(world.config.aws).pricing, world.config)
        errors += [n for n in out["prices"].notes if "not read" in n]
        try:
            clients.bedrock.delete_provisioned_model_throughput(provisionedModelId=made["stale_pt"])
            out["deleted"] = True
        except ClientError as err:
            out["deleted"] = False
            out["delete_error"] = str(err)
    out["text"] = " | ".join(errors + [r["sweep"] for r in out["rows"] or []])
    return out


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(iam_lab):
    """The module's enforcing emulator: one account, shared by the configs as teams share one (the run bucket is
    the account's: the first config creates it, the others find it)."""
    return iam_lab


@pytest.fixture
def quick_retries(monkeypatch):
    """Shorter waits where the pipeline retries on purpose (a delete for 60 s; job creation while a new role
    propagates, which an AccessDenied naming a role looks like)."""
    from tasks import customize, teardown

    monkeypatch.setattr(teardown, "DELETE_RETRY_S", 1.0)
    monkeypatch.setattr(customize, "ROLE_WAIT_S", 1.0)
    monkeypatch.setattr(customize, "_sleep", lambda s: time.sleep(min(s, 0.05)))
    return True


_WORLDS: dict[str, World] = {}
_SEEDS = [0]            # data seeds of fresh runs: never the same twice in the module


@pytest.fixture
def world(request, lab, tmp_path_factory, caplog, quick_retries):
    """The world of one config, built once: its identities and the runs made under the exact policies."""
    name = request.param
    if name in _WORLDS and _WORLDS[name].lab is lab:
        return _WORLDS[name]
    w = World(name=name, raw=RAW[name], lab=lab, runs=tmp_path_factory.mktemp(f"runs-{len(_WORLDS)}"))
    for role in ("worker", "sweeper", "readonly", "oncall"):
        w.policies[role] = _policy(w.raw, role, lab.account)
        w.identities[role] = lab.identity(role, w.policies[role].documents())
    wk, r = w.identities["worker"], w.results
    r["full"] = full_run(w, wk)
    w.run_id = r["full"]["manifest"]["run_id"]
    w.custom_model = _arn(w, r["full"]["manifest"]["resources"]["custom_model"])
    if not lab.nova_model and w.config.base_model.startswith("amazon.nova-micro") and w.serves():
        lab.nova_model = w.custom_model           # a managed Nova custom model the sweep scenarios serve
    r["rerun"] = rerun(w, wk)
    if name != RFT:           # RFT only adds its job's shape: the serving paths are the other configs'
        r["resume"] = resume(w, wk)
        r["model_by_name"] = model_by_name(w, wk)
    r["cancel"] = cancel(w, wk, caplog)
    lab.cleanup()
    if name in EXAMPLES:      # a variant's sweeper / read-only / on-call policies differ from an example's by names
        r["resumed_job"] = resumed_job(w, wk)
        r["sweep"] = sweep(w, w.identities["sweeper"])
        lab.cleanup()
        r["readonly"] = readonly(w, w.identities["readonly"])
        lab.cleanup()
        r["oncall_rerun"] = rerun(w, w.identities["oncall"])
        r["oncall_sweep"] = sweep(w, w.identities["oncall"])
        lab.cleanup()
    for role in ("worker", "sweeper", "readonly", "oncall"):
        w.decisions[role] = lab.decisions(w.identities[role].arn)
    _WORLDS[name] = w
    return w


# ---------------------------------------------------------------------------------------------
# everything succeeds under the exact policies
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("world", list(RAW), indirect=True)
def test_worker_policy_runs_the_whole_pipeline_rerun_resume_and_cancel(world):
    r = world.results
    m = r["full"]["manifest"]
    assert m["status"] == "succeeded", r["full"]["text"]
    steps = m["steps"]
    if world.serves():
        assert all(steps[s]["status"] == "completed" for s in ("provision", "evaluate", "teardown")), steps
    else:
        assert all(steps[s]["status"] == "skipped" for s in ("provision", "evaluate", "teardown")), steps
    assert r["rerun"]["manifest"]["status"] == "succeeded", r["rerun"]["text"]
    c = r["cancel"]
    assert c["job_state"] in ("Stopping", "Stopped"), c
    assert not c["endpoint_alive"], c
    assert world.lab.denied(world.identities["worker"].arn) == [], "nothing the worker did was denied"
    if world.name == RFT:
        return
    assert r["resume"]["manifest"]["status"] == "succeeded", r["resume"]["text"]
    if world.name in EXAMPLES:
        assert r["resumed_job"]["retagged"], "the resumed run re-tags the job it adopted with its own flow run id"
    assert r["model_by_name"]["model"] == world.custom_model, r["model_by_name"]["text"]


def _denied_except_unmanaged_tags(world: World, role: str, unmanaged: set[str]) -> list[dict]:
    """Denials of ``role`` but the tag reads of resources that are not ours (denied by design: never read)."""
    return [d for d in world.lab.denied(world.identities[role].arn)
            if not (d["action"] == "bedrock:ListTagsForResource" and d["resource"] in unmanaged)]


@pytest.mark.parametrize("world", EXAMPLES, indirect=True)
def test_sweeper_policy_deletes_only_managed_stale_serving(world):
    s = world.results["sweep"]
    rep = s["report"]
    assert set(rep.deleted) == {s["stale_pt"], s["stale_dep"]}, rep
    assert s["live_pt"] in s["alive"] and s["unmanaged"] in s["alive"], s["alive"]
    assert s["unmanaged"] in rep.skipped_unmanaged
    assert not rep.errors, rep.errors
    assert s["stopped"] == [s["job"]] and s["job_state"] in ("Stopping", "Stopped"), s
    assert _denied_except_unmanaged_tags(world, "sweeper", {s["unmanaged"]}) == []


@pytest.mark.parametrize("world", EXAMPLES, indirect=True)
def test_readonly_policy_lists_and_preflights_but_cannot_delete(world):
    r = world.results["readonly"]
    assert r["preflight"] is not None and r["preflight"].ok, r["text"]
    assert r["manifests"] and r["manifests"].get(world.run_id) == "succeeded", r["manifests"]
    arns = {row["arn"] for row in r["rows"]}
    assert {r["stale_pt"], r["live_pt"], r["stale_dep"]} <= arns and r["unmanaged"] not in arns, r["rows"]
    assert r["deleted"] is False and "not authorized to perform: bedrock:DeleteProvisionedModelThroughput" in \
        r["delete_error"]
    denied = _denied_except_unmanaged_tags(world, "readonly", {r["unmanaged"]})
    assert [d["action"] for d in denied] == ["bedrock:DeleteProvisionedModelThroughput"], denied


@pytest.mark.parametrize("world", EXAMPLES, indirect=True)
def test_oncall_policy_reruns_and_sweeps(world):
    r = world.results
    assert r["oncall_rerun"]["manifest"]["status"] == "succeeded", r["oncall_rerun"]["text"]
    s = r["oncall_sweep"]
    assert set(s["report"].deleted) == {s["stale_pt"], s["stale_dep"]} and not s["report"].errors, s["report"]
    assert _denied_except_unmanaged_tags(world, "oncall", {s["unmanaged"]}) == []


# ---------------------------------------------------------------------------------------------
# every statement is needed, every action used
# ---------------------------------------------------------------------------------------------
def _replay_params() -> list[tuple[str, str]]:
    return [(name, role) for name in RAW for role in ("worker", "sweeper", "readonly", "oncall")
            if role == "worker" or name in EXAMPLES]


@pytest.mark.parametrize("world, role", _replay_params(), indirect=["world"])
def test_every_statement_is_needed_by_a_request_the_runs_made(world, role):
    """Replay: the requests the runs made (action, resource, condition keys, as the emulator judged them), against
    the policy minus one statement at a time. On-call's requests are a worker's and a sweeper's."""
    policy = world.policies[role]
    # every request made in the account by any config's identities: the bucket is the account's (the first
    # config creates it, the others find it) and an on-call engineer makes a worker's and a sweeper's requests
    decisions = [d for w in _WORLDS.values() for r in w.decisions for d in w.decisions[r] if d["allowed"]]
    requests = [AuthRequest(d["action"], d["resource"], d["context"]) for d in decisions
                if d["action"] != "sts:GetCallerIdentity"]
    full = policy.document()
    requests = [q for q in requests if evaluate([("p", full)], q).allowed]
    assert requests, "the scenarios made requests this policy allows"
    unused = []
    for st in policy.statements:
        if not seen_by_emulator(st.sid):     # a call a service makes for the caller: never made on the emulator
            continue
        alone = {"Version": "2012-10-17", "Statement": [st.to_iam()]}
        mine = [q for q in requests if evaluate([("p", alone)], q).allowed]   # only these can change without it
        without = policy.document(without=st.sid)
        denied = [q for q in mine if not evaluate([("p", without)], q).allowed]
        assert denied, f"{role}/{st.sid}: no request of the runs needs it"
        assert {q.action for q in denied} <= set(st.actions), (st.sid, {q.action for q in denied})
        unused += [f"{st.sid}: {a}" for a in st.actions
                   if a not in ONLY_ON_FAILURE and not any(q.action == a for q in mine)]
    assert not unused, f"{role}: actions no run used: {unused}"


# ---------------------------------------------------------------------------------------------
# removing one statement fails the step that needs it
# ---------------------------------------------------------------------------------------------
# where each worker statement is exercised: a fresh run, a resume from provision, the cancel hook, ...
WORKER_SCENARIO = {
    "ReadFoundationModels": "fresh", "SetUpRunBucket": "fresh", "UploadTrainingData": "fresh",
    "ReadServiceRole": "fresh", "CreateServiceRole": "fresh", "WriteRolePolicy": "fresh",
    "PassServiceRole": "fresh", "ListJobs": "fresh", "StartJob": "fresh", "ReadManagedJobs": "fresh",
    "ReadRunOutputs": "fresh", "RetagResumedJob": "resumed_job", "StopManagedJobs": "cancel",
    "ReadManagedModels": "model_by_name", "ListServing": "resume", "CreateThroughput": "resume",
    "ManageThroughput": "resume", "InvokeThroughput": "resume", "CreateDeployment": "resume",
    "ManageDeployment": "resume", "InvokeDeployment": "resume",
    "InvokeBaseModel": "resume", "WriteServingLeases": "resume", "WriteRunRecords": "fresh",
    "WriteReports": "resume",
    "ReadRegistry": "fresh",      # start_from champion: the champion is read before the job is created
    # the judge: a fresh run (a new run key, so no cached verdict: a resume from provision finds them all cached
    # and calls nothing)
    "InvokeJudgeModel": "fresh", "ReadWriteJudgeCache": "fresh",
    "ReadPrices": "fresh",        # the spend guard's Price List read
}
# a copy for people, not the run's result: without it the run goes on, its report is not in S3 (said in the log)
REPORT_ONLY = {"WriteReports"}
# a judge call that fails is recorded, not raised (tasks/evaluation/judge.py: an "error" outcome, the summary's
# errors and first_errors): the run goes on with no judged example; the manifest's judge summary names the denial
JUDGE_RECORDED = {"InvokeJudgeModel"}
# a price is never worth failing a run over (tasks/estimate.py live_prices): without it the spend guard prices from the
# config and the catalog, and the recorded estimate's notes name the denied permission
PRICES_NOTED = {"ReadPrices"}
# best effort by design: the step goes on; the denial and its consequence are checked instead
QUIET = {"RetagResumedJob": "the job keeps the old flow run's tag: cancelling the resumed flow run cannot stop it",
         "ReadThroughputTags@sweeper": "a PT whose tags cannot be read is treated as not ours: kept",
         "ReadDeploymentTags@sweeper": "a deployment whose tags cannot be read is treated as not ours: kept",
         "ReadThroughputTags@readonly": "a PT whose tags cannot be read is not listed",
         "ReadDeploymentTags@readonly": "a deployment whose tags cannot be read is not listed",
         "ReadManagedJobTags@sweeper": "a stuck cancellation's job whose tags cannot be read is not stopped"}


def _names_permission(st, text: str) -> bool:
    return "AccessDenied" in text and any(f"not authorized to perform: {a} " in text for a in st.actions)


def _clean(lab) -> None:
    lab.cleanup()
    lab.emu.set_faults([])


@pytest.mark.parametrize("world, sid", _params("worker"), indirect=["world"])
def test_removing_a_worker_statement_fails_the_step_that_needs_it(world, sid, caplog):
    policy, ident, lab = world.policies["worker"], world.identities["worker"], world.lab
    st = policy.statement(sid)
    scenario = WORKER_SCENARIO[sid]
    if scenario == "resume" and not world.serves():
        scenario = "cancel"        # a config that never serves lists serving only in the cleanup hooks
    assert _policy(world.raw, "worker", lab.account) == \
        _policy(config_of(world.raw, evaluation=SMALL_EVAL).model_dump(mode="json"), "worker", lab.account)
    lab.set_policy(ident, [policy.document(without=sid)])
    try:
        if scenario == "cancel":
            out = cancel(world, ident, caplog)
        else:
            out = {"fresh": fresh, "resume": resume, "resumed_job": resumed_job,
                   "model_by_name": model_by_name}[scenario](world, ident)
    finally:
        lab.set_policy(ident, policy.documents())
        _clean(lab)
    denied = lab.denied(ident.arn)
    assert any(d["action"] in st.actions for d in denied), f"{sid}: the emulator denied nothing of it"
    if sid in QUIET:
        assert out["retagged"] is False, "without it the resumed run could not re-tag its job"
        return
    if sid in JUDGE_RECORDED:
        judge = out["manifest"].get("judge") or {}
        assert judge.get("calls") and judge.get("errors") == judge["calls"], judge
        assert _names_permission(st, " | ".join(judge.get("first_errors") or [])), judge
        assert all(p["n_counted"] == 0 for p in judge["pairs"].values()), judge
        assert out["manifest"]["steps"]["evaluate"]["status"] == "completed", out["manifest"]["steps"]
        return
    if sid in PRICES_NOTED:
        notes = ((out["manifest"].get("cost") or {}).get("estimate") or {}).get("notes") or []
        assert _names_permission(st, " | ".join(notes)), notes
        steps = out["manifest"]["steps"]
        assert (steps.get("guard") or {}).get("status") != "failed" and "upload" in steps, steps   # it went on
        return
    if sid in REPORT_ONLY:
        report = out["manifest"].get("report") or {}
        assert report.get("report_md") and not [k for k in report if k.endswith("_s3")], report
        assert out["manifest"]["steps"]["evaluate"]["status"] == "completed", out["manifest"]["steps"]
        return
    text = out.get("text", "")
    if sid in HEAD_ONLY:
        assert HEAD_ONLY[sid] in text or "cannot use it" in text, text
        assert out["manifest"]["steps"]["upload"]["status"] == "failed", out["manifest"]["steps"]
        return
    assert _names_permission(st, text), f"{sid} ({scenario}): {text[:1500]}"
    if scenario in ("fresh", "resume"):
        assert out["manifest"]["status"] != "succeeded" or out["manifest"]["steps"]["teardown"]["status"] == \
            "failed", out["manifest"]["steps"]


# denials a scenario makes by design, whatever the policy: the read-only scenario always tries one delete
BY_DESIGN_DENIED = {"sweeper": set(), "readonly": {"bedrock:DeleteProvisionedModelThroughput"}}


def _quiet_sweeper(sid: str, out: dict) -> None:
    survivor = {"ReadThroughputTags": "stale_pt", "ReadDeploymentTags": "stale_dep"}.get(sid)
    if survivor:
        assert out[survivor] in out["alive"], "treated as not ours: kept"
    else:
        assert out["stopped"] == [] and out["job_state"] == "InProgress", out


def _quiet_readonly(sid: str, out: dict) -> None:
    listed = {row["arn"] for row in out["rows"] or []}
    assert not listed & {out["stale_pt"], out["live_pt"], out["stale_dep"]} or \
        (sid == "ReadThroughputTags" and out["stale_dep"] in listed) or \
        (sid == "ReadDeploymentTags" and out["stale_pt"] in listed), listed


# role -> (its scenario, what a QUIET removal leaves to check)
ROLE_SCENARIO = {"sweeper": (sweep, _quiet_sweeper), "readonly": (readonly, _quiet_readonly)}


@pytest.mark.parametrize("world, role, sid", [(name, role, sid) for role in ROLE_SCENARIO
                                              for name, sid in _params(role) if name == "banking77.yaml"],
                         indirect=["world"])
def test_removing_a_sweeper_or_readonly_statement_fails_visibly(world, role, sid):
    """The sweep (stale serving, a stuck cancellation's job) or `forge resources` / the pre-flight, as ``role``
    without one statement: the denial is in the emulator's log and the report names the missing permission, or,
    for a best-effort read (QUIET), its consequence shows."""
    policy, ident, lab = world.policies[role], world.identities[role], world.lab
    st = policy.statement(sid)
    scenario, quiet = ROLE_SCENARIO[role]
    lab.set_policy(ident, [policy.document(without=sid)])
    try:
        out = scenario(world, ident)
    finally:
        lab.set_policy(ident, policy.documents())
        _clean(lab)
    denied = [d for d in lab.denied(ident.arn) if d["action"] not in BY_DESIGN_DENIED[role]]
    assert any(d["action"] in st.actions for d in denied), f"{sid}: the emulator denied nothing of it"
    if f"{sid}@{role}" in QUIET:
        quiet(sid, out)
        return
    assert _names_permission(st, out["text"]), f"{sid}: {out['text'][:1500]}"


# ---------------------------------------------------------------------------------------------
# what the enforcing emulator found in the pipeline (reported; strict: they fail once fixed, to be flipped)
# ---------------------------------------------------------------------------------------------
def _without_action(policy, sid: str, action: str) -> dict:
    doc = policy.document()
    for st in doc["Statement"]:
        if st["Sid"] == sid:
            st["Action"] = [a for a in st["Action"] if a != action]
    return doc


@pytest.mark.parametrize("world", ["banking77.yaml"], indirect=True)
def test_a_run_that_cannot_read_its_pts_tags_does_not_succeed_over_it(world):
    policy, ident, lab = world.policies["worker"], world.identities["worker"], world.lab
    lab.set_policy(ident, [_without_action(policy, "ManageThroughput", "bedrock:ListTagsForResource")])
    try:
        out = resume(world, ident)
        alive = lab.alive_serving()
    finally:
        lab.set_policy(ident, policy.documents())
        _clean(lab)
    assert alive, "the PT outlived the run (the precondition of this case)"
    assert out["manifest"]["status"] != "succeeded", "a run never reports success over a live billing resource"


@pytest.mark.parametrize("world", ["banking77.yaml"], indirect=True)
def test_a_denied_pass_role_fails_job_creation_at_once(world, monkeypatch):
    from tasks import customize

    monkeypatch.setattr(customize, "ROLE_WAIT_S", 3.0)
    policy, ident, lab = world.policies["worker"], world.identities["worker"], world.lab
    lab.set_policy(ident, [policy.document(without="PassServiceRole")])
    t0 = time.time()      # the module's world is shared: earlier tests' denials are in the log too
    try:
        fresh(world, ident)
    finally:
        lab.set_policy(ident, policy.documents())
        _clean(lab)
    tries = [d for d in lab.denied(ident.arn) if d["action"] == "iam:PassRole" and d["t"] >= t0]
    assert len(tries) == 1, f"CreateModelCustomizationJob tried {len(tries)} times against a permanent denial"


@pytest.mark.parametrize("world", [JUDGE], indirect=True)
def test_a_run_that_cannot_write_its_judge_cache_keeps_its_verdicts_and_says_so(world):
    """ReadWriteJudgeCache without s3:PutObject (its read works): the judge runs (its calls are paid for), then
    the cache write is denied. The verdicts are in hand, so the run keeps them: it finishes, the serving is gone,
    and the judge summary records the cache error naming s3:PutObject (a rerun would ask the judge again)."""
    policy, ident, lab = world.policies["worker"], world.identities["worker"], world.lab
    st = policy.statement("ReadWriteJudgeCache")
    lab.set_policy(ident, [_without_action(policy, "ReadWriteJudgeCache", "s3:PutObject")])
    t0 = time.time()      # the module's world is shared: earlier tests' decisions are in the log too
    try:
        out = fresh(world, ident)
        alive = lab.alive_serving()
    finally:
        lab.set_policy(ident, policy.documents())
        _clean(lab)
    mine = [d for d in lab.decisions(ident.arn) if d["t"] >= t0]
    denied = [d for d in mine if not d["allowed"]]
    cache = [q for q in mine if evaluate([("p", {"Version": "2012-10-17", "Statement": [st.to_iam()]})],
                                         AuthRequest(q["action"], q["resource"], q["context"])).allowed]
    assert [(d["action"], d["resource"]) for d in denied] == [("s3:PutObject", cache[-1]["resource"])], denied
    assert any(d["action"] == "s3:GetObject" and d["allowed"] for d in cache), "the cache was read"
    assert any(d["action"] == "bedrock:InvokeModel" and d["allowed"] and JUDGE_MODEL in d["resource"]
               for d in mine), "the judge was called before the put"
    m = out["manifest"]
    assert m["status"] == "succeeded" and m["steps"]["evaluate"]["status"] == "completed", m["steps"]
    assert m["steps"]["teardown"]["status"] == "completed" and not alive, (m["steps"], alive)
    judge = m.get("judge") or {}
    assert judge.get("calls") and judge["pairs"]["base"]["n_judged"], judge
    assert "s3:PutObject" in judge.get("cache_error", "") or "AccessDenied" in judge.get("cache_error", ""), judge
