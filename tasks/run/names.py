"""The run key and the deterministic names derived from it (docs/design.md §2).

Run key: sha256 of the normalized, model-relevant part of the config + the prepared data's content
hash, 12 hex chars. Resource names derive from it, within Bedrock's name patterns (docs/bedrock-facts.md
§2.2, §2.7, §2.8; patterns checked in botocore's ``bedrock`` service model).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel

from tasks.config import PipelineConfig
from tasks.config.grammar import bucket_problem


def _model_relevant(config: PipelineConfig) -> dict[str, Any]:
    """The part of the config that changes the trained model or where it lives.

    Left out on purpose (changing them must not start a new job): data (the prepared content hash
    stands for it), evaluation, gate, budget, pricing, serving, job (timeouts, polling, quota
    behaviour), tags, schedule, and connection settings (profile, endpoint, retries, timeouts).
    Hyperparameters are the resolved string map (preset + overrides), so equivalent spellings match.
    """
    from tasks.catalog import load_catalog, resolve_hyperparameters

    d = config.model_dump(mode="json")
    try:
        spec = load_catalog().spec(config.base_model, config.customization_type)
        hps: Any = resolve_hyperparameters(spec, config.preset, config.hyperparameters) if spec.hyperparameters else {}
    except ValueError:
        hps = {"preset": config.preset, "overrides": d["hyperparameters"]}
    return {
        "name": config.name,
        "base_model": config.base_model,
        "customization_type": d["customization_type"],
        "hyperparameters": hps,
        "distillation": d["distillation"],
        "rft": d["rft"],
        "aws": {k: d["aws"][k] for k in ("region", "bucket", "prefix", "kms_key_id")},
    }


def compute_run_key(config: PipelineConfig, content_hash: str, start_model: str | None = None) -> str:
    """``start_model``: the custom model the job continues from (``start_from: champion``); None = the base
    model, and the key is what it always was."""
    key: dict = {"config": _model_relevant(config), "data": content_hash}
    if start_model:
        key["start"] = start_model
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Name patterns (botocore 1.44 `bedrock` model; docs/bedrock-facts.md §2.2, §2.7, §2.8). We only ever produce lowercase
# alphanumerics joined by single hyphens, which satisfies all of them at once.
JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME_RE = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")
PT_NAME_RE = re.compile(r"([0-9a-zA-Z][_-]?)+")
TOKEN_RE = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?")
BUCKET_RE = re.compile(r"[a-z0-9][-a-z0-9]{1,61}[a-z0-9]")   # what default_bucket makes; aws.bucket: grammar


class ResourceNames(BaseModel):
    run_key: str
    bucket: str
    role: str
    job: str
    custom_model: str
    provisioned: str
    deployment: str
    job_token: str
    pt_token: str
    deployment_token: str

    def job_attempt(self, n: int) -> str:
        """Attempt 1 is the plain name; a rerun after Failed/Stopped uses ``-a2``, ``-a3``, ..."""
        return self.job if n <= 1 else f"{self.job}-a{n}"

    def model_attempt(self, n: int) -> str:
        return self.custom_model if n <= 1 else f"{self.custom_model}-a{n}"

    def job_token_attempt(self, n: int) -> str:
        return self.job_token if n <= 1 else f"{self.job_token}-a{n}"

    @staticmethod
    def attempt_of(job_name: str, base: str) -> int | None:
        """1 for ``base``, n for ``base-an``; None for anything else."""
        if job_name == base:
            return 1
        m = re.fullmatch(re.escape(base) + r"-a(\d+)", job_name)
        return int(m.group(1)) if m else None


def default_bucket(region: str, account: str | None, name: str) -> str:
    """``bedrock-forge-<12 hex>-<region>``: the hex is a hash of the account id when known (unique per
    account without putting the account id into manifests and URIs), else of the config name."""
    seed = account if account else f"name:{name}"
    return f"bedrock-forge-{hashlib.sha256(seed.encode()).hexdigest()[:12]}-{region}"


def resource_names(config: PipelineConfig, run_key: str, account: str | None = None) -> ResourceNames:
    """Deterministic names for one run. ``config.name`` is already lowercase alnum + single hyphens, ≤32."""
    base = f"{config.name}-{run_key}"                      # ≤ 45 chars
    names = ResourceNames(
        run_key=run_key,
        bucket=config.aws.bucket or default_bucket(config.aws.region, account, config.name),
        role=config.aws.role_name or f"bedrock-forge-{base}",   # IAM: ≤64
        job=f"forge-{base}",                                     # ≤51, attempts ≤ 55 (< 63)
        custom_model=f"forge-{base}",
        provisioned=f"forge-{base}-pt",
        deployment=f"forge-{base}-dep",
        job_token=f"forge-{run_key}-job",
        pt_token=f"forge-{run_key}-pt",
        deployment_token=f"forge-{run_key}-dep",
    )
    for value, rx, limit in ((names.job_attempt(99), JOB_NAME_RE, 63), (names.model_attempt(99), MODEL_NAME_RE, 63),
                             (names.provisioned, PT_NAME_RE, 63), (names.deployment, MODEL_NAME_RE, 63),
                             (names.job_token_attempt(99), TOKEN_RE, 256)):
        if len(value) > limit or not rx.fullmatch(value):
            raise ValueError(f"derived name {value!r} breaks Bedrock's name rules: shorten config.name")
    if len(names.role) > 64:
        raise ValueError(f"aws.role_name {names.role!r} is longer than IAM's 64 characters")
    problem = bucket_problem(names.bucket)      # the config's own check (tasks.config.grammar): one rule set
    if problem is not None:
        raise ValueError(f"aws.bucket: {problem}")
    return names


# Run ids name a folder under --runs-dir (RUNS_DIR/<run id>/manifest.json): a name, never a path.
# tasks.run.manifest.new_run_id makes ``<config.name>-<YYYYmmdd-HHMMSS>-<4 hex>``; people and deployments may pass
# their own, so the grammar is a little wider: letters, digits, '-', '_' and '.', starting with a letter or digit.
RUN_ID_MAX = 128
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RUN_ID_SHAPE = ("a run id is a name like banking77-20260101-120000-ab12 (letters, digits, '-', '_', '.'; "
                f"starting with a letter or digit; at most {RUN_ID_MAX} characters), never a path")


class InvalidRunId(ValueError):
    """A RUN_ID that is not a plain name (a path, empty, too long, control characters)."""


def check_run_id(value: str) -> str:
    """``value`` when it is a run id (see ``RUN_ID_SHAPE``), else ``InvalidRunId`` saying what is wrong:
    '/', '\\', '..', an absolute or drive path, NUL or other control characters, empty, over-long."""
    if not isinstance(value, str):
        raise InvalidRunId(f"run id {value!r} is not a string: {RUN_ID_SHAPE}")
    shown = repr(value) if len(value) <= 80 else repr(value[:80] + "...")
    if value == "":
        raise InvalidRunId(f"the run id is empty: {RUN_ID_SHAPE}")
    if len(value) > RUN_ID_MAX:
        raise InvalidRunId(f"run id {shown} is {len(value)} characters long: {RUN_ID_SHAPE}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidRunId(f"run id {shown} holds a control character (NUL, newline...): {RUN_ID_SHAPE}")
    if "/" in value or "\\" in value or re.match(r"[A-Za-z]:", value):
        raise InvalidRunId(f"run id {shown} is a path: {RUN_ID_SHAPE}")
    if ".." in value:
        raise InvalidRunId(f"run id {shown} holds '..': {RUN_ID_SHAPE}")
    if not RUN_ID_RE.fullmatch(value):
        raise InvalidRunId(f"run id {shown} has characters a run id does not: {RUN_ID_SHAPE}")
    return value
