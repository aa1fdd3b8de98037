"""flows/sweep_hparams.py: variants, the ≤2-in-flight rule, best pick, the table; then a real sweep on
the emulator checked on its ledger (never more than 2 jobs InProgress, no serving resource left)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from flows import sweep_hparams as sh
from tasks.config import ConfigError, load_config
from tests.support import REPO_ROOT

ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def base_config():
    return load_config(ROOT / "examples" / "banking77.yaml")


# ---------------------------------------------------------------------------------------------
# variants
# ---------------------------------------------------------------------------------------------
def test_presets_times_grid_gives_one_named_child_each(base_config):
    variants = sh.expand_variants(base_config, ["quick", "quality"], {"epochCount": [1, 2], "learningRate": [1e-5]})
    assert [v.label for v in variants] == ["quick g1", "quick g2", "quality g1", "quality g2"]
    names = [v.config.name for v in variants]
    assert len(set(names)) == 4 and all(len(n) <= 32 and n.startswith("banking77-demo-") for n in names)
    assert names[0] == "banking77-demo-quick-g1"
    assert variants[1].config.hyperparameters == {"epochCount": 2, "learningRate": 1e-5}
    assert variants[3].config.preset == "quality"
    assert variants[0].overrides == {"epochCount": 1, "learningRate": 1e-5}


def test_no_presets_no_grid_is_the_config_itself(base_config):
    (v,) = sh.expand_variants(base_config)
    assert v.preset == base_config.preset and v.config.name == f"{base_config.name}-{base_config.preset}"


def test_long_names_are_cut_to_the_32_character_rule():
    assert sh.child_name("a" * 32, "quality-g12") == "a" * 20 + "-quality-g12"
    assert len(sh.child_name("a" * 32, "quality-g12")) == 32


def test_bad_variants_fail_before_anything_runs(base_config):
    with pytest.raises(ConfigError, match="unknown preset 'qick'.*did you mean 'quick'"):
        sh.expand_variants(base_config, ["qick"])
    with pytest.raises(ConfigError, match=r"sweep variant 'quick g2'.*epochCount"):
        sh.expand_variants(base_config, ["quick"], {"epochCount": [1, 99]})
    with pytest.raises(ValueError, match="grid: epochCount has no values"):
        sh.grid_points({"epochCount": []})


# ---------------------------------------------------------------------------------------------
# at most N in flight
# ---------------------------------------------------------------------------------------------
class InFlight:
    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


def test_run_bounded_keeps_at_most_two_in_flight_and_uses_both_slots():
    meter = InFlight()
    pair = threading.Barrier(2, timeout=10)  # passes only when two calls are in flight together

    def call(i: int) -> int:
        with meter:
            pair.wait()
            return i * 10

    assert sh.run_bounded(list(range(6)), call, max_parallel=2) == [0, 10, 20, 30, 40, 50]
    assert meter.peak == 2


def test_run_bounded_one_at_a_time_and_rejects_zero():
    meter = InFlight()

    def call(i: int) -> int:
        with meter:
            return i

    assert sh.run_bounded([3, 1, 2], call, max_parallel=1) == [3, 1, 2]
    assert meter.peak == 1
    with pytest.raises(ValueError, match="at least 1"):
        sh.run_bounded([1], call, max_parallel=0)


# ---------------------------------------------------------------------------------------------
# best pick and table
# ---------------------------------------------------------------------------------------------
def _r(label, custom, passed, status="succeeded"):
    return sh.ChildResult(label=label, name=label, run_id=f"run-{label}", preset=label, status=status,
                          metric="accuracy", base=0.1, custom=custom, delta=None if custom is None else custom - 0.1,
                          gate_passed=passed)


def test_best_is_the_highest_passing_run():
    results = [_r("a", 0.90, False, "gate_failed"), _r("b", 0.70, True), _r("c", 0.80, True),
               _r("d", None, None, "failed")]
    assert sh.pick_best(results).label == "c"


def test_with_the_judge_as_gate_metric_the_best_is_the_highest_score_vs_base():
    """A pairwise judge gives no per-model value (custom is None): its score against the same base ranks them."""
    def judged(label, score, passed):
        return sh.ChildResult(label=label, name=label, run_id=f"run-{label}", preset=label, status="succeeded",
                              metric="judge", base=None, custom=None, delta=score, gate_passed=passed)

    results = [judged("a", 0.2, True), judged("b", 0.6, True), judged("c", 0.9, False), judged("d", None, None)]
    assert sh.pick_best(results).label == "b"
    assert sh.pick_best([judged("d", None, None)]) is None


def test_best_without_any_pass_is_the_highest_value_and_the_table_says_so():
    results = [_r("a", 0.5, False, "gate_failed"), _r("b", 0.6, False, "gate_failed"),
               _r("c", 0.6, False, "gate_failed")]
    best = sh.pick_best(results)
    assert best.label == "b"  # tie: the first listed
    md = sh.results_markdown(results, best)
    assert "No run passed the gate" in md and "`run-b`" in md
    assert md.count("**best**") == 1 and "| **best** | b |" in md
    assert sh.pick_best([_r("x", None, None, "failed")]) is None


def test_result_reads_the_gate_metric_from_the_child_manifest(tmp_path, base_config):
    (v,) = sh.expand_variants(base_config, ["quick"])
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps({"status": "gate_failed", "gate": {"metric": "accuracy", "base": 0.2, "custom": 0.25,
                                                                "delta": 0.05, "passed": False}}))
    r = sh.result_from_manifest(v, "rid", m, error="quality gate failed")
    assert (r.status, r.custom, r.delta, r.gate_passed, r.error) == ("gate_failed", 0.25, 0.05, False, None)
    r = sh.result_from_manifest(v, "rid", tmp_path / "missing.json", error="RuntimeError: boom")
    assert (r.status, r.custom, r.error) == ("failed", None, "RuntimeError: boom")


# ---------------------------------------------------------------------------------------------
# the flow with a stand-in child (Prefect harness)
# ---------------------------------------------------------------------------------------------
SCORES = {"quick": 0.6, "balanced": 0.8, "quality": 0.7}


def test_flow_runs_children_as_subflows_two_at_a_time_and_picks_the_best(prefect_backend, monkeypatch, tmp_path,
                                                                         base_config):
    from prefect import flow, get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName

    meter = InFlight()
    pair = threading.Barrier(2, timeout=20)  # an even number of children: they always pair up

    @flow(name="fake-customize")
    def fake_customize(config, run_id, runs_dir, **kwargs):
        with meter:
            pair.wait()
            score = SCORES[config.preset] + 0.01 * int(config.hyperparameters["epochCount"])
            passed = score > 0.65
            d = Path(runs_dir) / run_id
            d.mkdir(parents=True)
            (d / "manifest.json").write_text(json.dumps({
                "run_id": run_id, "status": "succeeded" if passed else "gate_failed",
                "gate": {"metric": "accuracy", "base": 0.1, "custom": score, "delta": score - 0.1, "passed": passed}}))
        if not passed:
            raise RuntimeError("quality gate failed")
        return {"run_id": run_id}

    monkeypatch.setattr(sh, "_child_flow", lambda: fake_customize)
    state = sh.sweep_hyperparameters(base_config, presets=["quick", "balanced", "quality"],
                                     grid={"epochCount": [1, 2]}, max_parallel_jobs=2, runs_dir=str(tmp_path),
                                     return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert meter.peak == 2
    assert out["best"]["label"] == "balanced g2" and out["best"]["custom"] == pytest.approx(0.82)
    rows = {r["label"]: r for r in out["results"]}
    assert rows["quick g1"]["status"] == "gate_failed" and rows["quick g1"]["gate_passed"] is False
    assert len(rows) == 6 and sum(r["status"] == "succeeded" for r in rows.values()) == 4

    with get_client(sync_client=True) as client:
        (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["hparam-sweep"])),
                                       limit=1)
        assert art.flow_run_id == state.state_details.flow_run_id
        assert "| **best** | balanced | epochCount=2 |" in art.data
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["fake-customize"])), limit=200)
        children = [r for r in runs if r.parameters.get("runs_dir") == str(tmp_path)]
        assert len(children) == 6
        parents = {client.read_task_run(r.parent_task_run_id).flow_run_id for r in children
                   if r.parent_task_run_id is not None}
    assert parents == {state.state_details.flow_run_id}, "children must be subflows of the sweep run"


def test_flow_refuses_a_bad_grid_before_any_child(prefect_backend, monkeypatch, base_config):
    started = []
    monkeypatch.setattr(sh, "_child_flow", lambda: started.append(1))
    state = sh.sweep_hyperparameters(base_config, presets=["quick"], grid={"learningRate": [1.0]},
                                     return_state=True)
    assert state.is_failed() and "learningRate" in state.message and not started


# ---------------------------------------------------------------------------------------------
# a real sweep on the emulator (slow: three full customize runs, ~1-2 min on 2 busy cores)
# ---------------------------------------------------------------------------------------------
def _max_in_progress(resources: dict) -> int:
    """Most jobs InProgress at the same moment, from the ledger's state histories."""
    events = []
    for r in resources.values():
        if r["type"] != "model-customization-job":
            continue
        hist = r["history"]
        start = next((h["t"] for h in hist if h["state"] == "InProgress"), None)
        if start is None:
            continue
        end = next((h["t"] for h in hist if h["t"] >= start and h["state"] in ("Completed", "Failed", "Stopped")),
                   float("inf"))
        events += [(start, 1), (end, -1)]
    peak = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end at the same instant counts first
        now += step
        peak = max(peak, now)
    return peak


def test_overlap_count_from_ledger_histories():
    def job(*hist):
        return {"type": "model-customization-job", "history": [{"t": t, "state": st} for t, st in hist]}

    res = {"a": job((0, "InProgress"), (10, "Completed")), "b": job((5, "InProgress"), (12, "Completed")),
           "c": job((10, "InProgress"), (20, "Failed")), "pt": {"type": "provisioned-model-throughput", "history": []}}
    assert _max_in_progress(res) == 2           # c starts the instant a ends
    res["d"] = job((11, "InProgress"))          # never ended
    assert _max_in_progress(res) == 3


@pytest.mark.slow
def test_real_sweep_keeps_two_jobs_in_flight_and_leaves_no_serving(prefect_backend, fresh_emulator, monkeypatch,
                                                                   tmp_path, base_config):
    from forge.stack import DUMMY_AWS

    for k, v in DUMMY_AWS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", fresh_emulator.url)
    monkeypatch.setenv("FORGE_CACHE_DIR", str(tmp_path / "cache"))
    raw = base_config.model_dump(mode="json")
    raw["data"]["max_records"] = 200
    raw["evaluation"].update(max_examples=8, bootstrap_samples=100, concurrency=4)
    raw["gate"].update(min_delta=-1.0, require_ci_above_zero=False)   # orchestration under test, not quality
    config = type(base_config).model_validate(raw)

    state = sh.sweep_hyperparameters(config, presets=["quick", "balanced", "quality"], max_parallel_jobs=2,
                                     runs_dir=str(tmp_path / "runs"), return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert [r["status"] for r in out["results"]] == ["succeeded"] * 3, out["table"]
    assert out["best"] is not None and out["best"]["custom"] is not None

    resources = fresh_emulator.ledger()["resources"]
    jobs = [r for r in resources.values() if r["type"] == "model-customization-job"]
    assert len(jobs) == 3
    assert _max_in_progress(resources) <= 2
    serving = [r for r in resources.values()
               if r["type"] in ("provisioned-model-throughput", "custom-model-deployment")]
    assert len(serving) == 3 and all(r["state"] == "Deleted" for r in serving), serving
