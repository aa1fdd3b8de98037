"""LLM-as-judge (issue 19 item 5): parsing, the order swap, position-bias cancellation, the cache, the cost."""

from __future__ import annotations

import io
import json
import re
import threading
from types import SimpleNamespace

import pandas as pd
import pytest

from tasks import evaluate as E
from tasks.config import EvaluationConfig, JudgeConfig, PipelineConfig
from tasks.evaluation import judge as J
from tasks.evaluation.report import render_markdown
from tasks.run.types import InvokeResult

JUDGE = "us.amazon.nova-lite-v1:0"


# -- parsing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, winner", [
    ('{"winner": "A", "reason": "more complete"}', "A"),
    ('```json\n{"winner": "b", "reason": "x"}\n```', "B"),
    ('Sure. Here is my verdict: {"reason": "both fine {really}", "winner": "Tie"} — done.', "tie"),
    ('{"notes": {"x": 1}} then {"winner": " A "}', "A"),
])
def test_parse_verdict_finds_the_json_verdict(text, winner):
    assert J.parse_verdict(text).winner == winner


@pytest.mark.parametrize("text", ["", "A", "Answer A is better.", '{"winner": "C"}', '{"winner": ["A"]}',
                                  '{"choice": "A"}', "{winner: A}", '{"winner": "A or B"}'])
def test_anything_else_is_unparseable_never_guessed(text):
    v = J.parse_verdict(text)
    assert v.winner is None and v.problem


def test_combine_needs_both_orders_to_agree():
    a, b, t, bad = (J.Verdict(winner="A"), J.Verdict(winner="B"), J.Verdict(winner="tie"),
                    J.Verdict(problem="x"))
    assert J.combine(a, b) == "win"        # challenger first: A; challenger second: B -> both name it
    assert J.combine(b, a) == "loss"
    assert J.combine(a, a) == "tie"        # position preference: disagreement -> tie
    assert J.combine(t, t) == "tie" and J.combine(a, t) == "tie"
    assert J.combine(bad, a) == "unparseable" and J.combine(a, bad) == "unparseable"


# -- a stubbed bedrock-runtime client -----------------------------------------------------------------------


def _answers(prompt: str) -> tuple[str, str]:
    a = re.search(r"<answer_a>\n(.*?)\n</answer_a>", prompt, re.S).group(1)
    b = re.search(r"<answer_b>\n(.*?)\n</answer_b>", prompt, re.S).group(1)
    return a, b


class StubRuntime:
    """bedrock-runtime's invoke_model with a Nova-shaped answer chosen by ``decide(prompt) -> text``."""

    def __init__(self, decide):
        self.decide = decide
        self.prompts: list[str] = []
        self.model_ids: set[str] = set()
        self.lock = threading.Lock()

    def invoke_model(self, modelId, body, contentType, accept):
        req = json.loads(body)
        prompt = req["messages"][0]["content"][0]["text"]
        with self.lock:
            self.prompts.append(prompt)
            self.model_ids.add(modelId)
        out = {"output": {"message": {"role": "assistant", "content": [{"text": self.decide(prompt)}]}},
               "usage": {"inputTokens": len(prompt) // 4, "outputTokens": 12}}
        return {"body": io.BytesIO(json.dumps(out).encode()), "ResponseMetadata": {"HTTPHeaders": {}}}


def always_a(prompt: str) -> str:
    return '{"winner": "A", "reason": "first is best"}'


def longer_wins(prompt: str) -> str:
    a, b = _answers(prompt)
    w = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"
    return json.dumps({"winner": w, "reason": "longer", "stand_in": "test stand-in judge"})


def _table(n: int = 12, champion: bool = False) -> pd.DataFrame:
    rows = []
    for i in range(n):
        r = {"example_id": i, "system": None, "prompt": f"summarize {i}", "reference": f"ref {i}",
             "base_output": "short", "base_error": None,
             "custom_output": "a much longer answer" if i % 4 else "tiny", "custom_error": None}
        if champion:
            r.update(champion_output="medium one", champion_error=None)
        rows.append(r)
    return pd.DataFrame(rows)


def _cfg(**judge) -> EvaluationConfig:
    return EvaluationConfig(concurrency=3, bootstrap_samples=200, invoke_retries=0,
                            judge=JudgeConfig(model=JUDGE, **judge))


def test_a_judge_that_always_says_a_gives_only_ties():
    rt = StubRuntime(always_a)
    out = E.judge_outputs(rt, None, _table(), eval_cfg=_cfg(), output_uri="s3://b/p/output/rk/")
    p = out["pairs"]["base"]
    assert p["tie"] == 1.0 and p["win"] == 0.0 and p["loss"] == 0.0 and p["score"] == 0.0
    assert p["n_counted"] == 12 and p["calls"] == 24
    assert p["n_order_disagreed"] == 12          # every tie came from the orders disagreeing: position bias, seen


def test_both_orders_are_asked_with_the_answers_swapped():
    rt = StubRuntime(longer_wins)
    df = _table(8)
    out = E.judge_outputs(rt, None, df, eval_cfg=_cfg(), output_uri="s3://b/p/output/rk/")
    pairs = {}
    for pr in rt.prompts:
        pairs.setdefault(re.search(r"<prompt>\n(.*?)\n</prompt>", pr, re.S).group(1), []).append(_answers(pr))
    assert len(pairs) == 8
    for asked in pairs.values():
        assert len(asked) == 2 and asked[0] == asked[1][::-1]     # (challenger, base) then (base, challenger)
    assert all(pr.startswith(J.JUDGE_MARKER) for pr in rt.prompts)
    assert rt.model_ids == {JUDGE}
    p = out["pairs"]["base"]
    # the challenger is longer on 6 of 8 examples ("tiny" vs "short" loses on ids 0 and 4)
    assert (p["win"], p["loss"], p["tie"]) == (0.75, 0.25, 0.0) and p["n_order_disagreed"] == 0
    assert p["score"] == pytest.approx(0.5) and p["ci_low"] <= 0.5 <= p["ci_high"]
    assert list(df["judge_vs_base"]) == ["loss", "win", "win", "win", "loss", "win", "win", "win"]
    assert out["stand_in"] == "test stand-in judge"


def test_champion_pair_is_judged_when_there_is_one():
    rt = StubRuntime(longer_wins)
    out = E.judge_outputs(rt, None, _table(8, champion=True), eval_cfg=_cfg(), output_uri="s3://b/p/output/rk/")
    assert set(out["pairs"]) == {"base", "champion"}
    assert out["pairs"]["champion"]["win"] == 0.75 and out["calls"] == 32


def test_unparseable_answers_are_recorded_and_not_counted():
    def rambling(prompt):
        return "I think A is better, honestly."

    out = E.judge_outputs(StubRuntime(rambling), None, _table(5), eval_cfg=_cfg(), output_uri="s3://b/p/o/rk/")
    p = out["pairs"]["base"]
    assert p["n_unparseable"] == 5 and p["n_counted"] == 0
    assert p["score"] != p["score"]             # NaN: nothing to score, not a made-up 0


def test_a_failed_judge_call_is_an_error_not_a_verdict():
    def boom(client, model_id, shape, **kw):
        raise RuntimeError("judge down")

    out = E.judge_outputs(None, None, _table(4), eval_cfg=_cfg(), output_uri="s3://b/p/o/rk/",
                          invoke_fn=boom, is_retryable=lambda e: False)
    assert out["pairs"]["base"]["n_errors"] == 4 and out["pairs"]["base"]["n_counted"] == 0


def test_cache_in_s3_makes_a_rerun_free_and_keys_on_rubric_and_answers(moto_clients):
    s3 = moto_clients.s3
    s3.create_bucket(Bucket="bkt")
    uri = "s3://bkt/p/output/rk/"
    rt = StubRuntime(longer_wins)
    first = E.judge_outputs(rt, s3, _table(), eval_cfg=_cfg(), output_uri=uri)
    assert first["calls"] == 24 and first["cached"] == 0
    assert first["cache_uri"].startswith("s3://bkt/p/output/rk/evaluation/judge/")
    rt2 = StubRuntime(longer_wins)
    again = E.judge_outputs(rt2, s3, _table(), eval_cfg=_cfg(), output_uri=uri)
    assert rt2.prompts == [] and again["calls"] == 0 and again["cached"] == 24
    paid = {"calls": 0, "cached": 0, "input_tokens": 0, "output_tokens": 0}   # what a cached answer costs: nothing
    assert again["pairs"]["base"] == first["pairs"]["base"] | paid | {"cached": 24}
    assert again["input_tokens"] == 0 and first["input_tokens"] > 0
    assert again["stand_in"] == "test stand-in judge"        # parsed from the cached text
    # one changed answer: only its two orders are asked
    df = _table()
    df.loc[3, "custom_output"] = "changed answer"
    rt3 = StubRuntime(longer_wins)
    E.judge_outputs(rt3, s3, df, eval_cfg=_cfg(), output_uri=uri)
    assert len(rt3.prompts) == 2
    # another rubric: another cache
    rt4 = StubRuntime(longer_wins)
    E.judge_outputs(rt4, s3, _table(), eval_cfg=_cfg(rubric="Which is shorter?"), output_uri=uri)
    assert len(rt4.prompts) == 24


def test_cache_key_covers_model_rubric_prompt_and_both_answers():
    base = dict(system=None, prompt="p", reference="r", answer_a="x", answer_b="y")
    k = J.cache_key("m", "rub", **base)
    assert k == J.cache_key("m", "rub", **base)
    for change in ({"prompt": "p2"}, {"answer_a": "x2"}, {"answer_b": "y2"}, {"reference": "r2"}):
        assert J.cache_key("m", "rub", **(base | change)) != k
    assert J.cache_key("m2", "rub", **base) != k and J.cache_key("m", "rub2", **base) != k
    assert J.cache_key("m", "rub", **(base | {"answer_a": "y", "answer_b": "x"})) != k   # order matters


def test_max_examples_caps_the_judged_examples():
    rt = StubRuntime(longer_wins)
    out = E.judge_outputs(rt, None, _table(10), eval_cfg=_cfg(max_examples=3), output_uri="s3://b/p/o/rk/")
    assert out["pairs"]["base"]["n_judged"] == 3 and len(rt.prompts) == 6


def test_judge_outside_the_catalog_needs_its_invoke_shape():
    with pytest.raises(E.EvaluationError, match="invoke_shape"):
        E.judge_target(JudgeConfig(model="some.unknown-judge-v9"))
    assert E.judge_target(JudgeConfig(model="some.unknown-judge-v9", invoke_shape="claude")) == (
        "some.unknown-judge-v9", "claude")
    assert E.judge_target(JudgeConfig(model="us.amazon.nova-lite-v1:0"))[1] == "nova"


def test_report_names_the_judge_and_a_stand_in_as_such():
    rt = StubRuntime(longer_wins)
    j = E.judge_outputs(rt, None, _table(6), eval_cfg=_cfg(), output_uri="s3://b/p/o/rk/")
    summary = {"n_examples": 6, "n_scored": 6, "errors": {}, "comparison": {}, "win_tie_loss": {},
               "latency": {}, "tokens": {}, "bertscore": {}, "judge": j}
    md = render_markdown(summary, {"passed": True, "rule": "r", "reasons": []}, _table(6), {})
    assert "## LLM judge" in md and f"`{JUDGE}`" in md and "**test stand-in judge**: not a model's judgement" in md
    assert "| base | 6 |" in md


# -- the estimate ---------------------------------------------------------------------------------------------


def _config(**judge) -> PipelineConfig:
    ev = {"max_examples": 50, "max_tokens": 64}
    if judge:
        ev["judge"] = judge
    return PipelineConfig.model_validate({"name": "t", "base_model": "amazon.nova-micro-v1:0:128k",
                                          "data": {"source": "x.jsonl"}, "evaluation": ev})


def test_estimate_counts_the_judge_calls_and_says_an_unknown_price():
    from tasks.estimate import build_estimate

    without = build_estimate(_config(), train_chars=6000, test_records=100, test_input_chars=20000, method="raw")
    assert without.judge_calls == 0 and not any("judge" in ln["item"] for ln in without.lines)
    est = build_estimate(_config(model="not.in-catalog-v1", max_examples=20, invoke_shape="claude"),
                         train_chars=6000, test_records=100, test_input_chars=20000, method="raw")
    assert est.judge_calls == 2 * 2 * 20
    line = next(ln for ln in est.lines if ln["item"].startswith("evaluation: judge"))
    assert line["usd"] is None and any("judge not.in-catalog-v1" in u and "not in the catalog" in u
                                       for u in est.unknown)
    assert est.total_usd is None
    priced = build_estimate(_config(model="not.in-catalog-v1", max_examples=20, input_per_1k=0.001,
                                    output_per_1k=0.004),
                            train_chars=6000, test_records=100, test_input_chars=20000, method="raw")
    line = next(ln for ln in priced.lines if ln["item"].startswith("evaluation: judge"))
    calls = 80
    out_tok = calls * 200
    assert line["usd"] == pytest.approx((line["quantity"] - out_tok) * 0.001 / 1000 + out_tok * 0.004 / 1000)
    assert priced.judge_usd == pytest.approx(line["usd"]) and "judge" in priced.summary_line()


def test_the_judge_summary_goes_into_the_evaluation_and_its_report(tmp_path):
    labels = ["positive", "negative", "neutral"]
    p = tmp_path / "test.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"review {i}", "completion": labels[i % 3]}) + "\n"
                         for i in range(12)))

    def invoke(client, model_id, shape, *, prompt, system=None, max_tokens=64, temperature=0.0):
        i = int(prompt.split()[-1])
        text = labels[i % 3] + (" indeed" if model_id == "custom-arn" else "")
        return InvokeResult(text=text, input_tokens=2, output_tokens=1)

    cfg = _cfg()
    df = E.collect_outputs(None, test_path=p, data_format="prompt-completion", base_target="b",
                           custom_target="custom-arn", invoke_shape="nova", eval_cfg=cfg, out_dir=tmp_path / "ev",
                           invoke_fn=invoke)
    j = E.judge_outputs(StubRuntime(longer_wins), None, df, eval_cfg=cfg, output_uri="s3://b/p/o/rk/")
    res = E.score_outputs(df, eval_cfg=cfg, gate_cfg=E.GateConfig(), label_like=False, out_dir=tmp_path / "ev",
                          judge=j)
    assert res.metrics["judge"]["pairs"]["base"]["win"] == 1.0
    assert E.EvaluationResult.model_validate_json(res.model_dump_json()) == res
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "## LLM judge" in md and "test stand-in judge" in md
    assert "judge_vs_base" in (tmp_path / "ev" / "examples.csv").read_text().splitlines()[0]


# -- the judge as a gate metric (gate.metric: judge, gate.champion_metrics: [judge]) ------------------------------


def _judged_run(decide, tmp_path, gate: dict, *, champion: bool = False, n: int = 40, **judge_over):
    """The stubbed judge on ``_table``, then the gate on its summary: (verdict, judge summary)."""
    cfg = _cfg(**judge_over)
    j = E.judge_outputs(StubRuntime(decide), None, _table(n, champion=champion), eval_cfg=cfg,
                        output_uri="s3://b/p/output/rk/")
    summary = {"comparison": {}, "judge": j, "bootstrap": {"confidence": 0.95}}
    if champion:
        summary.update(champion_run_id="20261125-week1", comparison_vs_champion={})
    return E.apply_gate(E.GateConfig(**gate), summary), j


def test_judge_as_the_gate_metric_passes_on_its_score_and_ci(tmp_path):
    """The challenger is longer on 30 of 40 examples: score 0.5; the gate's delta is the judge's score, with its
    CI; the evidence names the judge and its stand-in."""
    v, j = _judged_run(longer_wins, tmp_path, {"metric": "judge", "min_delta": 0.2, "require_ci_above_zero": True})
    p = j["pairs"]["base"]
    assert p["score"] == pytest.approx(0.5) and p["ci_low"] > 0
    assert v.passed and v.metric == "judge" and v.delta == pytest.approx(0.5) and v.n == 40
    assert v.ci == (pytest.approx(p["ci_low"]), pytest.approx(p["ci_high"]))
    assert v.base is None and v.custom is None          # a pairwise judge gives no per-model value
    assert "judge score of custom vs base" in v.rule
    assert "test stand-in judge" in v.reasons[0] and "win 75%" in v.reasons[0]


@pytest.mark.parametrize("gate, why", [
    ({"metric": "judge", "min_delta": 0.6}, "judge score +0.5000 does not exceed min_delta 0.6"),
    ({"metric": "judge", "min_delta": 0.0, "require_ci_above_zero": True}, None),
])
def test_judge_gate_fails_below_its_margin(tmp_path, gate, why):
    v, _ = _judged_run(longer_wins, tmp_path, gate)
    assert v.passed is (why is None)
    if why:
        assert any(why in r for r in v.reasons), v.reasons


def test_a_judge_that_only_ties_cannot_pass_the_gate(tmp_path):
    """Position bias (always "A") cancels to ties: score 0, its CI [0, 0] does not lie above 0."""
    v, _ = _judged_run(always_a, tmp_path, {"metric": "judge", "min_delta": -0.5, "require_ci_above_zero": True})
    assert not v.passed and v.delta == 0.0
    assert any("does not lie above 0" in r for r in v.reasons), v.reasons


def test_a_judge_whose_calls_fail_fails_the_gate_saying_what_aws_said(tmp_path):
    """Every judge call denied: no example is judged, and the gate's reason carries the first error (an
    AccessDenied names the permission) with the account id redacted."""
    def denied(client, model_id, shape, **kw):
        raise RuntimeError("AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/forge-worker/x is "
                           "not authorized to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1"
                           "::foundation-model/amazon.nova-lite-v1:0")

    cfg = _cfg()
    df = _table(4)
    j = E.judge_outputs(None, None, df, eval_cfg=cfg, output_uri="s3://b/p/o/rk/", invoke_fn=denied,
                        is_retryable=lambda e: False)
    assert j["errors"] == 8 and len(j["first_errors"]) == J.MAX_FIRST_ERRORS
    assert "123456789012" not in json.dumps(j) and "<account>" in j["first_errors"][0]
    v = E.apply_gate(E.GateConfig(metric="judge"), {"judge": j, "comparison": {}})
    assert not v.passed
    assert "no example of custom vs base was judged" in v.reasons[0]
    assert "bedrock:InvokeModel" in v.reasons[0] and "4 failed after retries" in v.reasons[0]


def test_judge_gate_without_the_judge_summary_fails_closed():
    v = E.apply_gate(E.GateConfig(metric="judge"), {"comparison": {}})
    assert not v.passed and "the judge did not run" in v.reasons[0]


def test_judge_against_the_champion_is_a_champion_metric(tmp_path):
    """vs base the challenger wins 30 of 40 (longer); vs the champion ("medium one") it does too: with
    champion_metrics [judge] the champion check reads the judge's champion pair, not a text metric."""
    gate = {"metric": "judge", "min_delta": 0.0, "require_ci_above_zero": False, "champion_metrics": ["judge"],
            "champion_min_delta": 0.2}
    v, j = _judged_run(longer_wins, tmp_path, gate, champion=True)
    assert set(j["pairs"]) == {"base", "champion"}
    [check] = v.vs_champion
    assert check["metric"] == "judge" and check["passed"] and check["delta"] == pytest.approx(0.5)
    assert v.passed and "judge score of custom vs champion" in check["reason"]
    strict = {**gate, "champion_min_delta": 0.7}
    v, _ = _judged_run(longer_wins, tmp_path, strict, champion=True)
    assert not v.passed and "custom vs champion +0.5000 does not exceed champion_min_delta 0.7" in v.reasons[0]


def test_judge_champion_metric_without_champion_outputs_fails_with_the_reason(tmp_path):
    """A champion whose outputs are not in the table (the judge never compared with it) cannot be beaten."""
    gate = {"metric": "bertscore_f1", "require_ci_above_zero": False, "min_delta": -1.0,
            "champion_metrics": ["judge"]}
    j = {"model": JUDGE, "pairs": {"base": {"n_judged": 4, "n_counted": 4, "score": 0.5}}}
    s = {"comparison": {"bertscore_f1": {"base": 0.5, "custom": 0.6, "delta": 0.1, "ci_low": 0.0, "ci_high": 0.2,
                                         "n": 4}},
         "judge": j, "champion_run_id": "w1", "comparison_vs_champion": {}}
    v = E.apply_gate(E.GateConfig(**gate), s)
    assert not v.passed and "did not compare the challenger with champion" in v.reasons[0]


@pytest.mark.parametrize("gate, field", [
    ({"metric": "judge"}, "gate.metric"),
    ({"champion_metrics": ["bertscore_f1", "judge"]}, "gate.champion_metrics"),
])
def test_a_judge_gate_without_a_judge_is_refused_at_its_field(gate, field):
    from tasks.config.rules import judge_gate_problems

    raw = {"name": "jg", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "x.csv"}, "gate": gate}
    with pytest.raises(ValueError, match="evaluation.judge is not set"):
        PipelineConfig.model_validate(raw)
    bare = SimpleNamespace(gate=E.GateConfig(**gate), evaluation=EvaluationConfig())
    assert [f for f, _ in judge_gate_problems(bare)] == [field]
    PipelineConfig.model_validate({**raw, "evaluation": {"judge": {"model": JUDGE}}})      # with a judge: fine


def test_judge_gate_refuses_an_absolute_floor():
    raw = {"name": "jg", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "x.csv"},
           "evaluation": {"judge": {"model": JUDGE}}, "gate": {"metric": "judge", "min_value": 0.5}}
    with pytest.raises(ValueError, match="no absolute value to floor"):
        PipelineConfig.model_validate(raw)


def test_a_cache_that_cannot_be_written_keeps_the_verdicts_and_says_so():
    """The judge's calls are paid for before the cache is written: a denied put must not lose them."""
    from botocore.exceptions import ClientError

    class DeniedPut:
        def get_object(self, **kw):
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "none"}}, "GetObject")

        def put_object(self, **kw):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:sts::123456789012:"
                               "assumed-role/w/x is not authorized to perform: s3:PutObject"}}, "PutObject")

    out = E.judge_outputs(StubRuntime(longer_wins), DeniedPut(), _table(8), eval_cfg=_cfg(),
                          output_uri="s3://b/p/output/rk/")
    assert out["pairs"]["base"]["n_counted"] == 8 and out["calls"] == 16
    assert "s3:PutObject" in out["cache_error"] and "123456789012" not in out["cache_error"]
