"""Checks on a whole PipelineConfig beyond its pydantic model, each problem located at its key's line.

- ``validate_hyperparameters``: the preset, ``hyperparameters`` overrides and ``rft.hyperparameters``
  for the model + type (tasks.catalog.resolve_hyperparameters, docs/bedrock-facts.md §2.3, §4);
- ``check_config``: those, then the region, on-demand availability, bucket / prefix / role names, and the
  ``data.*`` settings. The data settings are checked against the data rules (forbidden strings...), which
  live in tasks.data: the caller passes them in (``data_checks``), so this package never imports tasks.data.
  ``tasks.data.validate.validate_config`` is the complete check (it passes the data rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.catalog import (
    CustomizationType,
    UnknownModelError,
    UnsupportedCustomizationError,
    load_catalog,
    resolve_hyperparameters,
)
from tasks.config.problems import Problem
from tasks.config.yaml_lines import yaml_line

REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
BUCKET_RE = re.compile(r"[a-z0-9][-.a-z0-9]{1,61}[a-z0-9]")          # docs/bedrock-facts.md §2.2 (api)
S3_KEY_RE = re.compile(r"[A-Za-z0-9\-!_*'()./]*")        # docs/bedrock-facts.md §2.2: key characters Bedrock accepts
ROLE_NAME_RE = re.compile(r"[\w+=,.@-]{1,64}")                         # IAM role name rules

Add = Callable[[str, str, str], None]     # (field, message, fix)
DataChecks = Callable[[Any, Add], None]   # (config, add): the data.* settings against the data rules

# docs/bedrock-facts.md §2.3 (api): rftConfig.hyperParameters are typed numbers with these ranges.
RFT_HYPERPARAMETERS: dict[str, tuple[type, float | None, float | None]] = {
    "epochCount": (int, 1, 50), "batchSize": (int, 16, 512), "learningRate": (float, 1e-7, 1e-3),
    "trainingSamplePerPrompt": (int, 2, 16), "evalInterval": (int, 1, 100),
    "maxPromptLength": (int, 1, None), "inferenceMaxTokens": (int, 1, None),
}


def validate_hyperparameters(base_model: str, ctype: CustomizationType | str, preset: str | None = None,
                             overrides: dict[str, Any] | None = None, *, source: str = "hyperparameters",
                             rft: dict[str, Any] | None = None) -> list[Problem]:
    """Problems with the hyperparameters for model + type (tasks.catalog.resolve_hyperparameters);
    ``file`` of each problem is ``source`` (the config path, or "hyperparameters")."""
    out: list[Problem] = []
    try:
        spec = load_catalog().spec(base_model, ctype)
    except (UnknownModelError, UnsupportedCustomizationError, ValueError) as e:
        return [Problem(file=source, field="base_model", message=str(e), fix="pick a supported model + type")]
    try:
        resolve_hyperparameters(spec, preset, {})
    except ValueError as e:
        out.append(Problem(file=source, field="preset", message=str(e), fix="use quick, balanced, quality or cpt"))
        preset = None
    for key, value in (overrides or {}).items():
        try:
            resolve_hyperparameters(spec, preset, {key: value})
        except ValueError as e:
            hp = spec.hyperparameters.get(key)
            fix = (f"set it within {hp.min:g}..{hp.max:g}" if hp and hp.min is not None and hp.max is not None
                   else "keys are case-sensitive; docs/bedrock-facts.md §4")
            out.append(Problem(file=source, field=f"hyperparameters.{key}", message=str(e), fix=fix))
    for key, value in (rft or {}).items():
        problem = _rft_problem(key, value, source)
        if problem is not None:
            out.append(problem)
    return out


def _rft_problem(key: str, value: Any, source: str) -> Problem | None:
    fld = f"rft.hyperparameters.{key}"
    if key == "reasoningEffort":
        if value not in ("low", "medium", "high"):
            return Problem(file=source, field=fld, message=f"{value!r} is not one of low, medium, high",
                           fix="docs/bedrock-facts.md §2.3")
        return None
    if key not in RFT_HYPERPARAMETERS:
        return Problem(file=source, field=fld, message="unknown RFT hyperparameter",
                       fix=f"valid: {', '.join([*RFT_HYPERPARAMETERS, 'reasoningEffort'])}")
    typ, lo, hi = RFT_HYPERPARAMETERS[key]
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and (typ is float or float(value).is_integer()))
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
        return Problem(file=source, field=fld, message=f"{value!r} must be a number in {rng}",
                       fix="docs/bedrock-facts.md §2.3: typed numbers, not strings")
    return None


def check_config(config: Any, path: str | Path = "config", *, data_checks: DataChecks) -> list[Problem]:
    """Problems in a PipelineConfig beyond its pydantic model: hyperparameters for the model + type
    (file = the config path, line = the key's line), region, bucket / prefix / role names, and the data
    settings (``data_checks(config, add)``, at their place in the order)."""
    src = str(path)
    probs = validate_hyperparameters(config.base_model, config.customization_type, config.preset,
                                     config.hyperparameters, source=src,
                                     rft=config.rft.hyperparameters if config.rft else None)

    def add(fld: str, message: str, fix: str) -> None:
        probs.append(Problem(file=src, field=fld, message=message, fix=fix))

    _check_region(config, add)
    _check_s3_names(config.aws, add)
    data_checks(config, add)
    aws = config.aws
    if aws.role_name is not None and not ROLE_NAME_RE.fullmatch(aws.role_name):
        add("aws.role_name", f"{aws.role_name!r} is not a valid IAM role name",
            "1-64 letters, digits and +=,.@_-")
    if src != "config":
        _locate(probs, path)
    return probs


def _check_region(config: Any, add: Add) -> None:
    """The region's name, and on-demand serving where the family allows it (docs/bedrock-facts.md §2.8)."""
    aws = config.aws
    if not REGION_RE.fullmatch(aws.region):
        add("aws.region", f"{aws.region!r} is not an AWS Region name", "write it like us-east-1")
    try:
        fam = load_catalog().family_of(config.base_model)
    except ValueError:
        fam = None
    if fam is None or config.serving.mode != "on_demand":
        return
    if not fam.on_demand_deployment:
        add("serving.mode", f"{fam.display} custom models cannot be deployed on demand",
            "use mode: provisioned or auto; docs/bedrock-facts.md §2.8")
    elif fam.on_demand_regions and aws.region not in fam.on_demand_regions:
        add("aws.region", f"on-demand deployment of {fam.display} custom models is available in "
            f"{', '.join(fam.on_demand_regions)}, not {aws.region}",
            "change aws.region or use serving.mode: provisioned; docs/bedrock-facts.md §2.8")


def _check_s3_names(aws: Any, add: Add) -> None:
    if aws.bucket is not None and (not BUCKET_RE.fullmatch(aws.bucket) or ".." in aws.bucket):
        add("aws.bucket", f"{aws.bucket!r} is not a valid S3 bucket name",
            "3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit; "
            "docs/bedrock-facts.md §2.2")
    if not S3_KEY_RE.fullmatch(aws.prefix or ""):
        add("aws.prefix", f"{aws.prefix!r} has characters Bedrock rejects in S3 keys",
            "use letters, digits and -!_*'(). plus /; no spaces, '=', '+', ':'; docs/bedrock-facts.md §2.2")


def _locate(probs: list[Problem], path: str | Path) -> None:
    """The line of each problem's key (or of its parent key) in the YAML file."""
    for p in probs:
        if p.line is None and p.field not in ("base_model",):
            key = p.field.split("[", 1)[0]
            p.line = yaml_line(path, key) or yaml_line(path, key.rsplit(".", 1)[0])
