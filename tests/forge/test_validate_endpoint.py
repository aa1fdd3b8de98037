"""`forge validate s3://...` (and `forge prepare s3://...`, `forge validate CONFIG`) with `--endpoint URL`, like the
other verbs: the S3 data source is read from that endpoint (here the session emulator) with no AWS_ENDPOINT_URL in
the environment (issue 16)."""

from __future__ import annotations

import json

import boto3
import pytest

from forge.cli import main
from tests.support import DUMMY_ENV, TEST_DATA

TITAN = "amazon.titan-text-express-v1:0:8k"
GOOD = TEST_DATA / "good" / "titan_pc.jsonl"


@pytest.fixture
def s3_data(monkeypatch, emulator):
    """Dummy credentials, no endpoint in the environment; the corpus file as an object on the emulator."""
    for k, v in DUMMY_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(k, raising=False)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=emulator.url)
    s3.create_bucket(Bucket="forge-endpoint-test")
    s3.put_object(Bucket="forge-endpoint-test", Key="data/train.jsonl", Body=GOOD.read_bytes())
    return emulator


def _calls(emu, before: int) -> list[dict]:
    return emu.ledger()["calls"][before:]


def test_validate_s3_data_on_the_given_endpoint(s3_data, capsys):
    before = len(s3_data.ledger()["calls"])
    rc = main(["validate", "s3://forge-endpoint-test/data/train.jsonl", "--base-model", TITAN,
               "--endpoint", s3_data.url])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "s3://forge-endpoint-test/data/train.jsonl" in out and "30" in out
    ops = [c["operation"] for c in _calls(s3_data, before)]
    assert "GetObject" in ops and not [c for c in _calls(s3_data, before) if c["mutating"]]


def test_validate_a_missing_s3_object_on_the_endpoint_is_a_located_problem(s3_data, capsys):
    rc = main(["validate", "s3://forge-endpoint-test/data/nope.jsonl", "--base-model", TITAN,
               "--endpoint", s3_data.url])
    out = capsys.readouterr().out
    assert rc == 2
    assert "s3://forge-endpoint-test/data/nope.jsonl: file: object not found" in out, out
    assert "Traceback" not in out


def test_a_bad_endpoint_is_a_usage_error_never_a_fallback_on_aws(s3_data, capsys):
    before = len(s3_data.ledger()["calls"])
    rc = main(["validate", "s3://forge-endpoint-test/data/train.jsonl", "--base-model", TITAN,
               "--endpoint", "127.0.0.1:4566"])
    out = capsys.readouterr().out
    assert rc == 2 and "forge validate: --endpoint: '127.0.0.1:4566' is not an http(s) URL" in out, out
    assert _calls(s3_data, before) == []


def test_a_config_with_an_s3_source_and_prepare_read_from_the_endpoint(s3_data, tmp_path, capsys):
    cfg = tmp_path / "s3.yaml"
    cfg.write_text(f"name: endpoint-s3\nbase_model: {TITAN}\ndata:\n  source: s3://forge-endpoint-test/data/train.jsonl\n",
                   encoding="utf-8")
    assert main(["validate", str(cfg), "--endpoint", s3_data.url]) == 0, capsys.readouterr().out
    assert "OK, 30 record(s) in s3://forge-endpoint-test/data/train.jsonl" in capsys.readouterr().out
    out_dir = tmp_path / "out"
    rc = main(["prepare", "s3://forge-endpoint-test/data/train.jsonl", "--base-model", TITAN, "--out", str(out_dir),
               "--endpoint", s3_data.url, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] and doc["report"]["counts"]["raw_records"] == 30
    assert (out_dir / "train.jsonl").is_file()
