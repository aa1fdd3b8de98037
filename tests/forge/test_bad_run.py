"""`forge run CONFIG --endpoint URL` on bad configs and bad data (issue 9, item 2): a located message
(FILE:LINE: field: ... or the config key path), exit 2, and not one AWS call (the emulator's ledger).

`forge run` checks the config and every raw record before Prefect starts; what only prepare can see
(split-level limits) fails inside the flow before any AWS step, and the flow's failure hook then makes
no AWS call either (flows/customize.py ``_failed_before_spending``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forge.cli import main
from tests.support import REPO_ROOT

REPO = REPO_ROOT
BAD = REPO / "tests" / "data" / "bad"

pytestmark = pytest.mark.usefixtures("prefect_backend")


def _data_config(tmp_path: Path, name: str, source: Path, base_model: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "base_model": base_model, "data": {"source": str(source)}}))
    return p


# (case id, how to build the config, substrings the located message must contain)
CASES = {
    "bad-json-line": (lambda t: _data_config(t, "badjson", BAD / "pc_broken_json.jsonl",
                                             "amazon.titan-text-express-v1:0:8k"),
                      ["pc_broken_json.jsonl:2: json: not valid JSON"]),
    "wrong-format-for-model": (lambda t: _data_config(t, "wrongformat", BAD / "haiku_data_for_nova.jsonl",
                                                      "amazon.nova-micro-v1:0:128k"),
                               ["haiku_data_for_nova.jsonl:1: format: records look like claude-messages"]),
    "unknown-hyperparameter": (lambda t: BAD / "cfg_unknown_hyperparameter.yaml",
                               ["cfg_unknown_hyperparameter.yaml", "hyperparameter 'epochs' is not accepted",
                                "did you mean 'epochCount'"]),
    "unsupported-model-type": (lambda t: BAD / "cfg_unsupported_pair.yaml",
                               ["cfg_unsupported_pair.yaml", "does not support DISTILLATION"]),
    "unknown-config-key": (lambda t: BAD / "cfg_unknown_key.yaml",
                           ["cfg_unknown_key.yaml", "hyperparameter: unknown key", "did you mean 'hyperparameters'"]),
}
def _forge_run(case: str, tmp_path: Path, fresh_emulator, capsys) -> tuple[int, str]:
    build, _ = CASES[case]
    cfg = build(tmp_path)
    rc = main(["run", str(cfg), "--endpoint", fresh_emulator.url, "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_run_exits_2_with_a_located_message_and_makes_no_aws_call(case, tmp_path, fresh_emulator, capsys):
    rc, text = _forge_run(case, tmp_path, fresh_emulator, capsys)
    for want in CASES[case][1]:
        assert want in text, f"expected {want!r} in the output:\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    led = fresh_emulator.ledger()
    assert led["calls"] == [], f"bad input must not reach AWS: {[c['operation'] for c in led['calls']]}"
    assert rc == 2, text[-2000:]
