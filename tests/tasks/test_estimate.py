"""Cost estimate: the arithmetic, unknown prices, and the budget gate that refuses to spend."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tasks.config import parse_config
from tasks.estimate import (
    BudgetExceeded,
    check_budget,
    estimate_cost,
    estimate_from_config,
    record_chars,
)
from tasks.run.types import PreparedData, SplitFile
from tests.support import REPO_ROOT

PRICES = {"train_per_1k_tokens": 0.5, "storage_per_month": 1.95, "pt_hour_no_commit": 20.0,
          "on_demand_input_per_1k": 0.001, "on_demand_output_per_1k": 0.004}


def conversation(user: str, assistant: str | None) -> dict:
    msgs = [{"role": "user", "content": [{"text": user}]}]
    if assistant is not None:
        msgs.append({"role": "assistant", "content": [{"text": assistant}]})
    return {"schemaVersion": "bedrock-conversation-2024", "system": [], "messages": msgs}


def write_split(path: Path, records: list[dict]) -> SplitFile:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return SplitFile(path=str(path), records=len(records), sha256="0" * 64, bytes=path.stat().st_size)


@pytest.fixture
def prepared(tmp_path) -> PreparedData:
    """100 train records of 500 + 100 characters (60,000 chars = 10,000 tokens at 6 chars/token) and
    20 test records whose prompts are 120 characters each."""
    train = write_split(tmp_path / "train.jsonl", [conversation("u" * 500, "a" * 100)] * 100)
    test = write_split(tmp_path / "test.jsonl", [conversation("q" * 120, "label")] * 20)
    return PreparedData(format="bedrock-conversation-2024", train=train, test=test,
                        report_path=str(tmp_path / "report.json"), estimated_train_tokens=10_000)


def config(**over):
    raw = {"name": "est", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "x.jsonl"},
           "preset": "balanced",                                   # Nova default: 2 epochs
           "serving": {"mode": "provisioned", "model_units": 1, "max_hours": 1.5},
           "evaluation": {"max_examples": 10, "max_tokens": 64}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_config(raw)


def line(est, item: str) -> dict:
    return next(x for x in est.lines if x["item"] == item)


# -- arithmetic ------------------------------------------------------------------------------
def test_provisioned_estimate_arithmetic_with_pricing_overrides(prepared):
    est = estimate_cost(config(pricing=PRICES), prepared)
    assert est.train_tokens == 10_000 and est.epochs == 2
    assert est.training_usd == pytest.approx(10_000 * 2 / 1000 * 0.5)                 # $10
    assert est.storage_usd == pytest.approx(1.95)
    # PT: 1 MU × 2 h (1.5 h rounded up: hourly billing) × $20, plus the base model's on-demand calls:
    # 10 calls × 120 chars / 6 = 200 input tokens, 10 × 64 = 640 output tokens (max_tokens bound)
    base_calls = 200 / 1000 * 0.001 + 640 / 1000 * 0.004
    assert line(est, "serving: provisioned throughput")["quantity"] == 2
    assert est.serving_usd == pytest.approx(40 + base_calls)
    assert est.total_usd == pytest.approx(10 + 1.95 + 40 + base_calls)
    assert est.unknown == [] and est.verdict == "ok" and est.eval_calls == 10
    assert line(est, "training")["price_source"] == "config.pricing"
    assert "10,000 train tokens × 2 epoch(s)" in est.summary_line()


def test_epochs_follow_preset_and_overrides(prepared):
    assert estimate_cost(config(preset="quick"), prepared).epochs == 1
    assert estimate_cost(config(hyperparameters={"epochCount": 4}), prepared).epochs == 4


def test_on_demand_serving_is_priced_by_test_tokens(prepared):
    est = estimate_cost(config(pricing=PRICES, serving={"mode": "on_demand"}), prepared)
    per_model = 200 / 1000 * 0.001 + 640 / 1000 * 0.004
    assert est.serving_kind == "deployment"
    assert line(est, "serving: custom model on demand")["usd"] == pytest.approx(per_model)
    assert est.serving_usd == pytest.approx(2 * per_model)     # custom + base comparison calls


def test_auto_mode_uses_on_demand_for_nova_in_its_regions_and_pt_elsewhere(prepared):
    assert estimate_cost(config(serving={"mode": "auto"}), prepared).serving_kind == "deployment"
    assert (estimate_cost(config(serving={"mode": "auto"}, aws={"region": "eu-west-1"}), prepared).serving_kind
            == "provisioned")
    titan = config(base_model="amazon.titan-text-express-v1:0:8k", serving={"mode": "auto"})
    assert estimate_cost(titan, prepared).serving_kind == "provisioned"


def test_no_serving_cost_when_evaluation_is_off(prepared):
    est = estimate_cost(config(pricing=PRICES, evaluation={"enabled": False}), prepared)
    assert est.serving_usd == 0 and est.serving_kind == "none"
    assert est.total_usd == pytest.approx(10 + 1.95)
    assert any("no serving resource" in n for n in est.notes)


def test_tokens_use_the_family_chars_per_token(tmp_path):
    """Claude 3 Haiku's validator counts 3 characters per token (docs/bedrock-facts.md §5): twice the tokens."""
    rec = {"system": "s" * 10, "messages": [{"role": "user", "content": "u" * 50},
                                            {"role": "assistant", "content": "a" * 30}]}
    train = write_split(tmp_path / "train.jsonl", [rec] * 30)
    prep = PreparedData(format="claude-messages", train=train, report_path="r.json")
    est = estimate_cost(config(base_model="anthropic.claude-3-haiku-20240307-v1:0:200k"), prep)
    assert est.chars_per_token == 3 and est.train_tokens == 30 * 90 // 3


def test_prepare_token_figure_is_used_when_the_train_file_is_elsewhere(prepared, tmp_path):
    moved = prepared.model_copy(update={"train": prepared.train.model_copy(
                                            update={"path": str(tmp_path / "gone.jsonl")}),
                                        "estimated_train_tokens": 1234})
    est = estimate_cost(config(), moved)
    assert est.train_tokens == 1234 and any("not on this machine" in n for n in est.notes)


@pytest.mark.parametrize("record, expected", [
    ({"prompt": "abcd", "completion": "xy"}, (4, 2)),
    ({"input": "some raw text"}, (13, 0)),
    ({"system": "sys", "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]},
     (8, 2)),
    (conversation("hello", "hi"), (5, 2)),         # schemaVersion and role names are not text
    ({"messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4"}, (4, 1)),
])
def test_record_chars_counts_texts_not_json(record, expected):
    assert record_chars(record) == expected


# -- unknown prices --------------------------------------------------------------------------
def test_unknown_prices_are_reported_and_token_counts_still_given(prepared):
    est = estimate_cost(config(budget={"max_usd": 100}), prepared)        # catalog: no confirmed prices
    assert est.train_tokens == 10_000 and est.epochs == 2
    assert est.training_usd is None and est.storage_usd is None and est.serving_usd is None
    assert est.total_usd is None and est.verdict == "unknown_price"
    joined = "\n".join(est.unknown)
    for field in ("train_per_1k_tokens", "storage_per_month", "pt_hour_no_commit", "on_demand_input_per_1k"):
        assert f"pricing.{field}" in joined
    assert "unknown" in est.summary_line()
    check_budget(est, config())                                              # no budget: nothing to protect
    check_budget(est, config(budget={"max_usd": 100, "allow_unknown_prices": True}))   # written out: allowed


def test_a_budget_with_unknown_prices_is_refused_unless_allowed_explicitly(prepared):
    """Issue 16: allow_unknown_prices unset means "refuse when a budget is set" (it used to default to true,
    so a budget guarded nothing while the catalog has no confirmed price)."""
    cfg = config(budget={"max_usd": 100})
    assert cfg.budget.allow_unknown_prices is None
    with pytest.raises(BudgetExceeded) as exc:
        check_budget(estimate_cost(cfg, prepared), cfg)
    msg = str(exc.value)
    assert "budget.max_usd=$100.00 is set and these prices are unknown" in msg
    assert "pricing.train_per_1k_tokens" in msg and "budget.allow_unknown_prices: true" in msg


def test_a_zero_budget_refuses_any_run_that_spends(prepared):
    allowed = config(budget={"max_usd": 0, "allow_unknown_prices": True})
    with pytest.raises(BudgetExceeded, match="budget.max_usd is 0 and the run would spend on items with no known"):
        check_budget(estimate_cost(allowed, prepared), allowed)      # unknown prices count as spending, not $0
    priced = config(pricing=PRICES, budget={"max_usd": 0})
    with pytest.raises(BudgetExceeded, match=r"exceeds budget.max_usd=\$0.00"):
        check_budget(estimate_cost(priced, prepared), priced)
    free = config(pricing=dict.fromkeys(PRICES, 0.0), budget={"max_usd": 0})
    check_budget(estimate_cost(free, prepared), free)                  # a run that truly costs $0 is allowed


def test_partial_overrides_give_partial_totals(prepared):
    est = estimate_cost(config(pricing={"train_per_1k_tokens": 0.5}), prepared)
    assert est.training_usd == pytest.approx(10) and est.total_usd is None
    assert est.known_usd == pytest.approx(10)
    assert not any("train_per_1k_tokens" in u for u in est.unknown)


def test_unknown_prices_refused_when_not_allowed(prepared):
    cfg = config(budget={"max_usd": 100, "allow_unknown_prices": False})
    est = estimate_cost(cfg, prepared)
    with pytest.raises(BudgetExceeded) as exc:
        check_budget(est, cfg)
    msg = str(exc.value)
    assert "prices are unknown" in msg and "pricing.storage_per_month" in msg
    check_budget(estimate_cost(config(pricing=PRICES, budget={"max_usd": 100, "allow_unknown_prices": False}),
                               prepared), cfg)   # with every price set it starts
    no_budget = config(budget={"allow_unknown_prices": False})
    with pytest.raises(BudgetExceeded, match="allow_unknown_prices is false"):
        check_budget(estimate_cost(no_budget, prepared), no_budget)


def _with_commitment(cfg, term: str = "OneMonth"):
    """A commitment on a config built without validation: PipelineConfig itself refuses one on the evaluation
    PT (tests/tasks/config), so this is what check_budget's own guard must catch."""
    return cfg.model_copy(update={"serving": cfg.serving.model_copy(
        update={"commitment": term, "allow_commitment": True})})


def test_commitment_shows_its_whole_term_and_is_refused_for_the_evaluation_pt(prepared):
    cfg = _with_commitment(config(pricing=PRICES))
    est = estimate_cost(cfg, prepared)
    assert est.serving_usd is None and est.total_usd is None
    assert any("cannot be deleted before it ends" in u and "730 h" in u for u in est.unknown)
    pt = line(est, "serving: provisioned throughput")
    assert pt["quantity"] == 730 and pt["term_hours"] == 730 and "whole OneMonth term" in pt["detail"]
    with pytest.raises(BudgetExceeded, match="commitment=OneMonth on the evaluation Provisioned Throughput"):
        check_budget(est, cfg)
    six = _with_commitment(config(pricing={**PRICES, "pt_hour_commitment": 20.0}), "SixMonths")
    est6 = estimate_cost(six, prepared)
    assert line(est6, "serving: provisioned throughput")["usd"] == pytest.approx(6 * 730 * 20.0)
    assert est6.known_usd > 87_000


# -- budget gate -----------------------------------------------------------------------------
def test_over_budget_is_refused_naming_figure_budget_and_what_to_change(prepared):
    cfg = config(pricing=PRICES, budget={"max_usd": 25})
    est = estimate_cost(cfg, prepared)
    assert est.verdict == "over_budget"
    with pytest.raises(BudgetExceeded) as exc:
        check_budget(est, cfg)
    msg = str(exc.value)
    assert msg.startswith("estimated cost $51.95 exceeds budget.max_usd=$25.00")
    assert "largest item is serving: provisioned throughput ($40.00" in msg
    assert "serving.max_hours (now 1.5)" in msg and "raise budget.max_usd" in msg
    assert isinstance(exc.value, ValueError)


def test_training_heavy_run_points_at_epochs_and_data(prepared):
    cfg = config(pricing={**PRICES, "train_per_1k_tokens": 50.0}, budget={"max_usd": 100})
    with pytest.raises(BudgetExceeded, match=r"largest item is training .*epochCount.*data.max_records"):
        check_budget(estimate_cost(cfg, prepared), cfg)


def test_known_part_over_budget_refuses_even_with_unknown_prices(prepared):
    cfg = config(pricing={"pt_hour_no_commit": 30.0}, budget={"max_usd": 50})
    est = estimate_cost(cfg, prepared)
    assert est.total_usd is None and est.verdict == "over_budget"
    with pytest.raises(BudgetExceeded, match=r"at least \$60.00 \(known items only\) exceeds budget.max_usd=\$50.00"):
        check_budget(est, cfg)


def test_within_budget_passes(prepared):
    cfg = config(pricing=PRICES, budget={"max_usd": 60})
    est = estimate_cost(cfg, prepared)
    assert est.verdict == "ok" and est.budget_usd == 60
    check_budget(est, cfg)


def test_model_unit_cap_is_rechecked_at_the_gate(prepared):
    cfg = config(pricing=PRICES)
    cfg.serving.model_units = 4          # changed after validation (e.g. by code building parameters)
    with pytest.raises(BudgetExceeded, match="model_units=4 exceeds serving.max_model_units=1"):
        check_budget(estimate_cost(cfg, prepared), cfg)


# -- the champion's calls (issue 19) ----------------------------------------------------------------
CHAMPION_ON_DEMAND = "evaluation: champion on demand"
CHAMPION_PT = "evaluation: champion on its PT"
# 10 calls × 120 chars / 6 = 200 input tokens, 10 × 64 = 640 output tokens (max_tokens bound), at PRICES
ONE_MODEL_CALLS = 200 / 1000 * 0.001 + 640 / 1000 * 0.004


def test_production_on_demand_counts_the_champions_calls_at_on_demand_prices(prepared):
    without = estimate_cost(config(pricing=PRICES), prepared)
    est = estimate_cost(config(pricing=PRICES, production={"mode": "on-demand"}), prepared)   # Nova, us-east-1
    champ = line(est, CHAMPION_ON_DEMAND)
    assert est.production.kind == "deployment"
    assert est.champion_calls == 10 and champ["usd"] == pytest.approx(ONE_MODEL_CALLS)
    assert champ["quantity"] == 200 + 640 and champ["unit_price_in"] == 0.001 and champ["unit_price_out"] == 0.004
    assert champ["price_source"] == "config.pricing/config.pricing"
    assert est.champion_usd == pytest.approx(ONE_MODEL_CALLS)
    assert est.total_usd == pytest.approx(without.total_usd + ONE_MODEL_CALLS)          # exactly the line's price
    assert est.known_usd == pytest.approx(without.known_usd + ONE_MODEL_CALLS)
    assert est.serving_usd == pytest.approx(without.serving_usd)                          # not in serving
    assert "at most" in champ["detail"] and "first run" in champ["detail"] and "recorded outputs" in champ["detail"]
    assert ", champion $0.00 (10 calls at most)" in est.summary_line()                    # $0.0026 rounds to $0.00
    assert not any(x["item"].startswith("evaluation: champion") for x in without.lines)
    assert without.champion_calls == 0 and without.champion_usd == 0 and "champion" not in without.summary_line()


def test_production_on_demand_with_no_price_is_unknown_and_says_where_to_set_it(prepared):
    est = estimate_cost(config(pricing={k: v for k, v in PRICES.items() if not k.startswith("on_demand")},
                               production={"mode": "on-demand"}), prepared)
    assert line(est, CHAMPION_ON_DEMAND)["usd"] is None and est.champion_usd is None and est.total_usd is None
    assert any(u.startswith("champion's calls") and "pricing.on_demand_input_per_1k" in u for u in est.unknown)
    assert any(u.startswith("champion's calls") and "pricing.on_demand_output_per_1k" in u for u in est.unknown)


@pytest.mark.parametrize("production", [{"mode": "provisioned", "model_units": 2},
                                        {"mode": "on-demand"}])       # eu-west-1: no Nova deployment, so a PT
def test_a_provisioned_champion_costs_nothing_at_the_margin(prepared, production):
    without = estimate_cost(config(pricing=PRICES, aws={"region": "eu-west-1"}), prepared)
    est = estimate_cost(config(pricing=PRICES, aws={"region": "eu-west-1"}, production=production), prepared)
    assert est.production.kind == "provisioned"
    champ = line(est, CHAMPION_PT)
    assert champ["usd"] == 0 and champ["quantity"] == 200 + 640 and est.champion_calls == 10
    assert "billed hourly whether or not the evaluation calls it" in champ["detail"] and "at most" in champ["detail"]
    assert est.champion_usd == 0 and est.total_usd == pytest.approx(without.total_usd)
    assert ", champion $0.00 (10 calls at most)" in est.summary_line()
    assert not any("champion" in u for u in est.unknown)


def test_no_production_no_evaluation_no_champion_line(prepared):
    for cfg in (config(pricing=PRICES), config(pricing=PRICES, production={"mode": "on-demand"},
                                               evaluation={"enabled": False})):
        est = estimate_cost(cfg, prepared)
        assert est.champion_calls == 0 and est.champion_usd == 0
        assert not any("champion" in x["item"] for x in est.lines)


def test_the_champions_calls_are_capped_by_max_examples(prepared):
    five = estimate_cost(config(pricing=PRICES, production={"mode": "on-demand"}, evaluation={"max_examples": 5}),
                         prepared)
    assert five.champion_calls == 5 == five.eval_calls
    assert line(five, CHAMPION_ON_DEMAND)["quantity"] == 100 + 5 * 64
    every = estimate_cost(config(pricing=PRICES, production={"mode": "on-demand"},
                                 evaluation={"max_examples": 1000}), prepared)
    assert every.champion_calls == 20                                   # the test split has 20 records


def test_the_budget_refuses_a_run_the_champions_calls_push_over(prepared):
    prices = {**PRICES, "on_demand_output_per_1k": 1.0}                  # 640 output tokens = $0.64 per model
    per_model = 200 / 1000 * 0.001 + 640 / 1000 * 1.0
    cfg = config(pricing=prices, serving={"mode": "on_demand"})
    total = estimate_cost(cfg, prepared).total_usd                     # training, storage, custom + base calls
    assert total == pytest.approx(10 + 1.95 + 2 * per_model)
    budget = {"max_usd": round(total + per_model / 2, 2)}               # fits without the champion, not with it
    check_budget(estimate_cost(config(pricing=prices, serving={"mode": "on_demand"}, budget=budget), prepared),
                 cfg)
    with_champion = config(pricing=prices, serving={"mode": "on_demand"}, budget=budget,
                           production={"mode": "on-demand"})
    est = estimate_cost(with_champion, prepared)
    assert est.verdict == "over_budget" and est.total_usd == pytest.approx(total + per_model)
    with pytest.raises(BudgetExceeded, match=rf"exceeds budget.max_usd=\${budget['max_usd']:,.2f}"):
        check_budget(est, with_champion)


def test_the_champion_lever_points_at_max_examples(prepared):
    from tasks.estimate import _levers

    hint = _levers({"item": CHAMPION_ON_DEMAND}, config())
    assert "evaluation.max_examples (now 10)" in hint and "champion" in hint


# -- before prepare: estimate from the config ----------------------------------------------------
@pytest.fixture
def raw_csv(tmp_path) -> Path:
    p = tmp_path / "data.csv"
    rows = ["text,category"] + [f"{'x' * 54},label_{i % 5}" for i in range(100)]   # 54 + 7 chars per row
    p.write_text("\n".join(rows) + "\n")
    return p


def test_raw_estimate_streams_the_source_with_the_column_mapping(raw_csv):
    cfg = config(data={"source": str(raw_csv), "columns": {"prompt": "text", "completion": "category"}},
                 pricing=PRICES)
    est = estimate_from_config(cfg, method="raw")
    # 80 train rows × 61 chars / 6 = 814 tokens; 10 test rows
    assert est.method == "raw" and est.train_tokens == 814 and est.eval_calls == 10
    assert est.total_usd is not None


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_raw_estimate_counts_the_same_in_every_input_format(tmp_path, fmt):
    import pandas as pd

    df = pd.DataFrame({"q": [f"question {i:03d} " + "x" * 40 for i in range(50)], "a": ["yes", "no"] * 25})
    path = tmp_path / f"d.{fmt}"
    {"jsonl": lambda: df.to_json(path, orient="records", lines=True), "csv": lambda: df.to_csv(path, index=False),
     "parquet": lambda: df.to_parquet(path)}[fmt]()
    cfg = config(data={"source": str(path), "columns": {"prompt": "q", "completion": "a"}})
    # 40 train rows × (53 + 2.5) chars / 6
    assert estimate_from_config(cfg, method="raw").train_tokens == 370


def test_raw_estimate_applies_the_preset_record_cap(tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text("".join(json.dumps({"prompt": "p" * 30, "completion": "c" * 30}) + "\n" for _ in range(2000)))
    est = estimate_from_config(config(data={"source": str(p)}, preset="quick"), method="raw")
    assert est.train_tokens == 1000 * 60 // 6          # quick: at most 1,000 training records


# -- the CLI ---------------------------------------------------------------------------------
def run_cli(*argv: str) -> int:
    from forge.commands import estimate as cmd

    parser = argparse.ArgumentParser(prog="forge")
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["estimate", *argv])
    return args.func(args)


def write_config(tmp_path: Path, raw_csv: Path, extra: str = "") -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f"name: est\nbase_model: amazon.nova-micro-v1:0:128k\ndata:\n  source: {raw_csv}\n"
                 f"  columns: {{prompt: text, completion: category}}\nserving: {{mode: provisioned}}\n{extra}")
    return p


def test_cli_prints_a_cost_table_with_unknowns(tmp_path, raw_csv, capsys):
    extra = "budget: {max_usd: 10, allow_unknown_prices: true}\n"
    assert run_cli(str(write_config(tmp_path, raw_csv, extra)), "--raw") == 0
    out = capsys.readouterr().out
    for word in ("tokens", "epochs", "training", "storage", "serving", "total", "budget", "verdict",
                 "unknown_price", "pricing.pt_hour_no_commit"):
        assert word in out


def test_cli_budget_with_unknown_prices_exits_2_unless_allowed(tmp_path, raw_csv, capsys):
    assert run_cli(str(write_config(tmp_path, raw_csv, "budget: {max_usd: 10}\n")), "--raw") == 2
    captured = capsys.readouterr()
    assert "unknown_price" in captured.out and "REFUSED: refusing to start: budget.max_usd=$10.00" in captured.err


def test_cli_over_budget_exits_2_with_the_reason(tmp_path, raw_csv, capsys):
    extra = "budget: {max_usd: 10}\npricing: {pt_hour_no_commit: 25.0}\n"
    assert run_cli(str(write_config(tmp_path, raw_csv, extra)), "--raw") == 2
    captured = capsys.readouterr()
    assert "over_budget" in captured.out
    assert "REFUSED: estimated cost of at least $50.00" in captured.err


def test_cli_json_is_machine_readable(tmp_path, raw_csv, capsys):
    assert run_cli(str(write_config(tmp_path, raw_csv)), "--raw", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "unknown_price" and data["train_tokens"] > 0 and data["refused"] is None


def test_cli_shows_the_champions_calls_with_production_set(tmp_path, raw_csv, capsys):
    path = str(write_config(tmp_path, raw_csv, "production: {mode: on-demand}\n"))
    assert run_cli(path, "--raw") == 0
    out = capsys.readouterr().out
    assert "evaluation: champion on demand" in out and "at most" in out
    assert "examples × 2 models (base, custom), the champion's 10 at most" in out
    assert "champion calls (at most)" in out                   # its own row among the subtotals
    assert run_cli(path, "--raw", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["champion_calls"] == data["eval_calls"] == 10 and data["champion_usd"] is None   # no price set


def test_cli_invalid_config_prints_problems_exit_2(tmp_path, raw_csv, capsys):
    assert run_cli(str(write_config(tmp_path, raw_csv, "evalution: {}\n"))) == 2
    err = capsys.readouterr().err
    assert "evalution: unknown key (did you mean 'evaluation'?)" in err and "Traceback" not in err


def test_cli_bad_hyperparameter_is_a_message_not_a_traceback(tmp_path, raw_csv, capsys):
    assert run_cli(str(write_config(tmp_path, raw_csv, "hyperparameters: {epochCount: 9}\n")), "--raw") == 2
    assert "epochCount=9 is out of range 1..5" in capsys.readouterr().err


def test_cli_default_prepares_the_data_first(tmp_path, capsys):
    cfg = REPO_ROOT / "examples" / "banking77.yaml"
    assert run_cli(str(cfg), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "prepared" and data["train_tokens"] > 0 and 80 <= data["eval_calls"] <= 100


def test_cli_bad_data_prints_located_problems_exit_2(tmp_path, capsys):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"prompt": "hi", "completion": "x"}\n{"prompt": "", "completion": "y"}\nnot json\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: est\nbase_model: amazon.nova-micro-v1:0:128k\ndata: {{source: {data}}}\n")
    assert run_cli(str(cfg)) == 2
    err = capsys.readouterr().err
    assert f"{data}:2: prompt:" in err and f"{data}:3:" in err and "Traceback" not in err


def test_the_raw_estimate_refuses_a_fifo_or_deep_json_without_hanging_or_crashing(tmp_path):
    """The estimate reads through the data pre-flight (tasks/data/sources.py): a FIFO is refused at once (it used to
    block forever), a 100k-deep line is skipped rather than a RecursionError."""
    import os

    from tasks import estimate as est

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="named pipe"):
        list(est._raw_rows(str(fifo), "auto"))
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n" + '{"prompt": "a", "completion": "b"}\n')
    assert list(est._raw_rows(str(deep), "jsonl")) == [{"prompt": "a", "completion": "b"}]
