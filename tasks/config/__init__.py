"""PipelineConfig: one typed description of a run, loaded from YAML or passed as Prefect parameters.

Unknown keys are errors that name the key and suggest the nearest valid one (``load_config``).
Checks beyond the pydantic model live in ``tasks.config.checks`` (located by ``tasks.config.yaml_lines``);
this package imports tasks.catalog only, never tasks.data (which imports it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.catalog import CONTINUABLE_TYPES, PRESETS, CustomizationType, load_catalog, resolve_hyperparameters
from tasks.config import grammar
from tasks.config.schema import anchored, ordered, pipeline_schema, serving_schema
from tasks.config.strict_yaml import YamlProblem, read_yaml
from tasks.config.yaml_lines import yaml_line

__all__ = ["AugmentConfig", "AwsConfig", "BudgetConfig", "Columns", "ConfigError", "DataConfig",
           "DistillationConfig", "EvaluationConfig", "FieldProblem", "GateConfig", "JobConfig", "JudgeConfig",
           "PipelineConfig", "FieldProblems", "PresetName", "PricingOverride", "ProductionConfig", "RftConfig",
           "ServingConfig", "SplitConfig",
           "format_validation_error", "load_config", "parse_config", "yaml_line"]

REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}")
# a run's name: it goes into AWS resource names (tasks/run/names.py)
NAME_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"

# the named presets (tasks.catalog.PRESETS) as a type, so the Prefect UI form renders a dropdown
PresetName = Literal["quick", "balanced", "quality", "cpt"]
assert set(get_args(PresetName)) == set(PRESETS), "PresetName must list tasks.catalog.PRESETS"


class _Strict(BaseModel):
    # allow_inf_nan=False: every float in a config is finite (NaN/.inf timeouts, `max_hours: .inf` refused);
    # json_schema_extra: the run form keeps the fields' order on PostgreSQL too (tasks/config/schema.py)
    model_config = ConfigDict(extra="forbid", use_enum_values=False, allow_inf_nan=False,
                              json_schema_extra=ordered)


def _checked(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)


# tag keys the pipeline sets itself (tasks/aws/tags.py RESERVED_TAGS; tasks.config may not import tasks.aws)
PIPELINE_TAG_KEYS = ("managed-by", "forge-run-key", "forge-flow-run-id", "forge-expires-at")
MAX_USER_TAGS = 50 - len(PIPELINE_TAG_KEYS)   # 50 user tags per IAM role / Bedrock resource
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html: 50 tags per role)


def _not_a_boolean(value: Any) -> Any:
    """Before pydantic's lax mode makes `true` the integer 1 (or 1.0): a YAML boolean is never a hyperparameter."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean; hyperparameters are numbers or strings (write 1, not true)")
    return value


HyperValue = Annotated[int | float | str, BeforeValidator(_not_a_boolean)]
MAX_HYPER_NUMBER = 1e12       # no Bedrock hyperparameter is anywhere near; bounds what reaches str()/int()


def _hyper_values(v: dict[str, Any]) -> dict[str, Any]:
    """Bounds on the validated values (a boolean never gets here: HyperValue refuses it before conversion)."""
    for key, value in v.items():
        if isinstance(value, int | float) and abs(value) > MAX_HYPER_NUMBER:
            raise ValueError(f"{key}: {value!r} is out of any hyperparameter's range")
        if isinstance(value, str) and len(value) > 64:
            raise ValueError(f"{key}: a {len(value)}-character string; hyperparameter values are short")
    return v


class Columns(_Strict):
    """Which raw column feeds which field. ``None`` = not used."""

    prompt: str | None = Field("prompt", description="Column with the user prompt / input text")
    completion: str | None = Field("completion", description="Column with the expected answer")
    system: str | None = Field(None, description="Column with a per-record system prompt")
    text: str | None = Field(None, description="Column with raw text (continued pre-training)")


class SplitConfig(_Strict):
    train: float = Field(0.8, gt=0, le=1)
    validation: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    seed: int = Field(42, ge=0, le=2**32 - 1)
    stratify: Literal["auto", "yes", "no"] = Field(
        "auto", description="Stratify by completion when it looks like a label")

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must add up to 1.0 (train+validation+test = {total:g})")
        return self


class AugmentConfig(_Strict):
    enabled: bool = False
    prefixes: list[str] = Field(default_factory=lambda: ["", "Question: ", "Customer says: "])
    copies: int = Field(1, ge=1, le=10, description="Extra augmented copies per training record")
    seed: int = Field(7, ge=0, le=2**32 - 1)


class DataConfig(_Strict):
    source: str = Field(..., description="Raw data: local path or s3:// URI (JSONL, CSV or Parquet)")
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    columns: Columns = Field(default_factory=Columns)
    system_prompt: str | None = Field(None, description="System prompt added to every record")
    prompt_template: str = Field("{prompt}", description="Template applied to the prompt column")
    max_records: int | None = Field(None, ge=1, le=10**9,
                                    description="Use at most this many raw records (seeded sample)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    dedupe: bool = True


class DistillationConfig(_Strict):
    teacher_model: str = Field(..., description="Teacher model id / inference profile")
    max_response_length: int | None = Field(None, ge=1, le=1_000_000)

    @field_validator("teacher_model")
    @classmethod
    def _teacher(cls, v: str) -> str:
        _checked(grammar.teacher_problem(v))
        return v


class RftConfig(_Strict):
    grader_lambda_arn: str = Field(..., description="Lambda ARN of the grader")
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)

    @field_validator("grader_lambda_arn")
    @classmethod
    def _grader(cls, v: str) -> str:
        _checked(grammar.lambda_arn_problem(v))
        return v

    @field_validator("hyperparameters")
    @classmethod
    def _hps(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _hyper_values(v)


class AwsConfig(_Strict):
    region: str = Field("us-east-1", json_schema_extra={"pattern": anchored(REGION_RE.pattern)})
    profile: str | None = None
    endpoint_url: str | None = Field(None, description="Override endpoint (else AWS_ENDPOINT_URL* or AWS)")
    bucket: str | None = Field(None, description="S3 bucket for data and outputs (default: derived from name)")
    prefix: str = "bedrock-forge"
    kms_key_id: str | None = None
    role_name: str | None = Field(None, description="Service role name (default: derived from the run)",
                                  json_schema_extra={"pattern": anchored(grammar.ROLE_NAME_PATTERN),
                                                     "maxLength": grammar.ROLE_NAME_MAX})
    retry_mode: Literal["standard", "adaptive"] = "adaptive"
    max_attempts: int = Field(6, ge=1, le=20)
    connect_timeout: float = Field(10, gt=0, le=600)
    read_timeout: float = Field(60, gt=0, le=3600)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not REGION_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an AWS Region name (write it like us-east-1)")
        return v

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        if v is not None:
            _checked(grammar.bucket_problem(v))
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        _checked(grammar.prefix_problem(v))
        return v

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v is not None:
            _checked(grammar.kms_key_problem(v))
        return v

    @field_validator("role_name")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v is not None:
            _checked(grammar.role_name_problem(v))
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", v):
            raise ValueError(f"{v!r} is not an http(s) URL (write it like http://127.0.0.1:4566)")
        return v


MAX_MODEL_UNITS = 1000          # far above any account's PT quota; bounds the arithmetic
MAX_SERVING_HOURS = 168.0       # one week: the evaluation window; forge-expires-at is computed from it


class ServingConfig(_Strict):
    model_config = ConfigDict(json_schema_extra=serving_schema)

    mode: Literal["auto", "provisioned", "on_demand"] = Field(
        "auto", description="auto = on-demand deployment where the model allows it, else provisioned throughput")
    model_units: int = Field(1, ge=1, le=MAX_MODEL_UNITS)
    max_model_units: int = Field(1, ge=1, le=MAX_MODEL_UNITS, description="Cap: refuse configs asking for more")
    commitment: Literal["OneMonth", "SixMonths"] | None = Field(None, description="Leave empty for no commitment")
    allow_commitment: bool = Field(False, description="Must be true, written out, for serving.commitment to count")
    max_hours: float = Field(2.0, gt=0, le=MAX_SERVING_HOURS,
                             description="Serving resources expire (and get swept) after this")
    delete_custom_model: bool = False
    delete_data: bool = False

    @model_validator(mode="after")
    def _cap(self) -> ServingConfig:
        if self.model_units > self.max_model_units:
            raise ValueError(f"model_units={self.model_units} exceeds max_model_units={self.max_model_units}")
        if self.commitment is not None and not self.allow_commitment:
            raise FieldProblem("commitment", f"a {self.commitment} commitment bills the whole term and cannot be "
                                             "deleted before it ends (docs/bedrock-facts.md §2.7): remove it, or "
                                             "write serving.allow_commitment: true if you mean to buy it")
        return self


class ProductionConfig(_Strict):
    """Production serving of the lineage's champion (issue 19): after a passed gate, the new model is served
    blue/green by ``tasks/promote.py``; ``none`` (the default) records the version in the registry only."""

    model_config = ConfigDict(json_schema_extra=serving_schema)

    mode: Literal["none", "on-demand", "provisioned"] = Field(
        "none", description="none = register only; on-demand = a custom model deployment where the model allows "
                            "it in the Region, else provisioned throughput; provisioned = provisioned throughput")
    model_units: int = Field(1, ge=1, le=MAX_MODEL_UNITS, description="Provisioned throughput size (model units)")
    commitment: Literal["OneMonth", "SixMonths"] | None = Field(None, description="Leave empty for no commitment")
    allow_commitment: bool = Field(False, description="Must be true, written out, for production.commitment to count")

    @model_validator(mode="after")
    def _commitment(self) -> ProductionConfig:
        if self.commitment is not None and not self.allow_commitment:
            raise FieldProblem("commitment", f"a {self.commitment} commitment bills the whole term and cannot be "
                                             "deleted before it ends (docs/bedrock-facts.md §2.7): remove it, or "
                                             "write production.allow_commitment: true if you mean to buy it")
        return self


DEFAULT_JUDGE_RUBRIC = ("Which answer responds to the prompt better: correct, complete, faithful to the reference "
                        "answer when one is given, and no longer than needed?")
# judge: the LLM judge's pairwise score of custom vs the other model (win − loss, in [-1, 1]); needs
# evaluation.judge (tasks/config/rules.py)
GateMetric = Literal["bertscore_f1", "rouge_l", "exact_match", "accuracy", "macro_f1", "judge"]


class JudgeConfig(_Strict):
    """LLM-as-judge (issue 19): a Bedrock model compares two answers to one prompt, asked twice with the order
    swapped (tasks/evaluation/judge.py). For free-text tasks, where BERTScore and ROUGE say little."""

    model: str = Field(..., min_length=1, max_length=2048,
                       description="Judge model to invoke: a base model id or inference profile, e.g. "
                                   "us.amazon.nova-lite-v1:0")
    rubric: str = Field(DEFAULT_JUDGE_RUBRIC, min_length=1, max_length=4000, description="What 'better' means")
    max_examples: int | None = Field(100, ge=1, le=100_000, description="Judge at most this many test examples")
    max_tokens: int = Field(200, ge=64, le=4096, description="The judge's answer length cap (a JSON verdict with "
                                                             "its reason needs some 40 tokens)")
    invoke_shape: Literal["nova", "claude", "llama", "titan", "cohere"] | None = Field(
        None, description="Request shape of the judge model; empty = from the catalog")
    input_per_1k: float | None = Field(None, ge=0, le=1e6, description="Judge's on-demand input price per 1k tokens "
                                                                       "(empty = the catalog's)")
    output_per_1k: float | None = Field(None, ge=0, le=1e6, description="Judge's on-demand output price per 1k "
                                                                        "tokens (empty = the catalog's)")


class EvaluationConfig(_Strict):
    enabled: bool = True
    max_examples: int | None = Field(200, ge=1, le=1_000_000)
    concurrency: int = Field(8, ge=1, le=256)
    requests_per_second: float | None = Field(None, gt=0, le=10_000)
    max_tokens: int = Field(64, ge=1, le=100_000)
    temperature: float = Field(0.0, ge=0, le=1)
    bertscore_model: str = Field("all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' (packaged, offline) or a hub id")
    bertscore_num_layers: int | None = Field(None, ge=1, le=64)
    max_error_share: float = Field(0.0, ge=0, le=1)
    bootstrap_samples: int = Field(1000, ge=100, le=100_000, description="Paired bootstrap resamples (CI)")
    invoke_retries: int = Field(5, ge=0, le=20)
    champion_concurrency: int = Field(
        4, ge=1, le=256, description="In-flight calls to the champion's production serving (it serves production "
                                     "traffic too); at most evaluation.concurrency")
    judge: JudgeConfig | None = Field(None, description="LLM-as-judge, pairwise (optional; leave empty for none)")


class GateConfig(_Strict):
    metric: GateMetric = Field("bertscore_f1", description="judge = the LLM judge's score of custom vs base "
                                                           "(win - loss); needs evaluation.judge")
    min_delta: float = Field(0.0, ge=-1, le=1, description="custom - base must exceed this (judge: its score)")
    require_ci_above_zero: bool = True
    min_value: float | None = Field(None, ge=0, le=1, description="Absolute floor for the custom model")
    # against the lineage's champion (issue 19); no champion yet: these do not apply
    champion_metrics: list[GateMetric] = Field(
        default_factory=list, max_length=5,
        description="Metrics on which the new model must beat the champion; empty = the gate metric")
    champion_min_delta: float = Field(0.0, ge=-1, le=1, description="custom - champion must exceed this, per metric")
    require_ci_above_zero_vs_champion: bool = Field(
        False, description="Also require the CI of custom - champion to lie above 0, per metric")


class BudgetConfig(_Strict):
    max_usd: float | None = Field(None, ge=0, le=1e9, description="Refuse to start when the estimate exceeds this")
    allow_unknown_prices: bool | None = Field(
        None, description="With max_usd set, an unknown price refuses the run unless this is written as true")
    live_prices: bool = Field(
        True, description="Read the base model's prices from the AWS Price List (pricing:GetProducts, read-only) "
                          "before the run spends; false: the config's pricing and the catalog only")


def _price(description: str | None = None) -> Any:
    return Field(None, ge=0, le=1e6, description=description)


class PricingOverride(_Strict):
    train_per_1k_tokens: float | None = _price()
    storage_per_month: float | None = _price()
    pt_hour_no_commit: float | None = _price()
    pt_hour_commitment: float | None = _price("Per model-unit hour under serving.commitment's term")
    on_demand_input_per_1k: float | None = _price()
    on_demand_output_per_1k: float | None = _price()


class JobConfig(_Strict):
    timeout_hours: float = Field(24, gt=0, le=720)
    stop_on_timeout: bool = False
    stop_on_cancel: bool = True
    on_quota_full: Literal["wait", "fail"] = "wait"
    quota_wait_minutes: float = Field(60, ge=0, le=10_080)
    poll_max_interval_seconds: float = Field(60, gt=0, le=3600)


# the section a customization type needs (PipelineConfig refuses the type without it; the form's schema too)
SECTION_OF_TYPE = {CustomizationType.DISTILLATION: "distillation",
                   CustomizationType.REINFORCEMENT_FINE_TUNING: "rft"}


class PipelineConfig(_Strict):
    """A Bedrock customization run: data, base model, training, serving, evaluation and guards."""

    # the run form (Prefect UI) shows the fields in this order; the sections only some customization types use
    # (distillation, rft) and the price overrides come last (tasks/config/schema.py)
    model_config = ConfigDict(json_schema_extra=pipeline_schema(AwsConfig().region, SECTION_OF_TYPE))

    name: str = Field(..., description="Short name; resource names derive from it and the run key",
                      json_schema_extra={"pattern": anchored(NAME_PATTERN)})
    base_model: str = Field(..., description="Customizable base model id, e.g. amazon.nova-micro-v1:0:128k")
    customization_type: CustomizationType = CustomizationType.FINE_TUNING
    data: DataConfig
    preset: PresetName | None = Field("balanced", description="quick | balanced | quality | cpt")
    hyperparameters: dict[str, HyperValue] = Field(
        default_factory=dict, description="Overrides of the preset, by the model's own names (e.g. epochCount)")
    start_from: Literal["base", "champion"] = Field(
        "base", description="base: train base_model; champion: continue from the lineage's champion (a custom "
                            "model of base_model; the base model while the lineage has none). "
                            "FINE_TUNING / CONTINUED_PRE_TRAINING only")
    aws: AwsConfig = Field(default_factory=AwsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    production: ProductionConfig = Field(default_factory=ProductionConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    job: JobConfig = Field(default_factory=JobConfig)
    tags: dict[str, str] = Field(default_factory=dict, json_schema_extra={"maxProperties": MAX_USER_TAGS})
    schedule: str | None = Field(None, max_length=256,
                                 description="Cron for the retrain deployment, e.g. '0 3 * * 1'")
    distillation: DistillationConfig | None = Field(
        None, title="Distillation", description="Only for customization_type DISTILLATION: the teacher model")
    rft: RftConfig | None = Field(
        None, title="RFT", description="Only for customization_type REINFORCEMENT_FINE_TUNING: the grader")
    pricing: PricingOverride = Field(
        default_factory=PricingOverride, description="Only to override the catalog's prices (USD); leave empty")

    @field_validator("hyperparameters")
    @classmethod
    def _hps(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _hyper_values(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_USER_TAGS:
            raise ValueError(f"{len(v)} tags; at most {MAX_USER_TAGS} (AWS allows 50 per resource and the "
                             f"pipeline sets {len(PIPELINE_TAG_KEYS)})")
        problems = [p for k, val in v.items() if (p := grammar.tag_problem(k, val, PIPELINE_TAG_KEYS))]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("customization_type", mode="before")
    @classmethod
    def _ctype(cls, v: Any) -> CustomizationType:
        return CustomizationType.parse(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(NAME_PATTERN, v):
            raise ValueError("name must be 1-32 lowercase letters, digits or single '-' "
                             "(it is used in AWS resource names)")
        return v

    @field_validator("preset", mode="before")
    @classmethod
    def _preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            hint = difflib.get_close_matches(v, list(PRESETS), n=1)
            raise ValueError(f"unknown preset {v!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else f"; valid: {', '.join(PRESETS)}"))
        return v

    @model_validator(mode="after")
    def _against_catalog(self) -> PipelineConfig:
        cat = load_catalog()
        try:
            cat.family_of(self.base_model)
        except ValueError as err:
            raise FieldProblem("base_model", str(err)) from None
        try:
            spec = cat.spec(self.base_model, self.customization_type)
        except ValueError as err:
            raise FieldProblem("customization_type", str(err)) from None
        if self.customization_type == CustomizationType.DISTILLATION and self.distillation is None:
            raise FieldProblem(SECTION_OF_TYPE[self.customization_type],
                               "customization_type DISTILLATION needs a 'distillation' section with teacher_model")
        if self.customization_type == CustomizationType.REINFORCEMENT_FINE_TUNING and self.rft is None:
            raise FieldProblem(SECTION_OF_TYPE[self.customization_type],
                               "customization_type REINFORCEMENT_FINE_TUNING needs an 'rft' section "
                               "with grader_lambda_arn")
        if self.start_from == "champion" and self.customization_type not in CONTINUABLE_TYPES:
            raise FieldProblem("start_from", f"start_from champion: Bedrock continues a custom model with "
                                             f"FINE_TUNING or CONTINUED_PRE_TRAINING only, this run is "
                                             f"{self.customization_type.value} (use start_from: base)")
        preset = PRESETS.get(self.preset) if self.preset else None
        if preset is not None and preset.customization_type not in (None, self.customization_type):
            raise FieldProblem("preset", f"preset {self.preset!r} is for {preset.customization_type.value}, "
                                         f"this run is {self.customization_type.value} "
                                         "(use quick, balanced or quality)")
        for key, value in self.hyperparameters.items():   # name and range, at load time (not at the create call)
            try:
                resolve_hyperparameters(spec, None, {key: value})
            except ValueError as err:
                raise FieldProblem(f"hyperparameters.{key}", str(err)) from None
        return self

    @model_validator(mode="after")
    def _cross_field(self) -> PipelineConfig:
        """Rules between sections, every one reported (``FieldProblems``)."""
        from tasks.config.rules import cross_field_problems

        found = cross_field_problems(self)
        if found:
            raise FieldProblems(found)
        return self


class FieldProblem(ValueError):
    """A model-level check that belongs to one field: reported at that field, not at '(top level)'."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


class FieldProblems(ValueError):
    """Several model-level problems at once, each ``(field, message)``."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(m for _, m in problems))


class ConfigError(ValueError):
    """A config problem, already formatted for people: where, what, how to fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class found by following ``loc`` from PipelineConfig."""
    import typing

    model: Any = PipelineConfig
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        args = typing.get_args(ann)
        cands = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)] if args else [ann]
        model = cands[0] if cands else None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_UNION_TAGS = ("int", "float", "str", "bool")


def format_validation_error(err: ValidationError, source: str = "config",
                            line_of: Callable[[str], int | None] | None = None) -> list[str]:
    """One ``SOURCE[:LINE]: key.path: message`` line per problem (``line_of`` maps a key path to its line)."""
    out: list[str] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        while len(loc) > 1 and loc[-1] in _UNION_TAGS:      # `hyperparameters.x.float`: the union member
            loc = loc[:-1]
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            valid = list(parent.model_fields) if parent else []
            hint = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            fix = (f"did you mean {'.'.join([*map(str, loc[:-1]), hint[0]])!r}?" if hint
                   else f"valid keys here: {', '.join(valid)}")
            out.append(f"{_at(source, where, line_of)}: {where}: unknown key ({fix})")
        else:
            cause = (e.get("ctx") or {}).get("error")
            if isinstance(cause, FieldProblems):
                for fld, msg in cause.problems:
                    at = ".".join([*map(str, loc), fld])
                    out.append(f"{_at(source, at, line_of)}: {at}: {msg}")
                continue
            if isinstance(cause, FieldProblem):
                where = ".".join([*map(str, loc), cause.field])
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{_at(source, where, line_of)}: {where}: {msg}")
    return list(dict.fromkeys(out))


def _at(source: str, where: str, line_of: Callable[[str], int | None] | None) -> str:
    line = line_of(where) if line_of and where != "(top level)" else None
    return f"{source}:{line}" if line else source


def parse_config(data: dict[str, Any], source: str = "config",
                 line_of: Callable[[str], int | None] | None = None) -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping at the top level, got {type(data).__name__}"])
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, line_of)) from None
    except (ValueError, TypeError, RecursionError) as err:  # catalog errors raised outside pydantic's wrapping
        raise ConfigError([f"{source}: {err}"]) from None


def load_config(path: str | Path) -> PipelineConfig:
    """Load a YAML config (strict: ``tasks.config.strict_yaml``). Relative data paths are resolved against
    the config file's folder. Every problem is a ``ConfigError`` of located lines, never another exception."""
    p = Path(path)
    try:
        raw = read_yaml(p)
    except YamlProblem as err:
        raise ConfigError([str(err)]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{p}: expected a mapping at the top level"])
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str) and "://" not in data["source"]:
        try:
            src = Path(data["source"])
            if not src.is_absolute() and "\x00" not in data["source"]:
                data["source"] = str((p.parent / src).resolve())
        except (OSError, ValueError):
            pass     # an unusable path is reported by the data checks, located at data.source
    return parse_config(raw, source=str(p), line_of=lambda dotted: yaml_line(p, dotted))
