"""Bedrock control plane + runtime: operations, validation, lifecycles, quotas.

Wire shapes follow botocore's service models ``bedrock`` 2023-04-20 and ``bedrock-runtime``
2023-09-30 (docs/bedrock-facts.md, cited by section below). botocore checks required members
and types; this module checks what botocore does not: lengths, regex patterns, enums (docs/bedrock-facts.md §1).

Lifecycles are evaluated lazily against the virtual clock (clock.py) whenever a resource is read,
listed or the ledger is requested: no background threads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulator.capacity import Capacity
from emulator.clock import VirtualClock
from emulator.faults import Faults
from emulator.ledger import Ledger, iso
from emulator.state import MotoAccount, S3Error, StateStore, policies_allow, trusts_service

# -- errors --------------------------------------------------------------------------------
STATUS = {  # botocore service model: error shape -> httpStatusCode
    "ValidationException": 400, "ResourceNotFoundException": 404, "ConflictException": 400,
    "ResourceInUseException": 400, "ServiceQuotaExceededException": 400, "TooManyTagsException": 400,
    "ThrottlingException": 429, "ServiceUnavailableException": 503, "InternalServerException": 500,
    "AccessDeniedException": 403, "ModelNotReadyException": 429, "ModelTimeoutException": 408,
    "ModelErrorException": 424,
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)


def validation(msg: str) -> ApiError:
    return ApiError("ValidationException", msg)


# -- patterns (botocore service model; docs/bedrock-facts.md §2.2, §2.7, §2.8, §2.9) -------------------------
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")
PT_NAME = re.compile(r"([0-9a-zA-Z][_-]?)+")
TOKEN = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
S3_URI = re.compile(r"s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](?:/[-!_*'().a-z0-9A-Z]*)*/?")
TAG_CHARS = re.compile(r"[a-zA-Z0-9\s._:/=+@-]*")
ID12 = re.compile(r"[a-z0-9]{12}")
MAX_TAGS_PER_RESOURCE = 50   # TooManyTagsException text (docs/bedrock-facts.md §2.9)
JOB_STATUSES = ["InProgress", "Completed", "Failed", "Stopping", "Stopped"]
PT_STATUSES = ["Creating", "InService", "Updating", "Failed"]
DEPLOYMENT_STATUSES = ["Creating", "Active", "Failed"]
MODEL_STATUSES = ["Active", "Creating", "Failed"]
CUSTOMIZATION_TYPES = ["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION", "REINFORCEMENT_FINE_TUNING", "IMPORTED"]

# -- virtual durations (seconds of virtual time; planning figures, not AWS facts) -----------
JOB_MIN_SECONDS = 20 * 60
JOB_SECONDS_PER_RECORD_EPOCH = 0.6
STOP_SECONDS = 3 * 60
PT_SECONDS = 10 * 60
PT_UPDATE_SECONDS = 5 * 60
DEPLOYMENT_SECONDS = 5 * 60
# catalog.yaml quotas: "the emulator models 2" (docs/bedrock-facts.md §5: unconfirmed)
MAX_JOBS_IN_PROGRESS = 2
NO_COMMITMENT_MODEL_UNITS = 2       # docs/bedrock-facts.md §2.7 (docs): 2 MUs for no-commitment PTs per account
CHARS_PER_TOKEN = 6.0               # docs/bedrock-facts.md §5 (docs)


def _rand_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))


def _check_len(field: str, value: str, lo: int, hi: int) -> None:
    if not lo <= len(value) <= hi:
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                         f"Member must have length between {lo} and {hi}")


def _check_pattern(field: str, value: str, pattern: re.Pattern, hint: str = "") -> None:
    if not pattern.fullmatch(value):
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                         f"Member must satisfy regular expression pattern: {pattern.pattern}"
                         + (f" ({hint})" if hint else ""))


def _check_enum(field: str, value: Any, allowed: list[str]) -> None:
    if value is not None and value not in allowed:
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                         f"Member must satisfy enum value set: [{', '.join(allowed)}]")


def _check_s3_uri(field: str, uri: Any) -> tuple[str, str]:
    if not isinstance(uri, str) or not uri:
        raise validation(f"{field} is required")
    _check_len(field, uri, 1, 1024)
    _check_pattern(field, uri, S3_URI, "bucket names are lowercase; keys may use letters, digits, -!_*'(). and /")
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    return bucket, key


def _check_tags(field: str, tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, list):
        raise validation(f"{field} must be a list of {{key, value}}")
    out: dict[str, str] = {}
    for i, t in enumerate(tags):
        k, v = t.get("key"), t.get("value")
        if not isinstance(k, str) or not isinstance(v, str):
            raise validation(f"{field}[{i}] needs string 'key' and 'value' (lowercase member names)")
        _check_len(f"{field}.{i + 1}.member.key", k, 1, 128)
        _check_len(f"{field}.{i + 1}.member.value", v, 0, 256)
        _check_pattern(f"{field}.{i + 1}.member.key", k, TAG_CHARS)
        _check_pattern(f"{field}.{i + 1}.member.value", v, TAG_CHARS)
        out[k] = v
    if len(out) > MAX_TAGS_PER_RESOURCE:
        raise ApiError("TooManyTagsException", f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags")
    return out


def _parse_ts(field: str, v: str | None) -> float | None:
    if v is None:
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise validation(f"{field}: {v!r} is not an ISO-8601 timestamp") from None


def _fingerprint(params: dict) -> str:
    p = {k: v for k, v in params.items() if k != "clientRequestToken"}
    return hashlib.sha256(json.dumps(p, sort_keys=True, default=str).encode()).hexdigest()


# -- lazily imported collaborators (owner: emulator-models) --------------------------------
def _datacheck():
    from emulator import datacheck
    return datacheck


def _metricfiles():
    from emulator import metricfiles
    return metricfiles


def _standin():
    from emulator import standin
    return standin


def _eventstream():
    from emulator import eventstream
    return eventstream


def _facts():
    from emulator.facts import load_facts
    return load_facts()


@dataclass
class Request:
    """What the server hands to an operation."""
    operation: str
    region: str
    path_params: dict[str, str]
    query: dict[str, str]
    body: dict
    raw_body: bytes = b""
    headers: dict[str, str] | None = None


@dataclass
class Response:
    status: int = 200
    body: Any = None            # dict -> JSON; bytes -> raw
    headers: dict[str, str] | None = None


# -- the service ----------------------------------------------------------------------------
class BedrockService:
    MUTATING = {"CreateModelCustomizationJob", "StopModelCustomizationJob", "DeleteCustomModel",
                "CreateProvisionedModelThroughput", "UpdateProvisionedModelThroughput",
                "DeleteProvisionedModelThroughput", "CreateCustomModelDeployment", "DeleteCustomModelDeployment",
                "TagResource", "UntagResource", "PutModelInvocationLoggingConfiguration",
                "DeleteModelInvocationLoggingConfiguration"}

    def __init__(self, *, parent: BedrockBackends, region: str):
        self.parent = parent
        self.region = region
        self.account_id = parent.account_id
        self.store = parent.store
        self.moto = parent.moto
        self.ledger = parent.ledger
        self.faults = parent.faults
        self.clock = parent.clock
        self.lock = parent.lock          # one lock for the account: lifecycles, billing and saves span Regions
        self.rng = parent.rng
        self.jobs: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.pts: dict[str, dict] = {}
        self.deployments: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}     # "<op>:<token>" -> {"fingerprint", "arn"}
        self.tags: dict[str, dict[str, str]] = {}
        self.billing_done: dict[str, float] = {"training_token_epochs": 0.0}
        self.logging_config: dict | None = None    # PutModelInvocationLoggingConfiguration (one per Region)
        self._dirty = False             # state changed since the last save

    @property
    def invoke_latency_ms(self) -> float:
        return self.parent.invoke_latency_ms

    @property
    def preload_models(self) -> bool:
        return self.parent.preload_models

    # -- persistence (one Region's resources; BedrockBackends writes the file) ----------------
    def to_dict(self) -> dict:
        return {"jobs": self.jobs, "models": self.models, "pts": self.pts, "deployments": self.deployments,
                "tokens": self.tokens, "tags": self.tags, "billing_done": self.billing_done,
                "logging_config": self.logging_config}

    def load(self, d: dict) -> None:
        self.jobs, self.models = d.get("jobs", {}), d.get("models", {})
        self.pts, self.deployments = d.get("pts", {}), d.get("deployments", {})
        self.tokens, self.tags = d.get("tokens", {}), d.get("tags", {})
        self.billing_done = d.get("billing_done", {"training_token_epochs": 0.0})
        self.logging_config = d.get("logging_config")

    def save(self) -> None:
        self.parent.save()

    def standins(self):
        return self.parent.standins()

    def _warm(self, model_arn: str) -> None:
        """Index a custom stand-in in the background once it is servable, so the first invoke is not slow."""
        if ":custom-model/" not in model_arn or not self.preload_models:
            return
        reg = self.standins()
        if hasattr(reg, "warm"):
            threading.Thread(target=_quietly, args=(reg.warm, model_arn), name="standin-warm", daemon=True).start()

    # -- helpers ---------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def _iso(self, t: float) -> str:
        """A resource time on the wire: the real moment of virtual instant ``t``, never in the future (clock.py)."""
        return iso(self.clock.wall(t))

    def _arn(self, region: str, kind: str, suffix: str, account: bool = True) -> str:
        return f"arn:aws:bedrock:{region}:{self.account_id if account else ''}:{kind}/{suffix}"

    def _state(self, arn: str, rtype: str, name: str, state: str, t: float) -> None:
        self.ledger.record_state(arn, rtype=rtype, name=name, state=state, t=t)

    def _new_id(self, existing: Callable[[str], bool]) -> str:
        while True:
            i = _rand_id(self.rng)
            if not existing(i):
                return i

    def _idempotent(self, op: str, params: dict, conflict_code: str) -> str | None:
        token = params.get("clientRequestToken")
        if not token:
            return None
        _check_len("clientRequestToken", token, 1, 256)
        _check_pattern("clientRequestToken", token, TOKEN)
        seen = self.tokens.get(f"{op}:{token}")
        if seen is None:
            return None
        arn = seen["arn"]
        gone = (arn in self.pts and self.pts[arn].get("deleted")) or \
            (arn in self.deployments and self.deployments[arn].get("deleted"))
        if gone:
            # the resource this token created was deleted: a new request with the token creates a new one
            # (unconfirmed; AWS tokens also expire after a while)
            del self.tokens[f"{op}:{token}"]
            return None
        if seen["fingerprint"] != _fingerprint(params):
            # Same token, different parameters: AWS rejects the request (exact code unconfirmed; docs say
            # a repeated token is a no-op). ConflictException where the operation models it.
            raise ApiError(conflict_code, f"The clientRequestToken '{token}' was already used for a {op} request "
                                          "with different parameters. Use a new token for a different request.")
        return seen["arn"]

    def _remember_token(self, op: str, params: dict, arn: str) -> None:
        token = params.get("clientRequestToken")
        if token:
            self.tokens[f"{op}:{token}"] = {"fingerprint": _fingerprint(params), "arn": arn}

    def _paginate(self, items: list[dict], q: dict, key: str, sort_key: str = "creationTime") -> dict:
        _check_enum("sortBy", q.get("sortBy"), ["CreationTime"])
        _check_enum("sortOrder", q.get("sortOrder"), ["Ascending", "Descending"])
        items = sorted(items, key=lambda x: x["_t"], reverse=q.get("sortOrder", "Descending") == "Descending")
        max_results = int(q.get("maxResults") or 100)
        if not 1 <= max_results <= 1000:
            raise validation("maxResults must be between 1 and 1000")
        start = 0
        if q.get("nextToken"):
            try:
                start = int(base64.b64decode(q["nextToken"]).decode())
            except Exception:  # noqa: BLE001
                raise validation("Invalid nextToken") from None
        page = items[start:start + max_results]
        out: dict = {key: [{k: v for k, v in it.items() if k != "_t"} for it in page]}
        if start + max_results < len(items):
            out["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
        return out

    def _time_filter(self, t: float, after: float | None, before: float | None) -> bool:
        """Filters compare the reported (wall-clock) time with the client's: ``creationTimeBefore=now`` finds a
        job just created."""
        w = self.clock.wall(t)
        return (after is None or w > after) and (before is None or w < before)

    # -- foundation models -------------------------------------------------------------------
    def _fm_index(self) -> dict[str, dict]:
        """model id -> facts, from emulator/facts/models.yaml (customizable ids + plain ids)."""
        out: dict[str, dict] = {}
        for mid, m in _facts().models.items():
            customizable = m.customizable
            plain = mid.rsplit(":", 1)[0] if customizable and mid.count(":") >= 2 else mid
            # a base id reachable on demand only through a profile (no ON_DEMAND in its inference types)
            profile_only = not customizable and "ON_DEMAND" not in m.inferenceTypesSupported
            out[mid] = {"model": m, "customizable": customizable, "plain": plain,
                        "profile": m.inference_profile if profile_only else None}
        return out

    def _fm_summary(self, region: str, mid: str, info: dict) -> dict:
        return info["model"].wire(region, mid)

    def ListFoundationModels(self, r: Request) -> Response:
        q = r.query
        _check_enum("byCustomizationType", q.get("byCustomizationType"),
                    ["FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"])
        _check_enum("byOutputModality", q.get("byOutputModality"), ["TEXT", "IMAGE", "EMBEDDING"])
        _check_enum("byInferenceType", q.get("byInferenceType"), ["ON_DEMAND", "PROVISIONED"])
        out = []
        for mid, info in self._fm_index().items():
            s = self._fm_summary(r.region, mid, info)
            if q.get("byCustomizationType") and q["byCustomizationType"] not in s["customizationsSupported"]:
                continue
            if q.get("byProvider") and q["byProvider"].lower() != info["model"].providerName.lower():
                continue
            if q.get("byOutputModality") and q["byOutputModality"] not in s["outputModalities"]:
                continue
            if q.get("byInferenceType") and q["byInferenceType"] not in s["inferenceTypesSupported"]:
                continue
            out.append(s)
        return Response(200, {"modelSummaries": out})

    def GetFoundationModel(self, r: Request) -> Response:
        ident = r.path_params["modelIdentifier"]
        mid = ident.split("foundation-model/", 1)[1] if "foundation-model/" in ident else ident
        info = self._fm_index().get(mid)
        if info is None:
            raise ApiError("ResourceNotFoundException", f"The model {ident} does not exist.")
        return Response(200, {"modelDetails": self._fm_summary(r.region, mid, info)})

    def _resolve_base_model(self, region: str, ident: str) -> tuple[str, str, dict | None]:
        """-> (customizable base model id, foundation model ARN, source custom model or None)."""
        if ":custom-model/" in ident:
            m = self._find_model(ident)
            if m is None:
                raise ApiError("ResourceNotFoundException", f"Could not find the custom model {ident}.")
            return m["baseModelId"], m["baseModelArn"], m
        mid = ident.split("foundation-model/", 1)[1] if "foundation-model/" in ident else ident
        if mid not in self._fm_index():
            m = self._find_model(ident)     # a custom model name (continued customization)
            if m is not None:
                return m["baseModelId"], m["baseModelArn"], m
        # unknown or non-customizable ids are rejected by datacheck.check_create_request
        return mid, f"arn:aws:bedrock:{region}::foundation-model/{mid}", None

    # -- jobs -------------------------------------------------------------------------------
    def _find_job(self, ident: str) -> dict | None:
        if ident in self.jobs:
            return self.jobs[ident]
        for j in self.jobs.values():
            if j["jobName"] == ident:
                return j
        return None

    def _get_job(self, ident: str) -> dict:
        j = self._find_job(ident)
        if j is None:
            raise ApiError("ResourceNotFoundException", f"Could not find the model customization job {ident}.")
        return j

    def CreateModelCustomizationJob(self, r: Request) -> Response:
        p = r.body
        with self.lock:
            existing = self._idempotent("CreateModelCustomizationJob", p, "ConflictException")
            if existing:
                return Response(201, {"jobArn": existing})
            name, model_name = p.get("jobName", ""), p.get("customModelName", "")
            _check_len("jobName", name, 1, 63)
            _check_pattern("jobName", name, JOB_NAME, "letters, digits, '-', '+', '.'; no underscore")
            _check_len("customModelName", model_name, 1, 63)
            _check_pattern("customModelName", model_name, MODEL_NAME,
                           "alphanumerics with single '_' or '-' between; no dot")
            role_arn = p.get("roleArn", "")
            _check_len("roleArn", role_arn, 0, 2048)
            _check_pattern("roleArn", role_arn, ROLE_ARN)
            ctype = p.get("customizationType") or "FINE_TUNING"
            _check_enum("customizationType", ctype, CUSTOMIZATION_TYPES)
            if ctype == "IMPORTED":
                raise validation("customizationType IMPORTED is for imported models, not customization jobs.")
            train_uri = (p.get("trainingDataConfig") or {}).get("s3Uri")
            if not train_uri:
                raise validation("trainingDataConfig.s3Uri is required (invocation-log sources are not emulated).")
            _check_s3_uri("trainingDataConfig.s3Uri", train_uri)
            validators = ((p.get("validationDataConfig") or {}).get("validators")) or []
            if len(validators) > 10:
                raise validation("validationDataConfig.validators: at most 10 validators")  # docs/bedrock-facts.md §2.2
            for i, v in enumerate(validators):
                _check_s3_uri(f"validationDataConfig.validators.{i + 1}.s3Uri", v.get("s3Uri"))
            _check_s3_uri("outputDataConfig.s3Uri", (p.get("outputDataConfig") or {}).get("s3Uri"))
            hp = p.get("hyperParameters") or {}
            job_tags = _check_tags("jobTags", p.get("jobTags"))
            _check_tags("customModelTags", p.get("customModelTags"))
            cc = p.get("customizationConfig")
            if cc and len([k for k in cc if cc.get(k) is not None]) != 1:
                raise validation("customizationConfig must set exactly one of distillationConfig, rftConfig")
            if ctype == "DISTILLATION" and not (cc or {}).get("distillationConfig"):
                raise validation("customizationConfig.distillationConfig is required for DISTILLATION jobs")
            if ctype == "REINFORCEMENT_FINE_TUNING" and not (cc or {}).get("rftConfig"):
                raise validation("customizationConfig.rftConfig is required for REINFORCEMENT_FINE_TUNING jobs")
            base_id, base_arn, _src = self._resolve_base_model(r.region, p.get("baseModelIdentifier", ""))
            msg = _datacheck().check_create_request(base_id, ctype, dict(hp)) or \
                _datacheck().check_model_facts(base_id, ctype, r.region, cc)
            if msg:
                raise validation(msg)
            if any(j["jobName"] == name for j in self.jobs.values()):
                # AWS wording for a reused name (seen for the sibling CreateModelImportJob; exact text unconfirmed)
                raise validation(f"The provided job name is currently in use: a model customization job named "
                                 f"'{name}' already exists. Job names must be unique in the account and Region.")
            if any(m["modelName"] == model_name for m in self.models.values()) or any(
                    j["customModelName"] == model_name and j["status"] in ("InProgress", "Stopping")
                    for j in self.jobs.values()):
                raise validation(f"A custom model named '{model_name}' already exists (or is being created). "
                                 "Choose another customModelName.")
            self._advance_all()
            in_progress = sum(1 for j in self.jobs.values() if j["status"] == "InProgress")
            if in_progress >= MAX_JOBS_IN_PROGRESS:
                raise ApiError("ServiceQuotaExceededException",
                               f"You have reached the limit of {MAX_JOBS_IN_PROGRESS} model customization jobs in "
                               "progress for this account. Wait for a job to finish or stop one, then retry.")
            # The role must exist and trust Bedrock (checked synchronously: docs/bedrock-facts.md §7 - a new role is not
            # assumable instantly and job creation fails mentioning the role).
            role = self._role(role_arn)
            if role is None or not trusts_service(getattr(role, "assume_role_policy_document", None),
                                                  "bedrock.amazonaws.com"):
                why = "does not exist" if role is None else "does not trust bedrock.amazonaws.com (sts:AssumeRole)"
                raise ApiError("AccessDeniedException" if role is not None else "ValidationException",
                               f"Could not assume the provided role {role_arn}: the role {why}. Check the role's "
                               "trust policy, or wait a few seconds after creating it and retry.")

            now = self.now()
            job_id = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.jobs))
            arn = self._arn(r.region, "model-customization-job", f"{base_id}/{job_id}")
            plan = self._plan_job(role, base_id, ctype, hp, train_uri, validators)
            forced = self.faults.outcome("job_outcome", "CreateModelCustomizationJob")
            t_val = now + plan["validation_s"]
            t_proc = t_val + plan["processing_s"]
            t_end = t_proc + plan["training_s"]
            job = {
                "jobArn": arn, "jobName": name, "customModelName": model_name, "roleArn": role_arn,
                "clientRequestToken": p.get("clientRequestToken"), "baseModelId": base_id, "baseModelArn": base_arn,
                "customizationType": ctype, "hyperParameters": dict(hp),
                "trainingDataConfig": p["trainingDataConfig"],
                "validationDataConfig": {"validators": validators},
                "outputDataConfig": p["outputDataConfig"], "customizationConfig": cc, "vpcConfig": p.get("vpcConfig"),
                "customModelKmsKeyId": p.get("customModelKmsKeyId"), "customModelTags": p.get("customModelTags") or [],
                "status": "InProgress", "created": now, "lastModified": now, "endTime": None,
                "t_validation_end": t_val, "t_processing_end": t_proc, "t_end": t_end,
                "failure": plan.get("failure"), "forced": forced, "stopAt": None, "stoppedPhase": None,
                "outputModelArn": None, "n_train": plan.get("n_train", 0), "n_val": plan.get("n_val", 0),
                "train_tokens": plan.get("train_tokens", 0), "epochs": plan.get("epochs", 1),
                "trainingLoss": None, "validationLosses": None, "region": r.region,
            }
            if forced == "Failed" and not job["failure"]:
                job["failure"] = {"phase": "training", "at": t_proc + plan["training_s"] / 2,
                                  "message": "Internal error during training (injected fault). Retry the job."}
            self.jobs[arn] = job
            self.tags[arn] = job_tags
            self._state(arn, "model-customization-job", name, "InProgress", now)
            self.ledger.set_tags(arn, job_tags)
            self._remember_token("CreateModelCustomizationJob", p, arn)
        if not job["failure"] and self.preload_models:
            self._preload_embeddings()
        return Response(201, {"jobArn": arn})

    _preloading = False

    def _preload_embeddings(self) -> None:
        """A job that will succeed is usually served next: load the custom stand-in's embedding model
        in the background now (it takes seconds), not on the first invoke."""
        if BedrockService._preloading:
            return
        BedrockService._preloading = True
        st = _standin()
        fn = getattr(st, "preload", None) or getattr(st, "_model", None)
        if fn is not None:
            threading.Thread(target=_quietly, args=(fn,), name="standin-preload", daemon=True).start()

    def _role(self, role_arn: str):
        m = re.fullmatch(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/(.+)", role_arn)
        if not m or (m.group(2) and m.group(2) != self.account_id):
            return None
        return self.moto.role(m.group(3).rsplit("/", 1)[-1])

    def _can(self, role, action: str, bucket: str, key: str) -> bool:
        return policies_allow(self.moto.role_policy_documents(role), action, f"arn:aws:s3:::{bucket}/{key}")

    def _read_as_role(self, role, uri: str, what: str) -> tuple[bytes | None, str | None]:
        bucket, key = _check_s3_uri(what, uri)
        if not self._can(role, "s3:GetObject", bucket, key):
            return None, (f"Amazon Bedrock could not read the {what} at {uri}: the service role "
                          f"{role.arn} is not allowed s3:GetObject on arn:aws:s3:::{bucket}/{key}. "
                          "Add s3:GetObject on the data prefix (and s3:ListBucket on the bucket) to the role's policy.")
        try:
            return self.moto.get_object(bucket, key), None
        except S3Error as e:
            return None, (f"The {what} at {uri} could not be found ({e.code}). Check that the object exists "
                          "and the URI points to a JSONL file, not a prefix.")

    def _plan_job(self, role, base_id: str, ctype: str, hp: dict, train_uri: str, validators: list) -> dict:
        """Read the data as the role and run Bedrock's checks now; the outcome shows when the
        validation phase ends (virtual time)."""
        epochs = 1
        try:
            epochs = max(1, int(float(hp.get("epochCount", 1))))
        except ValueError:
            pass
        plan: dict = {"validation_s": 0.0, "processing_s": 0.0, "training_s": 0.0, "epochs": epochs}
        train, err = self._read_as_role(role, train_uri, "training data")
        val: bytes | None = None
        if err is None and validators:
            val, err = self._read_as_role(role, validators[0]["s3Uri"], "validation data")
        n_train = len([ln for ln in (train or b"").splitlines() if ln.strip()])
        n_val = len([ln for ln in (val or b"").splitlines() if ln.strip()])
        if err is None:
            err = _datacheck().check_job_data(base_id, ctype, train or b"", val)
        total = max(JOB_MIN_SECONDS, n_train * epochs * JOB_SECONDS_PER_RECORD_EPOCH + 10 * 60)
        plan["validation_s"] = max(120.0, 0.05 * total)
        plan["processing_s"] = max(180.0, 0.10 * total)
        plan["training_s"] = max(600.0, total - plan["validation_s"] - plan["processing_s"])
        plan.update(n_train=n_train, n_val=n_val, train_tokens=int(math.ceil(len(train or b"") / CHARS_PER_TOKEN)))
        if err:
            plan["failure"] = {"phase": "validation", "message": err[:2048]}
        return plan

    def _advance_job(self, j: dict, now: float) -> bool:
        """Move a job along its lifecycle up to ``now``. Returns True when something changed."""
        changed = False
        if j["status"] == "InProgress" and j.get("forced") == "Stuck":
            return False
        if j["status"] == "InProgress":
            f = j.get("failure")
            fail_at = None
            if f:
                fail_at = f.get("at") or j["t_validation_end"]
            if fail_at is not None and now >= fail_at:
                j.update(status="Failed", endTime=fail_at, lastModified=fail_at, failureMessage=f["message"])
                self._state(j["jobArn"], "model-customization-job", j["jobName"], "Failed", fail_at)
                return True
            if now >= j["t_end"]:
                self._complete_job(j)
                changed = True
        if j["status"] == "Stopping" and now >= j["stopAt"] + STOP_SECONDS:
            t = j["stopAt"] + STOP_SECONDS
            j.update(status="Stopped", endTime=t, lastModified=t)
            self._state(j["jobArn"], "model-customization-job", j["jobName"], "Stopped", t)
            changed = True
        return changed

    def _complete_job(self, j: dict) -> None:
        t = j["t_end"]
        out_uri = j["outputDataConfig"]["s3Uri"].rstrip("/")
        bucket, prefix = _check_s3_uri("outputDataConfig.s3Uri", out_uri)
        job_id = j["jobArn"].rsplit("/", 1)[1]
        base = f"{prefix}/" if prefix else ""
        base += f"model-customization-job-{job_id}/"   # docs/bedrock-facts.md §6
        role = self._role(j["roleArn"])
        train_key = f"{base}training_artifacts/step_wise_training_metrics.csv"
        if role is None or not self._can(role, "s3:PutObject", bucket, train_key):
            msg = (f"Amazon Bedrock could not write the job output to s3://{bucket}/{base}: the service role "
                   f"{j['roleArn']} is not allowed s3:PutObject there. "
                   "Add s3:PutObject on the output prefix to the role's policy.")
            j.update(status="Failed", endTime=t, lastModified=t, failureMessage=msg)
            self._state(j["jobArn"], "model-customization-job", j["jobName"], "Failed", t)
            return
        seed = int(hashlib.sha256(j["jobArn"].encode()).hexdigest()[:8], 16)
        train_csv, val_csv = _metricfiles().metric_csvs(j["n_train"], j["n_val"], dict(j["hyperParameters"]), seed)
        try:
            self.moto.put_object(bucket, train_key, train_csv.encode())
            if val_csv is not None:
                for key in VALIDATION_METRICS_KEYS:
                    self.moto.put_object(bucket, base + key, val_csv.encode())
        except S3Error as e:
            j.update(status="Failed", endTime=t, lastModified=t,
                     failureMessage=f"Amazon Bedrock could not write the job output to {out_uri}: {e}.")
            self._state(j["jobArn"], "model-customization-job", j["jobName"], "Failed", t)
            return
        j["trainingLoss"] = _last_loss(train_csv)
        j["validationLosses"] = [_last_loss(val_csv)] if val_csv is not None else None
        model_id = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.models))
        model_arn = self._arn(j["region"], "custom-model", f"{j['baseModelId']}/{model_id}")
        self.models[model_arn] = {
            "modelArn": model_arn, "modelName": j["customModelName"], "jobName": j["jobName"], "jobArn": j["jobArn"],
            "baseModelArn": j["baseModelArn"], "baseModelId": j["baseModelId"],
            "customizationType": j["customizationType"],
            "hyperParameters": j["hyperParameters"], "trainingDataConfig": j["trainingDataConfig"],
            "validationDataConfig": j["validationDataConfig"], "outputDataConfig": j["outputDataConfig"],
            "customizationConfig": j.get("customizationConfig"), "created": t, "modelStatus": "Active",
            "trainingLoss": j["trainingLoss"], "validationLosses": j["validationLosses"],
        }
        mtags = {tg["key"]: tg["value"] for tg in j.get("customModelTags") or []}
        self.tags[model_arn] = mtags
        self._state(model_arn, "custom-model", j["customModelName"], "Active", t)
        self.ledger.set_tags(model_arn, mtags)
        # the stand-in learns from the training data (read again from S3 as the job's role)
        train, err = self._read_as_role(role, j["trainingDataConfig"]["s3Uri"], "training data")
        try:
            self.standins().register_custom(model_arn, j["baseModelId"], train or b"")
        except Exception as e:  # noqa: BLE001 - a stand-in problem must not lose the job
            self.models[model_arn]["standinError"] = str(e)
        self.billing_done["training_token_epochs"] = self.billing_done.get("training_token_epochs", 0) + \
            j["train_tokens"] * j["epochs"]
        j.update(status="Completed", endTime=t, lastModified=t, outputModelArn=model_arn)
        self._state(j["jobArn"], "model-customization-job", j["jobName"], "Completed", t)

    def _job_status_details(self, j: dict, now: float) -> dict:
        """validation -> data processing -> training sub-statuses (docs/bedrock-facts.md §2.4)."""
        names = ["validationDetails", "dataProcessingDetails", "trainingDetails"]
        bounds = [(j["created"], j["t_validation_end"]), (j["t_validation_end"], j["t_processing_end"]),
                  (j["t_processing_end"], j["t_end"])]
        status = j["status"]
        if status == "Completed":
            current, cur_state = 3, None
        elif status == "Failed":
            phase = (j.get("failure") or {}).get("phase", "training")
            current, cur_state = (0 if phase == "validation" else 2), "Failed"
        else:
            t = j["stopAt"] if status in ("Stopping", "Stopped") else now
            current = next((i for i, (_a, b) in enumerate(bounds) if t < b), 2)
            cur_state = status if status in ("Stopping", "Stopped") else "InProgress"
        out = {}
        for i, name in enumerate(names):
            st = "Completed" if i < current else (cur_state if i == current else "NotStarted")
            d: dict = {"status": st}
            if st != "NotStarted":
                d["creationTime"] = self._iso(bounds[i][0])
                d["lastModifiedTime"] = self._iso(bounds[i][1] if st == "Completed"
                                            else (j.get("endTime") or min(now, bounds[i][1])))
            out[name] = d
        return out

    def _job_view(self, j: dict, summary: bool = False) -> dict:
        now = self.now()
        if summary:
            d = {"jobArn": j["jobArn"], "baseModelArn": j["baseModelArn"], "jobName": j["jobName"],
                 "status": j["status"], "statusDetails": self._job_status_details(j, now),
                 "lastModifiedTime": self._iso(j["lastModified"]),
                 "creationTime": self._iso(j["created"]), "customModelName": j["customModelName"],
                 "customizationType": j["customizationType"]}
            if j.get("endTime"):
                d["endTime"] = self._iso(j["endTime"])
            if j.get("outputModelArn"):
                d["customModelArn"] = j["outputModelArn"]
            return d
        d = {"jobArn": j["jobArn"], "jobName": j["jobName"], "outputModelName": j["customModelName"],
             "roleArn": j["roleArn"], "status": j["status"], "statusDetails": self._job_status_details(j, now),
             "creationTime": self._iso(j["created"]), "lastModifiedTime": self._iso(j["lastModified"]),
             "baseModelArn": j["baseModelArn"], "hyperParameters": j["hyperParameters"],
             "trainingDataConfig": j["trainingDataConfig"], "validationDataConfig": j["validationDataConfig"],
             "outputDataConfig": j["outputDataConfig"], "customizationType": j["customizationType"]}
        for k in ("clientRequestToken", "vpcConfig", "customizationConfig"):
            if j.get(k):
                d[k] = j[k]
        if j.get("failureMessage"):
            d["failureMessage"] = j["failureMessage"]
        if j.get("endTime"):
            d["endTime"] = self._iso(j["endTime"])
        if j.get("outputModelArn"):
            d["outputModelArn"] = j["outputModelArn"]
        if j.get("trainingLoss") is not None:
            d["trainingMetrics"] = {"trainingLoss": j["trainingLoss"]}
        if j.get("validationLosses"):
            d["validationMetrics"] = [{"validationLoss": v} for v in j["validationLosses"]]
        return d

    def GetModelCustomizationJob(self, r: Request) -> Response:
        with self.lock:
            j = self._get_job(r.path_params["jobIdentifier"])
            self._advance_all()
            return Response(200, self._job_view(j))

    def ListModelCustomizationJobs(self, r: Request) -> Response:
        q = r.query
        _check_enum("statusEquals", q.get("statusEquals"), JOB_STATUSES)
        after = _parse_ts("creationTimeAfter", q.get("creationTimeAfter"))
        before = _parse_ts("creationTimeBefore", q.get("creationTimeBefore"))
        with self.lock:
            self._advance_all()
            items = []
            for j in self.jobs.values():
                if q.get("statusEquals") and j["status"] != q["statusEquals"]:
                    continue
                if q.get("nameContains") and q["nameContains"] not in j["jobName"]:
                    continue
                if not self._time_filter(j["created"], after, before):
                    continue
                items.append({**self._job_view(j, summary=True), "_t": j["created"]})
            return Response(200, self._paginate(items, q, "modelCustomizationJobSummaries"))

    def StopModelCustomizationJob(self, r: Request) -> Response:
        with self.lock:
            j = self._get_job(r.path_params["jobIdentifier"])
            self._advance_all()
            if j["status"] != "InProgress":
                raise ApiError("ConflictException", f"The model customization job {j['jobName']} is {j['status']}; "
                                                    "only an InProgress job can be stopped.")
            now = self.now()
            j.update(status="Stopping", stopAt=now, lastModified=now, forced=None)
            self._state(j["jobArn"], "model-customization-job", j["jobName"], "Stopping", now)
        return Response(200, {})

    # -- custom models ------------------------------------------------------------------------
    def _find_model(self, ident: str) -> dict | None:
        if ident in self.models:
            return self.models[ident]
        for m in self.models.values():
            if m["modelName"] == ident:
                return m
        return None

    def _get_model(self, ident: str) -> dict:
        m = self._find_model(ident)
        if m is None:
            raise ApiError("ResourceNotFoundException", f"Could not find the custom model {ident}.")
        return m

    def _model_view(self, m: dict) -> dict:
        d = {k: m[k] for k in ("modelArn", "modelName", "jobName", "jobArn", "baseModelArn", "customizationType",
                               "hyperParameters", "trainingDataConfig", "validationDataConfig", "outputDataConfig")}
        d["creationTime"] = self._iso(m["created"])
        d["modelStatus"] = m["modelStatus"]
        if m.get("customizationConfig"):
            d["customizationConfig"] = m["customizationConfig"]
        if m.get("trainingLoss") is not None:
            d["trainingMetrics"] = {"trainingLoss": m["trainingLoss"]}
        if m.get("validationLosses"):
            d["validationMetrics"] = [{"validationLoss": v} for v in m["validationLosses"]]
        return d

    def GetCustomModel(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            return Response(200, self._model_view(self._get_model(r.path_params["modelIdentifier"])))

    def ListCustomModels(self, r: Request) -> Response:
        q = r.query
        _check_enum("modelStatus", q.get("modelStatus"), MODEL_STATUSES)
        after = _parse_ts("creationTimeAfter", q.get("creationTimeAfter"))
        before = _parse_ts("creationTimeBefore", q.get("creationTimeBefore"))
        with self.lock:
            self._advance_all()
            items = []
            for m in self.models.values():
                if q.get("nameContains") and q["nameContains"] not in m["modelName"]:
                    continue
                if q.get("baseModelArnEquals") and q["baseModelArnEquals"] != m["baseModelArn"]:
                    continue
                if q.get("foundationModelArnEquals") and q["foundationModelArnEquals"] != m["baseModelArn"]:
                    continue
                if q.get("modelStatus") and q["modelStatus"] != m["modelStatus"]:
                    continue
                if q.get("isOwned") == "false":
                    continue
                if not self._time_filter(m["created"], after, before):
                    continue
                items.append({"modelArn": m["modelArn"], "modelName": m["modelName"],
                              "creationTime": self._iso(m["created"]),
                              "baseModelArn": m["baseModelArn"], "baseModelName": m["baseModelId"].split(":")[0][:63],
                              "customizationType": m["customizationType"], "ownerAccountId": self.account_id,
                              "modelStatus": m["modelStatus"], "_t": m["created"]})
            return Response(200, self._paginate(items, q, "modelSummaries"))

    def DeleteCustomModel(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            m = self._get_model(r.path_params["modelIdentifier"])
            users = [p["provisionedModelName"] for p in self.pts.values()
                     if not p.get("deleted") and m["modelArn"] in (p["modelArn"], p["desiredModelArn"])]
            users += [d["modelDeploymentName"] for d in self.deployments.values()
                      if not d.get("deleted") and d["modelArn"] == m["modelArn"]]
            if users:
                # unconfirmed (docs/bedrock-facts.md §2.6): Conflict while a PT/deployment uses the model
                raise ApiError("ConflictException",
                               f"The custom model {m['modelName']} is in use by {', '.join(users)}. "
                               "Delete the provisioned throughput / deployment first.")
            del self.models[m["modelArn"]]
            self.tags.pop(m["modelArn"], None)
            self._state(m["modelArn"], "custom-model", m["modelName"], "Deleted", self.now())
        return Response(200, {})

    # -- provisioned throughput ---------------------------------------------------------------
    def _live_pts(self) -> list[dict]:
        return [p for p in self.pts.values() if not p.get("deleted")]

    def _find_pt(self, ident: str) -> dict | None:
        p = self.pts.get(ident)
        if p is not None and not p.get("deleted"):
            return p
        for p in self._live_pts():
            if p["provisionedModelName"] == ident:
                return p
        return None

    def _get_pt(self, ident: str) -> dict:
        p = self._find_pt(ident)
        if p is None:
            raise ApiError("ResourceNotFoundException", f"Could not find the provisioned model {ident}.")
        return p

    def _resolve_servable_model(self, region: str, ident: str, field: str) -> tuple[str, str, str]:
        """-> (model ARN, foundation model ARN, base model id) for a PT/deployment target."""
        m = self._find_model(ident)
        if m is not None:
            if m["modelStatus"] != "Active":
                raise validation(f"{field}: the custom model {ident} is {m['modelStatus']}, not Active.")
            return m["modelArn"], m["baseModelArn"], m["baseModelId"]
        if ":custom-model/" in ident:
            raise ApiError("ResourceNotFoundException", f"Could not find the custom model {ident}.")
        mid = ident.split("foundation-model/", 1)[1] if "foundation-model/" in ident else ident
        if mid in self._fm_index():
            arn = f"arn:aws:bedrock:{region}::foundation-model/{mid}"
            return arn, arn, mid
        raise ApiError("ResourceNotFoundException", f"Could not find the model {ident}.")

    def CreateProvisionedModelThroughput(self, r: Request) -> Response:
        p = r.body
        with self.lock:
            existing = self._idempotent("CreateProvisionedModelThroughput", p, "ValidationException")
            if existing:
                return Response(201, {"provisionedModelArn": existing})
            name = p.get("provisionedModelName", "")
            _check_len("provisionedModelName", name, 1, 63)
            _check_pattern("provisionedModelName", name, PT_NAME)
            _check_enum("commitmentDuration", p.get("commitmentDuration"), ["OneMonth", "SixMonths"])
            units = int(p.get("modelUnits", 0))
            if units < 1:
                raise validation("modelUnits must be at least 1")
            tags = _check_tags("tags", p.get("tags"))
            model_arn, fm_arn, base_id = self._resolve_servable_model(r.region, p.get("modelId", ""), "modelId")
            msg = _datacheck().check_serving_lifecycle(base_id, r.region, "pt")
            if msg:
                raise validation(msg)
            if any(x["provisionedModelName"] == name for x in self._live_pts()):
                raise validation(f"A provisioned model named '{name}' already exists. "
                                 "Choose another provisionedModelName.")
            self._advance_all()
            if p.get("commitmentDuration"):
                # docs/bedrock-facts.md §2.7: commitment model units default to 0 and need a support request
                raise ApiError("ServiceQuotaExceededException",
                               "Your account has 0 model units for Provisioned Throughput with a commitment. "
                               "Request a quota increase, or omit commitmentDuration for no commitment.")
            if units != 1:
                raise validation("Provisioned Throughput with no commitment supports 1 model unit per provisioned "
                                 f"model; got modelUnits={units}. Use modelUnits=1.")
            used = sum(x["modelUnits"] for x in self._live_pts() if not x.get("commitmentDuration")
                       and x["status"] != "Failed")
            if used + units > NO_COMMITMENT_MODEL_UNITS:
                raise ApiError("ServiceQuotaExceededException",
                               f"This request needs {units} model unit(s) but {used} of the account's "
                               f"{NO_COMMITMENT_MODEL_UNITS} no-commitment model units are in use. "
                               "Delete a provisioned throughput you no longer need, or request a quota increase.")
            now = self.now()
            pid = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.pts))
            arn = self._arn(r.region, "provisioned-model", pid)
            forced = self.faults.outcome("pt_outcome", "CreateProvisionedModelThroughput")
            self.pts[arn] = {"provisionedModelArn": arn, "provisionedModelName": name, "modelArn": model_arn,
                             "desiredModelArn": model_arn, "foundationModelArn": fm_arn, "baseModelId": base_id,
                             "modelUnits": units, "desiredModelUnits": units, "status": "Creating", "created": now,
                             "lastModified": now, "readyAt": now + PT_SECONDS, "forced": forced,
                             "commitmentDuration": p.get("commitmentDuration"), "deleted": None}
            self.tags[arn] = tags
            self._state(arn, "provisioned-model-throughput", name, "Creating", now)
            self.ledger.set_tags(arn, tags)
            self._remember_token("CreateProvisionedModelThroughput", p, arn)
        return Response(201, {"provisionedModelArn": arn})

    def _advance_pt(self, p: dict, now: float) -> bool:
        if p.get("deleted") or p["status"] not in ("Creating", "Updating") or now < p["readyAt"]:
            return False
        t = p["readyAt"]
        if p["status"] == "Creating" and p.get("forced") == "Failed":
            p.update(status="Failed", lastModified=t, failureMessage="Provisioning failed because of an internal "
                     "error (injected fault). Delete this provisioned throughput and create it again.")
        else:
            p.update(status="InService", lastModified=t, modelArn=p["desiredModelArn"])
            self._warm(p["modelArn"])
        self._state(p["provisionedModelArn"], "provisioned-model-throughput", p["provisionedModelName"], p["status"], t)
        return True

    def _pt_view(self, p: dict) -> dict:
        d = {k: p[k] for k in ("modelUnits", "desiredModelUnits", "provisionedModelName", "provisionedModelArn",
                               "modelArn", "desiredModelArn", "foundationModelArn", "status")}
        d["creationTime"] = self._iso(p["created"])
        d["lastModifiedTime"] = self._iso(p["lastModified"])
        if p.get("failureMessage"):
            d["failureMessage"] = p["failureMessage"]
        if p.get("commitmentDuration"):
            d["commitmentDuration"] = p["commitmentDuration"]
        return d

    def GetProvisionedModelThroughput(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            return Response(200, self._pt_view(self._get_pt(r.path_params["provisionedModelId"])))

    def ListProvisionedModelThroughputs(self, r: Request) -> Response:
        q = r.query
        _check_enum("statusEquals", q.get("statusEquals"), PT_STATUSES)
        after = _parse_ts("creationTimeAfter", q.get("creationTimeAfter"))
        before = _parse_ts("creationTimeBefore", q.get("creationTimeBefore"))
        with self.lock:
            self._advance_all()
            items = []
            for p in self._live_pts():
                if q.get("statusEquals") and p["status"] != q["statusEquals"]:
                    continue
                if q.get("modelArnEquals") and q["modelArnEquals"] != p["modelArn"]:
                    continue
                if q.get("nameContains") and q["nameContains"] not in p["provisionedModelName"]:
                    continue
                if not self._time_filter(p["created"], after, before):
                    continue
                items.append({**self._pt_view(p), "_t": p["created"]})
            for it in items:
                it.pop("failureMessage", None)
            return Response(200, self._paginate(items, q, "provisionedModelSummaries"))

    def UpdateProvisionedModelThroughput(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            p = self._get_pt(r.path_params["provisionedModelId"])
            b = r.body
            if p["status"] != "InService":
                raise validation(f"The provisioned model {p['provisionedModelName']} is {p['status']}; it can be "
                                 "updated only when InService.")
            now = self.now()
            if b.get("desiredProvisionedModelName"):
                nn = b["desiredProvisionedModelName"]
                _check_len("desiredProvisionedModelName", nn, 1, 63)
                _check_pattern("desiredProvisionedModelName", nn, PT_NAME)
                if any(x["provisionedModelName"] == nn and x is not p for x in self._live_pts()):
                    raise validation(f"A provisioned model named '{nn}' already exists.")
                p["provisionedModelName"] = nn
                self.ledger.resources.get(p["provisionedModelArn"], {})["name"] = nn
            if b.get("desiredModelId"):
                model_arn, fm_arn, _ = self._resolve_servable_model(r.region, b["desiredModelId"], "desiredModelId")
                if fm_arn != p["foundationModelArn"]:
                    raise validation("desiredModelId must be customized from the same base model as the current model.")
                if model_arn != p["modelArn"]:
                    p.update(desiredModelArn=model_arn, status="Updating", readyAt=now + PT_UPDATE_SECONDS)
                    self._state(p["provisionedModelArn"], "provisioned-model-throughput", p["provisionedModelName"],
                                "Updating", now)
            p["lastModified"] = now
        return Response(200, {})

    def DeleteProvisionedModelThroughput(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            p = self._get_pt(r.path_params["provisionedModelId"])
            if p.get("commitmentDuration"):
                raise ApiError("ConflictException", "A provisioned model with a commitment cannot be deleted before "
                                                    "the commitment term ends (docs/bedrock-facts.md §2.7).")
            now = self.now()
            p["deleted"] = now
            self.tags.pop(p["provisionedModelArn"], None)
            self.parent.capacity.forget(p["provisionedModelArn"])
            self._state(p["provisionedModelArn"], "provisioned-model-throughput", p["provisionedModelName"],
                        "Deleted", now)
        return Response(200, {})

    # -- custom model deployments -----------------------------------------------------------
    def _live_deployments(self) -> list[dict]:
        return [d for d in self.deployments.values() if not d.get("deleted")]

    def _find_deployment(self, ident: str) -> dict | None:
        d = self.deployments.get(ident)
        if d is not None and not d.get("deleted"):
            return d
        for d in self._live_deployments():
            if d["modelDeploymentName"] == ident:
                return d
        return None

    def _get_deployment(self, ident: str) -> dict:
        d = self._find_deployment(ident)
        if d is None:
            raise ApiError("ResourceNotFoundException", f"Could not find the custom model deployment {ident}.")
        return d

    def CreateCustomModelDeployment(self, r: Request) -> Response:
        p = r.body
        with self.lock:
            existing = self._idempotent("CreateCustomModelDeployment", p, "ValidationException")
            if existing:
                return Response(202, {"customModelDeploymentArn": existing})
            name = p.get("modelDeploymentName", "")
            _check_len("modelDeploymentName", name, 1, 63)
            _check_pattern("modelDeploymentName", name, MODEL_NAME)
            if p.get("description") is not None:
                _check_len("description", p["description"], 1, 2048)
            tags = _check_tags("tags", p.get("tags"))
            self._advance_all()
            m = self._find_model(p.get("modelArn", ""))
            if m is None or ":custom-model/" not in p.get("modelArn", ""):
                raise ApiError("ResourceNotFoundException", f"Could not find the custom model {p.get('modelArn')}.")
            if m["modelStatus"] != "Active":
                raise validation(f"The custom model {m['modelName']} is {m['modelStatus']}; it must be Active.")
            msg = _datacheck().check_serving_lifecycle(m["baseModelId"], r.region, "deployment")
            if msg:
                raise validation(msg)
            rules = _facts().rule_set(m["baseModelId"])
            od_regions = rules.on_demand_deployment_regions if rules is not None else []
            if not od_regions:
                raise validation("On-demand deployment is not supported for models customized from "
                                 f"{m['baseModelId']}. "
                                 "Use Provisioned Throughput (CreateProvisionedModelThroughput) instead.")
            if r.region not in od_regions:
                raise validation("On-demand deployment of this model is available only in "
                                 f"{', '.join(od_regions)}.")
            if any(x["modelDeploymentName"] == name for x in self._live_deployments()):
                raise validation(f"A custom model deployment named '{name}' already exists.")
            now = self.now()
            did = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.deployments))
            arn = self._arn(r.region, "custom-model-deployment", did)
            forced = self.faults.outcome("pt_outcome", "CreateCustomModelDeployment")
            self.deployments[arn] = {"customModelDeploymentArn": arn, "modelDeploymentName": name,
                                     "modelArn": m["modelArn"], "baseModelId": m["baseModelId"],
                                     "description": p.get("description"), "status": "Creating", "created": now,
                                     "lastUpdated": now, "readyAt": now + DEPLOYMENT_SECONDS, "forced": forced,
                                     "deleted": None}
            self.tags[arn] = tags
            self._state(arn, "custom-model-deployment", name, "Creating", now)
            self.ledger.set_tags(arn, tags)
            self._remember_token("CreateCustomModelDeployment", p, arn)
        return Response(202, {"customModelDeploymentArn": arn})

    def _advance_deployment(self, d: dict, now: float) -> bool:
        if d.get("deleted") or d["status"] != "Creating" or now < d["readyAt"]:
            return False
        t = d["readyAt"]
        if d.get("forced") == "Failed":
            d.update(status="Failed", lastUpdated=t, failureMessage="Deployment failed because of an internal error "
                     "(injected fault). Delete the deployment and create it again.")
        else:
            d.update(status="Active", lastUpdated=t)
            self._warm(d["modelArn"])
        self._state(d["customModelDeploymentArn"], "custom-model-deployment", d["modelDeploymentName"], d["status"], t)
        return True

    def GetCustomModelDeployment(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            d = self._get_deployment(r.path_params["customModelDeploymentIdentifier"])
            out = {"customModelDeploymentArn": d["customModelDeploymentArn"],
                   "modelDeploymentName": d["modelDeploymentName"],
                   "modelArn": d["modelArn"], "createdAt": self._iso(d["created"]), "status": d["status"],
                   "lastUpdatedAt": self._iso(d["lastUpdated"])}
            if d.get("description"):
                out["description"] = d["description"]
            if d.get("failureMessage"):
                out["failureMessage"] = d["failureMessage"]
            return Response(200, out)

    def ListCustomModelDeployments(self, r: Request) -> Response:
        q = r.query
        _check_enum("statusEquals", q.get("statusEquals"), DEPLOYMENT_STATUSES)
        after = _parse_ts("createdAfter", q.get("createdAfter"))
        before = _parse_ts("createdBefore", q.get("createdBefore"))
        with self.lock:
            self._advance_all()
            items = []
            for d in self._live_deployments():
                if q.get("statusEquals") and d["status"] != q["statusEquals"]:
                    continue
                if q.get("modelArnEquals") and q["modelArnEquals"] != d["modelArn"]:
                    continue
                if q.get("nameContains") and q["nameContains"] not in d["modelDeploymentName"]:
                    continue
                if not self._time_filter(d["created"], after, before):
                    continue
                it = {"customModelDeploymentArn": d["customModelDeploymentArn"],
                      # docs/bedrock-facts.md §2.8: list uses this name
                      "customModelDeploymentName": d["modelDeploymentName"],
                      "modelArn": d["modelArn"], "createdAt": self._iso(d["created"]), "status": d["status"],
                      "lastUpdatedAt": self._iso(d["lastUpdated"]), "_t": d["created"]}
                if d.get("failureMessage"):
                    it["failureMessage"] = d["failureMessage"]
                items.append(it)
            return Response(200, self._paginate(items, q, "modelDeploymentSummaries"))

    def DeleteCustomModelDeployment(self, r: Request) -> Response:
        with self.lock:
            self._advance_all()
            d = self._get_deployment(r.path_params["customModelDeploymentIdentifier"])
            now = self.now()
            d["deleted"] = now
            self.tags.pop(d["customModelDeploymentArn"], None)
            self._state(d["customModelDeploymentArn"], "custom-model-deployment", d["modelDeploymentName"],
                        "Deleted", now)
        return Response(200, {})

    # -- tags ---------------------------------------------------------------------------------
    def _taggable(self, arn: str) -> str:
        if not isinstance(arn, str) or not arn:
            raise validation("resourceARN is required")
        _check_len("resourceARN", arn, 20, 1011)
        live = (arn in self.jobs or arn in self.models or (arn in self.pts and not self.pts[arn].get("deleted"))
                or (arn in self.deployments and not self.deployments[arn].get("deleted")))
        if not live:
            raise ApiError("ResourceNotFoundException", f"The resource {arn} was not found.")
        return arn

    def TagResource(self, r: Request) -> Response:
        with self.lock:
            arn = self._taggable(r.body.get("resourceARN"))
            new = _check_tags("tags", r.body.get("tags"))
            merged = {**self.tags.get(arn, {}), **new}
            if len(merged) > MAX_TAGS_PER_RESOURCE:
                raise ApiError("TooManyTagsException", f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; "
                                                       f"{arn} would have {len(merged)}.")
            self.tags[arn] = merged
            self.ledger.set_tags(arn, merged)
        return Response(200, {})

    def UntagResource(self, r: Request) -> Response:
        with self.lock:
            arn = self._taggable(r.body.get("resourceARN"))
            keys = r.body.get("tagKeys") or []
            self.tags[arn] = {k: v for k, v in self.tags.get(arn, {}).items() if k not in keys}
            self.ledger.set_tags(arn, self.tags[arn])
        return Response(200, {})

    def ListTagsForResource(self, r: Request) -> Response:
        with self.lock:
            arn = self._taggable(r.body.get("resourceARN"))
            return Response(200, {"tags": [{"key": k, "value": v} for k, v in self.tags.get(arn, {}).items()]})

    # -- runtime ------------------------------------------------------------------------------
    def _invoke_target(self, model_id: str, admit: bool = True) -> tuple[str, str, str, Any]:
        """-> (kind "base"|"custom", id for the stand-in, base model id for the body shape, the PT's token bucket
        or None). A PT whose bucket is empty answers ThrottlingException (emulator/capacity.py)."""
        with self.lock:
            self._advance_all()
            if ":provisioned-model/" in model_id or self._find_pt(model_id) is not None:
                p = self._find_pt(model_id)
                if p is None:
                    raise ApiError("ResourceNotFoundException", f"The provisioned model {model_id} was not found.")
                if p["status"] not in ("InService", "Updating"):
                    raise validation(f"The provisioned model {p['provisionedModelName']} is {p['status']}, not "
                                     "InService. Wait until it is InService before invoking it.")
                kind = "custom" if ":custom-model/" in p["modelArn"] else "base"
                meter = self.parent.capacity.bucket(p["provisionedModelArn"], p["modelUnits"])
                if admit and meter is not None and not meter.admit():
                    # AWS wording for a PT over its capacity (prov-throughput.html: capacity is tokens per minute)
                    raise ApiError("ThrottlingException", "Too many tokens, please wait before trying again. "
                                   f"The provisioned model {p['provisionedModelName']} serves "
                                   f"{self.parent.capacity.tokens_per_minute * p['modelUnits']:g} tokens per minute "
                                   f"({p['modelUnits']} model unit(s)); retry in "
                                   f"{meter.retry_after_s():.2f} s.")
                return kind, p["modelArn"] if kind == "custom" else p["baseModelId"], p["baseModelId"], meter
            if ":custom-model-deployment/" in model_id:
                d = self._find_deployment(model_id)
                if d is None:
                    raise ApiError("ResourceNotFoundException",
                                   f"The custom model deployment {model_id} was not found.")
                if d["status"] != "Active":
                    raise validation(f"The custom model deployment {d['modelDeploymentName']} is {d['status']}, not "
                                     "Active. Wait until it is Active before invoking it.")
                return "custom", d["modelArn"], d["baseModelId"], None
            if ":custom-model/" in model_id or self._find_model(model_id) is not None:
                # docs/bedrock-facts.md §3: the custom model ARN itself is not an on-demand target
                raise validation("Invocation of a custom model by its model ARN isn't supported. Invoke it through a "
                                 "Provisioned Throughput ARN (CreateProvisionedModelThroughput) or a custom model "
                                 "deployment ARN (CreateCustomModelDeployment).")
        mid = model_id.split("foundation-model/", 1)[1] if "foundation-model/" in model_id else model_id
        if ":inference-profile/" in mid:
            mid = mid.split(":inference-profile/", 1)[1]
        idx = self._fm_index()
        profile = None
        for geo in GEO_PREFIXES:
            if mid.startswith(geo):
                profile, mid = mid, mid[len(geo):]
                break
        info = idx.get(mid)
        if info is None:
            raise validation(f"The provided model identifier is invalid: {model_id}.")
        if profile is None and info.get("profile"):
            # Nova-style models are served on demand only through an inference profile (AWS wording)
            raise validation(f"Invocation of model ID {mid} with on-demand throughput isn't supported. Retry your "
                             f"request with the ID or ARN of an inference profile that contains this model "
                             f"(e.g. {info['profile']}).")
        if info["customizable"]:
            raise validation(f"The model {mid} is a customization variant; invoke it through Provisioned Throughput.")
        return "base", profile or mid, _base_for_plain(idx, mid), None

    def _invoke_answer(self, r: Request) -> dict:
        """InvokeModel's work up to the answer (shared with InvokeModelWithResponseStream)."""
        model_id = r.path_params["modelId"]
        t0 = time.time()
        kind, target, base_id, meter = self._invoke_target(model_id)
        st = _standin()
        shape = st.invoke_shape_of(base_id)
        try:
            body = json.loads(r.raw_body or b"{}")
        except json.JSONDecodeError as e:
            raise validation("Malformed input request: the body is not valid JSON "
                             f"({e.msg} at char {e.pos}).") from None
        if not isinstance(body, dict):
            raise validation("Malformed input request: the body must be a JSON object.")
        try:
            system, prompt, max_tokens = st.parse_invoke_body(shape, body)
        except ValueError as e:
            raise validation(f"Malformed input request: {e}") from None
        a = self.standins().answer_full(kind, target, system, prompt, max_tokens)
        if meter is not None:
            meter.charge(a.input_tokens + a.output_tokens)
        if self.invoke_latency_ms > 0:
            time.sleep(self.invoke_latency_ms / 1000.0)
        return {"kind": kind, "shape": shape, "text": a.text, "tin": a.input_tokens, "tout": a.output_tokens,
                "truncated": a.truncated, "ms": int((time.time() - t0) * 1000)}

    def InvokeModel(self, r: Request) -> Response:
        a = self._invoke_answer(r)
        out = _standin().format_invoke_response(a["shape"], a["text"], a["tin"], a["tout"])
        return Response(200, json.dumps(out).encode(), {
            "Content-Type": "application/json", "X-Amzn-Bedrock-Input-Token-Count": str(a["tin"]),
            "X-Amzn-Bedrock-Output-Token-Count": str(a["tout"]),
            "X-Emulator-Stand-In": f"{a['kind']} stand-in model (bedrock-forge emulator), not a real model"})

    def InvokeModelWithResponseStream(self, r: Request) -> Response:
        """The InvokeModel answer as an event stream of ``chunk`` events, each ``{"bytes": <the family's streamed
        JSON>}`` (emulator/eventstream.py). Errors before the first byte (an unknown model, a bad body, a PT over
        its capacity) are ordinary error responses, as for InvokeModel."""
        a = self._invoke_answer(r)
        data = _eventstream().invoke_stream(a["shape"], a["text"], a["tin"], a["tout"], truncated=a["truncated"],
                                            latency_ms=a["ms"])
        return Response(200, data, {
            "Content-Type": _eventstream().CONTENT_TYPE, "X-Amzn-Bedrock-Content-Type": "application/json",
            "X-Emulator-Stand-In": f"{a['kind']} stand-in model (bedrock-forge emulator), not a real model"})

    def _converse_answer(self, r: Request) -> dict:
        """Converse's work up to the answer (shared with ConverseStream)."""
        model_id = r.path_params["modelId"]
        b = r.body
        msgs = b.get("messages") or []
        if not msgs:
            raise validation("A conversation must start with a user message (messages is empty).")
        if msgs[-1].get("role") != "user":
            raise validation("A conversation must end with a user message.")
        if msgs[0].get("role") != "user":
            raise validation("A conversation must start with a user message.")
        prompt = "\n".join(c.get("text", "") for c in msgs[-1].get("content", []) if isinstance(c, dict))
        system = "\n".join(s.get("text", "") for s in (b.get("system") or [])
                           if isinstance(s, dict) and s.get("text")) or None
        ic = b.get("inferenceConfig") or {}
        for k in ("temperature", "topP"):
            if k in ic and not 0 <= float(ic[k]) <= 1:
                raise validation(f"inferenceConfig.{k} must be between 0 and 1")
        max_tokens = int(ic.get("maxTokens") or 512)
        t0 = time.time()
        kind, target, _base, meter = self._invoke_target(model_id)
        text, tin, tout = self.standins().answer(kind, target, system, prompt, max_tokens)
        if meter is not None:
            meter.charge(tin + tout)
        if self.invoke_latency_ms > 0:
            time.sleep(self.invoke_latency_ms / 1000.0)
        return {"kind": kind, "text": text, "tin": tin, "tout": tout,
                "stop": "max_tokens" if tout >= max_tokens else "end_turn", "ms": int((time.time() - t0) * 1000)}

    def Converse(self, r: Request) -> Response:
        a = self._converse_answer(r)
        return Response(200, {
            "output": {"message": {"role": "assistant", "content": [{"text": a["text"]}]}},
            "stopReason": a["stop"],
            "usage": {"inputTokens": a["tin"], "outputTokens": a["tout"], "totalTokens": a["tin"] + a["tout"]},
            "metrics": {"latencyMs": a["ms"]},
            "additionalModelResponseFields": {"standIn": f"{a['kind']} stand-in model (bedrock-forge emulator)"},
        })

    def ConverseStream(self, r: Request) -> Response:
        """The Converse answer as an event stream: messageStart, contentBlockDelta..., contentBlockStop,
        messageStop, metadata (emulator/eventstream.py)."""
        a = self._converse_answer(r)
        data = _eventstream().converse_stream(
            a["text"], a["tin"], a["tout"], stop_reason=a["stop"], latency_ms=a["ms"],
            additional={"standIn": f"{a['kind']} stand-in model (bedrock-forge emulator)"})
        return Response(200, data, {"Content-Type": _eventstream().CONTENT_TYPE})

    def CountTokens(self, r: Request) -> Response:
        """Input tokens an InvokeModel body or a Converse request would use (the stand-in's estimate:
        characters / CHARS_PER_TOKEN of the prompt and system text). Not metered by a PT's capacity."""
        inp = r.body.get("input")
        if not isinstance(inp, dict) or len([k for k in inp if inp.get(k) is not None]) != 1:
            raise validation("input must set exactly one of invokeModel, converse")
        kind, target, base_id, _meter = self._invoke_target(r.path_params["modelId"], admit=False)
        st = _standin()
        if inp.get("invokeModel") is not None:
            raw = (inp["invokeModel"] or {}).get("body")
            try:
                body = json.loads(base64.b64decode(raw)) if isinstance(raw, str) else None
            except (ValueError, json.JSONDecodeError):
                body = None
            if not isinstance(body, dict):
                raise validation("input.invokeModel.body must be a JSON object (base64 on the wire).")
            try:
                system, prompt, _max = st.parse_invoke_body(st.invoke_shape_of(base_id), body)
            except ValueError as e:
                raise validation(f"Malformed input request: {e}") from None
        else:
            conv = inp["converse"] or {}
            msgs = conv.get("messages") or []
            if not msgs:
                raise validation("input.converse.messages must not be empty.")
            prompt = "\n".join(c.get("text", "") for m in msgs for c in m.get("content", []) if isinstance(c, dict))
            system = "\n".join(x.get("text", "") for x in (conv.get("system") or []) if isinstance(x, dict))
        n = st.approx_tokens(prompt) + (st.approx_tokens(system) if system else 0)
        return Response(200, {"inputTokens": max(1, n)})

    # -- model invocation logging (one configuration per account and Region) -----------------
    def PutModelInvocationLoggingConfiguration(self, r: Request) -> Response:
        cfg = r.body.get("loggingConfig")
        if not isinstance(cfg, dict):
            raise validation("loggingConfig is required")
        s3, cw = cfg.get("s3Config"), cfg.get("cloudWatchConfig")
        if not s3 and not cw:
            raise validation("loggingConfig needs a destination: s3Config and/or cloudWatchConfig.")
        if s3:
            bucket = s3.get("bucketName") or ""
            _check_len("loggingConfig.s3Config.bucketName", bucket, 3, 63)
            try:
                self.moto.get_object(bucket, "\0probe")
            except S3Error as e:
                if e.code == "NoSuchBucket":
                    raise validation(f"Failed to validate the S3 bucket {bucket}: the bucket does not exist in "
                                     "this account. Create it (with a policy letting bedrock.amazonaws.com "
                                     "PutObject) first.") from None
            _check_len("loggingConfig.s3Config.keyPrefix", s3.get("keyPrefix") or "", 0, 1024)
        if cw:
            _check_len("loggingConfig.cloudWatchConfig.logGroupName", cw.get("logGroupName") or "", 1, 512)
            _check_pattern("loggingConfig.cloudWatchConfig.roleArn", cw.get("roleArn") or "", ROLE_ARN)
        with self.lock:
            self.logging_config = cfg
        return Response(200, {})

    def GetModelInvocationLoggingConfiguration(self, r: Request) -> Response:
        with self.lock:
            return Response(200, {"loggingConfig": self.logging_config} if self.logging_config else {})

    def DeleteModelInvocationLoggingConfiguration(self, r: Request) -> Response:
        with self.lock:
            self.logging_config = None
        return Response(200, {})

    # -- lifecycle sweep + billing ---------------------------------------------------------
    def _advance_all(self) -> bool:
        now = self.now()
        changed = False
        for j in list(self.jobs.values()):
            changed |= self._advance_job(j, now)
        for p in list(self.pts.values()):
            changed |= self._advance_pt(p, now)
        for d in list(self.deployments.values()):
            changed |= self._advance_deployment(d, now)
        if changed:
            self._dirty = True
        return changed

    def billing_seconds(self) -> tuple[float, float, float]:
        """(PT model-unit seconds, deployment seconds, training token-epochs) of this Region (virtual time)."""
        now = self.now()
        # from the create call to the delete call; a PT/deployment that failed to provision is not billed
        pt = sum(p["modelUnits"] * max(0.0, (p.get("deleted") or now) - p["created"])
                 for p in self.pts.values() if p["status"] != "Failed")
        dep = sum(max(0.0, (d.get("deleted") or now) - d["created"])
                  for d in self.deployments.values() if d["status"] != "Failed")
        return pt, dep, float(self.billing_done.get("training_token_epochs", 0))


def _region_of(arn: str, default: str = "us-east-1") -> str:
    parts = arn.split(":")
    return parts[3] if arn.startswith("arn:") and len(parts) > 3 and parts[3] else default


class BedrockBackends:
    """One :class:`BedrockService` per (account, Region), as moto's ``BackendDict``: a us-west-2 job is not
    listed, fetched or name-clashed in us-east-1, and quotas count per Region. Shared by every Region: the
    account's S3/IAM (moto), the ledger, faults, the virtual clock, the stand-in models and the state file."""

    def __init__(self, *, account_id: str, store: StateStore, moto: MotoAccount, ledger: Ledger,
                 faults: Faults, clock: VirtualClock, invoke_latency_ms: float = 5.0, seed: int | None = None,
                 pt_tokens_per_minute: float | None = None, pt_burst_seconds: float | None = None):
        self.account_id = account_id
        cap = _facts().pt_capacity
        self.capacity = Capacity(cap.tokens_per_minute_per_model_unit if pt_tokens_per_minute is None
                                 else pt_tokens_per_minute,
                                 cap.burst_seconds if pt_burst_seconds is None else pt_burst_seconds)
        self.store = store
        self.moto = moto
        self.ledger = ledger
        self.faults = faults
        self.clock = clock
        self.invoke_latency_ms = invoke_latency_ms
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.backends: dict[tuple[str, str], BedrockService] = {}
        self._standins = None
        self.preload_models = False     # set by the standalone server (serve()); off in-process
        self._dirty = False             # state changed since the last save

    def __getitem__(self, region: str) -> BedrockService:
        key = (self.account_id, region)
        with self.lock:
            b = self.backends.get(key)
            if b is None:
                b = self.backends[key] = BedrockService(parent=self, region=region)
            return b

    def regions(self) -> list[BedrockService]:
        with self.lock:
            return list(self.backends.values())

    def now(self) -> float:
        return self.clock.now()

    def standins(self):
        if self._standins is None:
            self._standins = _standin().StandInRegistry(self.store.dir)
        return self._standins

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        with self.lock:
            return {"version": 2, "account_id": self.account_id, "clock": self.clock.to_dict(),
                    "regions": {region: b.to_dict() for (_acct, region), b in self.backends.items()},
                    "ledger": self.ledger.to_dict()}

    def load(self, d: dict) -> None:
        with self.lock:
            self.backends = {}
            regions = d.get("regions")
            if regions is None:          # version 1: one flat set of resources; split by the ARNs' Region
                regions = _split_v1(d)
            for region, rd in regions.items():
                self[region].load(rd)
            self.ledger.load(d.get("ledger", {}))

    def save(self) -> None:
        data = self.to_dict()
        self.store.save_bedrock(data)

    def reset(self) -> None:
        with self.lock:
            self.backends = {}
            self.ledger.clear()
            self.capacity.clear()
            self._standins = None

    # -- lifecycle sweep + billing ---------------------------------------------------------
    def advance_and_save(self) -> None:
        with self.lock:
            changed = [b._advance_all() for b in self.regions()]
            dirty = self._dirty or any(b._dirty for b in self.regions())
            if any(changed) or dirty:
                self._dirty = False
                for b in self.regions():
                    b._dirty = False
                self.save()

    def billing(self) -> dict:
        with self.lock:
            pt = dep = tok = 0.0
            for b in self.regions():
                b._advance_all()
                x, y, z = b.billing_seconds()
                pt, dep, tok = pt + x, dep + y, tok + z
            return {"pt_model_unit_seconds": round(pt, 3), "deployment_seconds": round(dep, 3),
                    "training_token_epochs": int(tok)}


def _split_v1(d: dict) -> dict[str, dict]:
    """A version-1 state file (one Region-less set) -> {region: resources}, by each resource's ARN."""
    out: dict[str, dict] = {}

    def part(region: str) -> dict:
        return out.setdefault(region, {"jobs": {}, "models": {}, "pts": {}, "deployments": {}, "tokens": {},
                                       "tags": {}, "billing_done": {"training_token_epochs": 0.0}})
    for kind in ("jobs", "models", "pts", "deployments"):
        for arn, v in (d.get(kind) or {}).items():
            part(_region_of(arn))[kind][arn] = v
    for k, v in (d.get("tokens") or {}).items():
        part(_region_of(v.get("arn", "")))["tokens"][k] = v
    for arn, v in (d.get("tags") or {}).items():
        part(_region_of(arn))["tags"][arn] = v
    part("us-east-1")["billing_done"] = d.get("billing_done") or {"training_token_epochs": 0.0}
    return out


def _quietly(fn: Callable, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - warming is an optimisation; answer() reports real problems
        pass


GEO_PREFIXES = ("us.", "eu.", "apac.", "global.")   # cross-Region inference profile ids (docs/bedrock-facts.md §3)
# Where readers look for the validation metrics (the real path is unconfirmed, so every known one is written, the
# same file): docs/bedrock-facts.md §6 and this project's reader; AWS's Nova and Llama fine-tuning sample notebooks
# (.../validation/validation_metrics.csv and validation_artifacts/validation_metrics.csv). docs/emulator.md.
VALIDATION_METRICS_KEYS = ("validation_artifacts/post_fine_tuning_validation/validation_metrics.csv",
                           "validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv",
                           "validation_artifacts/validation_metrics.csv")


def _base_for_plain(idx: dict, mid: str) -> str:
    """The customizable variant of a base id (emulator/facts/models.yaml ``customizable_variant``), else the id."""
    info = idx.get(mid)
    return (info["model"].customizable_variant if info else None) or mid


def _last_loss(csv_text: str | None) -> float | None:
    if not csv_text:
        return None
    lines = [ln for ln in csv_text.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    header = lines[0].split(",")
    col = next((i for i, h in enumerate(header) if h.strip().endswith("_loss")), None)
    if col is None:
        return None
    try:
        return round(float(lines[-1].split(",")[col]), 6)
    except (ValueError, IndexError):
        return None
