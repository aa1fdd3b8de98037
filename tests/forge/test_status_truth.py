"""`forge status` tells the truth (issue 18 Build 7): a run whose manifest still says "running" is shown crashed
when its serving heartbeat in S3 is stale or Prefect marked it Crashed, and a cancelled run is not shown failed.
Machine B reads everything from S3 (and Prefect) with no local state."""

from __future__ import annotations

import json
import re
import time

import pytest

from emulator.testing import boto3_clients
from forge.cli import main

PT = "arn:aws:bedrock:us-east-1:<account>:provisioned-model/lost"


def _manifest(run_id: str, flow_run_id: str = "local", status: str = "running") -> dict:
    return {"run_id": run_id, "run_key": "a1b2c3d4e5f60718", "status": status, "flow_run_id": flow_run_id,
            "config": {"name": "lost", "aws": {"prefix": "forge"}},
            "steps": {"prepare": {"status": "completed"}, "evaluate": {"status": "running"}},
            "resources": {"data": {"output": "s3://lost-runs/forge/output/a1b2c3d4e5f60718/"},
                          "serving": {"kind": "provisioned", "arn": PT, "name": "pt"}},
            "timings": {"started": "2026-12-01T10:00:00+00:00"}}


def _put(s3, key: str, body: dict) -> None:
    s3.put_object(Bucket="lost-runs", Key=key, Body=json.dumps(body).encode())


def test_a_run_whose_machine_died_while_serving_is_shown_crashed_not_running(fresh_emulator, tmp_path, capsys,
                                                                               monkeypatch):
    s3 = boto3_clients(fresh_emulator.url).s3
    s3.create_bucket(Bucket="lost-runs")
    _put(s3, "forge/runs/lost-1/manifest.json", _manifest("lost-1"))
    _put(s3, "forge/output/a1b2c3d4e5f60718/serving/heartbeat.json",
         {"owner": "local", "run_id": "lost-1", "heartbeat": time.time() - 900})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    uri = "s3://lost-runs/forge/runs/"
    assert main(["status", "--runs-uri", uri, "--endpoint", fresh_emulator.url]) == 0
    out = capsys.readouterr().out
    assert "crashed (no heartbeat) at evaluate" in out and PT in out, out
    assert main(["status", "lost-1", "--runs-uri", uri, "--endpoint", fresh_emulator.url]) == 0
    out = capsys.readouterr().out
    # the heartbeat was written 900 s before the first status call; a busy machine shows 901 or 902
    assert "state: crashed (no heartbeat) at evaluate" in out and re.search(r"\b90[012] s old", out), out
    # the same run while its heartbeat beats: running
    _put(s3, "forge/output/a1b2c3d4e5f60718/serving/heartbeat.json",
         {"owner": "local", "run_id": "lost-1", "heartbeat": time.time()})
    assert main(["status", "--runs-uri", uri, "--endpoint", fresh_emulator.url, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["state"] == "running" and row["status"] == "running", row


@pytest.mark.usefixtures("prefect_backend")
def test_prefect_says_crashed_or_cancelled_and_status_says_so(tmp_path, capsys, monkeypatch):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.states import Cancelled, Crashed

    @flow(name="status-truth")
    def noop() -> None:
        return None

    runs = tmp_path / "runs"
    with get_client(sync_client=True) as client:
        crashed, cancelled = client.create_flow_run(noop), client.create_flow_run(noop)
        client.set_flow_run_state(crashed.id, Crashed(message="marked Crashed: no heartbeat for 90 s"), force=True)
        client.set_flow_run_state(cancelled.id, Cancelled(), force=True)
    for run_id, fr, status in (("zombie-1", crashed.id, "running"), ("cancel-1", cancelled.id, "interrupted")):
        (runs / run_id).mkdir(parents=True)
        doc = _manifest(run_id, str(fr), status)
        del doc["resources"]["serving"]
        (runs / run_id / "manifest.json").write_text(json.dumps(doc))
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    assert main(["status", "--runs-dir", str(runs), "--json"]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["zombie-1"]["state"] == "crashed (no heartbeat)", rows
    assert rows["cancel-1"]["state"] == "cancelled", rows
