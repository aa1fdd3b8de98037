"""The customize run form's JSON schema (what the Prefect UI renders and the server enforces at run creation) is
derived from PipelineConfig, and agrees with it: schema-valid ⇔ model-valid on every rule the schema can
express (tasks/config/schema.py). No server here: the schema is generated the way ``forge deploy`` does it
(Prefect's ``parameter_schema`` of the flow) and checked with the server's own validator
(``prefect.utilities.schema_tools.validation.validate``, with its preprocessing). The same refusals against a
real PostgreSQL-backed server: tests/deployments/test_postgres_server.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from tasks.catalog import PRESETS, CustomizationType, load_catalog
from tasks.config import MAX_USER_TAGS, PipelineConfig, load_config
from tasks.config.schema import models_of
from tests.support import REPO_ROOT

NOVA = "amazon.nova-micro-v1:0:128k"
TITAN = "amazon.titan-text-express-v1:0:8k"
NOVA2 = "amazon.nova-2-lite-v1:0:256k"
LLAMA33 = "meta.llama3-3-70b-instruct-v1:0:128k"
LAMBDA = "arn:aws:lambda:us-east-1:111122223333:function:grader"


@pytest.fixture(scope="module")
def schema() -> dict:
    from prefect.utilities.callables import parameter_schema

    from flows.customize import customize_model

    return parameter_schema(customize_model.fn).model_dump()


_VALIDATORS: dict[int, Any] = {}


def _validator(schema: dict):
    """The server's validator for ``schema`` (what ``validate(..., raise_on_error=False)`` builds), built once:
    ``jsonschema.validate`` re-checks the schema against the meta-schema on every call (0.6 s here), which
    test_the_schema_is_a_valid_draft_2020_12_schema does once."""
    from prefect._internal.schemas._registry import non_fetching_registry
    from prefect.utilities.schema_tools.validation import _VALIDATOR, preprocess_schema

    key = id(schema)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = _VALIDATOR(preprocess_schema(schema), format_checker=_VALIDATOR.FORMAT_CHECKER,
                                      registry=non_fetching_registry())
    return _VALIDATORS[key]


def _base(**over: Any) -> dict:
    cfg = {"name": "form-test", "base_model": NOVA, "data": {"source": "examples/data/banking77-small.csv"}}
    cfg.update(over)
    return cfg


def _schema_ok(schema: dict, config: dict) -> bool:
    """Would create_flow_run accept ``{"config": config}`` (the server validates the parameters with this)?"""
    return not any(_validator(schema).iter_errors({"config": copy.deepcopy(config)}))


def test_the_schema_is_a_valid_draft_2020_12_schema(schema):
    """What the server checks when the deployment is registered; and its own validate() agrees with ours."""
    from prefect.utilities.schema_tools.validation import ValidationError as SchemaError
    from prefect.utilities.schema_tools.validation import is_valid_schema, validate

    is_valid_schema(schema)
    validate({"config": _base()}, schema, raise_on_error=True)
    with pytest.raises(SchemaError, match="epochCount"):
        validate({"config": _base(**_hps(epochCount=-1))}, schema, raise_on_error=True)


def _model_ok(config: dict) -> bool:
    try:
        PipelineConfig.model_validate(copy.deepcopy(config))
    except (ValidationError, ValueError):
        return False
    return True


# -- order --------------------------------------------------------------------------------------------
def test_every_config_model_orders_its_form_fields_like_the_model(schema):
    """The UI sorts by `position`: each property of each model carries its field's place (JSONB keeps no key
    order, so this is the only order the form has on PostgreSQL)."""
    defs = schema["definitions"]
    models = models_of(PipelineConfig)
    assert len(models) >= 10
    for name, model in models.items():
        props = defs[name]["properties"]
        by_position = sorted(props, key=lambda k: props[k]["position"])
        assert by_position == list(model.model_fields), name
    assert [k for k, _ in sorted(schema["properties"].items(), key=lambda kv: kv[1]["position"])][0] == "config"


def test_type_specific_sections_and_price_overrides_come_after_the_main_fields():
    fields = list(PipelineConfig.model_fields)
    assert fields[:4] == ["name", "base_model", "customization_type", "data"]
    assert fields[-3:] == ["distillation", "rft", "pricing"]
    for section in ("distillation", "rft"):
        assert PipelineConfig.model_fields[section].default is None     # not required, collapsed (null) in the form


# -- choices from the catalog -------------------------------------------------------------------------
def test_base_model_and_customization_type_are_choices_from_the_catalog(schema):
    pc = schema["definitions"]["PipelineConfig"]
    assert pc["properties"]["base_model"]["enum"] == load_catalog().all_model_ids()
    assert schema["definitions"]["CustomizationType"]["enum"] == [c.value for c in CustomizationType]
    assert pc["properties"]["tags"]["maxProperties"] == MAX_USER_TAGS


# -- the contract: schema-valid ⇔ model-valid where the schema can say it -------------------------------
def _hps(**kw) -> dict:
    return {"hyperparameters": kw}


CASES: list[tuple[str, dict]] = [
    ("valid nova fine-tuning", _base()),
    ("explicit type", _base(customization_type="FINE_TUNING")),
    ("unknown base model", _base(base_model="amazon.nova-ultra-v9:0")),
    ("type the family lacks (titan distillation)", _base(base_model=TITAN, customization_type="DISTILLATION",
                                                          distillation={"teacher_model": "amazon.nova-pro-v1:0"})),
    ("type the family lacks (nova CPT)", _base(customization_type="CONTINUED_PRE_TRAINING", preset=None)),
    ("titan CPT", _base(base_model=TITAN, customization_type="CONTINUED_PRE_TRAINING", preset="cpt")),
    ("distillation without its section", _base(customization_type="DISTILLATION")),
    ("distillation with a null section", _base(customization_type="DISTILLATION", distillation=None)),
    ("distillation with its section", _base(customization_type="DISTILLATION",
                                            distillation={"teacher_model": "us.amazon.nova-pro-v1:0"})),
    ("rft without its section", _base(base_model=NOVA2, customization_type="REINFORCEMENT_FINE_TUNING")),
    ("rft with its section", _base(base_model=NOVA2, customization_type="REINFORCEMENT_FINE_TUNING",
                                   rft={"grader_lambda_arn": LAMBDA})),
    ("negative epochs", _base(**_hps(epochCount=-1))),
    ("zero epochs", _base(**_hps(epochCount=0))),
    ("min epochs", _base(**_hps(epochCount=1))),
    ("max epochs for nova", _base(**_hps(epochCount=5))),
    ("above max epochs for nova", _base(**_hps(epochCount=6))),
    ("titan's max epochs", _base(base_model=TITAN, **_hps(epochCount=10))),
    ("fractional epochs", _base(**_hps(epochCount=2.5))),
    ("whole float epochs", _base(**_hps(epochCount=2.0))),
    ("unknown hyperparameter", _base(**_hps(epochs=2))),
    ("another family's hyperparameter", _base(**_hps(batchSize=8))),
    ("learning rate above nova's range", _base(**_hps(learningRate=1e-3))),
    ("learning rate in range", _base(**_hps(learningRate=5e-5, learningRateWarmupSteps=0))),
    ("hyperparameters on a type without any", _base(customization_type="DISTILLATION", **_hps(epochCount=1),
                                                    distillation={"teacher_model": "amazon.nova-pro-v1:0"})),
    ("preset cpt on fine-tuning", _base(preset="cpt")),
    ("preset quick", _base(preset="quick")),
    ("no preset", _base(preset=None)),
    ("name with capitals", _base(name="Bad_Name")),
    ("name of one letter", _base(name="a")),
    ("name of 32", _base(name="a" * 32)),
    ("name of 33", _base(name="a" * 33)),
    ("name starting with '-'", _base(name="-abc")),
    ("name ending with '-'", _base(name="abc-")),
    ("name with a trailing newline", _base(name="abc\n")),
    ("region", _base(aws={"region": "eu-west-1"})),
    ("region in capitals", _base(aws={"region": "US-EAST-1"})),
    ("region without dashes", _base(aws={"region": "useast1"})),
    ("role name of 64", _base(aws={"role_name": "r" * 64})),
    ("role name of 65", _base(aws={"role_name": "r" * 65})),
    ("role name with a space", _base(aws={"role_name": "bad role"})),
    ("on-demand where the family has none", _base(base_model=TITAN, serving={"mode": "on_demand"})),
    ("on-demand nova in us-east-1", _base(serving={"mode": "on_demand"})),
    ("on-demand nova in another Region", _base(serving={"mode": "on_demand"}, aws={"region": "us-west-2"})),
    ("on-demand llama 3.3 in the default Region", _base(base_model=LLAMA33, serving={"mode": "on_demand"})),
    ("on-demand llama 3.3 in us-west-2", _base(base_model=LLAMA33, serving={"mode": "on_demand"},
                                               aws={"region": "us-west-2"})),
    ("commitment not opted in", _base(serving={"commitment": "OneMonth"}, evaluation={"enabled": False})),
    ("commitment opted in, no evaluation PT", _base(serving={"commitment": "OneMonth", "allow_commitment": True},
                                                    evaluation={"enabled": False})),
    ("serving hours 0", _base(serving={"max_hours": 0})),
    ("serving hours above a week", _base(serving={"max_hours": 169})),
    ("evaluation examples 0", _base(evaluation={"max_examples": 0})),
    ("temperature above 1", _base(evaluation={"temperature": 1.5})),
    ("negative budget", _base(budget={"max_usd": -1})),
    ("split fraction above 1", _base(data={"source": "x.csv", "split": {"train": 1.5, "validation": 0,
                                                                         "test": 0}})),
    ("unknown top-level key", _base(epochs=3)),
    ("unknown nested key", _base(serving={"modle": "auto"})),
    ("serving mode not a choice", _base(serving={"mode": "cheap"})),
    ("too many tags", _base(tags={f"k{i}": "v" for i in range(MAX_USER_TAGS + 1)})),
    ("most tags", _base(tags={f"k{i}": "v" for i in range(MAX_USER_TAGS)})),
    ("start from the champion", _base(start_from="champion")),
    ("start from the champion, titan CPT", _base(base_model=TITAN, customization_type="CONTINUED_PRE_TRAINING",
                                                 preset="cpt", start_from="champion")),
    ("start from the champion with distillation", _base(customization_type="DISTILLATION", start_from="champion",
                                                        distillation={"teacher_model": "amazon.nova-pro-v1:0"})),
    ("start from the champion with rft", _base(base_model=NOVA2, customization_type="REINFORCEMENT_FINE_TUNING",
                                               rft={"grader_lambda_arn": LAMBDA}, start_from="champion")),
    ("start from a model id", _base(start_from="amazon.nova-micro-v1:0:128k")),
    # both refuse (the model used to take `true` as 1: pydantic's lax mode, now refused before it converts)
    ("boolean hyperparameter", _base(**_hps(epochCount=True))),
    ("no name", {k: v for k, v in _base().items() if k != "name"}),
    ("no data", {k: v for k, v in _base().items() if k != "data"}),
]


@pytest.mark.parametrize("label, config", CASES, ids=[c[0] for c in CASES])
def test_schema_valid_iff_model_valid(schema, label, config):
    assert _schema_ok(schema, config) == _model_ok(config), label


def test_the_contract_table_has_both_answers():
    """A table where everything passes (or fails) would prove nothing."""
    answers = [_model_ok(c) for _, c in CASES]
    assert 15 <= sum(answers) <= len(answers) - 25


def test_every_shipped_config_and_the_deployed_default_fit_the_form(schema):
    """model-valid ⇒ schema-valid on the configs people actually submit."""
    import yaml

    for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        cfg = load_config(path).model_dump(mode="json")
        assert _schema_ok(schema, cfg), path.name
    deployments = yaml.safe_load((REPO_ROOT / "deployments" / "prefect.yaml").read_text())["deployments"]
    default = next(d for d in deployments if d["name"] == "customize")["parameters"]["config"]
    assert _model_ok(default) and _schema_ok(schema, default)


def test_every_family_and_type_takes_its_own_hyperparameters_at_their_bounds(schema):
    """Generated from the catalog, checked against the catalog: each (model, type)'s every hyperparameter at its
    min and max fits both; one step outside fits neither."""
    cat = load_catalog()
    checked = 0
    for fam in cat.families.values():
        model = fam.model_ids[0]
        for ctype, spec in fam.customizations.items():
            extra = {"DISTILLATION": {"distillation": {"teacher_model": "amazon.nova-pro-v1:0"}},
                     "REINFORCEMENT_FINE_TUNING": {"rft": {"grader_lambda_arn": LAMBDA}}}.get(ctype.value, {})
            preset = next((n for n, p in PRESETS.items() if p.customization_type == ctype), "balanced")
            for name, hp in spec.hyperparameters.items():
                if hp.type == "str":
                    continue
                for value, ok in ((hp.min, True), (hp.max, True), (hp.min - 1, False), (hp.max + 1, False)):
                    value = int(value) if hp.type == "int" else value
                    cfg = _base(base_model=model, customization_type=ctype.value, preset=preset,
                                hyperparameters={name: value}, **extra)
                    assert _model_ok(cfg) is ok, (model, ctype, name, value)
                    assert _schema_ok(schema, cfg) is ok, (model, ctype, name, value)
                    checked += 1
    assert checked >= 80


# -- what the schema does not say, said once -----------------------------------------------------------
NARROWER = [
    ("plain model id", _base(base_model="amazon.nova-micro-v1:0")),
    ("inference profile as base model", _base(base_model="us.amazon.nova-micro-v1:0")),
    ("CLI spelling of the type", _base(customization_type="fine-tuning")),
    ("hyperparameter as a string", _base(**_hps(epochCount="2"))),
]


@pytest.mark.parametrize("label, config", NARROWER, ids=[c[0] for c in NARROWER])
def test_the_form_takes_the_catalog_spelling_only(schema, label, config):
    """Deliberately narrower than the model (YAML files keep them): the form offers the catalog's ids and API
    names, and numbers for numbers."""
    assert _model_ok(config) and not _schema_ok(schema, config), label


BEYOND = [
    ("model units above their cap", _base(serving={"model_units": 2, "max_model_units": 1})),
    ("split fractions not adding up", _base(data={"source": "x.csv", "split": {"train": 0.5, "validation": 0.1,
                                                                                "test": 0.1}})),
    ("reserved bucket prefix", _base(aws={"bucket": "xn--forge"})),
    ("model units above the no-commitment quota", _base(serving={"mode": "provisioned", "model_units": 3,
                                                                 "max_model_units": 3})),
    ("the judge as gate metric without a judge", _base(gate={"metric": "judge"})),
]


@pytest.mark.parametrize("label, config", BEYOND, ids=[c[0] for c in BEYOND])
def test_rules_beyond_json_schema_are_left_to_the_model(schema, label, config):
    """Rules between values (or AWS grammar beyond a pattern) the schema cannot state: the form lets them through,
    the flow refuses them when it starts, before anything is created."""
    assert _schema_ok(schema, config) and not _model_ok(config), label
