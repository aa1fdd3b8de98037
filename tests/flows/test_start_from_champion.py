"""Continue from the champion (issue 19 item 4), end to end through the customize flow on the emulator:
``start_from: champion`` makes the week's job start from the lineage's champion (a custom model of base_model)
instead of the base model.

- week 1 (no champion yet): the job starts from the base model, is promoted and becomes the champion;
- week 2: the job's baseModelIdentifier is week 1's custom model: Bedrock records the new model as a custom model of
  it (GetCustomModel's baseModelArn), the run records where it started (``resources.start_from``) and its run key
  differs from the same data trained from the base model;
- a rerun of week 2 after it became champion itself still continues week 1's model: no new job, no mutating call;
- a config whose base_model is not the champion's foundation model stops before any job, saying how to fix it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from emulator.testing import boto3_clients, ledger_calls
from scenarios.harness import manifest_of, run_flow, small_config
from tests.support.aws import use_fresh_emulator
from tests.support.data import banking77_slice

pytestmark = [pytest.mark.usefixtures("prefect_backend"), pytest.mark.slow, pytest.mark.timeout(900)]

MUTATING = ("Create", "Delete", "Tag", "Untag", "Update", "Stop")


@pytest.fixture
def emu(monkeypatch, fresh_emulator):
    return use_fresh_emulator(monkeypatch, fresh_emulator)


def _data(tmp_path: Path, week: int, first: int, n: int) -> str:
    return banking77_slice(tmp_path / f"week{week}.csv", first, n)


def _config(name: str, source: str, n: int, **over) -> dict:
    return small_config(
        name, data={"source": source, "max_records": n}, start_from="champion",
        evaluation={"max_examples": 10, "concurrency": 4, "max_tokens": 16, "bootstrap_samples": 100},
        gate={"metric": "exact_match", "min_delta": -1.0, "require_ci_above_zero": False,
              "champion_metrics": ["exact_match"], "champion_min_delta": -1.0},
        production={"mode": "on-demand"}, **over)


def _id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _mutating(emu, since: int) -> list[str]:
    return [c["operation"] for c in emu.ledger()["calls"][since:] if c["operation"].startswith(MUTATING)]


def test_week_two_continues_from_week_one_a_rerun_keeps_its_start_another_base_is_refused(emu, tmp_path):
    name = f"cont-{uuid.uuid4().hex[:6]}"
    runs = tmp_path / "runs"
    bedrock = boto3_clients(emu.url).bedrock

    assert run_flow(_config(name, _data(tmp_path, 1, 0, 100), 100), runs).is_completed()
    w1 = manifest_of(runs)
    assert w1["promotion"]["champion"] == w1["run_id"], w1["promotion"]
    # no champion when week 1 started: the base model, said so
    start1 = w1["resources"]["start_from"]
    assert start1["model"] == "amazon.nova-micro-v1:0:128k" and start1["champion_run"] is None, start1
    assert "no champion yet" in start1["reason"]
    w1_model = _arn(bedrock, w1["resources"]["custom_model"])

    mark = len(emu.ledger()["calls"])
    state = run_flow(_config(name, _data(tmp_path, 2, 100, 100), 100), runs)
    w2 = manifest_of(runs)
    assert state.is_completed(), (w2.get("error"), w2.get("gate"))
    start2 = w2["resources"]["start_from"]
    assert start2["champion_run"] == w1["run_id"] and _id(start2["model"]) == _id(w1_model), start2
    assert len(ledger_calls(emu.ledger(), "CreateModelCustomizationJob")) == 2
    w2_model = bedrock.get_custom_model(modelIdentifier=_arn(bedrock, w2["resources"]["custom_model"]))
    assert w2_model["baseModelArn"] == w1_model, "the week-2 model is a custom model of week 1's"
    job = bedrock.get_model_customization_job(jobIdentifier=w2_model["jobArn"])
    assert job["baseModelArn"].endswith("foundation-model/amazon.nova-micro-v1:0:128k"), job["baseModelArn"]
    assert w2["promotion"]["champion"] == w2["run_id"], w2["promotion"]
    assert _mutating(emu, mark).count("CreateModelCustomizationJob") == 1

    # the same data from the base model is another job: the start point is part of the run key
    from tasks.config import PipelineConfig
    from tasks.run.names import compute_run_key

    cfg = PipelineConfig.model_validate(w2["config"])
    assert w2["run_key"] == compute_run_key(cfg, w2["data"]["content_hash"], w1_model)
    assert w2["run_key"] != compute_run_key(cfg, w2["data"]["content_hash"])

    # rerun week 2 now that it is the champion itself: it still continues week 1's model (recorded), adopts
    # everything, changes nothing
    mark = len(emu.ledger()["calls"])
    assert run_flow(None, runs, run_id=w2["run_id"]).is_completed()
    again = manifest_of(runs, w2["run_id"])
    assert again["run_key"] == w2["run_key"] and again["resources"]["start_from"] == start2
    assert _mutating(emu, mark) == [], _mutating(emu, mark)

    # a config whose base_model is not the champion's foundation model stops before any AWS change
    mark = len(emu.ledger()["calls"])
    other = _config(name, _data(tmp_path, 3, 200, 100), 100, base_model="amazon.nova-lite-v1:0:300k")
    state = run_flow(other, runs)
    doc = manifest_of(runs)
    assert not state.is_completed() and doc["status"] == "failed", doc["status"]
    assert "amazon.nova-micro-v1:0:128k" in doc["error"] and "start_from: base" in doc["error"], doc["error"]
    assert _mutating(emu, mark) == [], "refused before any AWS change"


def _arn(bedrock, redacted_arn: str) -> str:
    """The full ARN of a manifest's (account-redacted) model ARN, found by its id."""
    return next(m["modelArn"] for m in bedrock.list_custom_models()["modelSummaries"]
                if _id(m["modelArn"]) == _id(redacted_arn))
