"""Live prices (issue 17, "prices"): the cost estimate reads the base model's prices from the AWS Price List
(``pricing:GetProducts``, tasks/aws/pricing.py) through a real boto3 ``pricing`` client — on the emulator, its own
price facts (emulator/facts/prices.yaml) — after the config's ``pricing`` and before the catalog; a failure or an
unknown name leaves the figure to the catalog and says so; nothing mutating is ever called."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from emulator.testing import ledger_calls
from tasks.aws.clients import make_clients
from tasks.aws.pricing import PRICE_LIST_REGION, get_price, parse_product
from tasks.config import AwsConfig, parse_config
from tasks.estimate import LivePrices, check_budget, estimate_cost, live_prices
from tasks.run.types import PreparedData, SplitFile

NOVA2 = "amazon.nova-2-lite-v1:0:256k"
TRAIN = "USE1-Nova2.0Lite-Customization-Training"


def _split(path: Path, records: list[dict]) -> SplitFile:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return SplitFile(path=str(path), records=len(records), sha256="0" * 64, bytes=path.stat().st_size)


def _conv(user: str, assistant: str) -> dict:
    return {"schemaVersion": "bedrock-conversation-2024", "system": [],
            "messages": [{"role": "user", "content": [{"text": user}]},
                         {"role": "assistant", "content": [{"text": assistant}]}]}


@pytest.fixture
def prepared(tmp_path) -> PreparedData:
    """10,000 train tokens (100 records of 600 characters at 6 per token), 20 test records."""
    return PreparedData(format="bedrock-conversation-2024",
                        train=_split(tmp_path / "train.jsonl", [_conv("u" * 500, "a" * 100)] * 100),
                        test=_split(tmp_path / "test.jsonl", [_conv("q" * 120, "label")] * 20),
                        report_path=str(tmp_path / "report.json"), estimated_train_tokens=10_000)


def _config(url: str, **over):
    raw = {"name": "live", "base_model": NOVA2, "data": {"source": "x.jsonl"},
           "hyperparameters": {"epochCount": 2},
           "serving": {"mode": "provisioned", "model_units": 1, "max_hours": 1.5},
           "evaluation": {"max_examples": 10, "max_tokens": 64},
           "aws": {"region": "us-east-1", "endpoint_url": url}}
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return parse_config(raw)


@pytest.fixture
def emu(fresh_emulator, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    return fresh_emulator


def _line(est, item: str) -> dict:
    return next(x for x in est.lines if x["item"] == item)


def test_a_price_list_document_as_aws_documents_it_parses():
    """The structure of reading-service-price-list-file-for-services.html: product attributes, OnDemand terms."""
    doc = {"product": {"sku": "S", "attributes": {"usagetype": TRAIN, "regionCode": "us-east-1"}},
           "terms": {"OnDemand": {"S.T": {"effectiveDate": "2026-08-01T00:00:00Z", "priceDimensions": {
               "S.T.R": {"unit": "1K tokens", "pricePerUnit": {"USD": "0.0037800000"}, "description": "d"}}}}},
           "publicationDate": "2026-09-01T20:50:51Z"}
    (q,) = parse_product(json.dumps(doc))
    assert (q.usage_type, q.usd, q.unit) == (TRAIN, 0.00378, "1K tokens")
    assert q.source == f"AWS Price List (AmazonBedrock {TRAIN}, 2026-09-01)"


def test_two_different_prices_for_one_usage_type_are_no_price():
    class Two:
        def get_products(self, **kw):
            item = {"product": {"attributes": {"usagetype": TRAIN}},
                    "terms": {"OnDemand": {"a": {"priceDimensions": {"x": {"unit": "1K tokens",
                                                                             "pricePerUnit": {"USD": "1"}}}},
                                           "b": {"priceDimensions": {"y": {"unit": "1K tokens",
                                                                             "pricePerUnit": {"USD": "2"}}}}}}}
            return {"PriceList": [json.dumps(item)]}
    assert get_price(Two(), TRAIN) is None


def test_the_run_clients_read_the_price_list_in_its_region_through_the_runs_endpoint(emu):
    clients = make_clients(AwsConfig(region="us-west-2", endpoint_url=emu.url))
    assert clients.pricing.meta.region_name == PRICE_LIST_REGION == "us-east-1"
    q = get_price(clients.pricing, TRAIN)
    assert q is not None and q.usd == pytest.approx(0.00378) and q.unit == "1K tokens"
    assert get_price(clients.pricing, "USE1-NoSuchModel-Customization-Training") is None
    gets = ledger_calls(emu.ledger(), "GetProducts")
    assert len(gets) == 2 and all(c["service"] == "pricing" for c in gets)


def test_the_estimate_prices_from_the_price_list_and_says_so(emu, prepared):
    cfg = _config(emu.url)
    live = live_prices(make_clients(cfg.aws).pricing, cfg)
    est = estimate_cost(cfg, prepared, live)
    train = _line(est, "training")
    assert train["unit_price"] == pytest.approx(0.00378) and train["price_source"].startswith("AWS Price List")
    assert TRAIN in train["price_source"]
    assert est.training_usd == pytest.approx(10_000 * 2 / 1000 * 0.00378)
    pt = _line(est, "serving: provisioned throughput")
    assert pt["unit_price"] == pytest.approx(60.5) and est.serving_usd is not None
    assert pt["usd"] == pytest.approx(2 * 60.5)                      # 1.5 h billed as 2 whole hours
    assert est.storage_usd == pytest.approx(1.95)
    base = _line(est, "evaluation: base model on demand")
    assert base["unit_price_in"] == pytest.approx(0.00033) and base["unit_price_out"] == pytest.approx(0.00275)
    assert est.unknown == [] and est.verdict == "ok"
    led = emu.ledger()
    assert ledger_calls(led, mutating=True, ok=False) == []


def test_the_configs_pricing_wins_over_the_price_list(emu, prepared):
    cfg = _config(emu.url, pricing={"train_per_1k_tokens": 0.5})
    est = estimate_cost(cfg, prepared, live_prices(make_clients(cfg.aws).pricing, cfg))
    assert _line(est, "training")["price_source"] == "config.pricing"
    assert _line(est, "serving: provisioned throughput")["price_source"].startswith("AWS Price List")


def test_an_on_demand_deployment_is_priced_at_the_custom_model_token_prices(emu, prepared):
    cfg = _config(emu.url, serving={"mode": "on_demand"})
    est = estimate_cost(cfg, prepared, live_prices(make_clients(cfg.aws).pricing, cfg))
    dep = _line(est, "serving: custom model on demand")
    assert dep["unit_price_in"] == pytest.approx(0.0003) and dep["unit_price_out"] == pytest.approx(0.0025)
    assert "input-tokens-custom-model" in dep["price_source"]
    assert not any("priced like the base model" in n for n in est.notes)


def test_a_commitment_is_priced_at_its_terms_price_list_figure(emu, prepared):
    cfg = _config(emu.url, production={"mode": "provisioned", "model_units": 1, "commitment": "OneMonth",
                                       "allow_commitment": True})
    est = estimate_cost(cfg, prepared, live_prices(make_clients(cfg.aws).pricing, cfg))
    p = est.production
    assert p.hourly_usd == pytest.approx(55.0) and p.price_source.startswith("AWS Price List")
    assert p.term_usd == pytest.approx(55.0 * 730)


def test_a_denied_price_list_leaves_the_catalog_and_says_why(emu, prepared):
    emu.set_faults([{"operation": "GetProducts", "error": "AccessDeniedException"}])
    cfg = _config(emu.url)
    live = live_prices(make_clients(cfg.aws).pricing, cfg)
    assert live.figures == {} and any("AccessDeniedException" in n for n in live.notes)
    assert len(ledger_calls(emu.ledger(), "GetProducts", ok=False)) == 1     # stops at the first refusal
    est = estimate_cost(cfg, prepared, live)
    assert _line(est, "training")["price_source"] == "catalog (unconfirmed)"   # the quoted fallback figure
    assert any("AWS Price List not read (AccessDeniedException" in n for n in est.notes)


def test_a_bedrock_wildcard_fault_does_not_touch_the_price_list(emu):
    """A ``*`` fault rule is written for Bedrock (the fault matrix): the Price List calls neither fail by it nor
    consume its seeded sequence."""
    emu.set_faults([{"error": "ThrottlingException"}])
    cfg = _config(emu.url)
    assert live_prices(make_clients(cfg.aws).pricing, cfg).get("train_per_1k_tokens") is not None


def test_a_model_without_a_price_list_name_is_not_asked_and_stays_unknown(emu, prepared):
    cfg = _config(emu.url, base_model="meta.llama3-2-1b-instruct-v1:0:128k", aws={"region": "us-west-2"})
    live = live_prices(make_clients(cfg.aws).pricing, cfg)
    assert live.figures == {} and "no usage-type name" in live.notes[0]
    assert ledger_calls(emu.ledger(), "GetProducts", ok=False) == []


def test_a_price_in_a_unit_the_field_is_not_priced_in_is_not_used(emu, prepared):
    class PerToken:
        def get_products(self, **kw):
            usage = kw["Filters"][0]["Value"]
            return {"PriceList": [json.dumps({"product": {"attributes": {"usagetype": usage}}, "terms": {
                "OnDemand": {"t": {"priceDimensions": {"d": {"unit": "Images", "pricePerUnit": {"USD": "9"}}}}}}})]}
    live = live_prices(PerToken(), _config(emu.url))
    assert live.figures == {} and any("'Images'" in n for n in live.notes)


def test_live_prices_off_asks_nothing(emu):
    cfg = _config(emu.url, budget={"live_prices": False})
    assert live_prices(make_clients(cfg.aws).pricing, cfg) == LivePrices()
    assert ledger_calls(emu.ledger(), "GetProducts", ok=False) == []


def test_the_budget_refuses_what_only_the_live_price_shows_over_it(emu, prepared):
    cfg = _config(emu.url, budget={"max_usd": 50})
    est = estimate_cost(cfg, prepared, live_prices(make_clients(cfg.aws).pricing, cfg))
    with pytest.raises(ValueError, match=r"budget.max_usd=\$50.00"):
        check_budget(est, cfg)              # 2 PT hours at $60.50 alone are over $50


def _cli(*argv: str) -> int:
    from forge.commands import estimate as cmd

    parser = argparse.ArgumentParser(prog="forge")
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["estimate", *argv])
    return args.func(args)


def test_forge_estimate_live_refuses_over_budget_with_the_price_lists_figure_and_creates_nothing(
        emu, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"question {i} " + "x" * 50, "completion": "yes"}) + "\n"
                            for i in range(200)), encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: live\nbase_model: {NOVA2}\ndata: {{source: {data}}}\n"
                   f"serving: {{mode: provisioned, max_hours: 1}}\nbudget: {{max_usd: 20}}\n"
                   f"aws: {{region: us-east-1, endpoint_url: '{emu.url}'}}\n", encoding="utf-8")
    assert _cli(str(cfg), "--raw") == 2                 # offline: the catalog's quoted figure, also over $20
    offline = capsys.readouterr()
    assert "catalog (unconfirmed)" in offline.out
    assert _cli(str(cfg), "--raw", "--live") == 2
    out = capsys.readouterr()
    assert "AWS Price List (AmazonBedrock USE1-Nova2.0Lite-ProvisionedThroughput-NoCommit-ModelUnits" in out.out
    assert "REFUSED" in out.err and "$20.00" in out.err
    led = emu.ledger()
    assert {c["operation"] for c in ledger_calls(led, ok=False)} == {"GetFoundationModel", "GetProducts"}
    assert ledger_calls(led, mutating=True, ok=False) == []


def test_a_model_the_price_list_has_no_rows_for_leaves_one_note_naming_what_was_asked(emu):
    cfg = _config(emu.url, base_model="amazon.nova-micro-v1:0:128k", hyperparameters={})
    live = live_prices(make_clients(cfg.aws).pricing, cfg)
    assert live.figures == {} and len(live.notes) == 1
    assert "USE1-NovaMicro-Customization-Training" in live.notes[0]
    assert len(ledger_calls(emu.ledger(), "GetProducts")) == 9      # every field the catalog names, asked once


def test_forge_estimate_live_refuses_an_eol_base_model_before_reading_any_price(emu, tmp_path, capsys):
    """The pre-flight comes first: Claude 3 Haiku is past end of life (catalog and emulator facts), so the estimate
    exits 2 with the located refusal and asks the Price List nothing."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q {i} " + "x" * 50, "completion": "yes"}) + "\n"
                            for i in range(200)), encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: eol\nbase_model: anthropic.claude-3-haiku-20240307-v1:0:200k\ndata: {{source: {data}}}\n"
                   f"aws: {{region: us-west-2, endpoint_url: '{emu.url}'}}\n", encoding="utf-8")
    assert _cli(str(cfg), "--raw", "--live") == 2
    err = capsys.readouterr().err
    assert f"{cfg}:2: base_model:" in err and "end of life" in err.lower(), err
    led = emu.ledger()
    assert ledger_calls(led, "GetProducts", ok=False) == [] and ledger_calls(led, mutating=True, ok=False) == []
    assert [c["operation"] for c in ledger_calls(led, ok=False)] == ["GetFoundationModel"]
