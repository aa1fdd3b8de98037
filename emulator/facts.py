"""The emulator's own Bedrock facts: emulator/facts/models.yaml (what GetFoundationModel / ListFoundationModels
answer per model id) and emulator/facts/customization.yaml (the checks CreateModelCustomizationJob and
CreateCustomModelDeployment apply). Imports nothing from ``tasks/``: a wrong fact in the pipeline's catalog is
caught by tests/contract/test_facts_contract.py, which compares the two readings.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

FACTS_DIR = Path(__file__).with_name("facts")
CTYPES = ["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION", "REINFORCEMENT_FINE_TUNING"]
GEO_PREFIX = re.compile(r"^(us|eu|apac|us-gov|global|jp|au|ca)\.")


class DataFormat(str, Enum):
    PROMPT_COMPLETION = "prompt-completion"
    CLAUDE_MESSAGES = "claude-messages"
    CONVERSATION = "bedrock-conversation-2024"
    CPT_INPUT = "cpt-input"
    RFT_MESSAGES = "rft-messages"


class HyperParam(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["int", "float", "str"]
    min: float | None = None
    max: float | None = None
    default: Any = None
    choices: list[str] | None = None


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_train_records: int | None = None
    max_train_records: int | None = None
    min_validation_records: int | None = None
    max_validation_records: int | None = None
    min_total_records: int | None = None     # training + validation records together
    max_total_records: int | None = None
    max_tokens_per_record: int | None = None
    chars_per_token: float = 6.0
    max_train_file_bytes: int | None = None
    max_validation_file_bytes: int | None = None
    max_validation_files: int = 10


class Rule(BaseModel):
    """What CreateModelCustomizationJob checks for one customization type of one rule set."""

    model_config = ConfigDict(extra="forbid")
    format: DataFormat
    regions: list[str] | None = None
    hyperparameters: dict[str, HyperParam] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invoke_shape: Literal["titan", "nova", "claude", "llama", "cohere"]
    on_demand_deployment_regions: list[str] = Field(default_factory=list)
    customizations: dict[str, Rule]


class ModelLifecycle(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ACTIVE", "LEGACY", "EOL"]
    endOfLifeTime: str | None = None
    legacyTime: str | None = None


class Model(BaseModel):
    """One GetFoundationModel ``modelDetails`` entry, plus the emulator's bookkeeping keys."""

    model_config = ConfigDict(extra="forbid")
    modelName: str
    providerName: str
    inputModalities: list[str]
    outputModalities: list[str]
    responseStreamingSupported: bool = True
    customizationsSupported: list[str] = Field(default_factory=list)
    inferenceTypesSupported: list[str]
    modelLifecycle: ModelLifecycle
    rules: str
    customizable_variant: str | None = None
    inference_profile: str | None = None
    lifecycle_by_region: dict[str, Literal["ACTIVE", "LEGACY", "EOL"]] = Field(default_factory=dict)

    @property
    def customizable(self) -> bool:
        return "PROVISIONED" in self.inferenceTypesSupported and self.customizable_variant is None

    def lifecycle_in(self, region: str) -> dict:
        out = self.modelLifecycle.model_dump(exclude_none=True)
        out["status"] = self.lifecycle_by_region.get(region, self.modelLifecycle.status)
        return out

    def wire(self, region: str, model_id: str) -> dict:
        """The ``modelDetails`` / ``modelSummaries[]`` member AWS returns (names in full, real modalities)."""
        return {"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}", "modelId": model_id,
                "modelName": self.modelName, "providerName": self.providerName,
                "inputModalities": list(self.inputModalities), "outputModalities": list(self.outputModalities),
                "responseStreamingSupported": self.responseStreamingSupported,
                "customizationsSupported": list(self.customizationsSupported),
                "inferenceTypesSupported": list(self.inferenceTypesSupported),
                "modelLifecycle": self.lifecycle_in(region)}


class DistillationPair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teacher: str
    students: list[str]
    regions: list[str] = Field(default_factory=list)


class PtCapacity(BaseModel):
    """What one Provisioned Throughput model unit serves (emulator/facts/capacity.yaml; an emulator default)."""
    model_config = ConfigDict(extra="forbid")
    tokens_per_minute_per_model_unit: float = 100_000.0
    burst_seconds: float = 10.0
    source: str = "emulator default"
    as_of: str | None = None


class Facts(BaseModel):
    models: dict[str, Model]
    rules: dict[str, RuleSet]
    distillation_pairs: list[DistillationPair] = Field(default_factory=list)
    teacher_lifecycle: dict[str, ModelLifecycle] = Field(default_factory=dict)
    pt_capacity: PtCapacity = Field(default_factory=PtCapacity)

    # -- lookups ---------------------------------------------------------------------------
    def customizable_ids(self) -> list[str]:
        return [mid for mid, m in self.models.items() if m.customizable]

    def model(self, model_id: str) -> Model | None:
        return self.models.get(model_id)

    def rule_set(self, model_id: str) -> RuleSet | None:
        m = self.models.get(model_id) or self.models.get(GEO_PREFIX.sub("", model_id))
        return None if m is None else self.rules[m.rules]

    def rule(self, model_id: str, ctype: str) -> Rule | None:
        rs = self.rule_set(model_id)
        return None if rs is None else rs.customizations.get(ctype)

    def students_of(self, teacher: str) -> list[str]:
        return [s for p in self.distillation_pairs if p.teacher == teacher for s in p.students]


@lru_cache(maxsize=4)
def load_facts(directory: str | None = None) -> Facts:
    d = Path(directory) if directory else FACTS_DIR
    raw: dict = {}
    for name in ("models.yaml", "customization.yaml"):
        with open(d / name, encoding="utf-8") as fh:
            raw.update(yaml.safe_load(fh))
    if (d / "capacity.yaml").exists():      # optional: a copied facts dir without it gets the defaults
        with open(d / "capacity.yaml", encoding="utf-8") as fh:
            raw.update(yaml.safe_load(fh))
    return Facts.model_validate(raw)
