"""Retraining that ships (issue 19), end to end through the customize flow on the emulator: three weekly retrains
of one lineage with a production section.

- week 1 (no champion): the gate is against the base model; it passes and the model is promoted (an on-demand
  deployment, the lineage's first champion);
- week 2, ten times the data: evaluated against base AND the week-1 champion on the same prompts (the champion
  through its production serving), beats it, is promoted blue/green, and week 1's production serving is gone;
- week 3, the same amount of data with half the labels wrong: loses to the champion, the run ends gate_failed and
  nothing changes in production.

Every week's evaluation PT is deleted; the ledger holds exactly the production creates/deletes that sequence needs;
a rerun of a finished week is a no-op."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from emulator.testing import alive_serving, ledger_calls
from scenarios.harness import manifest_of, run_flow, small_config
from tests.support.aws import changed_objects, s3_objects, use_fresh_emulator
from tests.support.data import banking77_slice

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow, pytest.mark.timeout(900)]

MUTATING = ("Create", "Delete", "Tag", "Untag", "Update", "Stop")


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _data(tmp_path: Path, week: int, n: int, wrong_every: int = 0) -> str:
    """The first ``n`` BANKING77 rows; with ``wrong_every`` k, every k-th label is the next row's (wrong) label."""
    return banking77_slice(tmp_path / f"week{week}.csv", 0, n, wrong_every)


def _config(name: str, source: str, n: int) -> dict:
    return small_config(
        name, data={"source": source, "max_records": n},
        evaluation={"max_examples": 40, "concurrency": 8, "max_tokens": 16, "bootstrap_samples": 200},
        gate={"metric": "exact_match", "min_delta": -1.0, "require_ci_above_zero": False,
              "champion_metrics": ["exact_match"], "champion_min_delta": 0.0},
        production={"mode": "on-demand"})


def _ops(emu, since: int) -> list[str]:
    return [c["operation"] for c in emu.ledger()["calls"][since:] if c["operation"].startswith(MUTATING)]


def _production(emu) -> list[str]:
    """Ids of the production servings alive (the manifests' ARNs are account-redacted: compare ids)."""
    led = emu.ledger()
    return [_id(a) for a in alive_serving(led, production=True) if a not in alive_serving(led)]


def _id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def test_three_weekly_retrains_promote_beat_and_lose(emu, tmp_path):
    name = f"weekly-{uuid.uuid4().hex[:6]}"
    runs = tmp_path / "runs"

    mark = len(emu.ledger()["calls"])
    assert run_flow(_config(name, _data(tmp_path, 1, 100), 100), runs).is_completed()
    w1 = manifest_of(runs)
    assert w1["promotion"]["promoted"] and w1["promotion"]["champion"] == w1["run_id"], w1["promotion"]
    assert w1["promotion"]["previous_champion"] is None and "evaluation_champion" not in w1
    ops = _ops(emu, mark)
    assert ops.count("CreateCustomModelDeployment") == 1, ops            # production: on-demand deployment
    assert ops.count("CreateProvisionedModelThroughput") == 1 == ops.count("DeleteProvisionedModelThroughput")
    assert alive_serving(emu.ledger()) == [] and len(_production(emu)) == 1
    w1_serving = w1["resources"]["production_serving"]["arn"]

    mark = len(emu.ledger()["calls"])
    state = run_flow(_config(name, _data(tmp_path, 2, 1000), 1000), runs)
    w2 = manifest_of(runs)
    assert state.is_completed(), (w2.get("error"), w2.get("gate"))
    assert w2["evaluation_champion"]["run_id"] == w1["run_id"] and w2["evaluation_champion"]["served"]
    vs = w2["metrics"]["comparison_vs_champion"]["exact_match"]
    assert vs["delta"] > 0, vs
    assert w2["promotion"]["promoted"] and w2["promotion"]["previous_champion"] == w1["run_id"]
    assert [_id(a) for a in w2["promotion"]["retired"]] == [_id(w1_serving)]
    ops = _ops(emu, mark)
    assert ops.count("CreateCustomModelDeployment") == 1 and ops.count("DeleteCustomModelDeployment") == 1, ops
    assert ops.count("CreateProvisionedModelThroughput") == 1 == ops.count("DeleteProvisionedModelThroughput")
    assert _production(emu) == [_id(w2["resources"]["production_serving"]["arn"])] and alive_serving(emu.ledger()) == []
    report = Path(w2["report"]["report_md"]).read_text()
    assert "champion" in report.lower() and w1["run_id"] in report, "base / champion / challenger side by side"

    mark = len(emu.ledger()["calls"])
    state = run_flow(_config(name, _data(tmp_path, 3, 1000, wrong_every=2), 1000), runs)
    w3 = manifest_of(runs)
    assert not state.is_completed() and w3["status"] == "gate_failed", (w3["status"], w3.get("error"))
    assert w3["promotion"]["status"] == "rejected" and w3["promotion"]["champion"] == w2["run_id"]
    print(f"exact match vs champion: week 2 {vs['delta']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}], "
          f"week 3 {w3['metrics']['comparison_vs_champion']['exact_match']['delta']:+.3f}")
    ops = _ops(emu, mark)
    assert "CreateCustomModelDeployment" not in ops and "DeleteCustomModelDeployment" not in ops, ops
    assert ops.count("CreateProvisionedModelThroughput") == 1 == ops.count("DeleteProvisionedModelThroughput")
    assert _production(emu) == [_id(w2["resources"]["production_serving"]["arn"])] and alive_serving(emu.ledger()) == []

    # a rerun of a finished week changes nothing: no resource, no registry write, no object but its own record
    mark, objects = len(emu.ledger()["calls"]), s3_objects(emu.url)
    assert run_flow(None, runs, run_id=w2["run_id"]).is_completed()
    assert _ops(emu, mark) == [], _ops(emu, mark)
    changed = changed_objects(objects, s3_objects(emu.url))
    assert changed and all(k.endswith(f"/runs/{w2['run_id']}/manifest.json") for k in changed), changed
    assert not ledger_calls(emu.ledger(), "CreateModelCustomizationJob")[3:], "three jobs, one per week"
