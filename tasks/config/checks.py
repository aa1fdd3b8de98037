"""Checks on a whole PipelineConfig beyond its pydantic model, each problem located at its key's line.

- ``validate_hyperparameters``: the preset, ``hyperparameters`` overrides and ``rft.hyperparameters``
  for the model + type (tasks.catalog.resolve_hyperparameters, docs/bedrock-facts.md §2.3, §4);
- ``check_config``: those, then the ``data.*`` settings. Names, ARNs, ids, bounds and the rules between
  sections (region, on-demand availability, bucket / prefix / role / KMS / Lambda / teacher, tags, commitment)
  are checked by ``PipelineConfig`` itself (``tasks.config.grammar``, ``tasks.config.rules``), so a config
  that loads has them right whoever submitted it. The data settings are checked against the data rules
  (forbidden strings...), which live in tasks.data: the caller passes them in (``data_checks``), so this
  package never imports tasks.data.
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
from tasks.config import REGION_RE
from tasks.config.problems import Problem
from tasks.config.yaml_lines import yaml_line

# kept for importers (tasks.data.validate re-exports them); the config's own checks are tasks.config.grammar
BUCKET_RE = re.compile(r"[a-z0-9][-a-z0-9]{1,61}[a-z0-9]")   # no dots: tasks.config.grammar.bucket_problem
S3_KEY_RE = re.compile(r"[A-Za-z0-9\-!_'()./]*")     # docs/bedrock-facts.md §2.2 key characters, without '*'
ROLE_NAME_RE = re.compile(r"[\w+=,.@-]{1,64}")                 # IAM role name rules (iam roleNameType)
__all__ = ["BUCKET_RE", "REGION_RE", "RFT_HYPERPARAMETERS", "ROLE_NAME_RE", "S3_KEY_RE", "check_config",
           "validate_hyperparameters"]

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
    (file = the config path, line = the key's line) and the data settings (``data_checks(config, add)``)."""
    src = str(path)
    probs = validate_hyperparameters(config.base_model, config.customization_type, config.preset,
                                     config.hyperparameters, source=src,
                                     rft=config.rft.hyperparameters if config.rft else None)

    def add(fld: str, message: str, fix: str) -> None:
        probs.append(Problem(file=src, field=fld, message=message, fix=fix))

    data_checks(config, add)
    if src != "config":
        _locate(probs, path)
    return probs


def _locate(probs: list[Problem], path: str | Path) -> None:
    """The line of each problem's key (or of its parent key) in the YAML file."""
    for p in probs:
        if p.line is None and p.field not in ("base_model",):
            key = p.field.split("[", 1)[0]
            p.line = yaml_line(path, key) or yaml_line(path, key.rsplit(".", 1)[0])
