"""`forge rerun RUN_ID` of a run that finished every step (issue 18): it checks the run against AWS and redoes
nothing — not one mutating call (it used to rerun from evaluate: a PT created and deleted, 5 mutating calls)."""

from __future__ import annotations

import pytest
import yaml

from emulator.testing import ledger_calls
from forge.cli import main
from scenarios.harness import small_config

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow]


def test_rerun_of_a_finished_run_makes_no_mutating_call(tmp_path, fresh_emulator, capsys):
    cfg = tmp_path / "done.yaml"
    cfg.write_text(yaml.safe_dump(small_config("rerun-done")))
    runs = tmp_path / "runs"
    assert main(["run", str(cfg), "--endpoint", fresh_emulator.url, "--runs-dir", str(runs)]) == 0
    (run_dir,) = runs.glob("rerun-done-*")
    before = len(ledger_calls(fresh_emulator.ledger(), mutating=True, ok=False))
    capsys.readouterr()
    assert main(["rerun", run_dir.name, "--endpoint", fresh_emulator.url, "--runs-dir", str(runs)]) == 0
    err = capsys.readouterr().err
    assert "has finished every step" in err
    after = ledger_calls(fresh_emulator.ledger(), mutating=True, ok=False)
    assert after[before:] == [], [c["operation"] for c in after[before:]]
