"""The fault matrix (issue 9, item 1): every scenario runs the real flow on a private local emulator,
injects one fault, then recovers the way on-call would (rerun), then runs the sweeper, and judges the
result from the emulator's ledger:

- leaked: managed provisioned throughputs / deployments still alive after run + rerun + sweep;
- duplicates: two jobs under one deterministic name, a new job attempt for a run key while an earlier
  attempt had not ended Failed/Stopped, or two serving resources of one name alive at the same time;
- data intact: the sha256 of the train/validation/test objects in S3 equals the prepared files';
- the failure message (manifest ``error`` / step error) names the cause.

``SCENARIOS`` holds one ``Scenario`` per row; ``run_scenario(name, work)`` runs one (fault phase, rerun,
sweep) and returns its ``Outcome``. ``tests/flows/test_fault_matrix.py`` calls it for each row and
``bench/faults.py`` runs them all and writes ``bench/faults.md``: the same code for both.

The judge (``duplicates``, ``injected``, ``calls``, ``alive_serving``) is ``scenarios.ledger``; the
plumbing (``run_flow``, ``data_intact``, ``small_config`` ...) is ``scenarios.harness``. Both are
re-exported here so a caller needs this one module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scenarios.harness import (
    DUMMY_ENV,
    REPO,
    WorkerLost,
    api_url,
    aws_env,
    data_intact,
    failure_text,
    first_unfinished,
    manifest_of,
    manifests,
    patched,
    pipeline_config,
    run_flow,
    small_config,
    wait_for,
)
from scenarios.ledger import JOB_TYPE, SERVING_TYPES, alive_serving, calls, duplicates, injected

__all__ = ["JOB_TYPE", "SCENARIOS", "SERVING_TYPES", "Ctx", "Outcome", "Scenario", "WorkerLost", "alive_serving",
           "production_alive",
           "aws_env", "calls", "data_intact", "duplicates", "failure_text", "injected", "manifest_of", "run_flow",
           "run_scenario", "small_config"]


# --------------------------------------------------------------------------------------------- scenario
@dataclass
class Ctx:
    """What a scenario's fault phase hands to the common rerun + sweep + judgement."""

    emu: Any
    runs: Path
    work: Path
    config: dict
    run_id: str | None = None
    first_status: str = ""            # the faulty run's manifest status (or what happened to the process)
    message: str = ""                 # the failure message people read
    rerun_from: str | None = "auto"   # "auto": the first unfinished step (`forge rerun RUN_ID`); None: a new run
    sweep_first: bool = False         # SIGKILL: the sweeper is what cleans, before anyone reruns
    notes: list[str] = field(default_factory=list)
    recover: Callable[[], None] | None = None   # undo the fault (clear rules, unpatch) before the rerun
    foreign: list[str] = field(default_factory=list)  # pt-quota: ARNs of PTs someone else made (never ours)
    hook_effect: list[str] | None = None   # cancellation: job states / PTs alive right after the hook ran
    exit_code: int | None = None           # a `forge run` subprocess's exit code
    cleaned_by: str | None = None          # set by the fault phase when it saw who deleted the serving
    sweep_stale_s: float | None = None     # the sweeps' stale bound (None: the default users run)


@dataclass
class Outcome:
    scenario: str
    first_status: str
    rerun_status: str
    message: str
    leaked: list[str]
    duplicates: list[str]
    cleaned_by: str
    time_to_clean: float | None
    data_ok: bool
    data_note: str
    seconds: float
    notes: list[str]
    ledger: dict = field(repr=False, default_factory=dict)
    hook_effect: list[str] | None = None
    exit_code: int | None = None

    @property
    def outcome(self) -> str:
        return f"{self.first_status} → rerun {self.rerun_status}"


# each scenario's fault phase: (ctx) -> None; sets ctx.run_id / first_status / message
def _read_first_run(ctx: Ctx, status: str = "{status}") -> dict:
    """Record the faulty run from its manifest (the newest): run id, ``status`` (``{status}`` = the manifest's),
    the failure message people read. Returns the manifest."""
    m = manifest_of(ctx.runs)
    ctx.run_id, ctx.first_status, ctx.message = m["run_id"], status.format(status=m["status"]), failure_text(m)
    return m


def _plain_run(ctx: Ctx) -> None:
    state = run_flow(ctx.config, ctx.runs)
    _read_first_run(ctx)
    if not getattr(state, "is_completed", lambda: False)():
        ctx.notes.append(f"state {getattr(state, 'name', type(state).__name__)}")


def _faults(rules: list[dict]) -> Callable[[Ctx], None]:
    def fault(ctx: Ctx) -> None:
        ctx.emu.set_faults(rules)
        ctx.recover = lambda: ctx.emu.set_faults([])
        try:
            _plain_run(ctx)
        finally:
            ctx.emu.set_faults([])
        hit = injected(ctx.emu.ledger())
        if hit:
            ctx.notes.append(f"{len(hit)} injected error(s) absorbed" if ctx.first_status == "succeeded"
                             else f"{len(hit)} injected error(s)")
    return fault


BEDROCK_OPS = ["ListModelCustomizationJobs", "CreateModelCustomizationJob", "GetModelCustomizationJob",
               "ListProvisionedModelThroughputs", "CreateProvisionedModelThroughput",
               "GetProvisionedModelThroughput", "DeleteProvisionedModelThroughput", "ListTagsForResource",
               "ListCustomModelDeployments", "GetCustomModel", "InvokeModel"]


def sc_throttling(ctx: Ctx) -> None:
    _faults([{"operation": op, "error": "ThrottlingException", "rate": 0.3} for op in BEDROCK_OPS])(ctx)


def sc_5xx(ctx: Ctx) -> None:
    # bursts longer than botocore's attempts (aws.max_attempts=2) on the creates: Prefect's task retries take over
    _faults([{"operation": "CreateModelCustomizationJob", "error": "ServiceUnavailableException", "count": 3},
             {"operation": "GetModelCustomizationJob", "error": "InternalServerException", "count": 4},
             {"operation": "CreateProvisionedModelThroughput", "error": "InternalServerException", "count": 3},
             {"operation": "GetProvisionedModelThroughput", "error": "ServiceUnavailableException", "count": 3},
             {"operation": "InvokeModel", "error": "ServiceUnavailableException", "count": 6},
             {"operation": "PutObject", "error": "InternalServerException", "count": 2}])(ctx)


def sc_read_timeout(ctx: Ctx) -> None:
    # latency above aws.read_timeout (1 s): the client gives up, the server still acts; the retry carries the
    # same clientRequestToken, so a create whose answer was lost is not duplicated
    _faults([{"operation": "CreateModelCustomizationJob", "latency_ms": 1500, "count": 1},
             {"operation": "GetModelCustomizationJob", "latency_ms": 1500, "count": 1},
             {"operation": "CreateProvisionedModelThroughput", "latency_ms": 1500, "count": 1},
             {"operation": "InvokeModel", "latency_ms": 1500, "count": 2}])(ctx)


def sc_job_failed(ctx: Ctx) -> None:
    _faults([{"job_outcome": "Failed", "count": 1}])(ctx)
    ctx.rerun_from = "customize"   # what the message tells on-call to do: a new attempt


def sc_job_stuck(ctx: Ctx) -> None:
    _faults([{"job_outcome": "Stuck", "count": 1}])(ctx)
    ctx.rerun_from = "customize"   # the stuck job was stopped (job.stop_on_timeout): a new attempt


def sc_pt_failed(ctx: Ctx) -> None:
    _faults([{"pt_outcome": "Failed", "count": 1}])(ctx)


def _custom_model(ctx: Ctx, name: str) -> str:
    """A finished custom model of another run, made directly with the stage functions (outside any flow)."""
    from tasks import customize as cz
    from tasks import upload
    from tasks.aws.clients import account_id, make_clients
    from tasks.aws.tags import standard_tags
    from tasks.iam import ensure_role
    from tasks.prepare import prepare
    from tasks.run.names import compute_run_key, resource_names

    cfg = pipeline_config(small_config(name))
    clients = make_clients(cfg.aws)
    prepared = prepare(cfg, ctx.work / f"{name}-prepared")
    key = compute_run_key(cfg, prepared.content_hash)
    names = resource_names(cfg, key, account=account_id(clients))
    tags = standard_tags(key, "outside", {})
    upload.ensure_bucket(clients, names.bucket, cfg.aws.region, None)
    up = upload.upload(clients, prepared, names.bucket, cfg.aws.prefix, key)
    role = ensure_role(clients, cfg, names, up, account_id(clients), tags)
    job = cz.start_job(clients, cfg, names, role.role_arn, up, tags)
    return cz.wait_for_job(clients, job.job_arn, timeout_s=120, max_interval_s=0.5).custom_model_arn


def sc_pt_quota(ctx: Ctx) -> None:
    """The account's 2 no-commitment model units are taken by PTs someone else made (no bedrock-forge tag)."""
    import boto3

    bedrock = boto3.client("bedrock")
    model = _custom_model(ctx, "fault-quota-other")
    foreign = [bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName=f"someone-else-{i}",
                                                           modelId=model)["provisionedModelArn"] for i in (1, 2)]
    _plain_run(ctx)

    def recover() -> None:   # on-call frees one unit by hand; the other foreign PT stays for the sweep to skip
        bedrock.delete_provisioned_model_throughput(provisionedModelId=foreign[0])
    ctx.recover = recover
    ctx.notes.append("2 foreign PTs took the quota; 1 deleted by hand before the rerun")
    ctx.foreign = foreign


def sc_eval_exception(ctx: Ctx) -> None:
    import tasks.evaluate as ev

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("evaluation exploded (injected)")

    with patched(ev, "collect_outputs", broken):
        _plain_run(ctx)


def _flow_in_thread(ctx: Ctx) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["state"] = run_flow(ctx.config, ctx.runs)
        except BaseException as err:  # noqa: BLE001 - reported by the scenario
            box["error"] = err

    t = threading.Thread(target=target, name="flow-under-test", daemon=True)
    t.start()
    return t, box


def _flow_run(flow_run_id: str):
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as c:
        return c.read_flow_run(UUID(flow_run_id))


def _tagged_flow_run_id(ledger: dict, typ: str | tuple[str, ...]) -> str | None:
    types = (typ,) if isinstance(typ, str) else typ
    for r in ledger["resources"].values():
        tags = r.get("tags") or {}
        if r["type"] in types and r["state"] not in ("Deleted",) and tags.get("managed-by") == "bedrock-forge":
            return tags.get("forge-flow-run-id")
    return None


def _cancel(ctx: Ctx, when: str) -> None:
    """Prefect cancellation as a process worker delivers it: the on_cancellation hook runs in another process
    with only the flow run (read back from the API), while the run is still going."""
    from prefect.states import Cancelling

    from flows.customize import customize_model, release_and_stop

    if when == "poll":
        ctx.emu.set_faults([{"job_outcome": "Stuck", "count": 1}])
        ready = lambda: _tagged_flow_run_id(ctx.emu.ledger(), JOB_TYPE)  # noqa: E731
    else:
        ctx.emu.set_faults([{"operation": "InvokeModel", "latency_ms": 300}])
        ready = lambda: calls(ctx.emu.ledger(), "InvokeModel") and _tagged_flow_run_id(  # noqa: E731
            ctx.emu.ledger(), SERVING_TYPES)
    t, box = _flow_in_thread(ctx)
    try:
        wait_for(lambda: ready() or not t.is_alive(), 120, f"the run to reach {when}")
        assert t.is_alive(), f"the run ended before {when}: {box}"
        led = ctx.emu.ledger()
        fr_id = _tagged_flow_run_id(led, JOB_TYPE if when == "poll" else SERVING_TYPES)
        fr = _flow_run(fr_id)
        release_and_stop(customize_model, fr, Cancelling())
        led = ctx.emu.ledger()
        if when == "poll":
            jobs = [r for r in led["resources"].values() if r["type"] == JOB_TYPE
                    and (r.get("tags") or {}).get("forge-flow-run-id") == fr_id]
            ctx.hook_effect = [r["state"] for r in jobs]
            ctx.notes.append(f"hook stopped the job ({', '.join(ctx.hook_effect)})")
        else:
            ctx.hook_effect = alive_serving(led)
            ctx.notes.append(f"hook deleted the PT mid-evaluation ({len(ctx.hook_effect)} alive after it)")
    finally:
        ctx.emu.set_faults([])
        t.join(300)
    _read_first_run(ctx)
    if when == "poll":
        ctx.rerun_from = "customize"


def sc_cancel_poll(ctx: Ctx) -> None:
    _cancel(ctx, "poll")


def sc_cancel_evaluate(ctx: Ctx) -> None:
    _cancel(ctx, "evaluate")


def _spawn_forge_run(ctx: Ctx, out: Any) -> subprocess.Popen:
    """`forge run CONFIG --endpoint URL` in its own process and session, with the same Prefect API as this one."""
    cfg_path = ctx.work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(ctx.config))
    env = {**os.environ, **DUMMY_ENV, "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("AWS_ENDPOINT_URL", None)
    if api_url():
        env["PREFECT_API_URL"] = api_url()
    return subprocess.Popen([sys.executable, "-m", "forge.cli", "run", str(cfg_path), "--endpoint", ctx.emu.url,
                             "--runs-dir", str(ctx.runs)], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_as_from_a_terminal)


def _as_from_a_terminal() -> None:
    """In the child: SIGINT at its default, as for a command typed at a terminal. A harness started in the background
    of a non-interactive shell runs with SIGINT ignored, and `forge run` keeps an ignored SIGINT ignored (a background
    job's choice, tasks/run/stop.py): the ctrl-c row then saw "succeeded" (the "race" of issue 15)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _subprocess_run(ctx: Ctx, sig: int) -> None:
    """`forge run` in its own process; ``sig`` arrives once evaluation is under way (PT in service, invocations
    made)."""
    ctx.emu.set_faults([{"operation": "InvokeModel", "latency_ms": 400}])
    log = open(ctx.work / "forge-run.log", "wb")  # noqa: SIM115
    proc = _spawn_forge_run(ctx, log)
    try:
        def evaluating() -> bool:
            led = ctx.emu.ledger()
            return bool(calls(led, "InvokeModel") and alive_serving(led)) or proc.poll() is not None
        wait_for(evaluating, 240, "evaluation to start", step=0.2)
        assert proc.poll() is None, \
            f"the run ended before evaluation: {(ctx.work / 'forge-run.log').read_text()[-2000:]}"
        t_sig = time.monotonic()
        if sig in (signal.SIGKILL, signal.SIGINT):
            os.killpg(proc.pid, sig)       # kill -9 of everything it started / a terminal's Ctrl-C
        else:
            os.kill(proc.pid, sig)                   # the process running the flow, as a worker's cancel does
        rc = proc.wait(timeout=120)
        ctx.exit_code = rc
        ctx.notes.append(f"forge run exit {rc} after {time.monotonic() - t_sig:.1f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
        ctx.emu.set_faults([])
    if sig == signal.SIGKILL:   # nothing of the run is left to clean but its watchdog (its own session)
        try:
            wait_for(lambda: not alive_serving(ctx.emu.ledger()), 30, "the watchdog to delete the PT", step=0.2)
            ctx.cleaned_by = "the run's watchdog"
            ctx.notes.append(f"watchdog deleted the PT {time.monotonic() - t_sig:.1f} s after the kill")
        except TimeoutError:
            ctx.notes.append("the watchdog did not delete the PT within 30 s")
        wait_for(lambda: manifest_of(ctx.runs)["status"] != "running", 30, "the watchdog to mark the manifest")
    _read_first_run(ctx, "killed (manifest: {status})" if sig == signal.SIGKILL else "{status}")


def sc_ctrl_c(ctx: Ctx) -> None:
    _subprocess_run(ctx, signal.SIGINT)


def sc_sigterm(ctx: Ctx) -> None:
    _subprocess_run(ctx, signal.SIGTERM)


def sc_sigkill(ctx: Ctx) -> None:
    ctx.sweep_first = True
    _subprocess_run(ctx, signal.SIGKILL)


def sc_crash(ctx: Ctx) -> None:
    """The process dies right after Bedrock accepted the PT create (its answer never reached the flow):
    ``finally`` has no endpoint, so teardown must find the PT by its run-key tag."""
    import tasks.serve as serve

    real = serve.provision_task

    def provision_then_die(*a: Any, **k: Any) -> Any:
        real(*a, **k)
        raise WorkerLost("worker lost right after CreateProvisionedModelThroughput")

    with patched(serve, "provision_task", provision_then_die):
        _plain_run(ctx)


def sc_restart(ctx: Ctx) -> None:
    """The emulator (the AWS side) restarts while the flow polls the job; the run carries on."""
    t, box = _flow_in_thread(ctx)
    try:
        def in_progress() -> bool:
            led = ctx.emu.ledger()
            return any(r["type"] == JOB_TYPE and r["state"] == "InProgress" for r in led["resources"].values()) \
                or not t.is_alive()
        wait_for(in_progress, 120, "the job to be InProgress")
        assert t.is_alive(), f"the run ended before the job ran: {box}"
        ctx.emu.restart()
        ctx.notes.append("emulator restarted while the job was InProgress")
    finally:
        t.join(300)
    _read_first_run(ctx)


def sc_concurrent(ctx: Ctx) -> None:
    """Two runs of the same config at the same time (e.g. a schedule and a UI trigger)."""
    ctx.emu.set_faults([{"operation": "InvokeModel", "latency_ms": 300}])
    first = _flow_in_thread(ctx)
    # the second starts once the first one's job runs: it must adopt that job, and both then serve and evaluate
    wait_for(lambda: any(r["type"] == JOB_TYPE for r in ctx.emu.ledger()["resources"].values())
             or not first[0].is_alive(), 120, "the first run's job")
    threads = [first, _flow_in_thread(ctx)]
    for t, _ in threads:
        t.join(300)
    ctx.emu.set_faults([])
    ms = manifests(ctx.runs)
    failed = [m for m in ms if m["status"] != "succeeded"]
    ctx.run_id = (failed or ms)[-1]["run_id"]   # on-call reruns the run that failed
    ctx.first_status = " + ".join(sorted(m["status"] for m in ms))
    ctx.message = " || ".join(failure_text(m) for m in ms if failure_text(m))
    ctx.notes.append(f"{len(ms)} runs")
    ctx.rerun_from = None if all(m["status"] == "succeeded" for m in ms) else "auto"


def sc_delete_fails_once(ctx: Ctx) -> None:
    """One AccessDenied on the PT delete: teardown retries any error class (a delete is idempotent)."""
    _faults([{"operation": "DeleteProvisionedModelThroughput", "error": "AccessDeniedException", "count": 1}])(ctx)


def sc_delete_fails_always(ctx: Ctx) -> None:
    """Every PT delete refused (a missing permission): after its retries the run fails loudly with the ARN still
    billing in the manifest; on-call fixes the permission and reruns, which deletes it."""
    import tasks.teardown as td

    # the retry window shortened from 60 s to 5 s (suite time); what happens after it is the same
    with patched(td, "DELETE_RETRY_S", 5.0):
        _faults([{"operation": "DeleteProvisionedModelThroughput", "error": "AccessDeniedException",
                  "count": 1_000_000}])(ctx)
    alive = (manifest_of(ctx.runs).get("teardown") or {}).get("alive") or []
    ctx.notes.append(f"manifest teardown.alive: {len(alive)} ARN(s)")
    ctx.hook_effect = alive


def sc_cancel_dead_worker(ctx: Ctx) -> None:
    """The worker dies (kill -9 of `forge run`'s group) while the job trains; then someone cancels the run in
    the UI. Nothing is left to act on the cancel: the sweep finds the run stuck in Cancelling, stops its job and
    marks it Cancelled."""
    from uuid import UUID

    from prefect import get_client
    from prefect.states import Cancelling

    ctx.config = {**ctx.config, "job": {**ctx.config.get("job", {}), "timeout_hours": 24}}
    ctx.emu.set_faults([{"job_outcome": "Stuck", "count": 1}])
    proc = _spawn_forge_run(ctx, subprocess.DEVNULL)
    try:
        fr_id = wait_for(lambda: _tagged_flow_run_id(ctx.emu.ledger(), JOB_TYPE) or proc.poll() is not None, 240,
                         "the job to start")
        assert proc.poll() is None, "the run ended before its job ran"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        with get_client(sync_client=True) as c:
            c.set_flow_run_state(UUID(fr_id), Cancelling(message="cancelled from the UI"), force=True)
        time.sleep(1.5)   # older than the test's stale bound (the default is 120 s)
        ctx.sweep_stale_s = 1.0
        ctx.sweep_first = True
        with get_client(sync_client=True) as c:
            ctx.notes.append(f"flow run {c.read_flow_run(UUID(fr_id)).state.name} after the kill + cancel")
        ctx.hook_effect = [fr_id]
    finally:
        ctx.emu.set_faults([])
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    _read_first_run(ctx, "killed (manifest: {status})")
    ctx.rerun_from = "customize"


def sc_cancel_duplicate(ctx: Ctx) -> None:
    """Two runs of one config (a double click); the duplicate is cancelled once it has adopted the first run's
    job. Its on_cancellation hook must not stop that job: only the run that created a job stops it."""
    from prefect.states import Cancelling

    from flows.customize import customize_model, release_and_stop

    ctx.emu.set_faults([{"operation": "InvokeModel", "latency_ms": 300}])
    first = _flow_in_thread(ctx)
    wait_for(lambda: any(r["type"] == JOB_TYPE for r in ctx.emu.ledger()["resources"].values())
             or not first[0].is_alive(), 120, "the first run's job")
    owner = wait_for(lambda: _tagged_flow_run_id(ctx.emu.ledger(), JOB_TYPE), 60, "the job's owner tag")
    second = _flow_in_thread(ctx)

    def duplicate() -> dict | None:
        ms = [m for m in manifests(ctx.runs) if m.get("flow_run_id") != owner]
        done = ms and (ms[0]["steps"].get("customize") or {}).get("status") in ("completed", "failed")
        return ms[0] if done else None
    dup = wait_for(lambda: duplicate() or (not second[0].is_alive() and duplicate()), 120, "the duplicate to adopt")
    fr = _flow_run(dup["flow_run_id"])
    release_and_stop(customize_model, fr, Cancelling())
    jobs = [r["state"] for r in ctx.emu.ledger()["resources"].values() if r["type"] == JOB_TYPE]
    ctx.hook_effect = jobs
    ctx.notes.append(f"after cancelling the duplicate's flow run: job(s) {jobs}")
    for t, _ in (first, second):
        t.join(300)
    ctx.emu.set_faults([])
    ms = manifests(ctx.runs)
    ctx.run_id = ms[0]["run_id"]
    ctx.first_status = " + ".join(m["status"] for m in ms)
    ctx.message = " || ".join(failure_text(m) for m in ms if failure_text(m))
    ctx.rerun_from = None


def sc_nan_config(ctx: Ctx) -> None:
    """A config the flow received as parameters in which a NaN became null (JSON has no NaN): the run crashes
    during evaluation, and the cleanup hook, given those parameters, must still delete its PT."""
    from prefect.states import Crashed

    from flows.customize import customize_model, release_serving

    ctx.emu.set_faults([{"operation": "InvokeModel", "latency_ms": 300}])
    t, box = _flow_in_thread(ctx)
    try:
        wait_for(lambda: (calls(ctx.emu.ledger(), "InvokeModel") and _tagged_flow_run_id(ctx.emu.ledger(),
                                                                                        SERVING_TYPES))
                 or not t.is_alive(), 120, "evaluation")
        fr_id = _tagged_flow_run_id(ctx.emu.ledger(), SERVING_TYPES)
        params = json.loads(json.dumps({"config": ctx.config}))
        params["config"]["serving"]["max_hours"] = None          # what NaN becomes in the flow's parameters
        params["config"]["evaluation"]["bootstrap_samples"] = None
        fr = type("FlowRun", (), {"id": fr_id, "parameters": params})()
        release_serving(customize_model, fr, Crashed())
        ctx.hook_effect = alive_serving(ctx.emu.ledger())
        ctx.notes.append(f"hook with null-for-NaN parameters: {len(ctx.hook_effect)} PT alive after it")
    finally:
        ctx.emu.set_faults([])
        t.join(300)
    _read_first_run(ctx)


PRODUCTION = {"production": {"mode": "on-demand"}}


def production_alive(ledger: dict) -> list[str]:
    """Production servings (forge-role=production) alive: a promoted champion's, meant to stay."""
    return [a for a in alive_serving(ledger, production=True)
            if (ledger["resources"][a].get("tags") or {}).get("forge-role") == "production"]


def sc_promotion_interrupted(ctx: Ctx) -> None:
    """The worker is lost after the new production serving is up and before the registry switch: `forge rerun`
    of the run adopts that serving and finishes the switch — never a second production serving."""
    import tasks.promote as promote_stage

    def lost(lineage: str, run_id: str, serving: Any) -> None:
        raise RuntimeError(f"worker lost between the new production serving {serving.name} and the registry "
                           "switch (injected)")

    with patched(promote_stage, "_before_switch", lost):
        _plain_run(ctx)
    ctx.notes.append(f"production servings alive after the fault: {len(production_alive(ctx.emu.ledger()))}")
    ctx.rerun_from = "same-run"


def sc_concurrent_promotions(ctx: Ctx) -> None:
    """Two runs of one lineage promote at the same moment (both held at the switch until both are there): one
    becomes champion, the other records itself as a non-champion version and deletes its own new serving."""
    import tasks.promote as promote_stage

    barrier = threading.Barrier(2, timeout=240)

    def together(lineage: str, run_id: str, serving: Any) -> None:
        barrier.wait()

    with patched(promote_stage, "_before_switch", together):
        threads = [_flow_in_thread(ctx)]
        wait_for(lambda: any(r["type"] == JOB_TYPE for r in ctx.emu.ledger()["resources"].values())
                 or not threads[0][0].is_alive(), 120, "the first run's job")
        threads.append(_flow_in_thread(ctx))
        for t, _ in threads:
            t.join(400)
    ms = manifests(ctx.runs)
    ctx.first_status = " + ".join(sorted(m["status"] for m in ms))
    ctx.message = " || ".join(failure_text(m) for m in ms if failure_text(m))
    promoted = [m for m in ms if (m.get("promotion") or {}).get("promoted")]
    ctx.notes.append(f"{len(ms)} runs, {len(promoted)} champion, statuses "
                     + ", ".join(str((m.get("promotion") or {}).get("status")) for m in ms))
    ctx.run_id = next((m["run_id"] for m in ms if m not in promoted), ms[-1]["run_id"])
    ctx.rerun_from = "same-run"     # on-call reruns the loser: it stays a non-champion version


@dataclass
class Scenario:
    name: str
    fault: Callable[[Ctx], None]
    title: str
    expect_first: str                 # expected manifest status of the faulty run ("succeeded", "failed", ...)
    expect_message: tuple[str, ...]   # substrings (lowercase) the failure message must contain
    speed: float = 5000.0
    config: dict = field(default_factory=dict)
    slow: bool = False


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("throttling", sc_throttling, "throttling storm: 30% ThrottlingException on every Bedrock op + InvokeModel",
             "succeeded", (), slow=True),
    Scenario("5xx-burst", sc_5xx, "5xx bursts (503/500 ×2–6 per op; botocore max_attempts=2)", "succeeded", (),
             config={"aws": {"max_attempts": 2}}, slow=True),
    Scenario("read-timeout", sc_read_timeout,
             "read timeouts: 1.5 s latency > aws.read_timeout 1 s on creates, polls, invokes", "succeeded", (),
             config={"aws": {"read_timeout": 1}}),
    Scenario("job-failed", sc_job_failed, "customization job ends Failed", "failed", ("job", "failed")),
    Scenario("job-stuck", sc_job_stuck, "job stuck InProgress past job.timeout_hours (stop_on_timeout)", "failed",
             ("still inprogress after", "stopped it"),
             config={"job": {"timeout_hours": 0.001, "stop_on_timeout": True, "poll_max_interval_seconds": 1}}),
    Scenario("pt-failed", sc_pt_failed, "provisioned throughput ends Failed", "failed", ("provisioned", "failed")),
    Scenario("pt-quota", sc_pt_quota, "PT quota exceeded (2 foreign no-commitment PTs hold the 2 MUs)", "failed",
             ("quota",)),
    Scenario("eval-exception", sc_eval_exception, "exception during evaluation", "failed", ("evaluation exploded",)),
    Scenario("cancel-poll", sc_cancel_poll, "Prefect cancellation while polling the job (on_cancellation hook)",
             "failed", ("stopped",)),
    Scenario("cancel-evaluate", sc_cancel_evaluate, "Prefect cancellation during evaluation (on_cancellation hook)",
             "", ()),
    Scenario("sigterm", sc_sigterm, "SIGTERM to the process running the flow, mid-evaluation", "interrupted",
             ("terminationsignal", "received sigterm"), slow=True),
    Scenario("sigkill", sc_sigkill, "SIGKILL to `forge run`'s process group, mid-evaluation (default max_hours)",
             "killed (manifest: interrupted)", ("interrupted", "watchdog deleted"),
             config={"serving": {"max_hours": 2}}, slow=True),
    Scenario("ctrl-c", sc_ctrl_c, "Ctrl-C (SIGINT to `forge run`'s process group), mid-evaluation", "interrupted",
             ("keyboardinterrupt",), slow=True),
    Scenario("delete-fails-once", sc_delete_fails_once, "teardown: one AccessDenied on DeletePT (retried)",
             "succeeded", ()),
    Scenario("delete-fails-always", sc_delete_fails_always,
             "teardown: every DeletePT refused (run fails loudly, manifest names the ARN)", "failed",
             ("still billing", "accessdenied"), slow=True),
    Scenario("cancel-dead-worker", sc_cancel_dead_worker,
             "cancel of a run whose worker was killed -9 while training (the sweep settles it)",
             "killed (manifest: running)", (), slow=True),
    Scenario("cancel-duplicate", sc_cancel_duplicate,
             "two runs of one config; the duplicate is cancelled after adopting the job", "", (), speed=500.0),
    Scenario("nan-config", sc_nan_config, "crash during evaluation; the hook gets parameters where NaN became null",
             "", ()),
    Scenario("crash", sc_crash, "flow crash (BaseException) right after the PT create", "failed", ("worker lost",)),
    Scenario("emulator-restart", sc_restart, "emulator restart while polling the job", "succeeded", (), speed=300.0),
    Scenario("concurrent", sc_concurrent, "a second run of the same config starts while the first one's job runs",
             "succeeded + succeeded", (), speed=500.0),
    Scenario("promotion-interrupted", sc_promotion_interrupted,
             "worker lost between the new production serving and the registry switch (rerun finishes it)",
             "failed", ("registry switch",), config=PRODUCTION),
    Scenario("concurrent-promotions", sc_concurrent_promotions,
             "two runs of one lineage promote at once (one champion, the other a non-champion version)",
             "succeeded + succeeded", (), speed=500.0, config=PRODUCTION),
]}


def _on_call_rerun(ctx: Ctx, cfg: dict, runs: Path) -> dict:
    """What on-call does after the fault: `forge rerun RUN_ID` (from the first unfinished step, or the step the
    scenario names), or a new run. Returns the rerun's manifest."""
    if ctx.rerun_from is None:
        run_flow(cfg, runs)
        return manifest_of(runs)
    if ctx.rerun_from == "same-run":      # `forge rerun RUN_ID` of a run whose steps all finished
        run_flow(None, runs, run_id=ctx.run_id)
        ctx.notes.append("rerun of the same run")
        return manifest_of(runs, ctx.run_id)
    m = manifest_of(runs, ctx.run_id)
    step = first_unfinished(m) if ctx.rerun_from == "auto" else ctx.rerun_from
    if step in (None, "teardown"):
        step = "evaluate" if step == "teardown" else None
    if step is None:
        run_flow(cfg, runs)
        return manifest_of(runs)
    run_flow(None, runs, run_id=ctx.run_id, rerun_from=step)
    ctx.notes.append(f"rerun from {step}")
    return manifest_of(runs, ctx.run_id)


def run_scenario(name: str, work: Path) -> Outcome:
    """Fault phase, then rerun, then sweep; judge from the ledger. Needs a Prefect backend (harness)."""
    from emulator.testing import running_emulator
    from flows.sweep import sweep_now

    sc = SCENARIOS[name]
    work.mkdir(parents=True, exist_ok=True)
    runs = work / "runs"
    t0 = time.monotonic()
    cfg = small_config(f"fault-{name}"[:32].rstrip("-"), **sc.config)
    with running_emulator(speed=sc.speed, state_dir=work / "emulator-state") as emu, aws_env(emu.url):
        ctx = Ctx(emu=emu, runs=runs, work=work, config=cfg)
        sc.fault(ctx)
        t_fault = time.monotonic()
        cleaned_by, t_clean = ctx.cleaned_by, (0.0 if ctx.cleaned_by else None)
        if cleaned_by is None and not alive_serving(emu.ledger()):
            cleaned_by, t_clean = "the run itself (finally / hooks)", 0.0

        def sweep(label: str) -> None:
            nonlocal cleaned_by, t_clean
            rep = sweep_now(endpoint_url=None, stale_after_s=ctx.sweep_stale_s)
            ctx.notes += [f"{label}: {line}" for line in rep.settled]
            if rep.errors:
                ctx.notes.append(f"sweep errors: {rep.errors}")
            if rep.deleted:
                ctx.notes.append(f"{label} deleted {len(rep.deleted)}")
            if cleaned_by is None and not alive_serving(emu.ledger()):
                cleaned_by, t_clean = label, time.monotonic() - t_fault

        if ctx.sweep_first and (cleaned_by is None or ctx.sweep_stale_s is not None):
            # the scheduled sweeper: a leaked PT once its run's heartbeat is stale; a stuck cancellation
            deadline = time.monotonic() + 60
            sweep("sweep")
            while cleaned_by is None and time.monotonic() < deadline:
                time.sleep(1.0)
                sweep("sweep")
        if ctx.recover:
            ctx.recover()
        rerun = _on_call_rerun(ctx, cfg, runs)
        if cleaned_by is None and not alive_serving(emu.ledger()):
            cleaned_by, t_clean = "rerun", time.monotonic() - t_fault
        if rerun["status"] != "succeeded":
            ctx.notes.append(f"rerun error: {failure_text(rerun)[:300]}")
        sweep("final sweep")
        for arn in ctx.foreign:   # the foreign PTs were never ours: still there, untouched
            state = emu.ledger()["resources"].get(arn, {}).get("state")
            ctx.notes.append(f"foreign PT {arn.rsplit('/', 1)[-1]}: {state}")
        led = emu.ledger()
        ctx.notes.append(f"successful creates: {len(calls(led, 'CreateModelCustomizationJob'))} job, "
                         f"{len(calls(led, 'CreateProvisionedModelThroughput'))} PT")
        ok, note = data_intact(runs)
        return Outcome(scenario=name, first_status=ctx.first_status, rerun_status=rerun["status"],
                       message=ctx.message, leaked=alive_serving(led), duplicates=duplicates(led),
                       cleaned_by=cleaned_by or "NOT CLEANED", time_to_clean=t_clean, data_ok=ok, data_note=note,
                       seconds=time.monotonic() - t0, notes=ctx.notes, ledger=led, hook_effect=ctx.hook_effect,
                       exit_code=ctx.exit_code)

