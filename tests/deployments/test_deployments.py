"""Static checks of the operations files: deployments/prefect.yaml, docker-compose.yml (+ docker-compose.test.yml),
Dockerfile.

The compose files are checked for the structure that makes the stack work (services, healthchecks, start order,
endpoints, volumes, the test override's host network and local images) on every test run; the stack itself is
built and run for real by tests/compose/test_compose_stack.py (`make compose-test`, a Docker daemon started
there). prefect.yaml is checked for what makes each deployment register and run (entrypoints load, schedules
parse, parameters fit, one pool). The real registration against a server is tests/deployments/test_server.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from forge.commands.deploy import (
    DEFAULT_POOL,
    DeployError,
    check_deployment,
    load_deployments_file,
)
from tests.support import REPO_ROOT

ROOT = REPO_ROOT
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DEPLOYMENTS_FILE = ROOT / "deployments" / "prefect.yaml"


# ---------------------------------------------------------------------------------------------
# prefect.yaml
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spec():
    return load_deployments_file(DEPLOYMENTS_FILE)


def test_every_required_deployment_is_declared_on_the_process_pool(spec):
    assert {d.name for d in spec.deployments} == {"retrain", "customize", "evaluate", "sweep", "rerun-step",
                                                  "rollback"}
    for d in spec.deployments:
        assert d.work_pool.name == DEFAULT_POOL, d.name
        assert d.work_pool.work_queue_name, f"{d.name}: no work queue"
        assert not Path(d.entry_file).is_absolute() and (ROOT / d.entry_file).is_file(), d.entrypoint


def test_prefect_itself_accepts_the_file_shape():
    raw = yaml.safe_load(DEPLOYMENTS_FILE.read_text())
    # `prefect deploy --all --prefect-file deployments/prefect.yaml` reads these keys
    assert raw["build"] is None and raw["push"] is None
    assert "pull" not in raw, "a pull section would override the working directory forge deploy records"
    for d in raw["deployments"]:
        assert set(d) <= {"name", "entrypoint", "description", "tags", "parameters", "work_pool", "schedules",
                          "version", "paused", "concurrency_limit", "enforce_parameter_schema", "triggers"}, d["name"]


@pytest.mark.parametrize("name", ["retrain", "customize", "evaluate", "sweep", "rerun-step", "rollback"])
def test_entrypoint_loads_and_parameters_fit(spec, name):
    flow, schedules = check_deployment(spec.get(name), ROOT)
    assert callable(flow.fn)
    assert len(schedules) == len(spec.get(name).schedules)


def test_retrain_runs_weekly_on_monday_0300_utc(spec):
    from prefect.client.schemas.schedules import CronSchedule

    (sched,) = spec.get("retrain").schedules
    CronSchedule(cron=sched.cron, timezone=sched.timezone)   # prefect's own validation (raises if bad)
    assert sched.timezone == "UTC"
    start = datetime(2026, 11, 25, tzinfo=UTC)                # a Wednesday
    try:
        from croniter import croniter

        it = croniter(sched.cron, start)
        nxt = [it.get_next(datetime) for _ in range(2)]
    except ImportError:  # prefect 3.9 ships cronsim instead of croniter
        from cronsim import CronSim

        it = CronSim(sched.cron, start)
        nxt = [next(it) for _ in range(2)]
    assert [d.isoformat() for d in nxt] == ["2026-11-30T03:00:00+00:00", "2026-12-07T03:00:00+00:00"]
    assert spec.get("retrain").parameters["config_path"].endswith(".yaml")
    assert (ROOT / spec.get("retrain").parameters["config_path"]).is_file()


def test_sweep_runs_every_fifteen_minutes(spec):
    (sched,) = spec.get("sweep").schedules
    p = sched.to_prefect()
    assert p.interval.total_seconds() == 300 and sched.active
    assert spec.get("sweep").parameters["dry_run"] is False


def test_customize_form_is_prefilled_with_a_runnable_example(spec):
    """The UI form opens with this config; "Quick run" runs it from the repo root on the worker."""
    from tasks.config import PipelineConfig

    cfg = PipelineConfig.model_validate(spec.get("customize").parameters["config"])
    assert (ROOT / cfg.data.source).is_file(), cfg.data.source
    assert cfg.serving.commitment is None and cfg.budget.max_usd is not None
    assert "config" not in spec.get("rerun-step").parameters, "rerun-step must take the config from the manifest"


def test_on_demand_deployments_have_no_schedule(spec):
    for name in ("customize", "evaluate", "rerun-step", "rollback"):
        assert spec.get(name).schedules == [], name


def test_rerun_step_exposes_run_id_and_rerun_from(spec):
    from prefect.utilities.callables import parameter_schema

    flow, _ = check_deployment(spec.get("rerun-step"), ROOT)
    props = parameter_schema(flow).model_dump()["properties"]
    assert {"run_id", "rerun_from", "config"} <= set(props)


# --- the UI form for `customize` --------------------------------------------------------------
def _resolve(schema: dict, node: dict) -> dict:
    """Follow $ref / anyOf[$ref, null] to the definition the UI renders."""
    if "$ref" in node:
        return schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    for alt in node.get("anyOf", []):
        if "$ref" in alt:
            return _resolve(schema, alt)
    return node


@pytest.fixture(scope="module")
def customize_schema():
    from prefect.utilities.callables import parameter_schema

    from flows.customize import customize_model

    return parameter_schema(customize_model).model_dump()


def test_customize_form_has_typed_config_fields(customize_schema):
    s = customize_schema
    config = _resolve(s, s["properties"]["config"])
    props = config["properties"]
    assert props["base_model"]["type"] == "string"
    ctype = _resolve(s, props["customization_type"])
    assert set(ctype["enum"]) >= {"FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"}
    data = _resolve(s, props["data"])
    assert data["properties"]["source"]["type"] == "string" and "source" in data["required"]
    assert "preset" in props and props["preset"]["default"] == "balanced"
    serving = _resolve(s, props["serving"])
    assert set(serving["properties"]["mode"]["enum"]) == {"auto", "provisioned", "on_demand"}
    gate = _resolve(s, props["gate"])
    assert "accuracy" in gate["properties"]["metric"]["enum"]
    assert {"name", "base_model", "data"} <= set(config["required"])


def test_ui_style_parameters_validate_and_a_bad_enum_is_refused(customize_schema):
    """What the server does with enforce_parameter_schema when the form is submitted."""
    from prefect.utilities.schema_tools.validation import is_valid

    from tasks.config import load_config

    config = load_config(ROOT / "examples" / "banking77.yaml").model_dump(mode="json")
    assert is_valid({"config": config}, customize_schema)
    bad = {**config, "serving": {**config["serving"], "mode": "always-on"}}
    assert not is_valid({"config": bad}, customize_schema)
    bad = {**config, "customization_type": "FINE-TUNE"}
    assert not is_valid({"config": bad}, customize_schema)


# --- the checks catch broken files --------------------------------------------------------------
def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "prefect.yaml"
    p.write_text(body)
    return p


GOOD_DEPLOYMENT = """
name: t
deployments:
  - name: sweep
    entrypoint: flows/sweep.py:sweep_resources
    work_pool: {name: forge-process}
"""


def test_bad_cron_is_reported_with_the_deployment_name(tmp_path):
    p = _write(tmp_path, GOOD_DEPLOYMENT + "    schedules: [{cron: '0 3 * * mon-xyz'}]\n")
    with pytest.raises(DeployError, match=r"deployment 'sweep': schedules\[0\]"):
        check_deployment(load_deployments_file(p).get("sweep"), ROOT)


def test_unknown_parameter_and_missing_entrypoint_are_reported(tmp_path):
    p = _write(tmp_path, GOOD_DEPLOYMENT + "    parameters: {dryrun: true}\n")
    with pytest.raises(DeployError, match="parameters do not fit flows/sweep.py:sweep_resources"):
        check_deployment(load_deployments_file(p).get("sweep"), ROOT)
    p = _write(tmp_path, GOOD_DEPLOYMENT.replace("flows/sweep.py", "flows/nope.py"))
    with pytest.raises(DeployError, match="entrypoint file flows/nope.py not found"):
        check_deployment(load_deployments_file(p).get("sweep"), ROOT)


def test_schedule_needs_exactly_one_kind_and_names_are_unique(tmp_path):
    p = _write(tmp_path, GOOD_DEPLOYMENT + "    schedules: [{cron: '*/15 * * * *', interval: 900}]\n")
    with pytest.raises(DeployError, match=r"deployments\[sweep\]\.schedules\.0: .*exactly one"):
        load_deployments_file(p)
    p = _write(tmp_path, GOOD_DEPLOYMENT + GOOD_DEPLOYMENT.split("deployments:\n")[1])
    with pytest.raises(DeployError, match="duplicate deployment names: sweep"):
        load_deployments_file(p)


def test_forge_deploy_plan_lists_every_deployment(capsys):
    from forge.cli import main

    assert main(["deploy"]) == 0
    out = capsys.readouterr().out
    for line in ("retrain/retrain", "customize-model/customize", "customize-model/rerun-step",
                 "sweep-resources/sweep", "rollback-lineage/rollback"):
        assert line in out
    assert "every 300 s" in out and "cron '0 3 * * 1' UTC" in out


def test_forge_deploy_apply_without_api_url_says_how_to_fix(monkeypatch, capsys):
    from forge.cli import main

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["deploy", "--apply"]) == 2
    assert "PREFECT_API_URL is not set" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# docker-compose.yml
# ---------------------------------------------------------------------------------------------
def _default_of(value: str) -> str:
    """``${VAR:-default}`` → default (what Compose uses when VAR is unset); anything else as it is."""
    m = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return m.group(1) if m else value


def _env_file(path: Path) -> dict[str, str]:
    pairs = [ln.split("=", 1) for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def _env(service: str, services: dict | None = None) -> dict[str, str]:
    """The service's environment as Compose builds it with no variables set: its env_file(s), then
    ``environment`` on top."""
    svc = (services or SERVICES)[service]
    files = svc.get("env_file") or []
    merged: dict[str, str] = {}
    for f in [files] if isinstance(files, str) else files:
        merged.update(_env_file(ROOT / _default_of(f)))
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    merged.update({k: _default_of(str(v)) for k, v in env.items()})
    return merged


def _healthcheck_text(service: str) -> str:
    test = SERVICES[service]["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def _port_of(service: str) -> str:
    cmd = SERVICES[service]["command"]
    return cmd[cmd.index("--port") + 1]


def test_compose_has_the_services():
    assert set(SERVICES) == {"postgres", "prefect-server", "emulator", "worker", "deploy"}
    for name in ("prefect-server", "emulator", "worker", "deploy"):
        svc = SERVICES[name]
        assert svc["image"] == "bedrock-forge:latest" and svc["build"]["dockerfile"] == "Dockerfile", name
    assert (ROOT / SERVICES["worker"]["build"]["context"] / "Dockerfile").is_file()


def test_long_running_services_have_healthchecks_that_match_their_ports():
    assert "pg_isready" in _healthcheck_text("postgres")
    server_port = _port_of("prefect-server")
    assert f"localhost:{server_port}/api/health" in _healthcheck_text("prefect-server")
    emu_port = _port_of("emulator")
    assert f"localhost:{emu_port}/_emulator/health" in _healthcheck_text("emulator")
    for name in ("postgres", "prefect-server", "emulator"):
        hc = SERVICES[name]["healthcheck"]
        assert hc.get("retries", 0) >= 3 and hc.get("interval"), name


def test_start_order_waits_for_health():
    dep = SERVICES["prefect-server"]["depends_on"]
    assert dep["postgres"]["condition"] == "service_healthy"
    assert SERVICES["deploy"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    w = SERVICES["worker"]["depends_on"]
    assert w["prefect-server"]["condition"] == "service_healthy"
    assert w["emulator"]["condition"] == "service_healthy"
    assert w["deploy"]["condition"] == "service_completed_successfully"


def test_server_uses_postgres_with_matching_credentials():
    pg = _env("postgres")
    url = _env("prefect-server")["PREFECT_API_DATABASE_CONNECTION_URL"]
    m = re.fullmatch(r"postgresql\+asyncpg://(\w+):(\w+)@postgres:5432/(\w+)", url)
    assert m, url
    assert m.groups() == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    cmd = SERVICES["prefect-server"]["command"]
    assert cmd[:3] == ["prefect", "server", "start"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_worker_and_deploy_point_at_the_server_and_the_emulator():
    server_url = f"http://prefect-server:{_port_of('prefect-server')}/api"
    for name in ("worker", "deploy"):
        assert _env(name)["PREFECT_API_URL"] == server_url, name
    env = _env("worker")
    assert env["AWS_ENDPOINT_URL"] == f"http://emulator:{_port_of('emulator')}"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_DEFAULT_REGION"]
    assert not re.fullmatch(r"AKIA[0-9A-Z]{16}", env["AWS_ACCESS_KEY_ID"]), "no real keys in the compose file"
    wcmd = SERVICES["worker"]["command"]
    assert wcmd[:3] == ["prefect", "worker", "start"] and wcmd[wcmd.index("--pool") + 1] == DEFAULT_POOL
    assert SERVICES["deploy"]["command"] == ["forge", "deploy", "--apply"]
    assert SERVICES["deploy"]["restart"] == "no"
    ecmd = SERVICES["emulator"]["command"]
    assert ecmd[:2] == ["forge", "emulator"] and ecmd[ecmd.index("--host") + 1] == "0.0.0.0"


def test_state_lives_in_declared_volumes():
    declared = set(COMPOSE["volumes"])
    mounts = {name: [v.split(":") for v in svc.get("volumes", [])] for name, svc in SERVICES.items()}
    assert ["postgres-data", "/var/lib/postgresql/data"] in mounts["postgres"]
    assert any(src == "emulator-state" for src, _ in mounts["emulator"])
    emu_dir = dict((dst, src) for src, dst in mounts["emulator"])
    ecmd = SERVICES["emulator"]["command"]
    assert ecmd[ecmd.index("--state-dir") + 1] in emu_dir, "the emulator must write its state into the volume"
    assert ["runs", "/app/runs"] in mounts["worker"]
    used = {src for ms in mounts.values() for src, *_ in ms if not src.startswith((".", "/"))}
    assert used <= declared, f"undeclared volumes: {used - declared}"


def _dockerfile_lines(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_dockerfile_builds_from_a_registry_python_or_a_local_debian_base():
    lines = _dockerfile_lines(ROOT / "Dockerfile")
    assert lines[0] == "ARG BASE_IMAGE=python:3.11-slim" and lines[1] == "FROM ${BASE_IMAGE}"
    # a base without Python (the debootstrap root) gets Debian's python3 + venv; both get the same venv
    setup = next(ln for ln in lines if "python3 -m venv /opt/venv" in ln)
    assert "apt-get install" in setup and "python3-venv" in setup and "if ! python3 -c" in setup
    assert "ENV" in lines[lines.index(next(ln for ln in lines if "VIRTUAL_ENV=/opt/venv" in ln))]
    assert any("PATH=/opt/venv/bin:$PATH" in ln for ln in lines)


def test_dockerfile_installs_cpu_torch_before_the_project():
    text = (ROOT / "Dockerfile").read_text()
    lines = _dockerfile_lines(ROOT / "Dockerfile")
    torch_at = next(i for i, ln in enumerate(lines) if "pip install -q torch==${TORCH_VERSION}" in ln)
    assert '--index-url "${TORCH_INDEX_URL}"' in lines[torch_at]
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in lines
    assert "ARG TORCH_VERSION=2.13.0" in lines
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text(), "the image and make setup install the same torch"
    assert "/tmp/wheels/torch-${TORCH_VERSION}*.whl" in lines[torch_at]     # a staged CPU wheel wins
    project_at = next(i for i, ln in enumerate(lines) if "pip install -q -e ." in ln)
    assert torch_at < project_at
    assert "'+cpu' in v or not torch.cuda.is_available()" in lines[project_at]
    for path in ("forge", "tasks", "flows", "emulator", "deployments", "examples"):
        assert re.search(rf"^COPY {path} \./{path}$", text, re.M), path
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs"} <= set(ignore)
    assert not any(p.startswith("docker") for p in ignore), "docker/ (forge-init, wheels) is part of the context"
    assert "wheels/*.whl" in (ROOT / "docker" / ".gitignore").read_text(), "staged wheels are never committed"


def test_every_container_runs_under_forge_init_and_the_worker_may_drain():
    lines = _dockerfile_lines(ROOT / "Dockerfile")
    assert 'ENTRYPOINT ["forge-init"]' in lines
    assert any(ln.startswith("COPY docker/forge-init ") for ln in lines)
    worker = SERVICES["worker"]
    drain = float(_env("worker")["FORGE_DRAIN_SECONDS"])
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > drain, "Docker would SIGKILL the drain"
    assert "entrypoint" not in worker, "the worker must keep the image's forge-init entrypoint"


def test_real_aws_is_one_env_file_away():
    (files,) = [SERVICES["worker"]["env_file"]]
    assert files == ["${FORGE_AWS_ENV_FILE:-docker/env/emulator.env}"]
    aws = _env_file(ROOT / "docker" / "env" / "aws.env.example")
    assert "AWS_ENDPOINT_URL" not in aws and aws["AWS_DEFAULT_REGION"]
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(aws), "no credentials in the example"
    env = _env("prefect-server")
    assert env["PREFECT_UI_URL"] == "http://localhost:4200" and env["PREFECT_UI_API_URL"].endswith(":4200/api")


# ---------------------------------------------------------------------------------------------
# docker-compose.test.yml (the override `make compose-test` layers on docker-compose.yml)
# ---------------------------------------------------------------------------------------------
TEST_COMPOSE = yaml.safe_load((ROOT / "docker-compose.test.yml").read_text())
TEST_SERVICES = TEST_COMPOSE["services"]


def _merged(service: str) -> dict:
    """docker-compose.yml's service with the override on top (mappings merge, lists and scalars replace)."""
    base, over = dict(SERVICES[service]), TEST_SERVICES.get(service, {})
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def _var_default(text: str, var: str) -> str:
    m = re.search(r"\$\{" + var + r":-([^}]*)\}", text)
    assert m, f"{var} not used in {text!r}"
    return m.group(1)


def test_the_override_covers_every_service_on_the_host_network_with_local_images():
    assert set(TEST_SERVICES) == set(SERVICES)
    for name in SERVICES:
        svc = _merged(name)
        assert svc["network_mode"] == "host", name
        assert svc["image"].endswith(":compose-test"), name
        assert svc["build"]["network"] == "host", name          # the build's RUN steps reach PyPI and Debian
        assert svc["build"]["args"]["BASE_IMAGE"] == "${FORGE_BASE_IMAGE:-forge-debian:bookworm}", name
    pg = _merged("postgres")
    assert pg["build"]["context"] == "docker/postgres" and (ROOT / "docker/postgres/Dockerfile").is_file()
    assert pg["volumes"] == SERVICES["postgres"]["volumes"], "same data volume as the users' postgres"


def test_the_override_ports_agree_between_commands_healthchecks_and_clients():
    server = " ".join(_merged("prefect-server")["command"])
    emu = " ".join(_merged("emulator")["command"])
    server_port = _var_default(server, "FORGE_TEST_SERVER_PORT")
    emu_port = _var_default(emu, "FORGE_TEST_EMULATOR_PORT")
    pg_port = _var_default(str(TEST_SERVICES["postgres"]["environment"]["PGPORT"]), "FORGE_TEST_PG_PORT")
    assert "--host 127.0.0.1" in server and "--host 127.0.0.1" in emu    # nothing on another interface
    assert f"127.0.0.1:${{FORGE_TEST_SERVER_PORT:-{server_port}}}/api/health" in \
        " ".join(_merged("prefect-server")["healthcheck"]["test"])
    assert f"127.0.0.1:${{FORGE_TEST_EMULATOR_PORT:-{emu_port}}}/_emulator/health" in \
        " ".join(_merged("emulator")["healthcheck"]["test"])
    assert f"${{FORGE_TEST_PG_PORT:-{pg_port}}}" in _merged("postgres")["healthcheck"]["test"]
    db = _merged("prefect-server")["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert db.endswith(f"@127.0.0.1:${{FORGE_TEST_PG_PORT:-{pg_port}}}/prefect")
    for name in ("worker", "deploy"):
        assert _merged(name)["environment"]["PREFECT_API_URL"] == \
            f"http://127.0.0.1:${{FORGE_TEST_SERVER_PORT:-{server_port}}}/api", name
    assert _merged("worker")["environment"]["AWS_ENDPOINT_URL"] == \
        f"http://127.0.0.1:${{FORGE_TEST_EMULATOR_PORT:-{emu_port}}}"


def test_the_override_keeps_start_order_volumes_and_lowers_only_the_sweep_interval():
    for name in SERVICES:
        for key in ("depends_on", "volumes", "restart"):
            assert key not in TEST_SERVICES[name], f"{name}.{key}: the override must not change it"
    assert TEST_SERVICES["deploy"]["command"] == ["deploy-with-sweep"]
    assert _var_default(TEST_SERVICES["deploy"]["environment"]["FORGE_SWEEP_INTERVAL_S"],
                        "FORGE_SWEEP_INTERVAL_S") == "30"
    assert (ROOT / "docker" / "deploy-with-sweep").is_file()


# ---------------------------------------------------------------------------------------------
# Bedrock quota limits and the crash-resume automation (issue 18 part 5)
# ---------------------------------------------------------------------------------------------
def test_the_resume_automation_starts_the_rerun_deployment_with_the_crashed_runs_id():
    from forge.commands.deploy import resume_automation

    a = resume_automation("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222")
    assert a.trigger.expect == {"prefect.flow-run.Crashed"}          # a lost machine, not a Failed run
    related = a.trigger.match_related
    related = related[0] if isinstance(related, list) else related
    assert related.root["prefect.resource.id"] == "prefect.deployment.11111111-1111-1111-1111-111111111111"
    (action,) = a.actions
    assert action.type == "run-deployment" and str(action.deployment_id) == "22222222-2222-2222-2222-222222222222"
    assert action.parameters == {"run_id": "{{ flow_run.name }}"}     # flow runs are named after their run id


def test_the_zombie_bound_is_configurable_but_never_below_a_heartbeat(monkeypatch):
    from forge.commands.deploy import FLOW_HEARTBEAT_S, ZOMBIE_WITHIN_S, zombie_automation, zombie_within_s

    monkeypatch.delenv("FORGE_ZOMBIE_WITHIN_S", raising=False)
    assert zombie_within_s() == ZOMBIE_WITHIN_S
    monkeypatch.setenv("FORGE_ZOMBIE_WITHIN_S", "45")
    assert zombie_within_s() == 45 and zombie_automation().trigger.within.total_seconds() == 45
    monkeypatch.setenv("FORGE_ZOMBIE_WITHIN_S", "1")
    assert zombie_within_s() == FLOW_HEARTBEAT_S + 5
    for hostile in ("soon", "inf", "nan", "-inf"):      # inf overflowed int() into a traceback
        monkeypatch.setenv("FORGE_ZOMBIE_WITHIN_S", hostile)
        with pytest.raises(DeployError, match=f"FORGE_ZOMBIE_WITHIN_S={hostile!r}"):
            zombie_within_s()


def test_quota_limits_are_get_or_create_and_keep_an_operators_value(prefect_backend, monkeypatch):
    """forge deploy --apply creates one limit per quota and Region with AWS's default; a re-apply keeps a value an
    operator set in the UI; only an explicit --training-jobs sets it again."""
    import uuid

    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from forge.commands.deploy import ensure_quota_limits
    from tasks.run import quota

    region = f"zz-test-{uuid.uuid4().hex[:6]}"
    monkeypatch.delenv(quota.ENV_TRAINING, raising=False)
    monkeypatch.setenv(quota.ENV_PT_UNITS, "3")
    said: list[str] = []
    names = [quota.limit_name(quota.TRAINING_JOBS, region), quota.limit_name(quota.PT_MODEL_UNITS, region)]
    try:
        first = ensure_quota_limits([region], echo=said.append)
        assert first == {names[0]: (quota.default_values()[quota.TRAINING_JOBS], "created"), names[1]: (3, "created")}
        assert all(n in "\n".join(said) for n in names)
        with get_client(sync_client=True) as c:
            c.update_global_concurrency_limit(names[0], GlobalConcurrencyLimitUpdate(limit=9))   # the operator
        monkeypatch.setenv(quota.ENV_PT_UNITS, "4")
        again = ensure_quota_limits([region], echo=said.append)
        assert again == {names[0]: (9, "kept"), names[1]: (3, "kept")}
        forced = ensure_quota_limits([region], training_jobs=5, echo=said.append)
        assert forced[names[0]] == (5, "set") and forced[names[1]] == (3, "kept")
        with get_client(sync_client=True) as c:
            assert c.read_global_concurrency_limit_by_name(names[0]).limit == 5
        with pytest.raises(DeployError):
            ensure_quota_limits([region], pt_model_units=-1, echo=said.append)
    finally:
        with get_client(sync_client=True) as c:
            for n in names:
                try:
                    c.delete_global_concurrency_limit_by_name(n)
                except Exception:  # noqa: BLE001
                    pass


def test_forge_deploy_takes_the_quota_flags():
    import argparse

    from forge.commands import deploy

    parser = argparse.ArgumentParser()
    deploy.register(parser.add_subparsers())
    args = parser.parse_args(["deploy", "--apply", "--quota-region", "eu-west-1", "--quota-region", "us-east-1",
                              "--training-jobs", "4", "--pt-model-units", "2"])
    assert (args.quota_regions, args.training_jobs, args.pt_model_units) == (["eu-west-1", "us-east-1"], 4, 2)


def test_forge_deploy_plan_names_the_quota_limits(capsys, monkeypatch):
    from forge.cli import main

    monkeypatch.delenv("FORGE_QUOTA_REGIONS", raising=False)
    monkeypatch.setenv("FORGE_QUOTA_PT_MODEL_UNITS", "3")
    assert main(["deploy", "--only", "sweep", "--quota-region", "eu-west-1", "--training-jobs", "5"]) == 0
    out = capsys.readouterr().out
    assert "bedrock-training-jobs:eu-west-1=5" in out and "bedrock-pt-model-units:eu-west-1=3" in out
