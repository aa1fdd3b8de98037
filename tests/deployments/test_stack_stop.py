"""`make stack` + Ctrl-C while a run serves (issue 15): the stack stops the worker first; the run's watchdog deletes
its provisioned throughput while the emulator (the AWS side) is still up, and only then the emulator and the server
stop. Before, the whole process group died within 4 s and the PT stayed InService."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from emulator.testing import alive_serving
from emulator.testing import ledger_calls as calls
from forge import stack
from tests.support import REPO_ROOT

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.machines, pytest.mark.timeout(420)]


def _config() -> dict:
    from tasks.config import load_config

    cfg = load_config(REPO_ROOT / "examples" / "banking77.yaml").model_dump(mode="json")
    cfg["name"] = "stack-stop"
    cfg["data"]["max_records"] = 200
    cfg["serving"].update(mode="provisioned", model_units=1)
    cfg["evaluation"].update(max_examples=40, bootstrap_samples=100, concurrency=2)
    cfg["gate"].update(min_delta=-1.0, require_ci_above_zero=False)
    return json.loads(json.dumps(cfg))


def _saved_ledger(state_dir) -> dict:
    """The ledger the stack's emulator saved with its state (``--state-dir``), after every mutation."""
    return json.loads((state_dir / "bedrock.json").read_text())["ledger"]


def _final_state(api: str, fr_id: str) -> str | None:
    """The flow run's state type once it is final (COMPLETED, FAILED, CRASHED, CANCELLED), else None."""
    try:
        state = httpx.get(f"{api}/flow_runs/{fr_id}", timeout=10).json().get("state") or {}
    except (httpx.HTTPError, ValueError):
        return None
    return state.get("type") if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None


def _run_said(api: str, fr_id: str | None, runs: Path, emu: str) -> str:
    lines = []
    try:
        if fr_id:
            run = httpx.get(f"{api}/flow_runs/{fr_id}", timeout=10).json()
            lines.append(f"--- flow run {fr_id}: {(run.get('state') or {}).get('type')} "
                         f"{(run.get('state') or {}).get('message')}")
            logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [fr_id]}},
                                                            "sort": "TIMESTAMP_DESC", "limit": 30}, timeout=10).json()
            lines += [f"    {lg['level']} {lg['message'][:600]}" for lg in reversed(logs)]
        for m in runs.glob("*/manifest.json"):
            doc = json.loads(m.read_text())
            lines.append(f"--- {m.parent.name}/manifest.json: {doc.get('status')} {doc.get('error')}")
            lines += [f"    {k}: {v.get('status')} {v.get('error') or ''}" for k, v in (doc.get('steps') or {}).items()]
        led = httpx.get(f"{emu}/_emulator/ledger", timeout=10).json()
        refused = [c for c in led["calls"] if int(c["status"] or 500) >= 300 and c["operation"] != "GetObject"]
        lines.append(f"--- emulator: {len(led['calls'])} calls, refused: "
                     + "; ".join(f"{c['operation']} {c['status']} {c.get('error')}" for c in refused[-15:]))
    except Exception as err:  # noqa: BLE001 - diagnostics only
        lines.append(f"(diagnostics failed: {err!r})")
    return "\n".join(lines)


def test_ctrl_c_of_make_stack_deletes_the_serving_resource_before_the_emulator_stops(tmp_path):
    port, emu_port = stack.free_port(), stack.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "AWS_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    out_path = tmp_path / "stack.out"
    out = out_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "forge.stack", "--home", str(tmp_path / "stack"), "--port",
                             str(port), "--emulator-port", str(emu_port)], cwd=REPO_ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    api, emu = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{emu_port}"

    fr_id: list[str] = []

    def diagnostics() -> str:
        """What each layer said: the stack, the worker, the run (its Prefect state and logs, its manifest), its
        watchdog and the emulator's refused calls (a CI failure must be readable: once, under load, the run let
        its PT go within ~2 s and nothing here said why)."""
        parts = [f"--- stack output\n{out_path.read_text()[-1500:]}"]
        for f in [tmp_path / "stack" / "logs" / "worker.log", *sorted((tmp_path / "runs").glob("*/watchdog.log"))]:
            if f.exists():
                parts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        parts.append(_run_said(api, fr_id[0] if fr_id else None, tmp_path / "runs", emu))
        return "\n".join(parts)

    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything" not in out_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the stack did not come up\n{diagnostics()}")
            time.sleep(0.3)
        httpx.post(f"{emu}/_emulator/faults", json=[{"operation": "InvokeModel", "latency_ms": 500}],
                   timeout=10).raise_for_status()
        fr_id.append(stack.trigger(api, "customize-model/customize",
                                   {"config": _config(), "runs_dir": str(tmp_path / "runs")}))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            led = httpx.get(f"{emu}/_emulator/ledger", timeout=10).json()
            if calls(led, "InvokeModel") and alive_serving(led):
                break
            assert proc.poll() is None, diagnostics()
            if _final_state(api, fr_id[0]):   # the run ended before it served: say how, now, not in 240 s
                pytest.fail(f"the run ended before the test saw it serve\n{diagnostics()}")
            time.sleep(0.5)
        else:
            pytest.fail(f"evaluation never started\n{diagnostics()}")
        os.killpg(proc.pid, signal.SIGINT)            # what the terminal sends on Ctrl-C
        last = led
        while proc.poll() is None:
            try:
                last = httpx.get(f"{emu}/_emulator/ledger", timeout=5).json()
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert proc.wait(timeout=120) == 0, diagnostics()
        # The truth is the emulator's own saved state, written after every mutation and read after it stopped: the
        # test's last live read can predate the delete (under load the stack may see the delete and stop the
        # emulator before this loop's next read — what a full-suite run once showed as "alive").
        final = _saved_ledger(tmp_path / "stack" / "emulator")
        assert alive_serving(final) == [], (f"the PT must be deleted before the emulator stops (last live read: "
                                            f"{alive_serving(last)})\n{diagnostics()}")
        deleted = [r for r in final["resources"].values() if r["type"] == "provisioned-model-throughput"]
        assert deleted and all(r["state"] == "Deleted" for r in deleted)
        # deleted by the run's own layers (its watchdog, or its finally), not by the stack's last resort
        assert "the stack deletes them now" not in out_path.read_text(), diagnostics()
        manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
        assert (manifest.get("teardown") or {}).get("by") in ("watchdog", "finally"), diagnostics()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()
