"""PipelineConfig: one typed description of a run, loaded from YAML or passed as Prefect parameters.

Unknown keys are errors that name the key and suggest the nearest valid one (``load_config``).
Checks beyond the pydantic model live in ``tasks.config.checks`` (located by ``tasks.config.yaml_lines``);
this package imports tasks.catalog only, never tasks.data (which imports it).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.catalog import PRESETS, CustomizationType, load_catalog, resolve_hyperparameters
from tasks.config.yaml_lines import yaml_line

__all__ = ["AugmentConfig", "AwsConfig", "BudgetConfig", "Columns", "ConfigError", "DataConfig",
           "DistillationConfig", "EvaluationConfig", "FieldProblem", "GateConfig", "JobConfig", "PipelineConfig",
           "PresetName", "PricingOverride", "RftConfig", "ServingConfig", "SplitConfig", "format_validation_error",
           "load_config", "parse_config", "yaml_line"]

# the named presets (tasks.catalog.PRESETS) as a type, so the Prefect UI form renders a dropdown
PresetName = Literal["quick", "balanced", "quality", "cpt"]
assert set(get_args(PresetName)) == set(PRESETS), "PresetName must list tasks.catalog.PRESETS"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False)


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
    seed: int = 42
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
    seed: int = 7


class DataConfig(_Strict):
    source: str = Field(..., description="Raw data: local path or s3:// URI (JSONL, CSV or Parquet)")
    format: Literal["auto", "jsonl", "csv", "parquet"] = "auto"
    columns: Columns = Field(default_factory=Columns)
    system_prompt: str | None = Field(None, description="System prompt added to every record")
    prompt_template: str = Field("{prompt}", description="Template applied to the prompt column")
    max_records: int | None = Field(None, ge=1, description="Use at most this many raw records (seeded sample)")
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    dedupe: bool = True


class DistillationConfig(_Strict):
    teacher_model: str = Field(..., description="Teacher model id / inference profile")
    max_response_length: int | None = Field(None, ge=1)


class RftConfig(_Strict):
    grader_lambda_arn: str = Field(..., description="Lambda ARN of the grader")
    hyperparameters: dict[str, int | float | str] = Field(default_factory=dict)


class AwsConfig(_Strict):
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = Field(None, description="Override endpoint (else AWS_ENDPOINT_URL* or AWS)")
    bucket: str | None = Field(None, description="S3 bucket for data and outputs (default: derived from name)")
    prefix: str = "bedrock-forge"
    kms_key_id: str | None = None
    role_name: str | None = Field(None, description="Service role name (default: derived from the run)")
    retry_mode: Literal["standard", "adaptive"] = "adaptive"
    max_attempts: int = Field(6, ge=1, le=20)
    connect_timeout: float = 10
    read_timeout: float = 60


class ServingConfig(_Strict):
    mode: Literal["auto", "provisioned", "on_demand"] = Field(
        "auto", description="auto = on-demand deployment where the model allows it, else provisioned throughput")
    model_units: int = Field(1, ge=1)
    max_model_units: int = Field(1, ge=1, description="Cap: refuse configs asking for more")
    commitment: Literal["OneMonth", "SixMonths"] | None = Field(None, description="Leave empty for no commitment")
    max_hours: float = Field(2.0, gt=0, description="Serving resources expire (and get swept) after this")
    delete_custom_model: bool = False
    delete_data: bool = False

    @model_validator(mode="after")
    def _cap(self) -> ServingConfig:
        if self.model_units > self.max_model_units:
            raise ValueError(f"model_units={self.model_units} exceeds max_model_units={self.max_model_units}")
        return self


class EvaluationConfig(_Strict):
    enabled: bool = True
    max_examples: int | None = Field(200, ge=1)
    concurrency: int = Field(8, ge=1, le=256)
    requests_per_second: float | None = Field(None, gt=0)
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0, le=1)
    bertscore_model: str = Field("all-MiniLM-L6-v2", description="'all-MiniLM-L6-v2' (packaged, offline) or a hub id")
    bertscore_num_layers: int | None = None
    max_error_share: float = Field(0.0, ge=0, le=1)
    bootstrap_samples: int = Field(1000, ge=100)
    invoke_retries: int = Field(5, ge=0)


class GateConfig(_Strict):
    metric: Literal["bertscore_f1", "rouge_l", "exact_match", "accuracy", "macro_f1"] = "bertscore_f1"
    min_delta: float = Field(0.0, description="custom - base must exceed this")
    require_ci_above_zero: bool = True
    min_value: float | None = Field(None, description="Absolute floor for the custom model")


class BudgetConfig(_Strict):
    max_usd: float | None = Field(None, ge=0, description="Refuse to start when the estimate exceeds this")
    allow_unknown_prices: bool = Field(True, description="Start even when a price is not in the catalog")


class PricingOverride(_Strict):
    train_per_1k_tokens: float | None = None
    storage_per_month: float | None = None
    pt_hour_no_commit: float | None = None
    on_demand_input_per_1k: float | None = None
    on_demand_output_per_1k: float | None = None


class JobConfig(_Strict):
    timeout_hours: float = Field(24, gt=0)
    stop_on_timeout: bool = False
    stop_on_cancel: bool = True
    on_quota_full: Literal["wait", "fail"] = "wait"
    quota_wait_minutes: float = Field(60, ge=0)
    poll_max_interval_seconds: float = Field(60, gt=0)


class PipelineConfig(_Strict):
    """A Bedrock customization run: data, base model, training, serving, evaluation and guards."""

    name: str = Field(..., description="Short name; resource names derive from it and the run key")
    base_model: str = Field(..., description="Customizable base model id, e.g. amazon.nova-micro-v1:0:128k")
    customization_type: CustomizationType = CustomizationType.FINE_TUNING
    data: DataConfig
    preset: PresetName | None = Field("balanced", description="quick | balanced | quality | cpt")
    hyperparameters: dict[str, int | float | str] = Field(default_factory=dict)
    distillation: DistillationConfig | None = None
    rft: RftConfig | None = None
    aws: AwsConfig = Field(default_factory=AwsConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    pricing: PricingOverride = Field(default_factory=PricingOverride)
    job: JobConfig = Field(default_factory=JobConfig)
    tags: dict[str, str] = Field(default_factory=dict)
    schedule: str | None = Field(None, description="Cron for the retrain deployment, e.g. '0 3 * * 1'")

    @field_validator("customization_type", mode="before")
    @classmethod
    def _ctype(cls, v: Any) -> CustomizationType:
        return CustomizationType.parse(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", v):
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
            raise FieldProblem("distillation",
                               "customization_type DISTILLATION needs a 'distillation' section with teacher_model")
        if self.customization_type == CustomizationType.REINFORCEMENT_FINE_TUNING and self.rft is None:
            raise FieldProblem("rft", "customization_type REINFORCEMENT_FINE_TUNING needs an 'rft' section "
                                      "with grader_lambda_arn")
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


class FieldProblem(ValueError):
    """A model-level check that belongs to one field: reported at that field, not at '(top level)'."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


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


def format_validation_error(err: ValidationError, source: str = "config",
                            line_of: Callable[[str], int | None] | None = None) -> list[str]:
    """One ``SOURCE[:LINE]: key.path: message`` line per problem (``line_of`` maps a key path to its line)."""
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
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
            if isinstance(cause, FieldProblem):
                where = ".".join([*map(str, loc), cause.field])
            msg = e["msg"].removeprefix("Value error, ")
            out.append(f"{_at(source, where, line_of)}: {where}: {msg}")
    return out


def _at(source: str, where: str, line_of: Callable[[str], int | None] | None) -> str:
    line = line_of(where) if line_of and where != "(top level)" else None
    return f"{source}:{line}" if line else source


def parse_config(data: dict[str, Any], source: str = "config",
                 line_of: Callable[[str], int | None] | None = None) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, line_of)) from None
    except ValueError as err:  # catalog errors raised outside pydantic's wrapping
        raise ConfigError([f"{source}: {err}"]) from None


def load_config(path: str | Path) -> PipelineConfig:
    """Load a YAML config. Relative data paths are resolved against the config file's folder."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{p}: file not found"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{p}{line}: not valid YAML: {getattr(err, 'problem', err)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{p}: expected a mapping at the top level"])
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str) and "://" not in data["source"]:
        src = Path(data["source"])
        if not src.is_absolute():
            data["source"] = str((p.parent / src).resolve())
    return parse_config(raw, source=str(p), line_of=lambda dotted: yaml_line(p, dotted))
