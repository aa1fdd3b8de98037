"""`forge evaluate RUN_ID` (flows/evaluate.py) evaluates as the run itself does (issue 19): with a production
section the lineage's champion is the third model on the same prompts and its rule applies; with
``evaluation.judge`` the judge compares custom with base and champion, and the re-evaluation pays for no judge
call the run already made (its cache in S3, keyed by judge, rubric, prompt and both answers).

Week 1 is promoted (the lineage's champion, on an on-demand production deployment). Week 2 can never beat it
(``champion_min_delta: 1``), so week 1 stays champion. Re-evaluating week 2 serves it again, compares it with the
champion on the same prompts (the champion's answers on week 2's test split, recorded by week 2's run, reused: it is
served again only when the data changed), gates it against the champion, deletes the evaluation serving and leaves
production alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from emulator.testing import alive_serving, ledger_calls
from scenarios.harness import manifest_of, run_flow, small_config
from tests.support.aws import use_fresh_emulator
from tests.support.data import banking77_slice

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow, pytest.mark.timeout(900)]

JUDGE = "us.amazon.nova-lite-v1:0"


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _config(name: str, source: str, n: int) -> dict:
    return small_config(
        name, data={"source": source, "max_records": n,    # 150 BANKING77 rows have too few per label to stratify
                    "split": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 7, "stratify": "no"}},
        evaluation={"max_examples": 20, "concurrency": 8, "max_tokens": 16, "bootstrap_samples": 200,
                    "judge": {"model": JUDGE, "max_examples": 8}},
        gate={"metric": "exact_match", "min_delta": -1.0, "require_ci_above_zero": False,
              "champion_metrics": ["exact_match", "judge"], "champion_min_delta": 1.0},
        production={"mode": "on-demand"})


def test_re_evaluation_compares_with_the_champion_and_judges_once(emu, tmp_path):
    from flows.evaluate import evaluate_model

    name = f"reeval-{uuid.uuid4().hex[:6]}"
    runs = tmp_path / "runs"
    assert run_flow(_config(name, banking77_slice(tmp_path / "w1.csv", 0, 100), 100), runs).is_completed()
    w1 = manifest_of(runs)
    assert w1["promotion"]["promoted"], w1.get("promotion")
    w2_state = run_flow(_config(name, banking77_slice(tmp_path / "w2.csv", 0, 150), 150), runs)
    w2 = manifest_of(runs)
    assert w2["run_id"] != w1["run_id"] and w2_state.is_failed(), "week 2 cannot beat the champion by 1"
    assert w2["gate"]["champion"] == w1["run_id"]
    production = alive_serving(emu.ledger(), production=True)
    assert len(production) == 1 and alive_serving(emu.ledger()) == []

    mark = len(emu.ledger()["calls"])
    state = evaluate_model(run_id=w2["run_id"], runs_dir=str(runs), return_state=True)
    assert state.is_failed(), "the champion rule (min delta 1) fails the re-evaluation too"
    rec = manifest_of(runs, w2["run_id"])["evaluations"][-1]
    assert rec["champion"] == w1["run_id"] and rec["gate"]["champion"] == w1["run_id"]
    checks = {c["metric"]: c for c in rec["gate"]["vs_champion"]}
    assert set(checks) == {"exact_match", "judge"} and not any(c["passed"] for c in checks.values())
    assert "comparison_vs_champion" in rec["metrics"]
    assert set(rec["judge"]["pairs"]) == {"base", "champion"} and rec["judge"]["stand_in"]
    # the run judged these very answers already (the emulator answers deterministically): every verdict of the
    # re-evaluation comes from the judge's cache in S3, none is paid for twice
    # (within one evaluation, a champion answer equal to base's is a request already asked: cached too)
    asked = w2["judge"]["calls"] + w2["judge"]["cached"]
    assert w2["judge"]["calls"] > 0 and rec["judge"]["calls"] == 0 and rec["judge"]["cached"] == asked
    assert {k: v["score"] for k, v in rec["judge"]["pairs"].items()} == \
        {k: v["score"] for k, v in w2["judge"]["pairs"].items()}

    new = emu.ledger()["calls"][mark:]
    ops = [c["operation"] for c in new]
    assert ops.count("CreateProvisionedModelThroughput") + ops.count("CreateCustomModelDeployment") == 1, \
        "served again for this evaluation, once"
    assert alive_serving(emu.ledger()) == [], "the evaluation serving is deleted"
    assert alive_serving(emu.ledger(), production=True) == production, "production is left alone"
    assert "DeleteCustomModelDeployment" not in ops or ops.count("DeleteCustomModelDeployment") == \
        ops.count("CreateCustomModelDeployment"), "only what this evaluation created is deleted"
    # base and custom on every test example; the champion's answers on this test split were recorded by week 2's
    # run, so it is not served again; no judge call
    n_test = rec["gate"]["n"]
    assert n_test > 0
    assert len(ledger_calls({"calls": new}, "InvokeModel")) == 2 * n_test, "base and custom only"
    assert Path(rec["report"]["report_md"]).read_text(encoding="utf-8").count("◀ gate") >= 2
