"""Bedrock's behaviour: one :class:`BedrockBackend` per account and Region (kept by :class:`BedrockBackends`, as
moto's ``BackendDict``), holding that Region's resources (emulator/bedrock/models.py) and applying what AWS applies
on each operation: name clashes, quotas, idempotency tokens, the service role's access, the emulator's own facts
(emulator/facts/*.yaml via emulator/datacheck.py), lifecycles, billing. Requests arrive parsed and syntax-checked
(emulator/bedrock/responses.py); answers leave as resources or plain values, which responses.py serializes.

Sources of the behaviour: docs/bedrock-facts.md (cited by section) and docs/emulator.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from emulator.bedrock.exceptions import (
    ApiError,
    ConflictException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    TooManyTagsException,
    ValidationException,
    validation,
)
from emulator.bedrock.limits import parse_s3_uri
from emulator.bedrock.models import (
    DEPLOYMENT_SECONDS,
    JOB_MIN_SECONDS,
    JOB_SECONDS_PER_RECORD_EPOCH,
    PT_SECONDS,
    PT_UPDATE_SECONDS,
    CustomizationJob,
    CustomModel,
    CustomModelDeployment,
    ProvisionedThroughput,
    ServingResource,
)
from emulator.capacity import Capacity
from emulator.clock import VirtualClock
from emulator.faults import Faults
from emulator.ledger import Ledger, iso
from emulator.state import MotoAccount, S3Error, StateStore, policies_allow, trusts_service

MAX_TAGS_PER_RESOURCE = 50   # TooManyTagsException text (docs/bedrock-facts.md §2.9)
# catalog.yaml quotas: "the emulator models 2" (docs/bedrock-facts.md §5: unconfirmed)
MAX_JOBS_IN_PROGRESS = 2
NO_COMMITMENT_MODEL_UNITS = 2       # docs/bedrock-facts.md §2.7 (docs): 2 MUs for no-commitment PTs per account
CONTINUABLE_TYPES = ("FINE_TUNING", "CONTINUED_PRE_TRAINING")   # the types whose job may start from a custom model
CHARS_PER_TOKEN = 6.0               # docs/bedrock-facts.md §5 (docs)
GEO_PREFIXES = ("us.", "eu.", "apac.", "global.")   # cross-Region inference profile ids (docs/bedrock-facts.md §3)
# Where readers look for the validation metrics (the real path is unconfirmed, so every known one is written, the
# same file): docs/bedrock-facts.md §6 and this project's reader; AWS's Nova and Llama fine-tuning sample notebooks
# (.../validation/validation_metrics.csv and validation_artifacts/validation_metrics.csv). docs/emulator.md.
VALIDATION_METRICS_KEYS = ("validation_artifacts/post_fine_tuning_validation/validation_metrics.csv",
                           "validation_artifacts/post_fine_tuning_validation/validation/validation_metrics.csv",
                           "validation_artifacts/validation_metrics.csv")

R = TypeVar("R")
S = TypeVar("S", bound=ServingResource)


def _rand_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))


def _fingerprint(params: dict) -> str:
    p = {k: v for k, v in params.items() if k != "clientRequestToken"}
    return hashlib.sha256(json.dumps(p, sort_keys=True, default=str).encode()).hexdigest()


# -- lazily imported collaborators --------------------------------------------------------------
def _datacheck():
    from emulator import datacheck
    return datacheck


def _metricfiles():
    from emulator import metricfiles
    return metricfiles


def _standin():
    from emulator import standin
    return standin


def _facts():
    from emulator.facts import load_facts
    return load_facts()


def _quietly(fn: Callable, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - warming is an optimisation; answer() reports real problems
        pass


def _find_live(table: dict[str, S], ident: str) -> S | None:
    """A live PT / deployment by ARN, else by name."""
    r = table.get(ident)
    if r is not None and r.live:
        return r
    return next((r for r in table.values() if r.live and getattr(r, r.NAME_FIELD) == ident), None)


def _fm_id(ident: str) -> str:
    return ident.split("foundation-model/", 1)[1] if "foundation-model/" in ident else ident


class BedrockBackend:
    """One account's Bedrock in one Region."""

    _preloading = False

    def __init__(self, *, parent: BedrockBackends, region: str):
        self.parent = parent
        self.region = region
        self.account_id = parent.account_id
        self.moto = parent.moto
        self.ledger = parent.ledger
        self.faults = parent.faults
        self.clock = parent.clock
        self.lock = parent.lock          # one lock for the account: lifecycles, billing and saves span Regions
        self.rng = parent.rng
        self.jobs: dict[str, CustomizationJob] = {}
        self.models: dict[str, CustomModel] = {}
        self.pts: dict[str, ProvisionedThroughput] = {}
        self.deployments: dict[str, CustomModelDeployment] = {}
        self.tokens: dict[str, dict] = {}     # "<op>:<token>" -> {"fingerprint", "arn"}
        self.tags: dict[str, dict[str, str]] = {}
        self.billing_done: dict[str, float] = {"training_token_epochs": 0.0}
        self.logging_config: dict | None = None    # PutModelInvocationLoggingConfiguration (one per Region)
        self._dirty = False             # state changed since the last save

    # -- persistence (one Region's resources; BedrockBackends writes the file) ----------------
    def to_dict(self) -> dict:
        return {"jobs": {k: v.to_dict() for k, v in self.jobs.items()},
                "models": {k: v.to_dict() for k, v in self.models.items()},
                "pts": {k: v.to_dict() for k, v in self.pts.items()},
                "deployments": {k: v.to_dict() for k, v in self.deployments.items()},
                "tokens": self.tokens, "tags": self.tags, "billing_done": self.billing_done,
                "logging_config": self.logging_config}

    def load(self, d: dict) -> None:
        self.jobs = {k: CustomizationJob.from_dict(v) for k, v in (d.get("jobs") or {}).items()}
        self.models = {k: CustomModel.from_dict(v) for k, v in (d.get("models") or {}).items()}
        self.pts = {k: ProvisionedThroughput.from_dict(v) for k, v in (d.get("pts") or {}).items()}
        self.deployments = {k: CustomModelDeployment.from_dict(v) for k, v in (d.get("deployments") or {}).items()}
        self.tokens, self.tags = d.get("tokens", {}), d.get("tags", {})
        self.billing_done = d.get("billing_done", {"training_token_epochs": 0.0})
        self.logging_config = d.get("logging_config")

    # -- helpers ---------------------------------------------------------------------------
    @property
    def invoke_latency_ms(self) -> float:
        return self.parent.invoke_latency_ms

    @property
    def preload_models(self) -> bool:
        return self.parent.preload_models

    def standins(self):
        return self.parent.standins()

    def now(self) -> float:
        return self.clock.now()

    def iso(self, t: float) -> str:
        """A resource time on the wire: the real moment of virtual instant ``t``, never in the future (clock.py)."""
        return iso(self.clock.wall(t))

    def wall(self, t: float) -> float:
        return self.clock.wall(t)

    def _arn(self, kind: str, suffix: str) -> str:
        return f"arn:aws:bedrock:{self.region}:{self.account_id}:{kind}/{suffix}"

    def record(self, arn: str, rtype: str, name: str, state: str, t: float) -> None:
        self.ledger.record_state(arn, rtype=rtype, name=name, state=state, t=t)

    def _new_id(self, existing: Callable[[str], bool]) -> str:
        while True:
            i = _rand_id(self.rng)
            if not existing(i):
                return i

    def _warm(self, model_arn: str) -> None:
        """Index a custom stand-in in the background once it is servable, so the first invoke is not slow."""
        if ":custom-model/" not in model_arn or not self.preload_models:
            return
        reg = self.standins()
        if hasattr(reg, "warm"):
            threading.Thread(target=_quietly, args=(reg.warm, model_arn), name="standin-warm", daemon=True).start()

    def idempotent(self, op: str, params: dict, conflict: type[ApiError]) -> str | None:
        """The ARN a repeated ``clientRequestToken`` created, or None for a new request."""
        token = params.get("clientRequestToken")
        if not token:
            return None
        seen = self.tokens.get(f"{op}:{token}")
        if seen is None:
            return None
        arn = seen["arn"]
        gone = (arn in self.pts and self.pts[arn].deleted) or \
            (arn in self.deployments and self.deployments[arn].deleted)
        if gone:
            # the resource this token created was deleted: a new request with the token creates a new one
            # (unconfirmed; AWS tokens also expire after a while)
            del self.tokens[f"{op}:{token}"]
            return None
        if seen["fingerprint"] != _fingerprint(params):
            # Same token, different parameters: AWS rejects the request (exact code unconfirmed; docs say
            # a repeated token is a no-op). ConflictException where the operation models it.
            raise conflict(f"The clientRequestToken '{token}' was already used for a {op} request "
                           "with different parameters. Use a new token for a different request.")
        return arn

    def _remember_token(self, op: str, params: dict, arn: str) -> None:
        token = params.get("clientRequestToken")
        if token:
            self.tokens[f"{op}:{token}"] = {"fingerprint": _fingerprint(params), "arn": arn}

    def _get(self, find: Callable[[str], R | None], ident: str, what: str) -> R:
        """``find(ident)`` once the lifecycles have caught up with now; ResourceNotFound naming ``what`` if none."""
        with self.lock:
            self.advance_all()
            found = find(ident)
            if found is None:
                raise ResourceNotFoundException(f"Could not find the {what} {ident}.")
            return found

    def _list_live(self, table: dict[str, S], status: str | None, model_arn: str | None, name_contains: str | None,
                   after: float | None, before: float | None) -> list[S]:
        """The live PTs / deployments a List call's filters keep."""
        with self.lock:
            self.advance_all()
            return [r for r in table.values() if r.live
                    and (not status or r.status == status) and (not model_arn or model_arn == r.modelArn)
                    and (not name_contains or name_contains in getattr(r, r.NAME_FIELD))
                    and self.created_between(r.created, after, before)]

    def created_between(self, t: float, after: float | None, before: float | None) -> bool:
        """Filters compare the reported (wall-clock) time with the client's: ``creationTimeBefore=now`` finds a
        job just created."""
        w = self.clock.wall(t)
        return (after is None or w > after) and (before is None or w < before)

    # -- foundation models -------------------------------------------------------------------
    def fm_index(self) -> dict[str, dict]:
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

    def list_foundation_models(self, *, by_customization_type: str | None = None, by_provider: str | None = None,
                               by_output_modality: str | None = None,
                               by_inference_type: str | None = None) -> list[dict]:
        out = []
        for mid, info in self.fm_index().items():
            s = info["model"].wire(self.region, mid)
            if by_customization_type and by_customization_type not in s["customizationsSupported"]:
                continue
            if by_provider and by_provider.lower() != info["model"].providerName.lower():
                continue
            if by_output_modality and by_output_modality not in s["outputModalities"]:
                continue
            if by_inference_type and by_inference_type not in s["inferenceTypesSupported"]:
                continue
            out.append(s)
        return out

    def get_foundation_model(self, ident: str) -> dict:
        mid = _fm_id(ident)
        info = self.fm_index().get(mid)
        if info is None:
            raise ResourceNotFoundException(f"The model {ident} does not exist.")
        return info["model"].wire(self.region, mid)

    def _resolve_base_model(self, ident: str) -> tuple[str, str, str | None]:
        """-> (customizable base model id, foundation model ARN, the custom model's ARN when the job continues
        one, else None)."""
        if ":custom-model/" in ident:
            m = self.find_model(ident)
            if m is None:
                raise ResourceNotFoundException(f"Could not find the custom model {ident}.")
            return m.baseModelId, m.baseModelArn, m.modelArn
        mid = _fm_id(ident)
        if mid not in self.fm_index():
            m = self.find_model(ident)     # a custom model name (continued customization)
            if m is not None:
                return m.baseModelId, m.baseModelArn, m.modelArn
        # unknown or non-customizable ids are rejected by datacheck.check_create_request
        return mid, f"arn:aws:bedrock:{self.region}::foundation-model/{mid}", None

    # -- jobs -------------------------------------------------------------------------------
    def find_job(self, ident: str) -> CustomizationJob | None:
        if ident in self.jobs:
            return self.jobs[ident]
        return next((j for j in self.jobs.values() if j.jobName == ident), None)

    def get_job(self, ident: str) -> CustomizationJob:
        return self._get(self.find_job, ident, "model customization job")

    def create_model_customization_job(self, p: dict, tags: dict[str, str]) -> str:
        """``p`` is the request body, syntax-checked; ``tags`` its jobTags."""
        op = "CreateModelCustomizationJob"
        with self.lock:
            existing = self.idempotent(op, p, ConflictException)
            if existing:
                return existing
            name, model_name, role_arn = p["jobName"], p["customModelName"], p["roleArn"]
            ctype = p.get("customizationType") or "FINE_TUNING"
            if ctype == "IMPORTED":
                raise validation("customizationType IMPORTED is for imported models, not customization jobs.")
            train_uri = p["trainingDataConfig"]["s3Uri"]
            validators = ((p.get("validationDataConfig") or {}).get("validators")) or []
            hp = p.get("hyperParameters") or {}
            cc = p.get("customizationConfig")
            if cc and len([k for k in cc if cc.get(k) is not None]) != 1:
                raise validation("customizationConfig must set exactly one of distillationConfig, rftConfig")
            if ctype == "DISTILLATION" and not (cc or {}).get("distillationConfig"):
                raise validation("customizationConfig.distillationConfig is required for DISTILLATION jobs")
            if ctype == "REINFORCEMENT_FINE_TUNING" and not (cc or {}).get("rftConfig"):
                raise validation("customizationConfig.rftConfig is required for REINFORCEMENT_FINE_TUNING jobs")
            base_id, base_arn, source_arn = self._resolve_base_model(p.get("baseModelIdentifier", ""))
            if source_arn and ctype not in CONTINUABLE_TYPES:
                # AWS: "You can further fine tune an existing custom model" on the page of fine-tuning and continued
                # pre-training only (https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-submit
                # .html); a distillation student "must be one of the student models paired with your teacher model"
                # in a table of foundation models (.../userguide/prequisites-model-distillation.html)
                raise validation(f"A {ctype} job cannot start from the custom model {source_arn}: only "
                                 f"{' and '.join(CONTINUABLE_TYPES)} continue a custom model. Give a foundation "
                                 f"model ({base_id}) as baseModelIdentifier.")
            msg = _datacheck().check_create_request(base_id, ctype, dict(hp)) or \
                _datacheck().check_model_facts(base_id, ctype, self.region, cc)
            if msg:
                raise validation(msg)
            if any(j.jobName == name for j in self.jobs.values()):
                # AWS wording for a reused name (seen for the sibling CreateModelImportJob; exact text unconfirmed)
                raise validation(f"The provided job name is currently in use: a model customization job named "
                                 f"'{name}' already exists. Job names must be unique in the account and Region.")
            if any(m.modelName == model_name for m in self.models.values()) or any(
                    j.customModelName == model_name and j.status in ("InProgress", "Stopping")
                    for j in self.jobs.values()):
                raise validation(f"A custom model named '{model_name}' already exists (or is being created). "
                                 "Choose another customModelName.")
            self.advance_all()
            in_progress = sum(1 for j in self.jobs.values() if j.status == "InProgress")
            if in_progress >= MAX_JOBS_IN_PROGRESS:
                raise ServiceQuotaExceededException(
                    f"You have reached the limit of {MAX_JOBS_IN_PROGRESS} model customization jobs in "
                    "progress for this account. Wait for a job to finish or stop one, then retry.")
            # The role must exist and trust Bedrock (checked synchronously: docs/bedrock-facts.md §7 - a new role is
            # not assumable instantly and job creation fails mentioning the role).
            role = self._role(role_arn)
            if role is None or not trusts_service(getattr(role, "assume_role_policy_document", None),
                                                  "bedrock.amazonaws.com"):
                why = "does not exist" if role is None else "does not trust bedrock.amazonaws.com (sts:AssumeRole)"
                raise ApiError("AccessDeniedException" if role is not None else "ValidationException",
                               f"Could not assume the provided role {role_arn}: the role {why}. Check the role's "
                               "trust policy, or wait a few seconds after creating it and retry.")
            now = self.now()
            job_id = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.jobs))
            arn = self._arn("model-customization-job", f"{base_id}/{job_id}")
            plan = self._plan_job(role, base_id, ctype, hp, train_uri, validators)
            forced = self.faults.outcome("job_outcome", op)
            t_val = now + plan["validation_s"]
            t_proc = t_val + plan["processing_s"]
            job = CustomizationJob(
                jobArn=arn, jobName=name, customModelName=model_name, roleArn=role_arn,
                clientRequestToken=p.get("clientRequestToken"), baseModelId=base_id, baseModelArn=base_arn,
                sourceModelArn=source_arn,
                customizationType=ctype, hyperParameters=dict(hp), trainingDataConfig=p["trainingDataConfig"],
                validationDataConfig={"validators": validators}, outputDataConfig=p["outputDataConfig"],
                customizationConfig=cc, vpcConfig=p.get("vpcConfig"), customModelKmsKeyId=p.get("customModelKmsKeyId"),
                customModelTags=p.get("customModelTags") or [], status="InProgress", created=now, lastModified=now,
                t_validation_end=t_val, t_processing_end=t_proc, t_end=t_proc + plan["training_s"],
                failure=plan.get("failure"), forced=forced, n_train=plan.get("n_train", 0),
                n_val=plan.get("n_val", 0), train_tokens=plan.get("train_tokens", 0), epochs=plan.get("epochs", 1),
                region=self.region)
            if forced == "Failed" and not job.failure:
                job.failure = {"phase": "training", "at": t_proc + plan["training_s"] / 2,
                               "message": "Internal error during training (injected fault). Retry the job."}
            self.jobs[arn] = job
            self.tags[arn] = tags
            self.record(arn, job.TYPE, name, "InProgress", now)
            self.ledger.set_tags(arn, tags)
            self._remember_token(op, p, arn)
        if not job.failure and self.preload_models:
            self._preload_embeddings()
        return arn

    def _preload_embeddings(self) -> None:
        """A job that will succeed is usually served next: load the custom stand-in's embedding model
        in the background now (it takes seconds), not on the first invoke."""
        if BedrockBackend._preloading:
            return
        BedrockBackend._preloading = True
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
        bucket, key = parse_s3_uri(what, uri)
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

    def _complete_job(self, j: CustomizationJob) -> None:
        """A job's successful end: the metric files (as the role), the custom model, the stand-in, billing."""
        t = j.t_end
        out_uri = j.outputDataConfig["s3Uri"].rstrip("/")
        bucket, prefix = parse_s3_uri("outputDataConfig.s3Uri", out_uri)
        base = f"{prefix}/" if prefix else ""
        base += f"model-customization-job-{j.job_id}/"   # docs/bedrock-facts.md §6
        role = self._role(j.roleArn)
        train_key = f"{base}training_artifacts/step_wise_training_metrics.csv"
        if role is None or not self._can(role, "s3:PutObject", bucket, train_key):
            j.end("Failed", t, self.record,
                  f"Amazon Bedrock could not write the job output to s3://{bucket}/{base}: the service role "
                  f"{j.roleArn} is not allowed s3:PutObject there. "
                  "Add s3:PutObject on the output prefix to the role's policy.")
            return
        seed = int(hashlib.sha256(j.jobArn.encode()).hexdigest()[:8], 16)
        train_csv, val_csv = _metricfiles().metric_csvs(j.n_train, j.n_val, dict(j.hyperParameters), seed)
        try:
            self.moto.put_object(bucket, train_key, train_csv.encode())
            if val_csv is not None:
                for key in VALIDATION_METRICS_KEYS:
                    self.moto.put_object(bucket, base + key, val_csv.encode())
        except S3Error as e:
            j.end("Failed", t, self.record, f"Amazon Bedrock could not write the job output to {out_uri}: {e}.")
            return
        j.trainingLoss = _last_loss(train_csv)
        j.validationLosses = [_last_loss(val_csv)] if val_csv is not None else None
        model_id = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.models))
        model_arn = f"arn:aws:bedrock:{j.region}:{self.account_id}:custom-model/{j.baseModelId}/{model_id}"
        m = CustomModel(modelArn=model_arn, modelName=j.customModelName, jobName=j.jobName, jobArn=j.jobArn,
                        baseModelArn=j.baseModelArn, baseModelId=j.baseModelId, parentModelArn=j.sourceModelArn,
                        customizationType=j.customizationType,
                        hyperParameters=j.hyperParameters, trainingDataConfig=j.trainingDataConfig,
                        validationDataConfig=j.validationDataConfig, outputDataConfig=j.outputDataConfig,
                        customizationConfig=j.customizationConfig, created=t, modelStatus="Active",
                        trainingLoss=j.trainingLoss, validationLosses=j.validationLosses)
        self.models[model_arn] = m
        mtags = {tg["key"]: tg["value"] for tg in j.customModelTags or []}
        self.tags[model_arn] = mtags
        self.record(model_arn, m.TYPE, j.customModelName, "Active", t)
        self.ledger.set_tags(model_arn, mtags)
        # the stand-in learns from the training data (read again from S3 as the job's role)
        train, _err = self._read_as_role(role, j.trainingDataConfig["s3Uri"], "training data")
        try:
            self.standins().register_custom(model_arn, j.baseModelId, train or b"")
        except Exception as e:  # noqa: BLE001 - a stand-in problem must not lose the job
            m.extra["standinError"] = str(e)
        self.billing_done["training_token_epochs"] = self.billing_done.get("training_token_epochs", 0) + \
            j.train_tokens * j.epochs
        j.outputModelArn = model_arn
        j.end("Completed", t, self.record)

    def list_jobs(self, *, status: str | None, name_contains: str | None, after: float | None,
                  before: float | None) -> list[CustomizationJob]:
        with self.lock:
            self.advance_all()
            return [j for j in self.jobs.values()
                    if (not status or j.status == status) and (not name_contains or name_contains in j.jobName)
                    and self.created_between(j.created, after, before)]

    def stop_job(self, ident: str) -> None:
        with self.lock:
            j = self.get_job(ident)
            if j.status != "InProgress":
                raise ConflictException(f"The model customization job {j.jobName} is {j.status}; "
                                        "only an InProgress job can be stopped.")
            j.stop(self.now(), self.record)

    # -- custom models ------------------------------------------------------------------------
    def find_model(self, ident: str) -> CustomModel | None:
        if ident in self.models:
            return self.models[ident]
        return next((m for m in self.models.values() if m.modelName == ident), None)

    def get_model(self, ident: str) -> CustomModel:
        return self._get(self.find_model, ident, "custom model")

    def list_models(self, *, name_contains: str | None, base_model_arn: str | None, foundation_model_arn: str | None,
                    status: str | None, is_owned: str | None, after: float | None,
                    before: float | None) -> list[CustomModel]:
        with self.lock:
            self.advance_all()
            return [m for m in self.models.values()
                    if (not name_contains or name_contains in m.modelName)
                    # baseModelArnEquals matches the summary's baseModelArn (a custom model's ARN for a model
                    # customized from it), foundationModelArnEquals the foundation model the lineage starts from
                    and (not base_model_arn or base_model_arn == (m.parentModelArn or m.baseModelArn))
                    and (not foundation_model_arn or foundation_model_arn == m.baseModelArn)
                    and (not status or status == m.modelStatus) and is_owned != "false"
                    and self.created_between(m.created, after, before)]

    def delete_model(self, ident: str) -> None:
        with self.lock:
            m = self.get_model(ident)
            users = [p.provisionedModelName for p in self.live_pts() if m.modelArn in (p.modelArn, p.desiredModelArn)]
            users += [d.modelDeploymentName for d in self.live_deployments() if d.modelArn == m.modelArn]
            if users:
                # unconfirmed (docs/bedrock-facts.md §2.6): Conflict while a PT/deployment uses the model
                raise ConflictException(f"The custom model {m.modelName} is in use by {', '.join(users)}. "
                                        "Delete the provisioned throughput / deployment first.")
            del self.models[m.modelArn]
            self.tags.pop(m.modelArn, None)
            self.record(m.modelArn, m.TYPE, m.modelName, "Deleted", self.now())

    # -- provisioned throughput ---------------------------------------------------------------
    def live_pts(self) -> list[ProvisionedThroughput]:
        return [p for p in self.pts.values() if p.live]

    def find_pt(self, ident: str) -> ProvisionedThroughput | None:
        return _find_live(self.pts, ident)

    def get_pt(self, ident: str) -> ProvisionedThroughput:
        return self._get(self.find_pt, ident, "provisioned model")

    def _resolve_servable_model(self, ident: str, field: str) -> tuple[str, str, str]:
        """-> (model ARN, foundation model ARN, base model id) for a PT/deployment target."""
        m = self.find_model(ident)
        if m is not None:
            if m.modelStatus != "Active":
                raise validation(f"{field}: the custom model {ident} is {m.modelStatus}, not Active.")
            return m.modelArn, m.baseModelArn, m.baseModelId
        if ":custom-model/" in ident:
            raise ResourceNotFoundException(f"Could not find the custom model {ident}.")
        mid = _fm_id(ident)
        if mid in self.fm_index():
            arn = f"arn:aws:bedrock:{self.region}::foundation-model/{mid}"
            return arn, arn, mid
        raise ResourceNotFoundException(f"Could not find the model {ident}.")

    def create_pt(self, p: dict, tags: dict[str, str]) -> str:
        op = "CreateProvisionedModelThroughput"
        with self.lock:
            existing = self.idempotent(op, p, ValidationException)
            if existing:
                return existing
            name, units = p["provisionedModelName"], int(p.get("modelUnits", 0))
            if units < 1:
                raise validation("modelUnits must be at least 1")
            model_arn, fm_arn, base_id = self._resolve_servable_model(p.get("modelId", ""), "modelId")
            msg = _datacheck().check_serving_lifecycle(base_id, self.region, "pt")
            if msg:
                raise validation(msg)
            if any(x.provisionedModelName == name for x in self.live_pts()):
                raise validation(f"A provisioned model named '{name}' already exists. "
                                 "Choose another provisionedModelName.")
            self.advance_all()
            if p.get("commitmentDuration"):
                # docs/bedrock-facts.md §2.7: commitment model units default to 0 and need a support request
                raise ServiceQuotaExceededException(
                    "Your account has 0 model units for Provisioned Throughput with a commitment. "
                    "Request a quota increase, or omit commitmentDuration for no commitment.")
            if units != 1:
                raise validation("Provisioned Throughput with no commitment supports 1 model unit per provisioned "
                                 f"model; got modelUnits={units}. Use modelUnits=1.")
            used = sum(x.modelUnits for x in self.live_pts() if not x.commitmentDuration and x.status != "Failed")
            if used + units > NO_COMMITMENT_MODEL_UNITS:
                raise ServiceQuotaExceededException(
                    f"This request needs {units} model unit(s) but {used} of the account's "
                    f"{NO_COMMITMENT_MODEL_UNITS} no-commitment model units are in use. "
                    "Delete a provisioned throughput you no longer need, or request a quota increase.")
            now = self.now()
            pid = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.pts))
            arn = self._arn("provisioned-model", pid)
            pt = ProvisionedThroughput(
                provisionedModelArn=arn, provisionedModelName=name, modelArn=model_arn, desiredModelArn=model_arn,
                foundationModelArn=fm_arn, baseModelId=base_id, modelUnits=units, desiredModelUnits=units,
                status="Creating", created=now, lastModified=now, readyAt=now + PT_SECONDS,
                forced=self.faults.outcome("pt_outcome", op), commitmentDuration=p.get("commitmentDuration"))
            self.pts[arn] = pt
            self.tags[arn] = tags
            self.record(arn, pt.TYPE, name, "Creating", now)
            self.ledger.set_tags(arn, tags)
            self._remember_token(op, p, arn)
        return arn

    def list_pts(self, *, status: str | None, model_arn: str | None, name_contains: str | None,
                 after: float | None, before: float | None) -> list[ProvisionedThroughput]:
        return self._list_live(self.pts, status, model_arn, name_contains, after, before)

    def update_pt(self, ident: str, *, desired_name: str | None, desired_model_id: str | None) -> None:
        with self.lock:
            p = self.get_pt(ident)
            if p.status != "InService":
                raise validation(f"The provisioned model {p.provisionedModelName} is {p.status}; it can be "
                                 "updated only when InService.")
            now = self.now()
            if desired_name:
                if any(x.provisionedModelName == desired_name and x is not p for x in self.live_pts()):
                    raise validation(f"A provisioned model named '{desired_name}' already exists.")
                p.provisionedModelName = desired_name
                self.ledger.resources.get(p.provisionedModelArn, {})["name"] = desired_name
            if desired_model_id:
                model_arn, fm_arn, _ = self._resolve_servable_model(desired_model_id, "desiredModelId")
                if fm_arn != p.foundationModelArn:
                    raise validation("desiredModelId must be customized from the same base model as the current model.")
                if model_arn != p.modelArn:
                    p.desiredModelArn, p.status, p.readyAt = model_arn, "Updating", now + PT_UPDATE_SECONDS
                    self.record(p.provisionedModelArn, p.TYPE, p.provisionedModelName, "Updating", now)
            p.lastModified = now

    def delete_pt(self, ident: str) -> None:
        with self.lock:
            p = self.get_pt(ident)
            if p.commitmentDuration:
                raise ConflictException("A provisioned model with a commitment cannot be deleted before "
                                        "the commitment term ends (docs/bedrock-facts.md §2.7).")
            now = self.now()
            p.deleted = now
            self.tags.pop(p.provisionedModelArn, None)
            self.parent.capacity.forget(p.provisionedModelArn)
            self.record(p.provisionedModelArn, p.TYPE, p.provisionedModelName, "Deleted", now)

    # -- custom model deployments -----------------------------------------------------------
    def live_deployments(self) -> list[CustomModelDeployment]:
        return [d for d in self.deployments.values() if d.live]

    def find_deployment(self, ident: str) -> CustomModelDeployment | None:
        return _find_live(self.deployments, ident)

    def get_deployment(self, ident: str) -> CustomModelDeployment:
        return self._get(self.find_deployment, ident, "custom model deployment")

    def create_deployment(self, p: dict, tags: dict[str, str]) -> str:
        op = "CreateCustomModelDeployment"
        with self.lock:
            existing = self.idempotent(op, p, ValidationException)
            if existing:
                return existing
            name = p["modelDeploymentName"]
            self.advance_all()
            m = self.find_model(p.get("modelArn", ""))
            if m is None or ":custom-model/" not in p.get("modelArn", ""):
                raise ResourceNotFoundException(f"Could not find the custom model {p.get('modelArn')}.")
            if m.modelStatus != "Active":
                raise validation(f"The custom model {m.modelName} is {m.modelStatus}; it must be Active.")
            msg = _datacheck().check_serving_lifecycle(m.baseModelId, self.region, "deployment")
            if msg:
                raise validation(msg)
            rules = _facts().rule_set(m.baseModelId)
            od_regions = rules.on_demand_deployment_regions if rules is not None else []
            if not od_regions:
                raise validation("On-demand deployment is not supported for models customized from "
                                 f"{m.baseModelId}. "
                                 "Use Provisioned Throughput (CreateProvisionedModelThroughput) instead.")
            if self.region not in od_regions:
                raise validation("On-demand deployment of this model is available only in "
                                 f"{', '.join(od_regions)}.")
            if any(x.modelDeploymentName == name for x in self.live_deployments()):
                raise validation(f"A custom model deployment named '{name}' already exists.")
            now = self.now()
            did = self._new_id(lambda i: any(k.endswith("/" + i) for k in self.deployments))
            arn = self._arn("custom-model-deployment", did)
            d = CustomModelDeployment(
                customModelDeploymentArn=arn, modelDeploymentName=name, modelArn=m.modelArn,
                baseModelId=m.baseModelId, description=p.get("description"), status="Creating", created=now,
                lastUpdated=now, readyAt=now + DEPLOYMENT_SECONDS, forced=self.faults.outcome("pt_outcome", op))
            self.deployments[arn] = d
            self.tags[arn] = tags
            self.record(arn, d.TYPE, name, "Creating", now)
            self.ledger.set_tags(arn, tags)
            self._remember_token(op, p, arn)
        return arn

    def list_deployments(self, *, status: str | None, model_arn: str | None, name_contains: str | None,
                         after: float | None, before: float | None) -> list[CustomModelDeployment]:
        return self._list_live(self.deployments, status, model_arn, name_contains, after, before)

    def delete_deployment(self, ident: str) -> None:
        with self.lock:
            d = self.get_deployment(ident)
            now = self.now()
            d.deleted = now
            self.tags.pop(d.customModelDeploymentArn, None)
            self.record(d.customModelDeploymentArn, d.TYPE, d.modelDeploymentName, "Deleted", now)

    # -- tags ---------------------------------------------------------------------------------
    def _taggable(self, arn: str) -> str:
        live = (arn in self.jobs or arn in self.models or (arn in self.pts and self.pts[arn].live)
                or (arn in self.deployments and self.deployments[arn].live))
        if not live:
            raise ResourceNotFoundException(f"The resource {arn} was not found.")
        return arn

    def tag_resource(self, arn: str, new: dict[str, str]) -> None:
        with self.lock:
            self._taggable(arn)
            merged = {**self.tags.get(arn, {}), **new}
            if len(merged) > MAX_TAGS_PER_RESOURCE:
                raise TooManyTagsException(f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; "
                                           f"{arn} would have {len(merged)}.")
            self.tags[arn] = merged
            self.ledger.set_tags(arn, merged)

    def untag_resource(self, arn: str, keys: list[str]) -> None:
        with self.lock:
            self._taggable(arn)
            self.tags[arn] = {k: v for k, v in self.tags.get(arn, {}).items() if k not in keys}
            self.ledger.set_tags(arn, self.tags[arn])

    def list_tags(self, arn: str) -> dict[str, str]:
        with self.lock:
            self._taggable(arn)
            return dict(self.tags.get(arn, {}))

    # -- model invocation logging (one configuration per account and Region) -----------------
    def put_logging_config(self, cfg: dict) -> None:
        s3 = cfg.get("s3Config")
        if s3:
            bucket = s3.get("bucketName") or ""
            try:
                self.moto.get_object(bucket, "\0probe")
            except S3Error as e:
                if e.code == "NoSuchBucket":
                    raise validation(f"Failed to validate the S3 bucket {bucket}: the bucket does not exist in "
                                     "this account. Create it (with a policy letting bedrock.amazonaws.com "
                                     "PutObject) first.") from None
        with self.lock:
            self.logging_config = cfg

    def get_logging_config(self) -> dict | None:
        with self.lock:
            return self.logging_config

    def delete_logging_config(self) -> None:
        with self.lock:
            self.logging_config = None

    # -- lifecycle sweep + billing ---------------------------------------------------------
    def advance_all(self) -> bool:
        now = self.now()
        changed = False
        for j in list(self.jobs.values()):
            changed |= j.advance(now, self.record, self._complete_job)
        for p in list(self.pts.values()):
            changed |= p.advance(now, self.record, self._warm)
        for d in list(self.deployments.values()):
            changed |= d.advance(now, self.record, self._warm)
        if changed:
            self._dirty = True
        return changed

    def billing_seconds(self) -> tuple[float, float, float]:
        """(PT model-unit seconds, deployment seconds, training token-epochs) of this Region (virtual time)."""
        now = self.now()
        pt = sum(p.billed_seconds(now) for p in self.pts.values())
        dep = sum(d.billed_seconds(now) for d in self.deployments.values())
        return pt, dep, float(self.billing_done.get("training_token_epochs", 0))


def _region_of(arn: str, default: str = "us-east-1") -> str:
    parts = arn.split(":")
    return parts[3] if arn.startswith("arn:") and len(parts) > 3 and parts[3] else default


class BedrockBackends:
    """One :class:`BedrockBackend` per (account, Region), as moto's ``BackendDict``: a us-west-2 job is not
    listed, fetched or name-clashed in us-east-1, and quotas count per Region. Shared by every Region: the
    account's S3/IAM (moto), the ledger, faults, the virtual clock, the stand-in models and the state file."""

    STATE_VERSION = 2      # the layout of bedrock.json; version 1 (Regions not separate) still loads

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
        self.backends: dict[tuple[str, str], BedrockBackend] = {}
        self._standins = None
        self.preload_models = False     # set by the standalone server (serve()); off in-process
        self._dirty = False             # state changed since the last save

    def __getitem__(self, region: str) -> BedrockBackend:
        key = (self.account_id, region)
        with self.lock:
            b = self.backends.get(key)
            if b is None:
                b = self.backends[key] = BedrockBackend(parent=self, region=region)
            return b

    def regions(self) -> list[BedrockBackend]:
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
            return {"version": self.STATE_VERSION, "account_id": self.account_id, "clock": self.clock.to_dict(),
                    "regions": {region: b.to_dict() for (_acct, region), b in self.backends.items()},
                    "ledger": self.ledger.to_dict()}

    @classmethod
    def check_version(cls, d: dict, where: object) -> None:
        """Refuse a state file of a layout this emulator does not know (a newer one), naming the file."""
        version = d.get("version", 1)
        if not isinstance(version, int) or version > cls.STATE_VERSION:
            raise ValueError(f"{where}/bedrock.json is state version {version!r}; this emulator reads "
                             f"versions 1 to {cls.STATE_VERSION}. Use a newer emulator or another --state-dir.")

    def load(self, d: dict) -> None:
        self.check_version(d, self.store.dir)
        with self.lock:
            self.backends = {}
            regions = d.get("regions")
            if regions is None:          # version 1: one flat set of resources; split by the ARNs' Region
                regions = _split_v1(d)
            for region, rd in regions.items():
                self[region].load(rd)
            self.ledger.load(d.get("ledger", {}))

    def save(self) -> None:
        self.store.save_bedrock(self.to_dict())

    def reset(self) -> None:
        with self.lock:
            self.backends = {}
            self.ledger.clear()
            self.capacity.clear()
            self._standins = None

    # -- lifecycle sweep + billing ---------------------------------------------------------
    def advance_and_save(self) -> None:
        with self.lock:
            changed = [b.advance_all() for b in self.regions()]
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
                b.advance_all()
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
