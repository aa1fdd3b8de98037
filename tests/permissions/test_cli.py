"""`forge permissions CONFIG [--json] [--role ...] [--account ID] [--split] [--markdown]` (issue 20)."""

from __future__ import annotations

import json

import pytest

from forge.cli import main
from tests.support import REPO_ROOT

B77 = str(REPO_ROOT / "examples/banking77.yaml")
ACCT = "111122223333"


def test_json_is_exactly_the_generators_document(capsys):
    from tasks.config import load_config
    from tasks.permissions import permission_policy

    assert main(["permissions", B77, "--account", ACCT, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == permission_policy(load_config(B77), "worker", account=ACCT).document()
    assert main(["permissions", B77, "--account", ACCT, "--json", "--role", "sweeper"]) == 0
    sweeper = json.loads(capsys.readouterr().out)
    assert sweeper == permission_policy(load_config(B77), "sweeper", account=ACCT).document() != doc


def test_the_default_output_explains_every_statement_then_prints_the_document(capsys):
    assert main(["permissions", B77, "--account", ACCT]) == 0
    out = capsys.readouterr().out
    head, _, body = out.partition("\n{")
    assert "role 'worker' of config 'banking77-demo'" in head
    for sid in ("ReadFoundationModels", "PassServiceRole", "ManageThroughput"):
        assert f"# {sid} [" in head
    assert json.loads("{" + body)["Version"] == "2012-10-17"


def test_split_prints_documents_within_iam_limits(capsys):
    assert main(["permissions", B77, "--account", ACCT, "--role", "oncall", "--json", "--split"]) == 0
    captured = capsys.readouterr()
    docs = json.loads(captured.out)
    assert isinstance(docs, list) and len(docs) >= 2
    assert all(len(json.dumps(d, separators=(",", ":"))) <= 6144 for d in docs)
    assert "over IAM's 6144" in captured.err, "the unsplit policy is too long for one managed policy: said so"


def test_markdown(capsys):
    assert main(["permissions", B77, "--account", ACCT, "--markdown", "--role", "readonly"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### `banking77-demo` — role `readonly`") and "| Sid | actions |" in out


def test_without_an_account_it_asks_sts_and_says_what_to_do_when_it_cannot(capsys, monkeypatch, aws_env):
    assert main(["permissions", B77, "--json"]) == 0, "the caller's account (the emulator's) from STS"
    doc = json.loads(capsys.readouterr().out)
    assert aws_env.health()["account_id"] in json.dumps(doc)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["permissions", B77, "--json"]) == 2
    assert "pass --account ID" in capsys.readouterr().err


@pytest.mark.parametrize("argv, err", [
    (["--account", "12345"], "12-digit"),
    (["--role", "admin"], "invalid choice"),
])
def test_bad_arguments(argv, err, capsys):
    try:
        code = main(["permissions", B77, *argv])
    except SystemExit as exc:          # argparse refuses a bad choice itself
        code = exc.code
    assert code == 2
    assert err in capsys.readouterr().err


def test_an_invalid_config_exits_2_with_located_problems(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\nbase_model: amazon.nova-micro-v1:0:128k\ndata: {source: x.csv}\n")
    assert main(["permissions", str(bad), "--account", ACCT]) == 2
    assert f"{bad}:1: name:" in capsys.readouterr().err
