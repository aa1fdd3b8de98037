"""tasks/promote.py on the emulator with real boto3: blue/green promotion, the interrupted switch, two concurrent
promotions, rollback, the refusals, and what production serving looks like (tags, kind, commitment)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tasks import promote, teardown
from tasks.aws import tags as aws_tags
from tasks.registry import ModelVersion, store_for_config
from tests.support.aws import alive, resources_named, trained

PRESETS = ("quick", "balanced", "quality")   # one lineage, three run keys: three custom models


def _lineage(tmp_path, n: int, **over):
    """``n`` trained versions of one lineage (config name): [(stage, model arn, version)]."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    out = []
    for i in range(n):
        d = tmp_path / f"v{i}"
        d.mkdir()
        s, arn, _ = trained(d, name=name, preset=PRESETS[i], **over)
        out.append((s, arn, ModelVersion(run_id=f"{name}-w{i + 1}", run_key=s.names.run_key, custom_model_arn=arn,
                                         data_hashes={"content": s.names.run_key},
                                         gate={"rule": "bertscore_f1 > base", "passed": True})))
    return out


def _promote(s, version, **kw):
    return promote.promote(s.clients, s.config, store_for_config(s.clients, s.config, s.account), version,
                           timeout_s=60, initial_interval_s=0.1, **kw)


def _servings(s) -> list[str]:
    return sorted(arn for _, arn, _ in promote.production_servings(s.clients, s.config.name))


def _creates(ledger, name: str) -> int:
    return len(resources_named(ledger, name))


ON_DEMAND = {"production": {"mode": "on-demand"}}


def test_first_promotion_serves_on_demand_tagged_as_production_and_a_rerun_changes_nothing(fresh_env, tmp_path):
    [(s, arn, v1)] = _lineage(tmp_path, 1, **ON_DEMAND)
    res = _promote(s, v1)
    assert res.promoted and res.champion == v1.run_id and res.retired == [] and not res.already
    assert res.serving.kind == "deployment" and res.serving.status == "Active"   # Nova: on-demand in us-east-1
    tags = aws_tags.bedrock_tags(s.clients, res.serving.arn)
    assert tags["managed-by"] == "bedrock-forge" and tags["forge-role"] == "production"
    assert tags["forge-lineage"] == s.config.name and tags["forge-version"] == v1.run_id
    assert not {aws_tags.RUN_KEY_TAG, aws_tags.FLOW_RUN_TAG, aws_tags.EXPIRES_TAG, aws_tags.HEARTBEAT_TAG} & set(tags)
    model_tags = aws_tags.bedrock_tags(s.clients, arn)
    assert model_tags["forge-lineage"] == s.config.name and model_tags["forge-version"] == v1.run_id
    reg = store_for_config(s.clients, s.config, s.account).read()
    assert reg.champion.run_id == v1.run_id and reg.champion.serving_arn == res.serving.arn
    assert reg.version(v1.run_id).status == "champion"
    calls = len(fresh_env.ledger()["calls"])
    again = _promote(s, v1)
    assert again.already and again.promoted and again.serving.arn == res.serving.arn
    mutating = [c["operation"] for c in fresh_env.ledger()["calls"][calls:]
                if c["operation"].startswith(("Create", "Delete", "Tag", "Put"))]
    assert mutating == []                    # a rerun makes no mutating call
    assert _servings(s) == [res.serving.arn]


def test_blue_green_the_new_champion_serves_before_the_old_serving_is_retired(fresh_env, tmp_path):
    (s, _, v1), (s2, _, v2) = _lineage(tmp_path, 2, **ON_DEMAND)
    first = _promote(s, v1)
    order = []
    real_delete = s2.clients.bedrock.delete_custom_model_deployment

    def delete(**kw):
        order.append(("delete", store_for_config(s2.clients, s2.config, s2.account).read().champion.run_id))
        return real_delete(**kw)

    s2.clients.bedrock.delete_custom_model_deployment = delete
    second = _promote(s2, v2)
    assert second.promoted and second.retired == [first.serving.arn] and not alive(s.clients, first.serving.arn)
    assert order == [("delete", v2.run_id)]     # blue retired only after the registry names green
    assert _servings(s) == [second.serving.arn]
    reg = store_for_config(s.clients, s.config, s.account).read()
    assert reg.champion.previous == v1.run_id and reg.version(v1.run_id).status == "retired"
    assert [(w.from_run, w.to_run) for w in reg.switches] == [(None, v1.run_id), (v1.run_id, v2.run_id)]
    assert aws_tags.bedrock_tags(s2.clients, v2.custom_model_arn)["forge-role"] == "production"
    assert "forge-role" not in aws_tags.bedrock_tags(s.clients, v1.custom_model_arn)
    kept = teardown.teardown(s2.clients, run_key=s2.names.run_key, delete_custom_model=True,
                             custom_model_arn=v2.custom_model_arn)       # e.g. serving.delete_custom_model on a rerun
    assert kept.deleted == [] and any(k.startswith(v2.custom_model_arn) for k in kept.kept)
    week1_again = _promote(s, v1)          # a rerun of week 1 after week 2 won: production is not changed
    assert week1_again.already and not week1_again.promoted and _servings(s) == [second.serving.arn]


def test_interrupted_between_serving_up_and_the_switch_a_rerun_finishes_with_one_production_serving(
        fresh_env, tmp_path, monkeypatch):
    (s, _, v1), (s2, _, v2) = _lineage(tmp_path, 2, **ON_DEMAND)
    first = _promote(s, v1)

    def crash(lineage, run_id, serving):
        raise KeyboardInterrupt("worker lost between serving up and registry switch")

    monkeypatch.setattr(promote, "_before_switch", crash)
    with pytest.raises(KeyboardInterrupt):
        _promote(s2, v2)
    store = store_for_config(s.clients, s.config, s.account)
    assert store.read().champion.run_id == v1.run_id and len(_servings(s)) == 2   # green up, not switched
    monkeypatch.setattr(promote, "_before_switch", lambda *a: None)
    rerun = _promote(s2, v2)
    assert rerun.promoted and rerun.serving.adopted and rerun.retired == [first.serving.arn]
    assert _servings(s) == [rerun.serving.arn]
    assert _creates(fresh_env.ledger(), promote.production_name(s.config.name, v2.run_id)) == 1


def test_two_concurrent_promotions_one_wins_the_other_is_recorded_as_a_non_champion(fresh_env, tmp_path,
                                                                                    monkeypatch):
    (s, _, v1), (s2, _, v2), (s3, _, v3) = _lineage(tmp_path, 3, **ON_DEMAND)
    first = _promote(s, v1)
    winner = []

    def other_promotion_first(lineage, run_id, serving):   # v3 promotes completely while v2 is about to switch
        if run_id == v2.run_id and not winner:
            winner.append(_promote(s3, v3))

    monkeypatch.setattr(promote, "_before_switch", other_promotion_first)
    loser = _promote(s2, v2)
    assert winner[0].promoted and winner[0].retired == [first.serving.arn]
    assert not loser.promoted and loser.champion == v3.run_id and loser.note.startswith("lost")
    assert loser.retired and not alive(s.clients, loser.retired[0])        # its own green serving is gone
    assert _servings(s) == [winner[0].serving.arn]
    reg = store_for_config(s.clients, s.config, s.account).read()
    assert reg.champion.run_id == v3.run_id and reg.version(v2.run_id).status == "not-champion"
    assert [w.to_run for w in reg.switches] == [v1.run_id, v3.run_id]


def test_rollback_brings_the_previous_champion_back_and_retires_the_current(fresh_env, tmp_path):
    (s, _, v1), (s2, _, v2) = _lineage(tmp_path, 2, **ON_DEMAND)
    first, second = _promote(s, v1), _promote(s2, v2)
    store = store_for_config(s.clients, s.config, s.account)
    back = promote.rollback(s.clients, s.config, store, timeout_s=60, initial_interval_s=0.1)
    assert back.promoted and back.run_id == v1.run_id and back.retired == [second.serving.arn]
    assert back.serving.arn != first.serving.arn and back.serving.status == "Active"   # served again, anew
    assert _servings(s) == [back.serving.arn]
    reg = store.read()
    assert reg.champion.run_id == v1.run_id and reg.version(v2.run_id).status == "rolled-back"
    assert reg.switches[-1].reason == "rollback" and reg.champion.previous is None
    again = promote.rollback(s.clients, s.config, store, to=v1.run_id, timeout_s=60)
    assert again.already and _servings(s) == [back.serving.arn]
    with pytest.raises(promote.PromotionRefused, match="nothing to roll back to"):
        promote.rollback(s.clients, s.config, store)


def test_a_rollback_that_loses_the_switch_to_a_promotion_retires_what_it_brought_up(fresh_env, tmp_path,
                                                                                    monkeypatch):
    """v1 then v2 promoted; a rollback to v1 brings v1's serving up, and just before its switch v3 is promoted
    completely. The rollback loses: v3 stays champion with the one production serving, the serving the rollback
    brought up is retired (not left billing), and the result says so."""
    (s, _, v1), (s2, _, v2), (s3, _, v3) = _lineage(tmp_path, 3, **ON_DEMAND)
    _promote(s, v1), _promote(s2, v2)
    store = store_for_config(s.clients, s.config, s.account)
    winner = []

    def promotion_first(lineage, run_id, serving):
        if run_id == v1.run_id and not winner:
            winner.append(_promote(s3, v3))

    monkeypatch.setattr(promote, "_before_switch", promotion_first)
    lost = promote.rollback(s.clients, s.config, store, timeout_s=60, initial_interval_s=0.1)
    assert winner[0].promoted
    assert not lost.promoted and lost.champion == v3.run_id and "champion changed" in lost.note
    assert lost.retired and not alive(s.clients, lost.retired[0])     # the rollback's own serving is gone
    assert _servings(s) == [winner[0].serving.arn]
    assert store.read().champion.run_id == v3.run_id


def test_refusals_come_before_any_aws_call(fresh_env, tmp_path):
    [(s, _, v1)] = _lineage(tmp_path, 1)                     # production.mode defaults to none
    calls = len(fresh_env.ledger()["calls"])
    with pytest.raises(promote.PromotionRefused, match="production.mode is none"):
        _promote(s, v1)
    cfg = s.config.model_copy(update={"production": s.config.production.model_copy(update={"mode": "on-demand"})})
    with pytest.raises(promote.PromotionRefused, match="did not pass its quality gate"):
        promote.promote(s.clients, cfg, store_for_config(s.clients, cfg, s.account),
                        v1.model_copy(update={"gate": {"rule": "r", "passed": False}}))
    assert len(fresh_env.ledger()["calls"]) == calls
    with pytest.raises(promote.PromotionRefused, match="no champion"):
        promote.rollback(s.clients, cfg, store_for_config(s.clients, cfg, s.account))


def test_provisioned_production_has_no_commitment_unless_written_and_a_failed_smoke_test_switches_nothing(
        fresh_env, tmp_path, monkeypatch):
    [(s, arn, v1)] = _lineage(tmp_path, 1, production={"mode": "provisioned", "model_units": 1})
    monkeypatch.setattr(promote, "_sleep", lambda _s: None)
    fresh_env.set_faults([{"operation": "InvokeModel", "error": "InternalServerException", "count": 3}])
    with pytest.raises(promote.SmokeTestFailed, match="registry was not switched"):
        _promote(s, v1)
    store = store_for_config(s.clients, s.config, s.account)
    assert store.read().champion is None
    fresh_env.set_faults([])
    res = _promote(s, v1)                                   # the rerun adopts the PT and passes
    assert res.promoted and res.serving.kind == "provisioned" and res.serving.adopted
    pt = s.clients.bedrock.get_provisioned_model_throughput(provisionedModelId=res.serving.arn)
    assert "commitmentDuration" not in pt and pt["modelUnits"] == 1 and pt["modelArn"] == arn
    swept = teardown.sweep(s.clients, now=datetime.now(UTC), is_flow_run_terminal=lambda _r: True)
    assert res.serving.arn not in swept.deleted and alive(s.clients, res.serving.arn)


def test_a_written_commitment_is_bought_and_production_names_fit_bedrocks_rules():
    from tasks.run.names import MODEL_NAME_RE, PT_NAME_RE
    from tests.support.aws import make_config

    name = promote.production_name("a" * 32, "x" * 128)
    assert len(name) <= 63 and PT_NAME_RE.fullmatch(name) and MODEL_NAME_RE.fullmatch(name)
    assert promote.production_name("lin", "r1") != promote.production_name("lin", "r2")
    cfg = make_config("lin", production={"mode": "provisioned", "commitment": "OneMonth", "allow_commitment": True})
    assert promote.production_kind(cfg) == "provisioned" and cfg.production.commitment == "OneMonth"
    west = make_config("lin", production={"mode": "on-demand"}, aws={"region": "eu-west-1"})
    assert promote.production_kind(west) == "provisioned"        # no on-demand deployment for Nova there


def test_the_estimate_shows_production_serving_per_hour_month_and_a_commitments_whole_term():
    from tasks.estimate import HOURS_PER_MONTH, build_estimate
    from tests.support.aws import make_config

    def est(**over):
        return build_estimate(make_config("lin", **over), train_chars=6000, test_records=10, test_input_chars=600,
                              method="prepared")

    assert est().production is None                                            # production.mode none
    on_demand = est(production={"mode": "on-demand"}).production
    assert on_demand.kind == "deployment" and on_demand.hourly_usd == 0 and on_demand.monthly_usd == 0
    pt = est(production={"mode": "provisioned", "model_units": 3}, pricing={"pt_hour_no_commit": 21.5})
    assert pt.production.hourly_usd == pytest.approx(64.5)
    assert pt.production.monthly_usd == pytest.approx(64.5 * HOURS_PER_MONTH)
    assert "64.50/h" in pt.summary_line() and pt.total_usd == est(pricing={"pt_hour_no_commit": 21.5}).total_usd
    unknown = est(production={"mode": "provisioned"}).production              # the catalog has no confirmed price
    assert unknown.hourly_usd is None and "pricing.pt_hour_no_commit" in unknown.unknown[0]
    term = est(production={"mode": "provisioned", "model_units": 2, "commitment": "SixMonths",
                           "allow_commitment": True}, pricing={"pt_hour_commitment": 10}).production
    assert term.term_hours == 6 * HOURS_PER_MONTH and term.term_usd == pytest.approx(2 * 10 * 6 * HOURS_PER_MONTH)
    no_price = est(production={"mode": "provisioned", "commitment": "OneMonth", "allow_commitment": True}).production
    assert no_price.term_usd is None and "billed whole" in no_price.unknown[0]


def test_estimating_a_production_config_starts_without_prefect():
    """`forge estimate` is a data verb (docs/architecture.md): pricing production must not import Prefect."""
    import subprocess
    import sys

    code = ("import sys; from tasks.config import PipelineConfig; from tasks.estimate import build_estimate; "
            "c = PipelineConfig.model_validate({'name': 'lin', 'base_model': 'amazon.nova-micro-v1:0:128k', "
            "'data': {'source': 'd.jsonl'}, 'production': {'mode': 'provisioned'}}); "
            "e = build_estimate(c, train_chars=60, "
            "test_records=1, test_input_chars=6, method='prepared'); assert e.production.kind == 'provisioned'; "
            "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
