"""The model catalog: every family loads, lookups answer, presets resolve into Bedrock's ranges."""

from __future__ import annotations

import pytest

from tasks.catalog import (
    PRESETS,
    CustomizationType,
    DataFormat,
    UnknownModelError,
    UnsupportedCustomizationError,
    load_catalog,
    resolve_hyperparameters,
)

CAT = load_catalog()
FAMILY_SPECS = [(key, ct) for key, fam in CAT.families.items() for ct in fam.customizations]

# docs/bedrock-facts.md §5 (record formats) and §4 (hyperparameters): a few facts the whole pipeline leans on.
EXPECTED_FORMATS = {
    ("titan-text", CustomizationType.FINE_TUNING): DataFormat.PROMPT_COMPLETION,
    ("titan-text", CustomizationType.CONTINUED_PRE_TRAINING): DataFormat.CPT_INPUT,
    ("nova", CustomizationType.FINE_TUNING): DataFormat.CONVERSATION,
    ("nova", CustomizationType.DISTILLATION): DataFormat.CONVERSATION,
    ("nova-2-lite", CustomizationType.REINFORCEMENT_FINE_TUNING): DataFormat.RFT_MESSAGES,
    ("nova-2-lite", CustomizationType.FINE_TUNING): DataFormat.CONVERSATION,     # new: FT table, as of 2026-12
    ("llama-3-1", CustomizationType.DISTILLATION): DataFormat.CONVERSATION,     # Llama students (format unconfirmed)
    # Llama 3.3 70B: model-customization-prepare lists it with the Converse API format (docs/bedrock-facts.md §10)
    ("llama-3-3", CustomizationType.FINE_TUNING): DataFormat.CONVERSATION,
    ("claude-3-haiku", CustomizationType.FINE_TUNING): DataFormat.CLAUDE_MESSAGES,
    ("llama-3-1", CustomizationType.FINE_TUNING): DataFormat.PROMPT_COMPLETION,
    ("llama-3-2", CustomizationType.FINE_TUNING): DataFormat.CONVERSATION,
    ("cohere-command", CustomizationType.FINE_TUNING): DataFormat.PROMPT_COMPLETION,
}


def test_the_issue_families_are_all_present():
    assert {"titan-text", "nova", "claude-3-haiku", "llama-3-1", "llama-3-2", "cohere-command"} <= set(CAT.families)


@pytest.mark.parametrize("key, ctype", FAMILY_SPECS, ids=[f"{k}-{c.value}" for k, c in FAMILY_SPECS])
def test_each_family_type_has_format_hyperparameters_and_limits(key, ctype):
    fam = CAT.families[key]
    spec = fam.customizations[ctype]
    assert spec.format == EXPECTED_FORMATS[(key, ctype)]
    assert spec.limits.chars_per_token > 0
    for name, hp in spec.hyperparameters.items():
        assert hp.name == name
        if hp.type != "str":
            assert hp.min is not None and hp.max is not None and hp.min <= hp.max, name
            assert hp.default is None or hp.min <= hp.default <= hp.max, f"{name} default outside its range"
    for mid in fam.model_ids:   # every id resolves to its family, by full id and by plain id
        assert CAT.family_of(mid) is fam
        assert CAT.family_of(mid.rsplit(":", 1)[0]) is fam
        assert CAT.spec(mid, ctype) is spec
        assert CAT.inference_id(mid)


def test_nova_hyperparameters_match_the_reference_sheet():
    hp = CAT.spec("amazon.nova-micro-v1:0:128k", "FINE_TUNING").hyperparameters
    assert (hp["epochCount"].min, hp["epochCount"].max, hp["epochCount"].default) == (1, 5, 2)
    assert (hp["learningRate"].min, hp["learningRate"].max) == (1e-6, 1e-4)
    assert "batchSize" not in hp                 # docs/bedrock-facts.md §4: Nova has no documented batchSize
    claude = CAT.spec("anthropic.claude-3-haiku-20240307-v1:0:200k", "fine-tuning").hyperparameters
    assert "learningRateMultiplier" in claude and "learningRate" not in claude   # docs/bedrock-facts.md §8 pitfall


def test_haiku_counts_three_characters_per_token_others_six():
    assert CAT.spec("anthropic.claude-3-haiku-20240307-v1:0:200k", "FINE_TUNING").limits.chars_per_token == 3
    assert CAT.spec("amazon.nova-micro-v1:0:128k", "FINE_TUNING").limits.chars_per_token == 6


def test_on_demand_deployment_nova_in_us_east_1_llama_3_3_in_us_west_2():
    # was {"nova", "nova-2-lite"} with Nova in us-east-1 + us-west-2: the us-west-2 entry belongs to Llama 3.3 70B
    assert {k for k, f in CAT.families.items() if f.on_demand_deployment} == {"nova", "nova-2-lite", "llama-3-3"}
    assert CAT.families["nova"].on_demand_regions == ["us-east-1"]
    assert CAT.families["llama-3-3"].on_demand_regions == ["us-west-2"]


def test_no_price_is_invented():
    """The reference sheet has no prices: every figure is null, marked unconfirmed."""
    for key, fam in CAT.families.items():
        p = fam.pricing
        figures = [p.train_per_1k_tokens, p.storage_per_month, p.pt_hour_no_commit,
                   p.on_demand_input_per_1k, p.on_demand_output_per_1k]
        assert all(f is None for f in figures) or p.source, f"{key}: a price without a source"
        assert p.unconfirmed or p.source


def test_unknown_model_and_unsupported_type_say_what_is_supported():
    with pytest.raises(UnknownModelError, match=r"did you mean 'amazon.nova-lite-v1:0:300k'"):
        CAT.family_of("amazon.nova-lyte-v1:0:300k")
    with pytest.raises(UnsupportedCustomizationError, match="supports: FINE_TUNING, DISTILLATION$"):
        CAT.spec("meta.llama3-1-8b-instruct-v1:0:128k", "CONTINUED_PRE_TRAINING")   # Llama 3.1 is now a student too
    with pytest.raises(UnsupportedCustomizationError, match="supports: FINE_TUNING$"):
        CAT.spec("meta.llama3-2-1b-instruct-v1:0:128k", "CONTINUED_PRE_TRAINING")


# -- presets ---------------------------------------------------------------------------------
def test_four_named_presets():
    assert list(PRESETS) == ["quick", "balanced", "quality", "cpt"]


def _resolve(model: str, ctype: str, preset: str | None, **overrides):
    return resolve_hyperparameters(CAT.spec(model, ctype), preset, overrides)


def test_balanced_is_the_family_defaults_as_strings():
    hp = _resolve("amazon.nova-micro-v1:0:128k", "FINE_TUNING", "balanced")
    assert hp == {"epochCount": "2", "learningRate": "1e-05", "learningRateWarmupSteps": "10"}
    assert all(isinstance(v, str) for v in hp.values())     # docs/bedrock-facts.md §1: string -> string map


def test_quick_uses_the_minimum_epochs():
    assert _resolve("amazon.titan-text-express-v1:0:8k", "FINE_TUNING", "quick")["epochCount"] == "1"
    assert _resolve("meta.llama3-1-8b-instruct-v1:0:128k", "FINE_TUNING", "quick")["epochCount"] == "1"


def test_quality_takes_three_epochs_and_half_the_learning_rate():
    hp = _resolve("amazon.titan-text-express-v1:0:8k", "FINE_TUNING", "quality")
    assert hp["epochCount"] == "3" and float(hp["learningRate"]) == pytest.approx(5e-6)
    claude = _resolve("anthropic.claude-3-haiku-20240307-v1:0:200k", "FINE_TUNING", "quality")
    assert float(claude["learningRateMultiplier"]) == pytest.approx(0.5)


def test_quality_learning_rate_is_clamped_into_the_family_range():
    # Nova's default 1e-5 halved is 5e-6: inside 1e-6..1e-4, so kept; a family at its floor stays at the floor
    hp = _resolve("amazon.nova-micro-v1:0:128k", "FINE_TUNING", "quality")
    assert float(hp["learningRate"]) == pytest.approx(5e-6)
    spec = CAT.spec("amazon.nova-micro-v1:0:128k", "FINE_TUNING").model_copy(deep=True)
    spec.hyperparameters["learningRate"].default = 1e-6
    assert float(resolve_hyperparameters(spec, "quality", {})["learningRate"]) == pytest.approx(1e-6)


def test_cpt_preset_is_one_epoch_for_titan_cpt():
    hp = _resolve("amazon.titan-text-lite-v1:0:4k", "CONTINUED_PRE_TRAINING", "cpt")
    assert hp["epochCount"] == "1"
    assert PRESETS["cpt"].customization_type is CustomizationType.CONTINUED_PRE_TRAINING


def test_overrides_win_over_the_preset():
    hp = _resolve("amazon.nova-micro-v1:0:128k", "FINE_TUNING", "quick", epochCount=4, learningRate="2e-5")
    assert hp["epochCount"] == "4" and float(hp["learningRate"]) == pytest.approx(2e-5)


def test_types_without_hyperparameters_resolve_to_nothing():
    assert _resolve("amazon.nova-micro-v1:0:128k", "DISTILLATION", "balanced") == {}


@pytest.mark.parametrize("overrides, message", [
    ({"epochCount": 9}, "epochCount=9 is out of range 1..5"),
    ({"learningRate": 0.5}, "learningRate=0.5 is out of range 1e-06..0.0001"),
    ({"epochCount": 2.5}, "epochCount must be an integer, got 2.5"),
    ({"epochCount": "two"}, "epochCount must be an integer, got 'two'"),
    ({"learningRate": "fast"}, "learningRate must be a number, got 'fast'"),
    ({"epochs": 2}, "hyperparameter 'epochs' is not accepted for this model (did you mean 'epochCount'?)"),
    ({"batchSize": 8}, "hyperparameter 'batchSize' is not accepted for this model"),
])
def test_range_and_name_errors_say_the_key_and_the_allowed_values(overrides, message):
    with pytest.raises(ValueError) as exc:
        _resolve("amazon.nova-micro-v1:0:128k", "FINE_TUNING", None, **overrides)
    assert message in str(exc.value)


def test_unknown_preset_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'quality'"):
        _resolve("amazon.nova-micro-v1:0:128k", "FINE_TUNING", "qualty")


# -- facts re-read 2026-12-03 (docs/bedrock-facts.md §10; AWS Markdown read through a mirror) ----------------------
AWS_DISTILLATION_TABLE = {     # prequisites-model-distillation: teacher (as the catalog names it) -> students, Region
    "us.amazon.nova-pro-v1:0": ({"amazon.nova-lite-v1:0:300k", "amazon.nova-micro-v1:0:128k"}, "us-east-1"),
    "amazon.nova-pro-v1:0": ({"amazon.nova-lite-v1:0:300k", "amazon.nova-micro-v1:0:128k"}, "us-east-1"),
    "us.amazon.nova-premier-v1:0": ({"amazon.nova-lite-v1:0:300k", "amazon.nova-micro-v1:0:128k",
                                     "amazon.nova-pro-v1:0:300k"}, "us-east-1"),
    "meta.llama3-1-405b-instruct-v1:0": ({"meta.llama3-1-8b-instruct-v1:0:128k", "meta.llama3-1-70b-instruct-v1:0:128k",
                                          "meta.llama3-2-1b-instruct-v1:0:128k",
                                          "meta.llama3-3-70b-instruct-v1:0:128k"}, "us-west-2"),
    "meta.llama3-1-70b-instruct-v1:0": ({"meta.llama3-1-8b-instruct-v1:0:128k", "meta.llama3-2-1b-instruct-v1:0:128k",
                                         "meta.llama3-2-3b-instruct-v1:0:128k"}, "us-west-2"),
    "us.meta.llama3-3-70b-instruct-v1:0": ({"meta.llama3-1-8b-instruct-v1:0:128k",
                                            "meta.llama3-2-1b-instruct-v1:0:128k",
                                            "meta.llama3-2-3b-instruct-v1:0:128k"}, "us-west-2"),
}


def test_confirmed_distillation_pairs_are_the_aws_table():
    confirmed = {p.teacher: (set(p.students), p.regions) for p in CAT.distillation_pairs if p.confirmed}
    assert confirmed == {t: (s, [r]) for t, (s, r) in AWS_DISTILLATION_TABLE.items()}
    # the one unconfirmed row keeps the table's students plus a deferred extra (docs/bedrock-facts.md §10)
    extra = [p for p in CAT.distillation_pairs if not p.confirmed]
    assert [p.teacher for p in extra] == ["us.meta.llama3-1-70b-instruct-v1:0"]
    assert set(extra[0].students) - AWS_DISTILLATION_TABLE["meta.llama3-1-70b-instruct-v1:0"][0] \
        == {"meta.llama3-1-70b-instruct-v1:0:128k"}
    # "On demand" only: the 405B profile is no teacher, but stays known as retired
    assert CAT.distillation_students("us.meta.llama3-1-405b-instruct-v1:0") == []
    assert CAT.lifecycle_of("us.meta.llama3-1-405b-instruct-v1:0").status == "EOL"
    assert set(CAT.distillation_teachers) >= {p.teacher for p in CAT.distillation_pairs}


def test_retired_teachers_carry_their_eol_dates():
    lc = CAT.teacher_lifecycle
    assert (lc["meta.llama3-1-405b-instruct-v1:0"].eol_date, lc["meta.llama3-1-405b-instruct-v1:0"].confirmed) \
        == ("2026-07-07", True)
    assert lc["anthropic.claude-3-5-sonnet-20241022-v2:0"].status == "EOL"
    premier = lc["us.amazon.nova-premier-v1:0"]        # model card: "Model EOL date: September 14, 2026"
    assert (premier.status, premier.eol_date, premier.as_of, premier.confirmed) == ("EOL", "2026-09-14", "2026-12-03",
                                                                                     True)
    assert premier.source == "https://docs.aws.amazon.com/bedrock/latest/userguide/model-card-amazon-nova-premier.html"


def test_llama_3_2_end_of_life_is_confirmed_by_the_model_cards():
    for mid in CAT.families["llama-3-2"].model_ids:
        lc = CAT.lifecycle_of(mid)
        assert (lc.status, lc.eol_date, lc.confirmed) == ("EOL", "2026-07-07", True)
        assert "model-card-meta-llama-3-2-" in lc.source


def test_llama_totals_are_the_documented_10000_records():
    for mid in ("meta.llama3-1-8b-instruct-v1:0:128k", "meta.llama3-2-1b-instruct-v1:0:128k",
                "meta.llama3-3-70b-instruct-v1:0:128k"):
        lim = CAT.spec(mid, "FINE_TUNING").limits
        assert (lim.max_total_records, lim.max_tokens_per_record) == (10000, 16000)
        assert lim.min_train_records is None        # the documented 100 minimum is deferred (§10)


def test_titan_text_is_no_longer_fine_tunable_anywhere():
    assert CAT.customization_regions("amazon.titan-text-express-v1:0:8k", "FINE_TUNING") == []
    assert CAT.customization_regions("amazon.titan-text-express-v1:0:8k", "CONTINUED_PRE_TRAINING") \
        == ["us-east-1", "us-west-2"]
