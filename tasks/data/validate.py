"""Validate training data against every rule Bedrock applies for a base model + customization type,
before any AWS call: the entry points.

- ``validate_source(path, model, type)``: one file, every record (``tasks.data.scanner.SourceScanner``);
- ``validate_config(config, path)``: a whole PipelineConfig's settings (``tasks.config.checks.check_config``:
  hyperparameters, region, S3/IAM names, on-demand availability, each located by its key's line in the
  YAML file) plus its ``data.*`` settings against the data rules (``data_settings_problems``).

The pieces live in their own modules and are imported from there: ``tasks.data.problems`` (Problem, Collector,
ValidationReport, DataValidationError), ``tasks.data.readers`` (the chunked line reader, decoding, file kind),
``tasks.data.rules`` (Rules, rules_for, check_record), ``tasks.data.scanner`` (JSONL / CSV / Parquet records),
``tasks.config.checks`` (the config's name patterns, hyperparameters). ``DataValidationError`` is still re-exported
here for flows/customize.py and forge/commands/run.py until they import it from ``tasks.data.problems``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.catalog import CustomizationType, DataFormat, Limits
from tasks.config import Columns
from tasks.config.checks import Add, check_config
from tasks.data.problems import DataValidationError, Problem, ValidationReport
from tasks.data.rules import Rules, check_text, rules_for
from tasks.data.scanner import SourceScanner

# DataValidationError: only for the two importers named above (drop once they import tasks.data.problems)
__all__ = ["DataValidationError", "data_settings_problems", "validate_config", "validate_source"]


def validate_source(path: str | Path, base_model: str, ctype: CustomizationType | str, *,
                    columns: Columns | None = None, fmt: str = "auto", role: str = "train",
                    system_prompt: str | None = None, prompt_template: str = "{prompt}",
                    teacher: str | None = None, limits: Limits | None = None,
                    progress: Callable[[int], None] | None = None, shown_as: str | None = None,
                    media_bucket: str | None = None, companion_records: int | None = None) -> ValidationReport:
    """Check one file against every rule for ``base_model`` + ``ctype``; never raises on bad data.

    ``fmt``: ``auto`` (formatted JSONL when its records carry the target format's keys, else raw),
    ``raw`` or ``formatted``. ``role`` picks the record-count and size limits (train / validation / test).
    ``shown_as``: the name in messages (the s3:// URI of a downloaded copy). ``media_bucket``: the run's bucket
    (``aws.bucket``) when known: a record whose images/videos sit in another bucket is a located problem.
    ``companion_records`` (role ``train``): the records of the validation file that goes with it; AWS's
    train + validation totals (e.g. Llama's 100..10,000) count both files.
    """
    if fmt not in ("auto", "raw", "formatted"):
        try:
            fmt = "formatted" if DataFormat(fmt) else fmt
        except ValueError:
            fmt = "auto"
    sc = SourceScanner(path, base_model, ctype, columns=columns, fmt=fmt, role=role, system_prompt=system_prompt,
                       prompt_template=prompt_template, teacher=teacher, limits=limits, progress=progress,
                       shown_as=shown_as, media_bucket=media_bucket, companion_records=companion_records)
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
