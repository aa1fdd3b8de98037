"""``forge deploy --apply`` on a REAL Prefect server (issue 18 part 6): it keeps existing schedules (an operator's
pause survives a re-apply; only a schedule the file changed is replaced), and with FORGE_NOTIFY_WEBHOOK_URL set it
installs the failure notifications — a failing customize run, executed by a process worker on the emulator,
makes a local HTTP listener (standing in for Slack) receive a message with the run id, the error, the real
rerun command and a link to the run in the UI.

One module-scoped scenario: server (SQLite: the PostgreSQL backend is tests/deployments/test_postgres_server.py),
deploy, one failing run through a --run-once worker.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from forge import stack
from forge.commands.deploy import FAILED_STEP_LABEL, NOTIFY_BLOCK, NOTIFY_ENV
from tasks.run.manifest import Manifest
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(300)]

NOTIFY_NAME = "bedrock-forge: notify on-call when a run fails"


class _Listener:
    """A local webhook: every POST body (JSON) is appended to ``received``."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.arrived:
                    outer.received.append(json.loads(body or b"{}"))
                    outer.arrived.notify_all()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/forge-secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, needle: str, timeout: float = 90.0) -> dict:
        """The first message whose text holds ``needle``."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                found = [m for m in self.received if needle in m.get("text", "")]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no webhook message with {needle!r} within {timeout:.0f} s; "
                                         f"got {self.received}")
                self.arrived.wait(timeout=left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _failing_config(runs_dir: Path) -> dict:
    from tasks.config import load_config

    cfg = load_config(REPO_ROOT / "examples" / "banking77.yaml").model_dump(mode="json")
    cfg["name"] = "notify-test"
    cfg["data"]["source"] = str(runs_dir.parent / "no-such-data.csv")      # the prepare step fails on it
    return cfg


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, emulator):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    tmp = tmp_path_factory.mktemp("notify")
    runs_dir, logs = tmp / "runs", tmp / "logs"
    hook = _Listener()
    server = worker = None
    old = os.environ.get(NOTIFY_ENV)
    os.environ[NOTIFY_ENV] = hook.url
    try:
        t0 = time.monotonic()
        server = stack.start_server(tmp / "prefect-home", ui=False, log_dir=logs)
        marks = {"server": time.monotonic() - t0}
        lines: list[str] = []
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            ids = deploy_all(echo=lines.append, only=["customize", "sweep", "retrain"])
        marks["deployed"] = time.monotonic() - t0
        run = stack.trigger(server.url, "customize-model/customize",
                            {"config": _failing_config(runs_dir), "runs_dir": str(runs_dir)})
        worker = stack.start_worker(tmp / "worker-home", server.url, aws_endpoint=emulator.url, run_once=True,
                                    log_dir=logs, extra_env={"FORGE_CACHE_DIR": str(tmp / "cache"),
                                                             "FORGE_RUNS_DIR": str(runs_dir)})
        finished = stack.wait_flow_run(server.url, run, timeout=180)
        marks["run finished"] = time.monotonic() - t0
        worker.proc.wait(timeout=60)
        marks["worker exited"] = time.monotonic() - t0
        print("notification scenario timings (s since start):", {k: round(v, 1) for k, v in marks.items()})
        yield {"api": server.url, "ids": ids, "run": finished, "hook": hook, "runs_dir": runs_dir,
               "echo": lines, "worker_log": worker.log}
    finally:
        if old is None:
            os.environ.pop(NOTIFY_ENV, None)
        else:
            os.environ[NOTIFY_ENV] = old
        if worker is not None:
            worker.stop()
        if server is not None:
            server.stop()
        hook.close()


def _call(method: str, url: str, **kw) -> httpx.Response:
    """One API call, retried while a busy SQLite server answers 502-504 (as stack.trigger does); raises on 4xx."""
    for attempt in range(6):
        r = httpx.request(method, url, timeout=30, **kw)
        if r.status_code not in (502, 503, 504):
            break
        time.sleep(1.0 + attempt)
    r.raise_for_status()
    return r


def _schedules(api: str, dep_id: str) -> list[dict]:
    return _call("GET", f"{api}/deployments/{dep_id}/schedules").json()


def _deploy(api: str, **kw) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import deploy_all

    with temporary_settings(updates={PREFECT_API_URL: api}):
        return deploy_all(echo=lambda *_: None, **kw)


# -- notifications -------------------------------------------------------------------------------------
def test_a_failing_run_notifies_the_webhook_with_what_on_call_needs(scenario):
    run = scenario["run"]
    assert run["state"]["type"] == "FAILED", run["state"]
    manifest = Manifest.find(str(scenario["runs_dir"]), run["name"])      # the flow run is named after the run id
    assert manifest.doc.status == "failed"
    msg = scenario["hook"].wait_for(run["name"])
    text = msg["text"]
    assert msg["subject"] == f"bedrock-forge: customize-model run {run['name']} is Failed"
    assert f"Run id: {run['name']}" in text
    assert f"forge rerun {run['name']}" in text and "RUN_ID" not in text
    assert "no-such-data.csv" in text                                     # the error, from the state message
    assert f"{scenario['api'].removesuffix('/api')}/runs/flow-run/{run['id']}" in text
    assert "None" not in text.split("Run in the UI:")[1]


def test_the_message_names_the_failed_step_and_reruns_from_it(scenario):
    run = scenario["run"]
    text = scenario["hook"].wait_for(run["name"], timeout=10)["text"]
    assert "Failed step: prepare" in text and f"forge rerun {run['name']} --from prepare" in text


def test_a_labelled_failed_step_becomes_the_rerun_command(scenario):
    """The template's other branch: a customize run of an existing forge run (``run_id``) whose flow recorded the
    failed step; the state set through the API as any Failed run's is."""
    api, dep_id = scenario["api"], scenario["ids"]["customize"]
    r = _call("POST", f"{api}/deployments/{dep_id}/create_flow_run", json={"parameters": {"run_id": "oncall-run-7"}})
    fr = r.json()["id"]
    _call("PATCH", f"{api}/flow_runs/{fr}/labels", json={FAILED_STEP_LABEL: "customize"})
    _call("POST", f"{api}/flow_runs/{fr}/set_state", json={
        "state": {"type": "FAILED", "name": "Failed", "message": "ThrottlingException: slow down"}, "force": True})
    text = scenario["hook"].wait_for("oncall-run-7")["text"]
    assert "Run id: oncall-run-7" in text and "Failed step: customize" in text
    assert "forge rerun oncall-run-7 --from customize" in text and "ThrottlingException: slow down" in text


def test_the_webhook_url_is_kept_secret_in_the_block(scenario):
    api = scenario["api"]
    doc = json.dumps(_call("GET", f"{api}/block_types/slug/custom-webhook/block_documents/name/{NOTIFY_BLOCK}").json())
    assert "forge-secret-token" not in doc and "{{webhookUrl}}" in doc
    assert not any("forge-secret-token" in line for line in scenario["echo"])


def test_reapply_keeps_one_notify_automation(scenario):
    _deploy(scenario["api"], only=["sweep"])
    mine = [a for a in _call("POST", f"{scenario['api']}/automations/filter", json={}).json()
            if a["name"] == NOTIFY_NAME]
    assert len(mine) == 1 and mine[0]["enabled"]
    body = mine[0]["actions"][0]["body"]
    assert "{{ flow_run|ui_url }}" not in body and "/runs/flow-run/{{ flow_run.id }}" in body


def test_without_the_variable_no_notification_is_installed(scenario, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from forge.commands.deploy import ensure_notifications

    monkeypatch.delenv(NOTIFY_ENV)
    said: list[str] = []
    with temporary_settings(updates={PREFECT_API_URL: scenario["api"]}):
        assert ensure_notifications(said.append) is None
    assert NOTIFY_ENV in said[0]


# -- schedules -----------------------------------------------------------------------------------------
def test_reapply_keeps_schedules_and_what_the_operator_paused(scenario):
    api, ids = scenario["api"], scenario["ids"]
    (sweep,) = _schedules(api, ids["sweep"])
    (retrain,) = _schedules(api, ids["retrain"])
    _call("PATCH", f"{api}/deployments/{ids['sweep']}/schedules/{sweep['id']}", json={"active": False})
    _call("POST", f"{api}/deployments/{ids['retrain']}/pause_deployment")

    again = _deploy(api, only=list(ids))
    assert again == ids
    (sweep2,) = _schedules(api, ids["sweep"])
    (retrain2,) = _schedules(api, ids["retrain"])
    assert sweep2["id"] == sweep["id"] and sweep2["active"] is False        # still paused, same schedule
    assert sweep2["schedule"]["anchor_date"] == sweep["schedule"]["anchor_date"]
    assert retrain2["id"] == retrain["id"]
    assert _call("GET", f"{api}/deployments/{ids['retrain']}").json()["paused"] is True
    _call("POST", f"{api}/deployments/{ids['retrain']}/resume_deployment")


def test_reapply_replaces_only_a_schedule_the_file_changed(scenario, tmp_path):
    api, ids = scenario["api"], scenario["ids"]
    doc = yaml.safe_load((REPO_ROOT / "deployments" / "prefect.yaml").read_text())
    for d in doc["deployments"]:
        if d["name"] == "sweep":
            d["schedules"] = [{"interval": 600, "active": True}]
    changed = tmp_path / "prefect.yaml"
    changed.write_text(yaml.safe_dump(doc))
    (before,) = _schedules(api, ids["retrain"])
    _deploy(api, path=changed, only=["sweep", "retrain"])
    (sweep,) = _schedules(api, ids["sweep"])
    assert sweep["schedule"]["interval"] == 600.0 and sweep["active"] is True
    (after,) = _schedules(api, ids["retrain"])
    assert after["id"] == before["id"]
    dep = _call("GET", f"{api}/deployments/{ids['sweep']}").json()
    assert dep["enforce_parameter_schema"] is True and dep["parameters"]["stale_after_seconds"] == 120
