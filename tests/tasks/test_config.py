"""PipelineConfig: what a person sees when a config is wrong, and what a right one resolves to."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tasks.catalog import CustomizationType
from tasks.config import ConfigError, PipelineConfig, load_config, parse_config

BASE = {"name": "t", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "x.jsonl"}}


def problems(**changes) -> list[str]:
    """Parse BASE with nested changes applied ("data.columns" keys are paths); return the problems."""
    d = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = d
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    with pytest.raises(ConfigError) as exc:
        parse_config(d, "cfg.yaml")
    return exc.value.problems


def test_minimal_config_gets_safe_defaults():
    cfg = parse_config(copy.deepcopy(BASE))
    assert cfg.customization_type is CustomizationType.FINE_TUNING
    assert cfg.serving.commitment is None           # no commitment term unless asked for (DESIGN §3.4)
    assert cfg.serving.model_units <= cfg.serving.max_model_units
    assert (cfg.data.split.train, cfg.data.split.validation, cfg.data.split.test) == (0.8, 0.1, 0.1)


def test_unknown_top_level_key_is_named_with_the_nearest_valid_one():
    assert problems(evalution={}) == ["cfg.yaml: evalution: unknown key (did you mean 'evaluation'?)"]


@pytest.mark.parametrize("path, bad, suggestion", [
    ("data__colums", {}, "data.columns"),
    ("data__columns__promt", "text", "data.columns.prompt"),
    ("serving__model_unit", 1, "serving.model_units"),
    ("data__split__tset", 0.1, "data.split.test"),
])
def test_nested_unknown_keys_name_their_full_path(path, bad, suggestion):
    (msg,) = problems(**{path: bad})
    where = path.replace("__", ".")
    assert msg == f"cfg.yaml: {where}: unknown key (did you mean {suggestion!r}?)"


def test_unknown_key_without_a_near_match_lists_the_valid_keys():
    (msg,) = problems(serving__zzzzzz=1)
    assert "serving.zzzzzz: unknown key" in msg and "model_units" in msg and "max_hours" in msg


def test_all_problems_are_reported_at_once():
    msgs = problems(evalution={}, gate__metrc="accuracy")
    assert len(msgs) == 2 and any("evalution" in m for m in msgs) and any("gate.metrc" in m for m in msgs)


def test_preset_typo_suggests_the_preset():
    assert problems(preset="quik") == ["cfg.yaml: preset: unknown preset 'quik' (did you mean 'quick'?)"]


def test_unknown_base_model_suggests_the_nearest_supported_id():
    (msg,) = problems(base_model="amazon.nova-micro-v2:0:128k")
    assert "unknown base model 'amazon.nova-micro-v2:0:128k'" in msg
    assert "did you mean 'amazon.nova-micro-v1:0:128k'" in msg


def test_unsupported_customization_type_lists_what_the_model_supports():
    (msg,) = problems(base_model="amazon.titan-text-express-v1:0:8k", customization_type="DISTILLATION",
                      distillation={"teacher_model": "us.amazon.nova-pro-v1:0"})
    assert "does not support DISTILLATION" in msg and "FINE_TUNING, CONTINUED_PRE_TRAINING" in msg


def test_customization_type_typo_is_caught_and_cli_spellings_work():
    (msg,) = problems(customization_type="fine-tunning")
    assert "customization_type" in msg and "did you mean 'fine-tuning'" in msg
    cfg = parse_config({**copy.deepcopy(BASE), "base_model": "amazon.titan-text-lite-v1:0:4k",
                        "customization_type": "continued-pretraining"})
    assert cfg.customization_type is CustomizationType.CONTINUED_PRE_TRAINING


def test_distillation_without_teacher_is_refused():
    (msg,) = problems(customization_type="DISTILLATION")
    assert "DISTILLATION needs a 'distillation' section with teacher_model" in msg


def test_rft_without_grader_is_refused():
    (msg,) = problems(base_model="amazon.nova-2-lite-v1:0:256k", customization_type="rft")
    assert "needs an 'rft' section with grader_lambda_arn" in msg


def test_split_fractions_must_sum_to_one():
    (msg,) = problems(data__split={"train": 0.8, "validation": 0.1, "test": 0.2})
    assert msg == "cfg.yaml: data.split: split fractions must add up to 1.0 (train+validation+test = 1.1)"


def test_model_units_above_the_cap_are_refused():
    (msg,) = problems(serving={"model_units": 3})
    assert "serving" in msg and "model_units=3 exceeds max_model_units=1" in msg


def test_commitment_accepts_only_the_api_terms():
    (msg,) = problems(serving={"commitment": "OneYear"})
    assert msg.startswith("cfg.yaml: serving.commitment:")


def test_name_must_fit_aws_resource_names():
    (msg,) = problems(name="Bad_Name")
    assert msg.startswith("cfg.yaml: name:") and "lowercase" in msg


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: t\nbase_model: amazon.nova-micro-v1:0:128k\ndata:\n  source: x.jsonl\n   columns: [\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    (msg,) = exc.value.problems
    assert msg.startswith(f"{p}:5: not valid YAML")


def test_missing_file_and_non_mapping_are_plain_messages(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(p)


def test_relative_data_source_resolves_against_the_config_folder(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.yaml"
    p.write_text("name: t\nbase_model: amazon.nova-micro-v1:0:128k\ndata:\n  source: data/x.csv\n")
    cfg = load_config(p)
    assert Path(cfg.data.source) == (tmp_path / "sub" / "data" / "x.csv").resolve()
    p.write_text("name: t\nbase_model: amazon.nova-micro-v1:0:128k\ndata:\n  source: s3://b/k.jsonl\n")
    assert load_config(p).data.source == "s3://b/k.jsonl"


def test_config_round_trips_as_flow_parameters():
    """Prefect passes the config as JSON: dumping and re-validating must give the same config."""
    cfg = parse_config({**copy.deepcopy(BASE), "customization_type": "DISTILLATION",
                        "distillation": {"teacher_model": "us.amazon.nova-pro-v1:0"}, "preset": None})
    again = PipelineConfig.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg


@pytest.mark.parametrize("over, where, says", [
    ({"base_model": "amazon.nova-micro-v2:0:128k"}, "cfg.yaml: base_model:",
     "did you mean 'amazon.nova-micro-v1:0:128k'"),
    ({"customization_type": "CONTINUED_PRE_TRAINING"}, "cfg.yaml: customization_type:",
     "does not support CONTINUED_PRE_TRAINING"),
    ({"hyperparameters": {"epochCount": 99}}, "cfg.yaml: hyperparameters.epochCount:",
     "epochCount=99 is out of range 1..5"),
    ({"hyperparameters": {"epochs": 2}}, "cfg.yaml: hyperparameters.epochs:", "did you mean 'epochCount'"),
    ({"preset": "cpt"}, "cfg.yaml: preset:", "is for CONTINUED_PRE_TRAINING"),
])
def test_catalog_problems_are_reported_at_their_field_when_the_config_loads(over, where, says):
    (msg,) = problems(**over)
    assert msg.startswith(where) and says in msg, msg
