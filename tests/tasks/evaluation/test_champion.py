"""Challenger vs champion (issue 19 item 2): three targets on the same examples, recorded outputs reused, the
paired comparison with the champion, the gate rule against it, the report side by side."""

from __future__ import annotations

import json
import random
import threading

import pytest

from tasks import evaluate as E
from tasks.config import EvaluationConfig, GateConfig
from tasks.evaluation import champion as C
from tasks.evaluation.report import metrics_rows
from tasks.registry import Champion, ModelVersion, Registry
from tasks.run.types import InvokeResult

LABELS = ["positive", "negative", "neutral"]
TEST_SHA = "a" * 64


@pytest.fixture
def test_jsonl(tmp_path):
    p = tmp_path / "test.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"review {i}", "completion": LABELS[i % 3]}) + "\n"
                         for i in range(60)))
    return p


class Fake:
    """Answers the label right with a per-model probability (seeded per model and prompt); records every call."""

    def __init__(self, acc: dict[str, float]):
        self.acc = acc
        self.calls: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def __call__(self, client, model_id, shape, *, prompt, system=None, max_tokens=64, temperature=0.0):
        with self.lock:
            self.calls.setdefault(model_id, []).append(prompt)
        i = int(prompt.split()[-1])
        right = random.Random(f"{model_id}:{i}").random() < self.acc[model_id]
        return InvokeResult(text=LABELS[i % 3] if right else LABELS[(i + 1) % 3], input_tokens=4, output_tokens=1,
                            latency_ms=5.0)


def _plan(target: str | None = "champion-pt", recorded: C.RecordedOutputs | None = None) -> C.ChampionPlan:
    return C.ChampionPlan(run_id="20261125-week1", run_key="rk-week1", custom_model_arn="arn:champ",
                          target=target, outputs_uri="s3://b/p/output/rk-week1/evaluation/outputs/x.json",
                          recorded=recorded)


def _cfg(n: int = 60) -> EvaluationConfig:
    return EvaluationConfig(max_examples=n, concurrency=4, bootstrap_samples=300)


def _collect(test_jsonl, tmp_path, fake, champion=None, n=60):
    return E.collect_outputs(None, test_path=test_jsonl, data_format="prompt-completion", base_target="base-id",
                             custom_target="custom-arn", invoke_shape="nova", eval_cfg=_cfg(n),
                             out_dir=tmp_path / "ev", invoke_fn=fake, champion=champion)


def _score(df, tmp_path, gate: GateConfig):
    return E.score_outputs(df, eval_cfg=_cfg(), gate_cfg=gate, label_like=True, out_dir=tmp_path / "ev")


def test_three_targets_get_the_same_prompts_and_the_two_way_columns_stay(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.9, "champion-pt": 0.6})
    df = _collect(test_jsonl, tmp_path, fake, _plan(), n=30)
    assert sorted(fake.calls["base-id"]) == sorted(fake.calls["custom-arn"]) == sorted(fake.calls["champion-pt"])
    assert len(fake.calls["champion-pt"]) == 30
    two_way = _collect(test_jsonl, tmp_path, Fake({"base-id": 0.3, "custom-arn": 0.9}), None, n=30)
    # the base/custom columns are those of a two-way evaluation, in the same order, champion columns after them
    assert list(df.columns)[:len(two_way.columns)] == list(two_way.columns)
    assert {"champion_output", "champion_error", "champion_reused"} <= set(df.columns)
    assert E.targets_of(df) == ["base", "custom", "champion"] and E.targets_of(two_way) == ["base", "custom"]
    assert df.attrs["targets"]["champion"] == "champion-pt" and df.attrs["champion_run_id"] == "20261125-week1"
    errs = E.error_counts(df)
    assert errs["total_calls"] == 90 and errs["champion"] == 0


def test_recorded_champion_outputs_are_reused_and_only_missing_ones_served(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.9, "champion-pt": 0.6})
    first = _collect(test_jsonl, tmp_path, fake, _plan(), n=40)
    rec = C.outputs_from_table(first, "champion", test_sha256=TEST_SHA, settings={})
    assert len(rec.outputs) == 40
    # all recorded: the champion is not called at all, and its answers are the recorded ones
    fake2 = Fake({"base-id": 0.3, "custom-arn": 0.9, "champion-pt": 0.0})   # would answer wrong if called
    again = _collect(test_jsonl, tmp_path, fake2, _plan(recorded=rec), n=40)
    assert "champion-pt" not in fake2.calls
    assert again["champion_reused"].all() and (again["champion_attempts"] == 0).all()
    assert list(again["champion_output"]) == list(first["champion_output"])
    assert E.error_counts(again)["total_calls"] == 80            # reused answers are not calls
    # some recorded: only the others are served
    partial = rec.model_copy(update={"outputs": dict(list(rec.outputs.items())[:25])})
    fake3 = Fake({"base-id": 0.3, "custom-arn": 0.9, "champion-pt": 0.6})
    mixed = _collect(test_jsonl, tmp_path, fake3, _plan(recorded=partial), n=40)
    assert len(fake3.calls["champion-pt"]) == 15 and int(mixed["champion_reused"].sum()) == 25


def test_a_champion_that_cannot_answer_fails_the_gate_with_the_reason(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.95})
    df = _collect(test_jsonl, tmp_path, fake, _plan(target=None), n=30)
    assert "champion_output" not in df and "no production serving" in df.attrs["champion_skipped"]
    res = _score(df, tmp_path, GateConfig(metric="accuracy", min_delta=0.1))
    assert not res.gate.passed and res.gate.champion == "20261125-week1"
    assert any("could not be evaluated" in r for r in res.gate.reasons)


def test_gate_against_champion_pass_and_fail(test_jsonl, tmp_path):
    gate = GateConfig(metric="accuracy", min_delta=0.1, champion_min_delta=0.05)
    better = _score(_collect(test_jsonl, tmp_path, Fake({"base-id": 0.3, "custom-arn": 0.97, "champion-pt": 0.6}),
                             _plan()), tmp_path, gate)
    assert better.gate.passed, better.gate.reasons
    assert better.gate.vs_champion[0]["metric"] == "accuracy" and better.gate.vs_champion[0]["passed"]
    vs = better.metrics["comparison_vs_champion"]["accuracy"]
    assert vs["delta"] > 0.2 and vs["n"] == 60 and vs["champion"] < vs["custom"]
    assert better.metrics["champion"]["accuracy"] == pytest.approx(vs["champion"])
    # the base comparison is still there, unchanged in shape
    assert better.metrics["comparison"]["accuracy"]["custom"] == pytest.approx(vs["custom"])

    worse = _score(_collect(test_jsonl, tmp_path, Fake({"base-id": 0.3, "custom-arn": 0.6, "champion-pt": 0.97}),
                            _plan()), tmp_path, gate)
    assert not worse.gate.passed
    assert worse.gate.delta > 0.1                               # it beats base: it is the champion it loses to
    assert any("custom − champion" in r and "champion_min_delta" in r for r in worse.gate.reasons)


def test_ci_above_zero_vs_champion_is_required_only_when_asked(test_jsonl, tmp_path):
    # nearly equal models: a small positive point delta whose CI spans 0
    fake = Fake({"base-id": 0.2, "custom-arn": 0.72, "champion-pt": 0.7})
    df = _collect(test_jsonl, tmp_path, fake, _plan())
    lenient = _score(df.copy(), tmp_path, GateConfig(metric="accuracy", champion_min_delta=-1.0))
    summary_delta = lenient.metrics["comparison_vs_champion"]["accuracy"]
    assert summary_delta["ci_low"] < 0 < summary_delta["ci_high"]
    assert lenient.gate.passed, lenient.gate.reasons
    strict = _score(df.copy(), tmp_path, GateConfig(metric="accuracy", champion_min_delta=-1.0,
                                                    require_ci_above_zero_vs_champion=True))
    assert not strict.gate.passed and any("does not lie above 0" in r for r in strict.gate.reasons)


def test_champion_metrics_lists_each_metric(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.97, "champion-pt": 0.6})
    res = _score(_collect(test_jsonl, tmp_path, fake, _plan()), tmp_path,
                 GateConfig(metric="accuracy", champion_metrics=["accuracy", "macro_f1", "rouge_l"]))
    assert [c["metric"] for c in res.gate.vs_champion] == ["accuracy", "macro_f1", "rouge_l"]
    assert res.gate.passed, res.gate.reasons


def test_no_champion_gates_against_base_exactly_as_before(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.95})
    gate = GateConfig(metric="accuracy", min_delta=0.1, champion_min_delta=0.5,
                      require_ci_above_zero_vs_champion=True)   # champion rules do not apply without one
    res = _score(_collect(test_jsonl, tmp_path, fake, None), tmp_path, gate)
    assert res.gate.passed and res.gate.champion is None and res.gate.vs_champion == []
    assert "champion" not in res.gate.rule and "comparison_vs_champion" not in res.metrics
    assert res.errors["total_calls"] == 120 and "champion" not in res.errors
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "Champion: none" in md and "Challenger vs champion" not in md
    assert all("champion" not in r for r in metrics_rows(res.metrics))


def test_report_shows_base_champion_challenger_side_by_side(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.97, "champion-pt": 0.6})
    res = _score(_collect(test_jsonl, tmp_path, fake, _plan()), tmp_path, GateConfig(metric="accuracy"))
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "## Challenger vs champion (run 20261125-week1)" in md
    assert "| metric | base | champion | challenger |" in md
    acc = res.metrics["comparison_vs_champion"]["accuracy"]
    base = res.metrics["comparison"]["accuracy"]["base"]
    assert f"| Accuracy ◀ gate | {base:.4f} | {acc['champion']:.4f} | {acc['custom']:.4f} |" in md
    assert "Rule against the champion" in md and "| champion |" in md    # latency table row
    rows = {r["metric"]: r for r in metrics_rows(res.metrics)}
    assert rows["accuracy"]["champion"] == pytest.approx(acc["champion"], abs=1e-4)
    assert rows["accuracy"]["delta_vs_champion"] == pytest.approx(acc["delta"], abs=1e-4)
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["gate"]["champion"] == "20261125-week1" and "comparison_vs_champion" in summary["summary"]
    assert E.EvaluationResult.model_validate_json(res.model_dump_json()) == res


# -- recorded outputs in S3 ------------------------------------------------------------------------------------


def test_outputs_are_stored_next_to_the_evaluation_record_and_found_for_the_champion(moto_clients, test_jsonl,
                                                                                    tmp_path):
    s3 = moto_clients.s3
    s3.create_bucket(Bucket="bkt")
    settings = C.settings_of(_cfg(), "nova")
    week1_out = "s3://bkt/pre/output/rk-week1/"
    fake = Fake({"base-id": 0.3, "custom-arn": 0.9})
    df1 = _collect(test_jsonl, tmp_path, fake, None, n=20)
    uris = E.record_run_outputs(moto_clients, output_uri=week1_out, df=df1, test_sha256=TEST_SHA,
                                eval_cfg=_cfg(), invoke_shape="nova", run_id="20261125-week1",
                                custom_model_arn="arn:aws:bedrock:us-east-1:123456789012:custom-model/x")
    assert uris["custom"].startswith("s3://bkt/pre/output/rk-week1/evaluation/outputs/")
    body = s3.get_object(Bucket="bkt", Key=uris["custom"].split("bkt/", 1)[1])["Body"].read().decode()
    assert "123456789012" not in body
    # week 2 (another run key, same bucket/prefix) finds week 1's outputs on the same test split only
    v1 = ModelVersion(run_id="20261125-week1", run_key="rk-week1", custom_model_arn="arn:champ")
    week2_out = "s3://bkt/pre/output/rk-week2/"
    rec = C.champion_outputs_for(s3, week2_out, TEST_SHA, v1, settings)
    first_id = str(df1.loc[0, "example_id"])
    assert rec is not None and rec.outputs[first_id].text == df1.loc[0, "custom_output"] and len(rec.outputs) == 20
    assert C.champion_outputs_for(s3, week2_out, "b" * 64, v1, settings) is None          # data changed
    other = C.settings_of(EvaluationConfig(max_tokens=9), "nova")
    assert C.champion_outputs_for(s3, week2_out, TEST_SHA, v1, other) is None            # asked differently
    # a document at the right place whose hash differs is refused, not reused
    bad = rec.model_copy(update={"test_sha256": "c" * 64})
    C.record_outputs(s3, C.outputs_uri(week1_out, TEST_SHA, settings), bad)
    assert C.champion_outputs_for(s3, week2_out, TEST_SHA, v1, settings) is None


def test_plan_champion_from_the_registry(moto_clients):
    s3 = moto_clients.s3
    s3.create_bucket(Bucket="bkt")
    settings = C.settings_of(_cfg(), "nova")
    reg = Registry(lineage="tickets")
    assert C.plan_champion(s3, reg, output_uri="s3://bkt/p/output/rk2/", test_sha256=TEST_SHA,
                           settings=settings) is None                                       # first run
    reg.versions.append(ModelVersion(run_id="20261125-week1", run_key="rk1", custom_model_arn="arn:m1",
                                     status="champion"))
    reg.champion = Champion(run_id="20261125-week1", custom_model_arn="arn:m1", serving_arn="arn:prod-pt",
                            serving_kind="provisioned")
    plan = C.plan_champion(s3, reg, output_uri="s3://bkt/p/output/rk2/", test_sha256=TEST_SHA, settings=settings)
    assert plan.target == "arn:prod-pt" and plan.recorded is None and plan.run_key == "rk1"
    assert plan.outputs_uri == C.outputs_uri("s3://bkt/p/output/rk1/", TEST_SHA, settings)
    # the champion's own rerun is not compared with itself
    assert C.plan_champion(s3, reg, output_uri="s3://bkt/p/output/rk1/", test_sha256=TEST_SHA, settings=settings,
                           this_run_id="20261125-week1") is None


def test_record_run_outputs_writes_the_champion_only_when_it_was_served(moto_clients, test_jsonl, tmp_path):
    s3 = moto_clients.s3
    s3.create_bucket(Bucket="bkt")
    settings = C.settings_of(_cfg(), "nova")
    uri = C.outputs_uri("s3://bkt/p/output/rk-week1/", TEST_SHA, settings)
    plan = _plan().model_copy(update={"outputs_uri": uri})
    fake = Fake({"base-id": 0.3, "custom-arn": 0.9, "champion-pt": 0.6})
    df = _collect(test_jsonl, tmp_path, fake, plan, n=20)
    out = E.record_run_outputs(moto_clients, output_uri="s3://bkt/p/output/rk-week2/", df=df, test_sha256=TEST_SHA,
                               eval_cfg=_cfg(), invoke_shape="nova", run_id="r2", custom_model_arn="arn:m2",
                               champion=plan)
    assert out["champion"] == uri
    rec = C.load_outputs(s3, uri, TEST_SHA)
    assert len(rec.outputs) == 20 and rec.run_id == "20261125-week1"
    # everything reused: nothing new to write for the champion
    df2 = _collect(test_jsonl, tmp_path, fake, plan.model_copy(update={"recorded": rec}), n=20)
    out2 = E.record_run_outputs(moto_clients, output_uri="s3://bkt/p/output/rk-week2/", df=df2,
                                test_sha256=TEST_SHA, eval_cfg=_cfg(), invoke_shape="nova", run_id="r2",
                                custom_model_arn="arn:m2", champion=plan.model_copy(update={"recorded": rec}))
    assert "champion" not in out2


def test_champion_failures_are_counted_and_the_three_way_set_is_shared(test_jsonl, tmp_path):
    fake = Fake({"base-id": 0.3, "custom-arn": 0.9, "champion-pt": 0.6})

    def flaky(client, model_id, shape, **kw):
        if model_id == "champion-pt" and int(kw["prompt"].split()[-1]) % 5 == 0:
            raise RuntimeError("champion serving hiccup")
        return fake(client, model_id, shape, **kw)

    cfg = EvaluationConfig(max_examples=60, concurrency=4, bootstrap_samples=300, max_error_share=0.1,
                           invoke_retries=0)
    df = E.collect_outputs(None, test_path=test_jsonl, data_format="prompt-completion", base_target="base-id",
                           custom_target="custom-arn", invoke_shape="nova", eval_cfg=cfg, out_dir=tmp_path / "ev",
                           invoke_fn=flaky, champion=_plan(), is_retryable=lambda e: False)
    res = E.score_outputs(df, eval_cfg=cfg, gate_cfg=GateConfig(metric="accuracy"), label_like=True,
                          out_dir=tmp_path / "ev")
    assert res.errors["champion"] == 12 and res.errors["calls"] == 12 and res.errors["total_calls"] == 180
    assert res.n_scored == 60 and res.metrics["n_scored_three"] == 48
    vs = res.metrics["comparison_vs_champion"]["accuracy"]
    assert vs["n"] == 48
    ok3 = df["champion_error"].isna()
    assert vs["base"] == pytest.approx(df.loc[ok3, "base_exact_match"].mean())     # base on the same 48
    assert vs["custom"] == pytest.approx(df.loc[ok3, "custom_exact_match"].mean())
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "failed calls: base 0, custom 0, champion 12 (of 180 calls)" in md
    assert "- champion example" in md                                               # the errors section


def test_the_champions_production_serving_gets_at_most_champion_concurrency_calls(test_jsonl, tmp_path):
    import time

    inflight = {"champion-pt": 0, "custom-arn": 0}
    peak = dict(inflight)
    lock = threading.Lock()

    def slow(client, model_id, shape, *, prompt, **kw):
        with lock:
            if model_id in inflight:
                inflight[model_id] += 1
                peak[model_id] = max(peak[model_id], inflight[model_id])
        time.sleep(0.01)
        with lock:
            if model_id in inflight:
                inflight[model_id] -= 1
        return InvokeResult(text="positive")

    cfg = EvaluationConfig(max_examples=40, concurrency=8, champion_concurrency=2)
    E.collect_outputs(None, test_path=test_jsonl, data_format="prompt-completion", base_target="base-id",
                      custom_target="custom-arn", invoke_shape="nova", eval_cfg=cfg, out_dir=tmp_path / "ev",
                      invoke_fn=slow, champion=_plan())
    assert peak["champion-pt"] == 2 and peak["custom-arn"] > 2


def test_week2_on_the_same_data_reuses_week1s_outputs_through_the_registry(moto_clients, test_jsonl, tmp_path):
    """The stage-level sequence the flow runs: week 1 (no champion) records its outputs; it becomes champion in
    the lineage's registry; week 2 on the same test split plans the champion from the registry, finds week 1's
    outputs and never calls the champion's production serving; on other data it serves it."""
    from tasks.config import PipelineConfig
    from tasks.registry import record_version, store_for_config, switch_champion

    s3 = moto_clients.s3
    s3.create_bucket(Bucket="bkt")
    config = PipelineConfig.model_validate({"name": "tickets", "base_model": "amazon.nova-micro-v1:0:128k",
                                            "data": {"source": "x.jsonl"}, "aws": {"bucket": "bkt", "prefix": "p"},
                                            "evaluation": {"max_examples": 30, "concurrency": 4,
                                                           "bootstrap_samples": 200}})
    out1, out2 = "s3://bkt/p/output/rk-week1/", "s3://bkt/p/output/rk-week2/"
    fake = Fake({"base-id": 0.3, "custom-arn": 0.7, "champion-pt": 0.0, "arn:week2": 0.9})
    assert E.champion_plan(moto_clients, config, output_uri=out1, test_sha256=TEST_SHA, invoke_shape="nova",
                           run_id="20261125-week1") is None                       # week 1: no champion
    df1 = _collect(test_jsonl, tmp_path, fake, None, n=30)
    E.record_run_outputs(moto_clients, output_uri=out1, df=df1, test_sha256=TEST_SHA, eval_cfg=config.evaluation,
                         invoke_shape="nova", run_id="20261125-week1", custom_model_arn="arn:m1")
    store = store_for_config(moto_clients, config)
    record_version(store, ModelVersion(run_id="20261125-week1", run_key="rk-week1", custom_model_arn="arn:m1",
                                       gate={"passed": True}))
    switch_champion(store, None, Champion(run_id="20261125-week1", custom_model_arn="arn:m1",
                                          serving_arn="champion-pt", serving_kind="deployment"))
    plan = E.champion_plan(moto_clients, config, output_uri=out2, test_sha256=TEST_SHA, invoke_shape="nova",
                           run_id="20261202-week2")
    assert plan.run_id == "20261125-week1" and plan.target == "champion-pt" and len(plan.recorded.outputs) == 30
    df2 = E.collect_outputs(None, test_path=test_jsonl, data_format="prompt-completion", base_target="base-id",
                            custom_target="arn:week2", invoke_shape="nova", eval_cfg=config.evaluation,
                            out_dir=tmp_path / "ev2", invoke_fn=fake, champion=plan)
    assert "champion-pt" not in fake.calls                                        # reused, not served
    assert list(df2["champion_output"]) == list(df1["custom_output"])             # week 1's own answers
    res = E.score_outputs(df2, eval_cfg=config.evaluation, gate_cfg=GateConfig(metric="accuracy"), label_like=True,
                          out_dir=tmp_path / "ev2")
    assert res.gate.champion == "20261125-week1" and res.metrics["champion_reused_outputs"] == 30
    # new data: nothing recorded for that split, the champion is served
    other = E.champion_plan(moto_clients, config, output_uri=out2, test_sha256="d" * 64, invoke_shape="nova",
                            run_id="20261202-week2")
    assert other.recorded is None and other.target == "champion-pt"
