"""Validate training data against every rule Bedrock applies for a base model + customization type,
before any AWS call: the entry points.

- ``validate_source(path, model, type)``: one file, every record (``tasks.data.scanner.SourceScanner``);
- ``validate_config(config, path)``: a whole PipelineConfig's settings (``tasks.config.checks.check_config``:
  hyperparameters, region, S3/IAM names, on-demand availability, each located by its key's line in the
  YAML file) plus its ``data.*`` settings against the data rules (``data_settings_problems``).

The pieces: ``tasks.data.problems`` (Problem, Collector, ValidationReport, DataValidationError),
``tasks.data.readers`` (the chunked line reader, decoding, file kind), ``tasks.data.rules`` (Rules,
rules_for, check_record), ``tasks.data.scanner`` (JSONL / CSV / Parquet records). The names they define
are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.catalog import CustomizationType, DataFormat, Limits
from tasks.config import Columns
from tasks.config.checks import (
    BUCKET_RE,
    REGION_RE,
    RFT_HYPERPARAMETERS,
    ROLE_NAME_RE,
    S3_KEY_RE,
    Add,
    check_config,
    validate_hyperparameters,
)
from tasks.config.yaml_lines import yaml_line
from tasks.data.problems import (
    MAX_PROBLEMS_KEPT,
    MAX_PROBLEMS_SHOWN,
    Collector,
    DataValidationError,
    Problem,
    ValidationReport,
    env_max_problems,
)
from tasks.data.readers import MAX_LINE_BYTES, READ_CHUNK, file_kind, iter_raw_lines
from tasks.data.rules import (
    CLAUDE_FORBIDDEN,
    IMAGE_FORMATS,
    MAX_IMAGES_PER_RECORD,
    NOVA_FORBIDDEN,
    VIDEO_FORMATS,
    Rules,
    check_record,
    check_text,
    rules_for,
)
from tasks.data.scanner import PROGRESS_EVERY, Item, SourceScanner, apply_template, detect_format

__all__ = [
    "BUCKET_RE", "CLAUDE_FORBIDDEN", "IMAGE_FORMATS", "MAX_IMAGES_PER_RECORD", "MAX_LINE_BYTES", "MAX_PROBLEMS_KEPT",
    "MAX_PROBLEMS_SHOWN", "NOVA_FORBIDDEN", "PROGRESS_EVERY", "READ_CHUNK", "REGION_RE", "RFT_HYPERPARAMETERS",
    "ROLE_NAME_RE", "S3_KEY_RE", "VIDEO_FORMATS", "Collector", "DataValidationError", "Item", "Problem", "Rules",
    "SourceScanner", "ValidationReport", "apply_template", "check_record", "data_settings_problems",
    "detect_format", "env_max_problems", "file_kind", "iter_raw_lines", "rules_for", "validate_config",
    "validate_hyperparameters", "validate_source", "yaml_line",
]


def validate_source(path: str | Path, base_model: str, ctype: CustomizationType | str, *,
                    columns: Columns | None = None, fmt: str = "auto", role: str = "train",
                    system_prompt: str | None = None, prompt_template: str = "{prompt}",
                    teacher: str | None = None, limits: Limits | None = None,
                    progress: Callable[[int], None] | None = None, shown_as: str | None = None,
                    media_bucket: str | None = None) -> ValidationReport:
    """Check one file against every rule for ``base_model`` + ``ctype``; never raises on bad data.

    ``fmt``: ``auto`` (formatted JSONL when its records carry the target format's keys, else raw),
    ``raw`` or ``formatted``. ``role`` picks the record-count and size limits (train / validation / test).
    ``shown_as``: the name in messages (the s3:// URI of a downloaded copy). ``media_bucket``: the run's bucket
    (``aws.bucket``) when known: a record whose images/videos sit in another bucket is a located problem.
    """
    if fmt not in ("auto", "raw", "formatted"):
        try:
            fmt = "formatted" if DataFormat(fmt) else fmt
        except ValueError:
            fmt = "auto"
    sc = SourceScanner(path, base_model, ctype, columns=columns, fmt=fmt, role=role, system_prompt=system_prompt,
                       prompt_template=prompt_template, teacher=teacher, limits=limits, progress=progress,
                       shown_as=shown_as, media_bucket=media_bucket)
    for _ in sc:
        pass
    return sc.report()


def data_settings_problems(config: Any, add: Add) -> None:
    """The config's ``data.*`` settings against the data rules: a prompt template with no placeholder, and
    the augmentation prefixes (forbidden strings). system_prompt / prompt_template texts are checked by
    ``SourceScanner`` (once, with the data)."""
    try:
        rules: Rules | None = rules_for(config.base_model, config.customization_type)
    except ValueError:
        rules = None
    if rules is None:
        return
    d = config.data
    if "{" not in d.prompt_template:
        add("data.prompt_template", "has no {prompt} placeholder: every record would get the same prompt",
            "write the template around {prompt}, e.g. 'Classify: {prompt}'")
    if d.augment.enabled:
        for i, prefix in enumerate(d.augment.prefixes):
            check_text(prefix, f"data.augment.prefixes[{i}]", rules, add, required=False)


def validate_config(config: Any, path: str | Path = "config") -> list[Problem]:
    """Problems in a PipelineConfig beyond its pydantic model: hyperparameters for the model + type
    (file = the config path, line = the key's line), region, bucket / prefix / role names, data settings."""
    return check_config(config, path, data_checks=data_settings_problems)
