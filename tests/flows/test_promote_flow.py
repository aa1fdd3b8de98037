"""flows/promote.py with a real RunContext on the emulator: three weeks of one lineage (promote, beat the champion
blue/green, lose and change nothing), the manifest records, and a rerun of every week is a no-op."""

from __future__ import annotations

import uuid

import pytest

from flows.context import RunContext
from flows.promote import promote_if_gate_passed
from tasks import promote as promote_stage
from tasks.registry import store_for_config
from tasks.run.manifest import Manifest
from tests.support.aws import alive, use_fresh_emulator
from tests.support.champion import evaluated_week

MUTATING = ("Create", "Delete", "Tag", "Untag", "Put", "Update")


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _week(tmp_path, name: str, week: int, preset: str, passed: bool, mode: str = "on-demand") -> RunContext:
    """A run of lineage ``name`` that trained and was evaluated (its gate verdict in the manifest)."""
    return evaluated_week(tmp_path, name, week, preset, passed, mode)


def _promote(ctx: RunContext) -> dict:
    return promote_if_gate_passed(ctx, timeout_s=60, initial_interval_s=0.1)


def _mutating(emu, since: int) -> list[str]:
    return [c["operation"] for c in emu.ledger()["calls"][since:] if c["operation"].startswith(MUTATING)]


def test_three_weeks_of_one_lineage_and_every_rerun_is_a_no_op(emu, tmp_path):
    name = f"l-{uuid.uuid4().hex[:8]}"
    w1 = _week(tmp_path, name, 1, "quick", passed=True)
    mark = len(emu.ledger()["calls"])
    r1 = _promote(w1)
    assert r1["promoted"] and r1["champion"] == w1.run_id and r1["previous_champion"] is None
    assert r1["status"] == "champion" and r1["serving"]["kind"] == "deployment"
    # the deployment, the version recorded + the switch, the model's lineage tags + its forge-role=production
    assert sorted(_mutating(emu, mark)) == ["CreateCustomModelDeployment", "PutObject", "PutObject", "TagResource",
                                            "TagResource"]
    recorded = Manifest.find(tmp_path / "runs", w1.run_id).data
    assert recorded["promotion"]["registry"].endswith(f"/registry/{name}/registry.json")
    assert recorded["resources"]["production_serving"]["name"] == promote_stage.production_name(name, w1.run_id)
    w1_serving = r1["serving"]["arn"]

    w2 = _week(tmp_path, name, 2, "balanced", passed=True)           # better data: beats the champion
    mark = len(emu.ledger()["calls"])
    r2 = _promote(w2)
    assert r2["promoted"] and r2["previous_champion"] == w1.run_id and r2["retired"] == [w1_serving]
    assert not alive(w2.clients, w1_serving) and alive(w2.clients, r2["serving"]["arn"])
    ops = _mutating(emu, mark)
    assert ops.count("CreateCustomModelDeployment") == 1 and ops.count("DeleteCustomModelDeployment") == 1
    assert ops.count("UntagResource") == 1                            # forge-role left week 1's model

    w3 = _week(tmp_path, name, 3, "quality", passed=False)           # worse data: loses, nothing changes
    mark = len(emu.ledger()["calls"])
    r3 = _promote(w3)
    assert not r3["promoted"] and r3["status"] == "rejected" and r3["champion"] == w2.run_id
    assert _mutating(emu, mark) == ["PutObject"]                      # only its registry entry
    assert [arn for _, arn, _ in promote_stage.production_servings(w3.clients, name)] == [r2["serving"]["arn"]]

    mark = len(emu.ledger()["calls"])
    for week in (w1, w2, w3):                                         # reruns: no mutating call at all
        _promote(week)
    assert _mutating(emu, mark) == []
    reg = store_for_config(w1.clients, w1.config, w1.account).read()
    assert [(v.run_id, v.status) for v in reg.versions] == [(w1.run_id, "retired"), (w2.run_id, "champion"),
                                                              (w3.run_id, "rejected")]


def test_production_mode_none_records_the_version_only(emu, tmp_path):
    ctx = _week(tmp_path, f"l-{uuid.uuid4().hex[:8]}", 1, "quick", passed=True, mode="none")
    mark = len(emu.ledger()["calls"])
    rec = _promote(ctx)
    assert not rec["promoted"] and rec["reason"] == "production.mode is none" and rec["status"] == "candidate"
    assert _mutating(emu, mark) == ["PutObject"]
    assert Manifest.find(tmp_path / "runs", ctx.run_id).data["promotion"]["status"] == "candidate"
