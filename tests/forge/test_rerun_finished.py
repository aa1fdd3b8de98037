"""`forge rerun RUN_ID` of a run that finished every step (issue 18): it checks the run against AWS and redoes
nothing — not one mutating call but the write of its own record in S3 (it used to rerun from evaluate: a PT created
and deleted, 5 mutating calls)."""

from __future__ import annotations

import pytest
import yaml

from emulator.testing import ledger_calls
from forge.cli import main
from scenarios.harness import small_config
from tests.support.aws import changed_objects, s3_objects

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow]


def test_rerun_of_a_finished_run_makes_no_mutating_call(tmp_path, fresh_emulator, capsys):
    cfg = tmp_path / "done.yaml"
    cfg.write_text(yaml.safe_dump(small_config("rerun-done")))
    runs = tmp_path / "runs"
    assert main(["run", str(cfg), "--endpoint", fresh_emulator.url, "--runs-dir", str(runs)]) == 0
    (run_dir,) = runs.glob("rerun-done-*")
    before = len(ledger_calls(fresh_emulator.ledger(), mutating=True, ok=False))
    objects = s3_objects(fresh_emulator.url)
    capsys.readouterr()
    assert main(["rerun", run_dir.name, "--endpoint", fresh_emulator.url, "--runs-dir", str(runs)]) == 0
    err = capsys.readouterr().err
    assert "has finished every step" in err
    after = ledger_calls(fresh_emulator.ledger(), mutating=True, ok=False)
    # the one write is the run's own record in S3 (attempt 2, tasks/run/store.py): no resource, no other object
    assert [c for c in after[before:] if c["operation"] != "PutObject"] == [], [c["operation"] for c in after[before:]]
    changed = changed_objects(objects, s3_objects(fresh_emulator.url))
    assert changed == [f for f in changed if f.endswith(f"/runs/{run_dir.name}/manifest.json")] and changed, changed


def test_another_machine_sees_and_reruns_a_run_from_its_state_in_s3(tmp_path, fresh_emulator, capsys, monkeypatch):
    """Issue 18: run on machine A; on machine B (another working folder, no local runs) `forge status --runs-uri`
    lists it and shows it, and `forge rerun --runs-uri` reruns it, checked against AWS."""
    import json

    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(small_config("two-machines")))
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    assert main(["run", str(cfg), "--endpoint", fresh_emulator.url, "--runs-dir", str(a / "runs")]) == 0
    (run_dir,) = (a / "runs").glob("two-machines-*")
    recorded = json.loads((run_dir / "manifest.json").read_text())
    bucket = recorded["resources"]["data"]["train"].split("/")[2]
    uri = f"s3://{bucket}/{recorded['config']['aws']['prefix']}/runs/"
    b.mkdir()
    monkeypatch.chdir(b)
    capsys.readouterr()
    assert main(["status", "--runs-uri", uri, "--endpoint", fresh_emulator.url]) == 0
    listing = capsys.readouterr().out
    assert run_dir.name in listing and "succeeded" in listing, listing
    assert main(["status", run_dir.name, "--runs-uri", uri, "--endpoint", fresh_emulator.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert main(["status", "not-a-run", "--runs-uri", uri, "--endpoint", fresh_emulator.url]) == 2
    assert main(["rerun", run_dir.name, "--runs-uri", uri, "--endpoint", fresh_emulator.url,
                 "--runs-dir", str(b / "runs")]) == 0
    rerun = json.loads((b / "runs" / run_dir.name / "manifest.json").read_text())
    assert rerun["attempts"] == 2 and rerun["status"] == "succeeded"
    capsys.readouterr()
    assert main(["status", run_dir.name, "--runs-uri", uri, "--endpoint", fresh_emulator.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["attempts"] == 2, "machine B's attempt is in S3"
