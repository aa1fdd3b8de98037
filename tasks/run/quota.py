"""Bedrock's account quotas as named shares (issue 18 part 5): which limits exist, what a run's steps take from
them, and when an adopted job needs a slot. Pure: no AWS call, no Prefect import (``flows/quota.py`` holds the
Prefect part, ``forge deploy --apply`` creates the limits).

Two account-level quotas bound what several runs may do at once, per Region:

- ``bedrock-training-jobs:<region>``: model customization jobs in progress. The customize step takes 1 slot from
  CreateModelCustomizationJob until the job is terminal (across poll);
- ``bedrock-pt-model-units:<region>``: model units of no-commitment Provisioned Throughputs. The provision step takes
  ``serving.model_units`` slots until teardown. An on-demand deployment (and a PT with a commitment, a quota of its
  own that is 0 by default) takes none.

Default values (Service Quotas are per account and Region and can be raised; read yours with
``aws service-quotas list-service-quotas --service-code bedrock``):
- AWS General Reference, "Amazon Bedrock endpoints and quotas": https://docs.aws.amazon.com/general/latest/gr/bedrock.html
  (the quota table ``#limits_bedrock``), linked from https://docs.aws.amazon.com/bedrock/latest/userguide/quotas.html;
- no-commitment model units: 2 per account (catalog ``quotas.no_commitment_model_units_per_account``, sourced in
  docs/bedrock-facts.md §2.7 from https://docs.aws.amazon.com/bedrock/latest/userguide/prov-thru-purchase.html);
- training jobs in progress: no stored AWS page states the default (docs/bedrock-facts.md §5 "unconfirmed");
  ``UNCONFIRMED_TRAINING_JOBS`` (the emulator's model) stands in until the catalog has a sourced value. Set the real
  one with ``FORGE_QUOTA_TRAINING_JOBS`` / ``forge deploy --training-jobs N``, or edit the limit in the Prefect UI
  (Concurrency → Global): a re-apply keeps an operator's value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.catalog import load_catalog

TRAINING_JOBS = "bedrock-training-jobs"
PT_MODEL_UNITS = "bedrock-pt-model-units"
KINDS = (TRAINING_JOBS, PT_MODEL_UNITS)

QUOTA_PAGE = "https://docs.aws.amazon.com/general/latest/gr/bedrock.html#limits_bedrock"
UNCONFIRMED_TRAINING_JOBS = 2     # docs/bedrock-facts.md §5: unconfirmed; the emulator's MAX_JOBS_IN_PROGRESS

ENV_TRAINING = "FORGE_QUOTA_TRAINING_JOBS"
ENV_PT_UNITS = "FORGE_QUOTA_PT_MODEL_UNITS"
ENV_REGIONS = "FORGE_QUOTA_REGIONS"        # comma-separated Regions forge deploy creates limits for
ENV_LEASE = "FORGE_QUOTA_LEASE_SECONDS"    # how long a dead run's slot stays taken (Prefect lease duration)
ENV_WAIT = "FORGE_QUOTA_WAIT_SECONDS"      # how long a run waits for a slot (default: job.quota_wait_minutes)

DEFAULT_LEASE_S = 120.0    # Prefect renews every 75 % of it; a SIGKILLed run's slot frees within ~lease + 15 s
MIN_LEASE_S = 60.0         # Prefect 3.9's server refuses a shorter lease_duration (422: "greater than or equal to 60")


class LimitSpec(BaseModel):
    """One Prefect global concurrency limit standing for one Bedrock quota in one Region."""

    name: str
    limit: int = Field(ge=0)
    kind: Literal["bedrock-training-jobs", "bedrock-pt-model-units"]
    region: str
    description: str
    source: str


class Claim(BaseModel):
    """What a step takes from one limit: ``slots`` of ``name``."""

    name: str
    slots: int = Field(ge=1)
    what: str     # for people: "1 training job", "1 PT model unit"


def limit_name(kind: str, region: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown quota kind {kind!r} (have: {', '.join(KINDS)})")
    if not region or any(c.isspace() for c in region):
        raise ValueError(f"bad region {region!r}")
    return f"{kind}:{region}"


def _env_number(env: Mapping[str, str], key: str, cast: type, example: str) -> Any:
    """``env[key]`` read with ``cast`` (int or float), None when unset or blank; a bad value names the variable and
    an example (``example``: "a whole number of slots, e.g. KEY=2")."""
    raw = (env.get(key) or "").strip()
    if not raw:
        return None
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r}: {example}") from None
    if not math.isfinite(value):        # "inf" would make a lease that never expires, "nan" compares as nothing
        raise ValueError(f"{key}={raw!r}: must be a finite number; {example}")
    return value


def _int_env(env: Mapping[str, str], key: str) -> int | None:
    value = _env_number(env, key, int, f"a whole number of slots, e.g. {key}=2")
    if value is not None and value < 0:
        raise ValueError(f"{key}={env[key].strip()!r}: must be >= 0")
    return value


def default_values(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """{kind: default limit}: the environment's override, else the catalog's sourced value, else the stand-in."""
    env = os.environ if env is None else env
    quotas = load_catalog().quotas
    training = _int_env(env, ENV_TRAINING)
    units = _int_env(env, ENV_PT_UNITS)
    return {
        TRAINING_JOBS: training if training is not None else (quotas.concurrent_training_jobs
                                                              or UNCONFIRMED_TRAINING_JOBS),
        PT_MODEL_UNITS: units if units is not None else (quotas.no_commitment_model_units_per_account or 2),
    }


def regions_of(env: Mapping[str, str] | None = None, given: list[str] | None = None) -> list[str]:
    """The Regions to create limits for: ``given`` (CLI), else ``FORGE_QUOTA_REGIONS``, else the default Region."""
    env = os.environ if env is None else env
    raw = list(given or []) or [r for r in (env.get(ENV_REGIONS) or "").split(",") if r.strip()]
    if not raw:
        raw = [env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"]
    out: list[str] = []
    for r in (x.strip() for x in raw):
        if r and r not in out:
            out.append(r)
    return out


def limit_specs(regions: list[str], values: dict[str, int]) -> list[LimitSpec]:
    """The limits ``forge deploy --apply`` get-or-creates, one per quota kind and Region."""
    specs = []
    for region in regions:
        specs.append(LimitSpec(
            name=limit_name(TRAINING_JOBS, region), limit=values[TRAINING_JOBS], kind=TRAINING_JOBS, region=region,
            description=f"Bedrock model customization jobs in progress in {region} (account quota; {QUOTA_PAGE})",
            source=QUOTA_PAGE))
        specs.append(LimitSpec(
            name=limit_name(PT_MODEL_UNITS, region), limit=values[PT_MODEL_UNITS], kind=PT_MODEL_UNITS,
            region=region,
            description=f"model units of no-commitment Provisioned Throughputs in {region} (account quota; "
                        f"{QUOTA_PAGE})",
            source=QUOTA_PAGE))
    return specs


def training_claim(region: str) -> Claim:
    return Claim(name=limit_name(TRAINING_JOBS, region), slots=1, what="1 training job")


def serving_claims(kind: str, model_units: int, commitment: str | None, region: str) -> list[Claim]:
    """What provisioning takes: a no-commitment PT its model units; an on-demand deployment (``kind``
    "deployment") or a PT with a commitment (another quota, 0 by default) nothing from these limits."""
    if kind != "provisioned" or commitment:
        return []
    return [Claim(name=limit_name(PT_MODEL_UNITS, region), slots=model_units,
                  what=f"{model_units} PT model unit{'s' if model_units != 1 else ''}")]


def lease_seconds(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    value = _env_number(env, ENV_LEASE, float, f"seconds, e.g. {ENV_LEASE}=120")
    return DEFAULT_LEASE_S if value is None else max(MIN_LEASE_S, value)


def wait_seconds(quota_wait_minutes: float, env: Mapping[str, str] | None = None) -> float:
    """How long a run waits for a slot: ``FORGE_QUOTA_WAIT_SECONDS``, else the config's ``job.quota_wait_minutes``
    (the same bound as a ServiceQuotaExceeded wait)."""
    env = os.environ if env is None else env
    value = _env_number(env, ENV_WAIT, float, f"seconds, e.g. {ENV_WAIT}=3600")
    return max(0.0, quota_wait_minutes * 60 if value is None else value)


# -- the training slot of a job that already exists --------------------------------------------------
JobSlot = Literal["take", "none"]
LIVE_STATES = ("PENDING", "RUNNING", "PAUSED", "CANCELLING")


def job_slot(latest_status: str | None, *, will_create: bool, job_run_id: str | None, our_run_id: str,
             creator_flow_run: str | None, our_flow_runs: list[str], creator_state: str | None) -> tuple[JobSlot, str]:
    """Does this run take a training slot for its job, and why.

    - a job will be created (none yet, or a new attempt after Failed/Stopped): take one before the create call;
    - the latest job is terminal (Completed): none — it holds no quota any more;
    - an InProgress job of this same forge run (an earlier attempt that crashed or was retried): take one — the
      earlier attempt's slot is released or its lease expires, and the job still counts against the quota;
    - an InProgress job created by another flow run (a duplicate run of the same config): none while that flow run
      is alive (it holds the job's slot: adopting must not take a second one), else take it over.
    ``creator_state``: the Prefect state type of ``creator_flow_run`` (None: unknown, e.g. no Prefect API)."""
    if will_create:
        return "take", "a new job will be created"
    if latest_status != "InProgress":
        return "none", f"the job is {latest_status or 'not there'}: it holds no quota"
    if job_run_id and job_run_id == our_run_id:
        return "take", "the job of an earlier attempt of this run is still in progress"
    if creator_flow_run and creator_flow_run in our_flow_runs:
        return "take", "the job of an earlier flow run of this run is still in progress"
    if creator_state is None:
        return "take", "the job's creator is unknown: counting the job once more rather than never"
    if creator_state.upper() in LIVE_STATES:
        return "none", f"flow run {creator_flow_run} ({creator_state}) holds this job's slot"
    return "take", f"the job's creator flow run {creator_flow_run} ended {creator_state}: taking its slot over"


def waiting_line(name: str, active: int, limit: int, slots: int, what: str) -> str:
    """The log line of a run that waits: the limit, its use, what the run needs."""
    return (f"waiting for quota: {name} has {active} of {limit} slot(s) in use; this run needs {slots} ({what}). "
            "It starts when another run releases its slot (Prefect UI: Concurrency → Global)")
