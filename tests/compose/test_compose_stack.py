"""Issue 21: the docker-compose stack a team deploys comes up and runs a pipeline, for real (`make compose-test`).

docker-compose.yml + docker-compose.test.yml (images built here from a Debian root imported with debootstrap, the
PostgreSQL image from the same base, every container on the host network), on a Docker daemon started here
(tests/compose/engine.py). In order:

1. build the base image and the images; ``up -d``; every service healthy, the one-shot ``deploy`` exited 0 (it ran
   ``forge deploy --apply``: pool, queue, five deployments, the zombie automation);
2. the ``customize`` deployment's Quick run (its own prefilled parameters) through the Prefect API: Completed; its
   provisioned throughput (PT) Deleted in the emulator's ledger; the manifest (``succeeded``) and the report files
   on the worker's ``runs`` volume; the evaluation record in S3 next to the job output;
3. a run killed by ``docker-compose stop worker`` (SIGTERM) while its evaluation calls its PT: the PT is deleted
   before the container has exited (docker/forge-init lets the run's watchdog finish);
4. a run whose worker container is killed with ``kill -9`` of its first process (everything in it dies: a lost
   machine): the restarted worker's sweep deletes the PT within the stale bound (120 s) + the test's sweep
   interval (30 s) + slack;
5. the killed runs that the resume automation restarted (rerun-step) all end Completed, and only then: nothing
   managed is left billing; ``down -v``; the daemon we started is stopped.

Skipped unless FORGE_COMPOSE_TEST=1 (make compose-test sets it), and skipped with the reason when the engine cannot
be had. Figures (image build time, time to healthy, the pipeline's wall time in the stack, PT-seconds after each
kill) are printed and written to $FORGE_COMPOSE_FIGURES (default /tmp/forge-compose-figures.json).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from tests.compose import engine
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.compose, pytest.mark.slow, pytest.mark.timeout(3600)]

PROJECT = "forge-compose-test"
FILES = ["-f", "docker-compose.yml", "-f", "docker-compose.test.yml"]
BASE_IMAGE = os.environ.get("FORGE_BASE_IMAGE", "forge-debian:bookworm")
SWEEP_EVERY_S = float(os.environ.get("FORGE_SWEEP_INTERVAL_S", "30"))
INVOKE_LATENCY_MS = 1500        # each InvokeModel waits this long while a kill is staged (evaluation lasts ~30 s+)
SLACK_S = 60.0                  # worker restart + its poll (10 s) + a flow-run process start + one sweep's calls
DEPLOYMENT = "customize-model/customize"
FIGURES: dict = {}

if os.environ.get("FORGE_COMPOSE_TEST") != "1":
    pytest.skip("the compose test builds images and starts a Docker daemon: run it with `make compose-test` "
                "(FORGE_COMPOSE_TEST=1)", allow_module_level=True)


def say(msg: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Webhook:
    """A local listener standing in for the on-call webhook (FORGE_NOTIFY_WEBHOOK_URL of the deploy service): the
    containers are on the host network, so 127.0.0.1 reaches it. Keeps every POSTed body."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stack:
    """The compose project: the CLI, the ports, and readers of its services."""

    def __init__(self, compose: list[str], logs: Path, webhook: Webhook):
        self.compose = compose
        self.logs = logs
        self.webhook = webhook
        self.ports = {"FORGE_TEST_PG_PORT": _free_port(), "FORGE_TEST_SERVER_PORT": _free_port(),
                      "FORGE_TEST_EMULATOR_PORT": _free_port()}
        self.env = {**{k: str(v) for k, v in self.ports.items()}, "FORGE_BASE_IMAGE": BASE_IMAGE,
                    "FORGE_SWEEP_INTERVAL_S": f"{SWEEP_EVERY_S:g}", "COMPOSE_PROJECT_NAME": PROJECT,
                    "FORGE_NOTIFY_WEBHOOK_URL": webhook.url, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['FORGE_TEST_SERVER_PORT']}/api"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['FORGE_TEST_EMULATOR_PORT']}"

        self.file: Path | None = None

    def write_config(self) -> Path:
        """docker-compose.yml + docker-compose.test.yml merged by Compose itself (``config``), minus the published
        ports that Compose v1 refuses on the host network (docker/host-network-config): the file every later
        command reads."""
        merged = engine.run([*self.compose, "-p", PROJECT, *FILES, "config"], timeout=120, env=self.env,
                            merge=False).stdout
        out = engine.run([str(engine.python()), str(REPO_ROOT / "docker" / "host-network-config")],
                         input_text=merged, timeout=60, merge=False)
        self.file = self.logs / "compose.effective.yml"
        self.file.write_text(out.stdout)
        return self.file

    def __call__(self, *args: str, timeout: float = 900, check: bool = True, merge: bool = True):
        files = ["-f", str(self.file)] if self.file else FILES
        return engine.run([*self.compose, "-p", PROJECT, *files, *args], timeout=timeout, check=check, env=self.env,
                          merge=merge)

    def container(self, service: str) -> str:
        out = self("ps", "-q", service, merge=False).stdout.strip().splitlines()
        assert out, f"no container for {service}"
        return out[-1]

    def state(self, service: str) -> dict:
        return engine.inspect(self.container(service))["State"]

    def dump_logs(self) -> None:
        out = self("logs", "--no-color", "--tail", "200", check=False, timeout=120)
        (self.logs / "compose.log").write_text(out.stdout or "")
        say(f"service logs: {self.logs / 'compose.log'}")

    def worker_json(self, code: str) -> object:
        """Run python in the worker container (the runs volume is mounted there); its stdout as JSON."""
        out = engine.run(["docker", "exec", self.container("worker"), "python", "-c", code], timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def emulator(self):
        from emulator.testing import EmulatorHandle

        return EmulatorHandle(self.emulator_url, None)


def wait_healthy(stack: Stack, services: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {s: stack.state(s) for s in services}
        bad = {s: (st.get("Health") or {}).get("Status", st["Status"]) for s, st in states.items()
               if (st.get("Health") or {}).get("Status", "healthy") != "healthy" or st["Status"] != "running"}
        if not bad:
            return
        if time.monotonic() > deadline:
            stack.dump_logs()
            raise AssertionError(f"not healthy after {timeout:.0f} s: {bad}")
        time.sleep(1)


@pytest.fixture(scope="module")
def stack():
    logs = Path(tempfile.mkdtemp(prefix="forge-compose-"))
    say(f"logs in {logs}")
    try:
        FIGURES["install_s"] = engine.ensure_packages(say)
        daemon = engine.start_daemon(logs, say)
        compose = engine.compose_command()
    except engine.EngineUnavailable as err:
        pytest.skip(f"Docker engine unavailable here: {err}")
    FIGURES.update(daemon_start_s=daemon.start_s, docker=daemon.version, storage_driver=daemon.storage_driver,
                   compose=" ".join(compose), compose_version=engine.run([*compose, "version"]).stdout.split("\n")[0])
    webhook = Webhook()
    st = Stack(compose, logs, webhook)
    try:
        st.write_config()
        st("down", "-v", "--remove-orphans", timeout=300)      # a clean slate (a previous run's volumes)
        FIGURES["base_image_s"] = engine.build_base_image(BASE_IMAGE, say)
        FIGURES["torch_wheel"] = engine.stage_torch_wheel("2.13.0", say)
        t0 = time.monotonic()
        st("build", timeout=3000)
        FIGURES["image_build_s"] = round(time.monotonic() - t0, 1)
        FIGURES["image_mb"] = {i: engine.image_size_mb(i)
                               for i in ("bedrock-forge:compose-test", "forge-postgres:compose-test")}
        say(f"images built in {FIGURES['image_build_s']:.1f} s: {FIGURES['image_mb']}")
        t0 = time.monotonic()
        st("up", "-d", timeout=900)
        wait_healthy(st, ["postgres", "prefect-server", "emulator"])
        FIGURES["up_to_healthy_s"] = round(time.monotonic() - t0, 1)
        say(f"up -d → every service healthy, deploy done, worker started: {FIGURES['up_to_healthy_s']:.1f} s")
        yield st
    finally:
        try:
            if "up_to_healthy_s" in FIGURES:
                st.dump_logs()
            t0 = time.monotonic()
            st("down", "-v", "--remove-orphans", timeout=600, check=False)
            FIGURES["down_s"] = round(time.monotonic() - t0, 1)
            left = engine.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                              check=False).stdout.split()
            FIGURES["containers_left"] = len(left)
        finally:
            webhook.close()
            daemon.stop()
            FIGURES["daemon_stopped"] = daemon.proc is not None
            path = Path(os.environ.get("FORGE_COMPOSE_FIGURES", "/tmp/forge-compose-figures.json"))
            path.write_text(json.dumps(FIGURES, indent=2))
            say("figures:\n" + json.dumps(FIGURES, indent=2) + f"\n(written to {path})")


def _flow_run(stack: Stack, fr: str) -> dict:
    import httpx

    return httpx.get(f"{stack.api}/flow_runs/{fr}", timeout=30).json()


def _default_config(stack: Stack) -> dict:
    import httpx

    dep = httpx.get(f"{stack.api}/deployments/name/{DEPLOYMENT}", timeout=30).json()
    return dep["parameters"]["config"]


def _pts_of(ledger: dict, flow_run_id: str) -> dict[str, dict]:
    from emulator.testing import SERVING_TYPES

    return {a: r for a, r in ledger["resources"].items()
            if r["type"] in SERVING_TYPES and (r.get("tags") or {}).get("forge-flow-run-id") == flow_run_id}


def _manifest_of(stack: Stack, flow_run_id: str) -> dict | None:
    code = ("import json, glob\n"
            "docs = [json.load(open(p)) for p in glob.glob('/app/runs/*/manifest.json')]\n"
            f"hit = [d for d in docs if {flow_run_id!r} in (d.get('flow_run_ids') or [d.get('flow_run_id')])]\n"
            "print(json.dumps(hit[-1] if hit else None))")
    return stack.worker_json(code)


def test_the_users_compose_file_is_valid_for_this_compose(stack):
    """docker-compose.yml alone (what users run), as the installed Compose reads it: the services, the named
    volumes, the env file it points the worker at."""
    out = engine.run([*stack.compose, "-f", "docker-compose.yml", "config"], merge=False, env={}).stdout
    import yaml

    doc = yaml.safe_load(out)
    assert set(doc["services"]) == {"postgres", "prefect-server", "emulator", "deploy", "worker"}
    assert set(doc["volumes"]) == {"postgres-data", "emulator-state", "runs"}
    assert doc["services"]["worker"]["environment"]["AWS_ENDPOINT_URL"] == "http://emulator:4566"


def test_the_deploy_service_registered_everything(stack):
    st = stack.state("deploy")
    assert st["Status"] == "exited" and st["ExitCode"] == 0, st
    out = engine.run(["docker", "logs", stack.container("deploy")]).stdout
    assert f"sweep every {SWEEP_EVERY_S:g} s" in out, out[-2000:]
    assert "notify" in out and "webhook block" in out, out[-2000:]      # FORGE_NOTIFY_WEBHOOK_URL reached it
    import httpx

    names = {d["name"] for d in httpx.post(f"{stack.api}/deployments/filter", json={}, timeout=30).json()}
    expected = {"retrain", "customize", "evaluate", "sweep", "rerun-step", "rollback"}
    assert names == expected
    sweep = httpx.get(f"{stack.api}/deployments/name/sweep-resources/sweep", timeout=30).json()
    assert [s["schedule"]["interval"] for s in sweep["schedules"]] == [SWEEP_EVERY_S]
    assert stack.state("worker")["Status"] == "running"
    # the server really is on the PostgreSQL container (not a SQLite fallback)
    env = engine.inspect(stack.container("prefect-server"))["Config"]["Env"]
    assert any(e.startswith("PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://") for e in env)
    tables = engine.run(["docker", "exec", stack.container("postgres"), "psql", "-p",   # unix socket: trust
                         str(stack.ports["FORGE_TEST_PG_PORT"]), "-U", "prefect", "-d", "prefect", "-Atc",
                         "select count(*) from deployment"]).stdout.strip()
    assert tables == str(len(expected)), tables        # every deployment is a row of PostgreSQL's deployment table


def test_the_customize_quick_run_completes_and_tears_down(stack):
    from forge.stack import trigger, wait_flow_run

    t0 = time.monotonic()
    fr = trigger(stack.api, DEPLOYMENT, {})        # "Quick run": the deployment's own prefilled parameters
    run = wait_flow_run(stack.api, fr, timeout=1500, poll=2.0)
    FIGURES["pipeline_trigger_to_terminal_s"] = round(time.monotonic() - t0, 1)
    FIGURES["pipeline_flow_run_s"] = round(run.get("total_run_time") or 0.0, 1)
    say(f"customize Quick run {fr}: {run['state']['name']} — {FIGURES['pipeline_trigger_to_terminal_s']:.1f} s "
        f"from the API call, {FIGURES['pipeline_flow_run_s']:.1f} s of flow-run time")
    if run["state"]["type"] != "COMPLETED":
        stack.dump_logs()
    assert run["state"]["type"] == "COMPLETED", run["state"]

    led = stack.emulator().ledger()
    pts = _pts_of(led, fr)
    assert pts, "the run bought no provisioned throughput (the Quick run's config serves on one)"
    assert all(r["state"] == "Deleted" for r in pts.values()), pts

    doc = _manifest_of(stack, fr)
    assert doc is not None, "no manifest on the worker's runs volume"
    assert doc["status"] == "succeeded" and doc["steps"]["teardown"]["status"] == "completed", doc["steps"]
    named = {k: p for k, p in (doc.get("report") or {}).items() if isinstance(p, str)}
    # the report's files on the worker's runs volume, and their copies in S3 (``<name>_s3``, tasks/evaluate.py
    # publish_report) next to the job output
    reports = [p for p in named.values() if not p.startswith("s3://")]
    copies = [p for p in named.values() if p.startswith("s3://")]
    assert reports, doc.get("report")
    present = stack.worker_json(f"import json, os; print(json.dumps([os.path.isfile(p) for p in {reports!r}]))")
    assert all(present), dict(zip(reports, present, strict=True))
    FIGURES["run_records"] = {"manifest": f"worker volume runs:/app/runs/{doc['run_id']}/manifest.json",
                              "report": f"worker volume: {len(reports)} file(s) under /app/runs/{doc['run_id']}/",
                              "evaluation record": "S3, next to the job output"}

    from emulator.testing import boto3_clients
    from tasks.aws.s3uri import child_key, split_s3_uri

    bucket, prefix = split_s3_uri(doc["resources"]["data"]["output"])
    s3 = boto3_clients(stack.emulator_url).s3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    # the evaluation record is <output>/evaluation/<eval key>.json; the report's copies sit in <eval key>/ beside it
    evaluations = child_key(prefix, "evaluation/")
    records = [k for k in keys if k.startswith(evaluations) and k.endswith(".json")
               and "/" not in k[len(evaluations):]]
    assert records, keys
    assert copies, f"the report was not copied to S3: {named}"
    missing = [u for u in copies if split_s3_uri(u)[0] != bucket or split_s3_uri(u)[1] not in keys]
    assert not missing, (missing, keys)
    body = json.loads(s3.get_object(Bucket=bucket, Key=records[0])["Body"].read())
    assert body["gate"]["passed"] == doc["gate"]["passed"]
    # the run state kept in S3 too (tasks/run/store.py: s3://<run bucket>/<prefix>/runs/<run id>/manifest.json)
    runs_prefix = child_key(doc["config"]["aws"]["prefix"], f"runs/{doc['run_id']}/manifest.json")
    in_s3 = json.loads(s3.get_object(Bucket=bucket, Key=runs_prefix)["Body"].read())
    assert in_s3["status"] == "succeeded" and in_s3["run_id"] == doc["run_id"]
    FIGURES["run_records"]["manifest in S3"] = f"s3://<run bucket>/{runs_prefix}"


def _stage_evaluating_run(stack: Stack, name: str) -> tuple[str, str]:
    """A customize run (the Quick run's config under another name, 1 s job polls) whose PT is InService and whose
    evaluation is calling it (InvokeModel slowed down): (flow run id, PT ARN)."""
    from bench.leak import wait_evaluating
    from forge.stack import trigger

    emu = stack.emulator()
    emu.set_faults([{"operation": "InvokeModel", "latency_ms": INVOKE_LATENCY_MS}])
    cfg = {**_default_config(stack), "name": name, "job": {"poll_max_interval_seconds": 1}}
    fr = trigger(stack.api, DEPLOYMENT, {"config": cfg})
    arn = wait_evaluating(emu, name + "-", lambda: _flow_run(stack, fr)["state"]["type"] in ("SCHEDULED", "PENDING",
                                                                                              "RUNNING"),
                          timeout_s=900)
    emu.set_faults([])
    return fr, arn


def _pt_deleted_at(stack: Stack, arn: str, until: float) -> float | None:
    from bench.leak import deleted_at

    emu = stack.emulator()
    while time.time() < until:
        try:
            end = deleted_at(emu, arn)
        except Exception:  # noqa: BLE001 - the emulator is busy for a moment
            end = None
        if end is not None:
            return end
        time.sleep(0.5)
    return None


def test_docker_compose_stop_worker_mid_run_leaves_nothing_billing(stack):
    """SIGTERM (docker-compose stop worker): the worker kills its flow-run process; forge-init keeps the container
    until the run's watchdog has deleted the PT."""
    from datetime import datetime

    fr, arn = _stage_evaluating_run(stack, "compose-term")
    t_kill = time.time()
    stack("stop", "worker", timeout=300)
    stop_s = time.time() - t_kill
    st = stack.state("worker")
    exited = datetime.fromisoformat(st["FinishedAt"][:26].rstrip("Z") + "+00:00").timestamp()
    end = _pt_deleted_at(stack, arn, t_kill + 120 + SWEEP_EVERY_S + SLACK_S)
    FIGURES["sigterm"] = {"pt_s_after_stop": None if end is None else round(end - t_kill, 1),
                          "stop_took_s": round(stop_s, 1), "container_exit_code": st["ExitCode"],
                          "pt_deleted_before_container_exit": end is not None and end <= exited + 1.0}
    logs = engine.run(["docker", "logs", stack.container("worker")], check=False).stdout
    FIGURES["sigterm"]["forge_init"] = [ln for ln in logs.splitlines() if ln.startswith("forge-init:")][-3:]
    say(f"docker-compose stop worker: {FIGURES['sigterm']}")
    stack("start", "worker", timeout=300)
    assert end is not None, f"PT {arn} still alive after the SIGTERM stop"
    assert FIGURES["sigterm"]["pt_deleted_before_container_exit"], FIGURES["sigterm"]
    doc = _manifest_of(stack, fr)
    assert doc and doc["status"] in ("interrupted", "succeeded"), doc and doc["status"]
    FIGURES["sigterm"]["manifest"] = doc["status"]


def test_kill_9_of_a_worker_container_is_swept_within_the_leak_bound(stack):
    """Everything in the container dies at once (worker, flow-run process, watchdog): only the sweep is left, run
    by the worker that the restart policy brings back."""
    from tasks.run.liveness import STALE_AFTER_S

    wait_healthy(stack, ["postgres", "prefect-server", "emulator"])
    before = engine.inspect(stack.container("worker"))
    fr, arn = _stage_evaluating_run(stack, "compose-kill")
    t_kill = time.time()
    os.kill(before["State"]["Pid"], signal.SIGKILL)        # kill -9 of the container's first process
    bound = STALE_AFTER_S + SWEEP_EVERY_S + SLACK_S
    end = _pt_deleted_at(stack, arn, t_kill + bound + 60)
    after = engine.inspect(stack.container("worker"))
    FIGURES["kill9"] = {"pt_s_after_kill": None if end is None else round(end - t_kill, 1),
                        "bound_s": bound, "worker_restarts": after["RestartCount"] - before["RestartCount"],
                        "sweep_every_s": SWEEP_EVERY_S}
    doc = _manifest_of(stack, fr) if after["State"]["Status"] == "running" else None
    FIGURES["kill9"]["manifest"] = doc and doc["status"]
    FIGURES["kill9"]["flow_run_state"] = _flow_run(stack, fr)["state"]["name"]
    say(f"kill -9 of the worker container: {FIGURES['kill9']}")
    assert after["RestartCount"] > before["RestartCount"], "the restart policy did not bring the worker back"
    assert end is not None, f"PT {arn} still billing {bound + 60:.0f} s after the kill"
    assert end - t_kill <= bound, FIGURES["kill9"]


def test_the_killed_runs_reached_the_on_call_webhook(stack):
    """Runs that a worker loss ended Crashed (the zombie automation, 90 s without a flow-run heartbeat) or Failed
    notify the webhook installed by the deploy service."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any("compose-kill" in b or "compose-term" in b
                                                   for b in stack.webhook.bodies):
        time.sleep(2)
    FIGURES["notifications"] = len(stack.webhook.bodies)
    assert any("compose-kill" in b or "compose-term" in b for b in stack.webhook.bodies), stack.webhook.bodies[-3:]


def _runs_of(stack: Stack, deployment: str) -> list[dict]:
    import httpx

    dep = httpx.get(f"{stack.api}/deployments/name/{deployment}", timeout=30).json()
    return httpx.post(f"{stack.api}/flow_runs/filter", timeout=30,
                      json={"flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}).json()


def test_the_crashed_runs_were_resumed_and_finished(stack):
    """The resume automation (a Crashed customize run → rerun-step with its run id) starts a run that adopts what
    the killed one left and buys a PT again for its evaluation: it is a run in progress, not a leak, so the check
    that nothing is left billing waits for every resumed run to end (CI once looked while one was evaluating)."""
    from forge.stack import TERMINAL_STATES

    t0 = time.monotonic()
    deadline = t0 + 900
    while True:
        resumed = _runs_of(stack, "customize-model/rerun-step")
        busy = [r for r in resumed + _runs_of(stack, DEPLOYMENT) if r["state"]["type"] not in TERMINAL_STATES]
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(2)
    FIGURES["resumed"] = {"waited_s": round(time.monotonic() - t0, 1),
                          "runs": {r["parameters"].get("run_id", "?"): r["state"]["name"] for r in resumed},
                          "still_running": [r["name"] for r in busy]}
    say(f"resumed runs: {FIGURES['resumed']}")
    assert not busy, FIGURES["resumed"]
    killed = [k for k in FIGURES["resumed"]["runs"] if k.startswith("compose-kill-")]
    assert killed, f"the kill -9'd run was not resumed by the automation: {FIGURES['resumed']}"
    assert all(r["state"]["type"] == "COMPLETED" for r in resumed), FIGURES["resumed"]


def test_nothing_managed_is_left_billing(stack):
    from emulator.testing import alive_serving

    led = stack.emulator().ledger()
    left = {a: {k: led["resources"][a].get(k) for k in ("name", "state", "tags", "created_at")}
            for a in alive_serving(led)}
    if left:        # whose it is: the flow run, run id and the calls on it
        FIGURES["left_billing"] = left
        FIGURES["left_billing_calls"] = [c for c in led["calls"] if any(a in json.dumps(c) for a in left)
                                         or c["operation"] in ("CreateProvisionedModelThroughput",
                                                               "DeleteProvisionedModelThroughput")]
    assert not left, json.dumps(FIGURES.get("left_billing"), indent=1, default=str)
    FIGURES["pts_created"] = sum(1 for r in led["resources"].values() if r["type"] == "provisioned-model-throughput")
