"""`forge validate CONFIG --live` (issue 17): the read-only pre-flight against Bedrock (here the emulator, which reads
its own facts): an end-of-life base model is refused, located in the config, exit 2, and not one mutating call."""

from __future__ import annotations

import pytest
import yaml

from emulator.testing import ledger_calls
from forge.cli import main
from tests.support import REPO_ROOT


@pytest.fixture
def live_env(monkeypatch, fresh_emulator):
    for k, v in {"AWS_ENDPOINT_URL": fresh_emulator.url, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return fresh_emulator


def test_an_end_of_life_base_model_is_refused_live_with_its_line(tmp_path, live_env, capsys):
    cfg = tmp_path / "eol.yaml"
    cfg.write_text(yaml.safe_dump({
        "name": "eol-haiku", "base_model": "anthropic.claude-3-haiku-20240307-v1:0:200k",
        "aws": {"region": "us-west-2"},
        "data": {"source": str(REPO_ROOT / "examples/data/banking77-small.csv"),
                 "columns": {"prompt": "text", "completion": "category"}}}, sort_keys=False))
    code = main(["validate", str(cfg), "--live"])
    err = capsys.readouterr()
    text = err.out + err.err
    assert code == 2, text
    assert f"{cfg}:2: base_model:" in text and "end of life" in text
    assert ledger_calls(live_env.ledger(), mutating=True, ok=False) == []
    assert ledger_calls(live_env.ledger(), "GetFoundationModel"), "the check asked Bedrock"


def test_the_example_config_passes_live(live_env, capsys):
    assert main(["validate", str(REPO_ROOT / "examples/banking77.yaml"), "--live"]) == 0
    assert ledger_calls(live_env.ledger(), mutating=True, ok=False) == []
