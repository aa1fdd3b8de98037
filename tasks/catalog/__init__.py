"""What Bedrock supports, per base model family: the data behind validation, hyperparameters,
invocation and the cost estimate.

The facts live in ``catalog.yaml`` beside this module, each with its source; this module only
loads them into typed models and answers questions about them. Nothing here calls AWS.
"""

from __future__ import annotations

import difflib
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class CustomizationType(str, Enum):
    FINE_TUNING = "FINE_TUNING"
    CONTINUED_PRE_TRAINING = "CONTINUED_PRE_TRAINING"
    DISTILLATION = "DISTILLATION"
    REINFORCEMENT_FINE_TUNING = "REINFORCEMENT_FINE_TUNING"

    @classmethod
    def parse(cls, value: str | CustomizationType) -> CustomizationType:
        """Accept the API enum or the CLI spelling (``fine-tuning``, ``continued-pretraining``, ...)."""
        if isinstance(value, CustomizationType):
            return value
        v = str(value).strip()
        aliases = {
            "fine-tuning": cls.FINE_TUNING,
            "finetuning": cls.FINE_TUNING,
            "continued-pretraining": cls.CONTINUED_PRE_TRAINING,
            "continued-pre-training": cls.CONTINUED_PRE_TRAINING,
            "cpt": cls.CONTINUED_PRE_TRAINING,
            "distillation": cls.DISTILLATION,
            "reinforcement": cls.REINFORCEMENT_FINE_TUNING,
            "reinforcement-fine-tuning": cls.REINFORCEMENT_FINE_TUNING,
            "rft": cls.REINFORCEMENT_FINE_TUNING,
        }
        if v.lower() in aliases:
            return aliases[v.lower()]
        try:
            return cls(v.upper())
        except ValueError:
            names = [m.value for m in cls] + list(aliases)
            hint = difflib.get_close_matches(v, names, n=1)
            raise ValueError(
                f"unknown customization type {v!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; valid: {', '.join(m.value for m in cls)}")
            ) from None


# The customization types whose job may start from an existing custom model ("You can further fine tune an existing
# custom model", https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-submit.html, the page for
# fine-tuning and continued pre-training, as of 2026-12-01): the config's ``start_from: champion`` (issue 19).
CONTINUABLE_TYPES = (CustomizationType.FINE_TUNING, CustomizationType.CONTINUED_PRE_TRAINING)


class DataFormat(str, Enum):
    PROMPT_COMPLETION = "prompt-completion"          # {"prompt", "completion"}
    CLAUDE_MESSAGES = "claude-messages"              # {"system"?, "messages": [{"role","content": str}]}
    # {"schemaVersion", "system": [..], "messages": [{"role","content":[{"text"}]}]}
    CONVERSATION = "bedrock-conversation-2024"
    CPT_INPUT = "cpt-input"                          # {"input"}
    # {"messages": [{"role":"user","content": str}], "reference_answer"?}
    RFT_MESSAGES = "rft-messages"


InvokeShape = Literal["titan", "nova", "claude", "llama", "cohere"]


class HyperParameter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    type: Literal["int", "float", "str"]
    min: float | None = None
    max: float | None = None
    default: Any = None
    choices: list[str] | None = None

    def coerce(self, value: Any) -> int | float | str:
        """Parse a user value into this parameter's type; raise ValueError with the allowed range."""
        try:
            if self.type == "int":
                f = float(value)
                if f != int(f):
                    raise ValueError
                v: int | float | str = int(f)
            elif self.type == "float":
                v = float(value)
            else:
                v = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name} must be {'an integer' if self.type == 'int' else 'a number'}, "
                             f"got {value!r}") from None
        if self.type != "str":
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                raise ValueError(f"{self.name}={value} is out of range {fmt_num(self.min)}..{fmt_num(self.max)}")
        elif self.choices and v not in self.choices:
            raise ValueError(f"{self.name}={value!r} is not one of {self.choices}")
        return v


def fmt_num(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() and abs(x) >= 1 else f"{x:g}"


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_train_records: int | None = None
    max_train_records: int | None = None
    min_validation_records: int | None = None
    max_validation_records: int | None = None
    min_total_records: int | None = None   # training + validation records together (AWS: "Sum of training and ...")
    max_total_records: int | None = None
    max_tokens_per_record: int | None = None
    chars_per_token: float = 6.0      # docs/bedrock-facts.md §5: about 6 characters per token (docs)
    max_train_file_bytes: int | None = None
    max_validation_file_bytes: int | None = None
    max_validation_files: int = 10    # docs/bedrock-facts.md §5: "Any job: <= 10 validation files" (api)


class CustomizationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: DataFormat
    hyperparameters: dict[str, HyperParameter] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)

    def model_post_init(self, __context: Any) -> None:
        for name, hp in self.hyperparameters.items():
            hp.name = name


class Pricing(BaseModel):
    """USD figures used by ``forge estimate``. ``None`` = no confirmed figure (see catalog.yaml)."""

    model_config = ConfigDict(extra="forbid")
    unconfirmed: bool = True
    source: str | None = None
    as_of: str | None = None
    train_per_1k_tokens: float | None = None
    storage_per_month: float | None = None
    pt_hour_no_commit: float | None = None
    on_demand_input_per_1k: float | None = None
    on_demand_output_per_1k: float | None = None


class PriceListNaming(BaseModel):
    """How the AWS Price List (offer code ``AmazonBedrock``) names a model's prices: a usage type is
    ``usage_types[field]`` with ``{region}`` = ``region_prefixes[region]`` and ``{model}`` = the family's
    ``price_list_names[model id]`` (catalog.yaml ``price_list`` cites where each was seen)."""

    model_config = ConfigDict(extra="forbid")
    region_prefixes: dict[str, str] = Field(default_factory=dict)
    usage_types: dict[str, str] = Field(default_factory=dict)
    source: str | None = None
    as_of: str | None = None
    confirmed: bool = False


LifecycleStatus = Literal["ACTIVE", "LEGACY", "EOL"]


class Lifecycle(BaseModel):
    """A model's Bedrock lifecycle (GetFoundationModel ``modelLifecycle``), with per-Region exceptions."""

    model_config = ConfigDict(extra="forbid")
    status: LifecycleStatus
    legacy_date: str | None = None       # ISO date the model became (or becomes) LEGACY
    eol_date: str | None = None          # ISO date of end of life
    regions: dict[str, LifecycleStatus] = Field(default_factory=dict)   # Regions whose status differs
    source: str | None = None
    as_of: str | None = None
    confirmed: bool = False

    def status_in(self, region: str | None) -> LifecycleStatus:
        return self.regions.get(region or "", self.status)


class DistillationPair(BaseModel):
    """A teacher (model id or inference profile) and the student base models AWS pairs it with."""

    model_config = ConfigDict(extra="forbid")
    teacher: str
    students: list[str]
    regions: list[str] = Field(default_factory=list)
    source: str | None = None
    confirmed: bool = False


class ModelFamily(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = ""
    display: str
    provider: str
    model_ids: list[str]
    inference_ids: dict[str, str] = Field(default_factory=dict)
    invoke_shape: InvokeShape
    on_demand_deployment: bool = False
    on_demand_regions: list[str] = Field(default_factory=list)
    customizations: dict[CustomizationType, CustomizationSpec]
    pricing: Pricing = Field(default_factory=Pricing)
    # customizable model id -> its name in the Price List's usage types (``NovaMicro``); see PriceListNaming
    price_list_names: dict[str, str] = Field(default_factory=dict)
    # Regions where CreateModelCustomizationJob accepts this family, per customization type (catalog.yaml cites
    # the page). A type missing here = Regions not recorded (no check).
    customization_regions: dict[CustomizationType, list[str]] = Field(default_factory=dict)
    lifecycle: dict[str, Lifecycle] = Field(default_factory=dict)     # customizable model id -> lifecycle


class Quotas(BaseModel):
    no_commitment_model_units_per_account: int | None = None
    concurrent_training_jobs: int | None = None


class ProfileRegions(BaseModel):
    """One row of the cross-Region inference profile table (catalog.yaml ``inference_profiles``)."""

    model_config = ConfigDict(extra="forbid")
    regions: list[str] | None
    by_source: dict[str, list[str]] = Field(default_factory=dict)
    confirmed: bool = False
    source: str | None = None


class InferenceProfiles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = None
    as_of: str | None = None
    geographies: dict[str, ProfileRegions] = Field(default_factory=dict)
    profiles: dict[str, ProfileRegions] = Field(default_factory=dict)


class UnknownProfileError(ValueError):
    """An id that is not a cross-Region inference profile the catalog can resolve to Regions."""


class Catalog(BaseModel):
    families: dict[str, ModelFamily]
    distillation_teachers: list[str] = Field(default_factory=list)
    quotas: Quotas = Field(default_factory=Quotas)
    inference_profiles: InferenceProfiles = Field(default_factory=InferenceProfiles)
    distillation_pairs: list[DistillationPair] = Field(default_factory=list)
    teacher_lifecycle: dict[str, Lifecycle] = Field(default_factory=dict)   # teacher id -> lifecycle
    price_list: PriceListNaming = Field(default_factory=PriceListNaming)

    def model_post_init(self, __context: Any) -> None:
        for key, fam in self.families.items():
            fam.key = key

    # -- lookups -------------------------------------------------------------------------
    def all_model_ids(self) -> list[str]:
        return [m for f in self.families.values() for m in f.model_ids]

    def family_of(self, base_model_id: str) -> ModelFamily:
        """The family of a customizable model id (``amazon.nova-micro-v1:0:128k``) or its plain id."""
        for fam in self.families.values():
            if base_model_id in fam.model_ids or base_model_id in fam.inference_ids.values():
                return fam
            for mid in fam.model_ids:
                if base_model_id == mid.rsplit(":", 1)[0]:   # plain id without the context suffix
                    return fam
        raise UnknownModelError(base_model_id, self.all_model_ids())

    def spec(self, base_model_id: str, ctype: CustomizationType | str) -> CustomizationSpec:
        fam = self.family_of(base_model_id)
        ct = CustomizationType.parse(ctype)
        if ct not in fam.customizations:
            allowed = ", ".join(c.value for c in fam.customizations)
            raise UnsupportedCustomizationError(
                f"{fam.display} ({base_model_id}) does not support {ct.value}; it supports: {allowed}"
            )
        return fam.customizations[ct]

    def inference_id(self, base_model_id: str) -> str:
        """The id used to invoke the *base* model for comparison (plain id or inference profile)."""
        fam = self.family_of(base_model_id)
        return fam.inference_ids.get(
            base_model_id, base_model_id.rsplit(":", 1)[0] if base_model_id.count(":") >= 2 else base_model_id)

    def invoke_id(self, model_id: str) -> str:
        """The id a model given by a config (e.g. ``evaluation.judge.model``) is invoked with: the inference id of a
        model the catalog knows, else the id as written (an inference profile, an ARN, a model it does not list)."""
        try:
            return self.inference_id(model_id)
        except UnknownModelError:
            return model_id


    def customizable_id(self, model_id: str) -> str | None:
        """The customizable id (``...:128k``) for a model id, its plain id or its inference profile; else None."""
        if model_id.startswith("arn:") and "foundation-model/" in model_id:
            model_id = model_id.split("foundation-model/", 1)[1]
        for fam in self.families.values():
            if model_id in fam.model_ids:
                return model_id
            for mid in fam.model_ids:
                if model_id in (mid.rsplit(":", 1)[0], fam.inference_ids.get(mid)):
                    return mid
        return None

    def usage_type(self, model_id: str, field: str, region: str) -> str | None:
        """The Price List usage type of ``field`` (a key of ``price_list.usage_types``) for ``model_id`` in
        ``region``; None when the catalog does not know the model's name there, the Region's prefix or the field."""
        mid = self.customizable_id(model_id)
        if mid is None:
            return None
        name = self.family_of(mid).price_list_names.get(mid)
        prefix = self.price_list.region_prefixes.get(region)
        template = self.price_list.usage_types.get(field)
        if not (name and prefix and template):
            return None
        return template.format(region=prefix, model=name)

    def customization_regions(self, model_id: str, ctype: CustomizationType | str) -> list[str] | None:
        """Regions where ``model_id`` can be customized with ``ctype``; None when the catalog records none."""
        fam = self.family_of(model_id)
        regions = fam.customization_regions.get(CustomizationType.parse(ctype))
        return None if regions is None else list(regions)

    def lifecycle_of(self, model_id: str) -> Lifecycle | None:
        """The recorded lifecycle of a customizable base model or a distillation teacher; None = not recorded."""
        if model_id in self.teacher_lifecycle:
            return self.teacher_lifecycle[model_id]
        mid = self.customizable_id(model_id)
        if mid is None:
            return None
        return self.family_of(mid).lifecycle.get(mid)

    def distillation_students(self, teacher: str) -> list[str]:
        """Student base model ids AWS pairs with ``teacher`` (an id or inference profile); [] = not a teacher."""
        bare = teacher.split("/", 1)[1] if teacher.startswith("arn:") and "/" in teacher else teacher
        return [s for p in self.distillation_pairs if p.teacher == bare for s in p.students]

    def profile_regions(self, profile_id: str, source_region: str | None = None) -> list[str]:
        """The destination Regions of a cross-Region inference profile (``us.``, ``eu.``, ``apac.`` ...).

        ``profile_id`` is a system profile id (``us.amazon.nova-pro-v1:0``) or its ARN. With ``source_region``
        the destinations reachable from that Region; without, the union over all source Regions (what an IAM
        policy must allow). Sorted, no duplicates. Raises UnknownProfileError for a plain model id, an
        unknown geography prefix, or a ``global.`` profile (all commercial Regions: no fixed list to name).
        """
        pid = profile_id.rsplit("inference-profile/", 1)[-1] if profile_id.startswith("arn:") else profile_id
        table = self.inference_profiles
        prefix = pid.split(".", 1)[0] if pid.count(".") >= 2 else ""
        row = table.profiles.get(pid) or table.geographies.get(prefix)
        if row is None:
            known = ", ".join(f"{g}." for g in table.geographies) or "none"
            raise UnknownProfileError(
                f"{profile_id!r} is not a cross-Region inference profile id (known prefixes: {known})")
        if row.regions is None:
            raise UnknownProfileError(
                f"{profile_id!r} routes to every commercial Region ({row.source or table.source}); "
                "the catalog lists no fixed destination Regions for it")
        if source_region is None:
            return sorted(set(row.regions).union(*row.by_source.values()))
        if source_region in row.by_source:
            return sorted(set(row.by_source[source_region]))
        if source_region not in row.regions:
            raise UnknownProfileError(f"{profile_id!r} cannot be called from {source_region}; "
                                      f"its source Regions are {', '.join(sorted(row.regions))}")
        return sorted(set(row.regions))


class UnknownModelError(ValueError):
    def __init__(self, model_id: str, known: list[str]):
        hint = difflib.get_close_matches(model_id, known, n=1, cutoff=0.5)
        msg = f"unknown base model {model_id!r}"
        msg += f" (did you mean {hint[0]!r}?)" if hint else f"; supported: {', '.join(known)}"
        super().__init__(msg)


class UnsupportedCustomizationError(ValueError):
    pass


CATALOG_PATH = Path(__file__).with_name("catalog.yaml")


@lru_cache(maxsize=1)
def load_catalog(path: str | None = None) -> Catalog:
    with open(path or CATALOG_PATH, encoding="utf-8") as fh:
        # libyaml's safe loader when PyYAML has it (3 ms instead of 32 ms: every data verb starts with this)
        return Catalog.model_validate(yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


# -- presets ---------------------------------------------------------------------------------
class Preset(BaseModel):
    """A named starting point. Values are resolved per family and clamped into its ranges."""

    name: str
    description: str
    customization_type: CustomizationType | None = None
    epochs: Literal["min", "default", "max"] | int = "default"
    learning_rate_scale: float = 1.0
    max_train_records: int | None = None


PRESETS: dict[str, Preset] = {
    "quick": Preset(name="quick", description="small data, 1 epoch: fast iteration on a pipeline change",
                    epochs="min", max_train_records=1000),
    "balanced": Preset(name="balanced", description="the family's documented defaults on all data"),
    "quality": Preset(name="quality", description="large data, more epochs (3, or the family max if lower)",
                      epochs=3, learning_rate_scale=0.5),
    "cpt": Preset(name="cpt", description="continued pre-training on unlabeled text, 1 epoch",
                  customization_type=CustomizationType.CONTINUED_PRE_TRAINING, epochs="min"),
}


def resolve_hyperparameters(spec: CustomizationSpec, preset: str | None, overrides: dict[str, Any]) -> dict[str, str]:
    """Family defaults, then the preset, then explicit overrides; every value range-checked.

    Returns the string->string map Bedrock's ``hyperParameters`` expects (docs/bedrock-facts.md §1: values are strings).
    Raises ValueError naming the key and the allowed range.
    """
    values: dict[str, Any] = {k: hp.default for k, hp in spec.hyperparameters.items() if hp.default is not None}
    if preset:
        if preset not in PRESETS:
            hint = difflib.get_close_matches(preset, list(PRESETS), n=1)
            raise ValueError(f"unknown preset {preset!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else f"; valid: {', '.join(PRESETS)}"))
        p = PRESETS[preset]
        ep = spec.hyperparameters.get("epochCount")
        if ep is not None:
            if p.epochs == "min":
                values["epochCount"] = int(ep.min or 1)
            elif p.epochs == "max":
                values["epochCount"] = int(ep.max or ep.default)
            elif isinstance(p.epochs, int):
                values["epochCount"] = int(min(p.epochs, ep.max or p.epochs))
        for lr_key in ("learningRate", "learningRateMultiplier"):
            hp = spec.hyperparameters.get(lr_key)
            if hp is not None and p.learning_rate_scale != 1.0 and hp.default is not None:
                v = float(hp.default) * p.learning_rate_scale
                values[lr_key] = max(hp.min or v, min(hp.max or v, v))
    out: dict[str, str] = {}
    for key, raw in {**values, **overrides}.items():
        hp = spec.hyperparameters.get(key)
        if hp is None:
            valid = list(spec.hyperparameters)
            hint = difflib.get_close_matches(key, valid, n=1)
            raise ValueError(
                f"hyperparameter {key!r} is not accepted for this model"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; valid: {', '.join(valid) or 'none'}")
            )
        v = hp.coerce(raw)
        out[key] = repr(v) if isinstance(v, float) else str(v)
    return out
