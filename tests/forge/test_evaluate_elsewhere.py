"""`forge evaluate RUN_ID --runs-uri` on machine B (issue 18): the run made on machine A is re-evaluated from its
state in S3 — the manifest, the test split (downloaded, its hash checked) — with no access to A's disk, and the
evaluation lands in the run's S3 record and its report in S3 next to the run's output."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from forge.cli import main
from scenarios.harness import small_config
from tests.support.aws import s3_objects

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow]


def test_machine_b_re_evaluates_machine_a_run_from_s3(tmp_path, fresh_emulator, monkeypatch, capsys):
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump(small_config("eval-elsewhere")))
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    assert main(["run", str(cfg), "--endpoint", fresh_emulator.url, "--runs-dir", str(a / "runs")]) == 0
    (run_dir,) = (a / "runs").glob("eval-elsewhere-*")
    recorded = json.loads((run_dir / "manifest.json").read_text())
    bucket = recorded["resources"]["data"]["train"].split("/")[2]
    uri = f"s3://{bucket}/{recorded['config']['aws']['prefix']}/runs/"
    shutil.rmtree(a)                          # machine A is gone: nothing of its disk can be read
    b.mkdir()
    monkeypatch.chdir(b)
    assert main(["evaluate", run_dir.name, "--runs-dir", str(b / "runs"), "--endpoint", fresh_emulator.url]) == 2
    assert "--runs-uri" in capsys.readouterr().err, "the error says how to reach another machine's run"
    assert main(["evaluate", run_dir.name, "--runs-dir", str(b / "runs"), "--runs-uri", uri,
                 "--endpoint", fresh_emulator.url]) == 0, capsys.readouterr().err
    local = json.loads((b / "runs" / run_dir.name / "manifest.json").read_text())
    (fetched,) = (b / "runs" / run_dir.name / "fetched").glob("test*.jsonl")
    assert local["evaluations"] and fetched.stat().st_size > 0
    capsys.readouterr()
    assert main(["status", run_dir.name, "--runs-uri", uri, "--endpoint", fresh_emulator.url, "--json"]) == 0
    in_s3 = json.loads(capsys.readouterr().out)
    assert len(in_s3["evaluations"]) == 1, "the re-evaluation is in the run's record in S3"
    report = in_s3["evaluations"][0]["report"]
    assert report["report_md_s3"].startswith(f"s3://{bucket}/") and "/evaluation/reeval-" in report["report_md_s3"]
    objects = s3_objects(fresh_emulator.url)
    assert any(k.endswith(report["report_md_s3"].split(f"s3://{bucket}/", 1)[1]) for k in objects), objects
