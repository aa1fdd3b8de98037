"""The LLM judge as a gate metric, end to end on the emulator (issue 19 item 5): a run whose gate is the judge's
score of custom vs base (``gate.metric: judge``), judged by the emulator's named stand-in through the same invoke
path as the evaluation, every judge call visible in the emulator's ledger, and a rerun that pays for none.

All through boto3 against a private emulator (`fresh_emulator`), judged by its ledger and the run's own files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from emulator.testing import alive_serving
from emulator.testing import ledger_calls as calls
from scenarios.harness import small_config as scenario_config
from tests.support.aws import point_at

pytestmark = pytest.mark.usefixtures("prefect_backend")

JUDGE = "us.amazon.nova-lite-v1:0"
SCORE = {"win": 1, "tie": 0, "loss": -1}


def judged_config(name: str, **gate) -> dict:
    """The scenario library's small run with the judge on 16 of its 24 test examples, gated by the judge."""
    cfg = scenario_config(name, data={"max_records": 300},
                          evaluation={"max_examples": 24, "concurrency": 8, "bootstrap_samples": 200,
                                      "judge": {"model": JUDGE, "max_examples": 16}})
    cfg["gate"] = {"metric": "judge", "min_delta": 0.0, "require_ci_above_zero": False, **gate}
    return cfg


@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    point_at(monkeypatch, fresh_emulator.url)
    return fresh_emulator


def run_flow(config: dict, runs_dir: Path):
    from flows.customize import customize_model
    from tasks.config import PipelineConfig

    return customize_model(config=PipelineConfig.model_validate(config), runs_dir=str(runs_dir), return_state=True)


def manifest_of(runs_dir: Path) -> dict:
    paths = sorted(runs_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    assert paths, f"no manifest under {runs_dir}"
    return json.loads(paths[-1].read_text())


def test_a_run_gated_by_the_judge(emu, tmp_path):
    runs = tmp_path / "runs"
    state = run_flow(judged_config("judge-gate"), runs)
    m = manifest_of(runs)
    gate, judge = m["gate"], m["judge"]
    assert gate["metric"] == "judge" and "judge score of custom vs base" in gate["rule"]

    # the verdict is the judge's score, recomputed here from the per-example verdicts in examples.csv
    rows = list(csv.DictReader(Path(m["report"]["examples_csv"]).open(encoding="utf-8")))
    outcomes = [r["judge_vs_base"] for r in rows if r.get("judge_vs_base")]
    assert len(outcomes) == min(16, len(rows))                  # judge.max_examples of the test examples
    counted = [SCORE[o] for o in outcomes if o in SCORE]
    assert counted, outcomes
    assert gate["delta"] == pytest.approx(sum(counted) / len(counted)) and gate["n"] == len(counted)
    assert gate["passed"] is (gate["delta"] > 0.0) and state.is_completed() is gate["passed"], (state, gate)

    # the emulator judges with a stand-in, and says so: in the summary, the gate's evidence and the report
    assert judge["stand_in"] and "not a model" in judge["stand_in"]
    report = Path(m["report"]["report_md"]).read_text(encoding="utf-8")
    assert judge["stand_in"] in report and "| base ◀ gate |" in report
    if gate["passed"]:
        assert judge["stand_in"] in gate["reasons"][0]

    # every judge call went through bedrock-runtime like the evaluation's: each test example x (base, custom),
    # plus the judged examples x 2 orders; the PT is gone
    led = emu.ledger()
    assert judge["calls"] == 2 * len(outcomes) and judge["cached"] == 0
    assert len(calls(led, "InvokeModel")) == 2 * len(rows) + judge["calls"]
    assert alive_serving(led) == []

    # a rerun reuses the recorded evaluation: no model call, no judge call
    n_before = len(led["calls"])
    state2 = run_flow(judged_config("judge-gate"), runs)
    assert state2.is_completed() is state.is_completed()
    assert calls({"calls": emu.ledger()["calls"][n_before:]}, "InvokeModel") == []
    assert manifest_of(runs)["gate"] == gate


def test_a_judge_gate_the_run_cannot_meet_fails_it_after_the_pt_is_gone(emu, tmp_path):
    """A margin no score can exceed (the judge's score is at most 1): the run fails on its gate, with the judge's
    evidence, and nothing bills."""
    runs = tmp_path / "runs"
    state = run_flow(judged_config("judge-strict", min_delta=1.0), runs)
    assert state.is_failed()
    m = manifest_of(runs)
    assert m["gate"]["passed"] is False and m["gate"]["metric"] == "judge"
    assert any("does not exceed min_delta 1" in r for r in m["gate"]["reasons"]), m["gate"]["reasons"]
    assert alive_serving(emu.ledger()) == []
