"""What a run will buy: the serving decisions the cost guard prices and the provision stage carries out.

One module so the two cannot drift (issue 14: the estimate used to price an on-demand deployment for a
family with an empty ``on_demand_regions`` while the run bought Provisioned Throughput). Plain functions
over the config and the catalog, no AWS calls and no Prefect import (``forge estimate`` is a data verb).

- ``serving_kind``: ``serving.mode`` ``provisioned`` / ``on_demand`` decide; ``auto`` is an on-demand
  deployment when the catalog lists it for the family *in this region* (``on_demand_deployment`` and the
  region in ``on_demand_regions``; an empty list means no region), else Provisioned Throughput
  (docs/bedrock-facts.md §2.7, §2.8).
- ``model_units``: the PT size, ``serving.model_units`` capped by ``serving.max_model_units``.
"""

from __future__ import annotations

from typing import Literal

from tasks.catalog import ModelFamily, load_catalog
from tasks.config import PipelineConfig

ServingKind = Literal["provisioned", "deployment"]


def family_of(config: PipelineConfig) -> ModelFamily:
    return load_catalog().family_of(config.base_model)


def on_demand_available(family: ModelFamily, region: str) -> bool:
    """The catalog lists on-demand custom model deployment for ``family`` in ``region``."""
    return bool(family.on_demand_deployment) and region in family.on_demand_regions


def serving_kind(config: PipelineConfig, family: ModelFamily | None = None,
                 region: str | None = None) -> ServingKind:
    """'deployment' or 'provisioned' for this config (see the module docstring). ``family`` defaults to
    the catalog's family of ``config.base_model``, ``region`` to ``config.aws.region``."""
    mode = config.serving.mode
    if mode == "provisioned":
        return "provisioned"
    if mode == "on_demand":
        return "deployment"
    fam = family if family is not None else family_of(config)
    return "deployment" if on_demand_available(fam, region or config.aws.region) else "provisioned"


def model_units(config: PipelineConfig) -> int:
    """Model units of the run's Provisioned Throughput: never more than ``serving.max_model_units``."""
    return min(config.serving.model_units, config.serving.max_model_units)


def production_kind(config: PipelineConfig, region: str | None = None) -> ServingKind | None:
    """What production serving of a promoted model is (tasks/promote.py acts on it, the estimate prices it): None
    for ``production.mode: none``; ``provisioned`` for provisioned; for on-demand a deployment where the catalog
    lists the family in the Region, else Provisioned Throughput (the rule of ``serving_kind``)."""
    mode = config.production.mode
    if mode == "none":
        return None
    if mode == "provisioned":
        return "provisioned"
    return "deployment" if on_demand_available(family_of(config), region or config.aws.region) else "provisioned"
