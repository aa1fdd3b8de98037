"""Bedrock's resources as small classes: a customization job, a custom model, a Provisioned Throughput and a
custom model deployment. Each knows its wire form (``to_wire()``, ``to_summary()``, the botocore output shapes of
its Get/List operations) and moves along its lifecycle with the virtual clock (``advance(now)``, evaluated lazily
when something is read: no background threads).

``to_dict()`` / ``from_dict()`` are the state file's form (emulator/state.py, ``bedrock.json`` version 2): the same
keys the earlier dict resources had, so a state file written before this layout loads unchanged (unknown keys are
kept). Times are virtual seconds; on the wire they are the real moment the virtual instant happened (``iso``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

# virtual durations (seconds of virtual time; planning figures, not AWS facts)
JOB_MIN_SECONDS = 20 * 60
JOB_SECONDS_PER_RECORD_EPOCH = 0.6
STOP_SECONDS = 3 * 60
PT_SECONDS = 10 * 60
PT_UPDATE_SECONDS = 5 * 60
DEPLOYMENT_SECONDS = 5 * 60

Iso = Callable[[float], str]                    # virtual time -> ISO-8601 wall-clock time on the wire
Record = Callable[[str, str, str, str, float], None]   # (arn, resource type, name, state, t) -> the ledger


@dataclass
class Resource:
    """State-file round trip: the dataclass fields plus any key a newer/older file carried (kept as is)."""

    extra: dict = field(default_factory=dict, repr=False)
    TYPE: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)} - {"extra"}
        obj = cls(**{k: v for k, v in d.items() if k in names})
        obj.extra = {k: v for k, v in d.items() if k not in names}
        return obj

    def to_dict(self) -> dict:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"})
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read, for callers that look resources up by a key name (the IAM lookup)."""
        return getattr(self, key, self.extra.get(key, default))

    def __getitem__(self, key: str) -> Any:
        if hasattr(self, key):
            return getattr(self, key)
        return self.extra[key]


def _with_metrics(d: dict, training_loss: float | None, validation_losses: list | None) -> dict:
    """``d`` with a finished training's trainingMetrics / validationMetrics (GetModelCustomizationJob and
    GetCustomModel report them alike)."""
    if training_loss is not None:
        d["trainingMetrics"] = {"trainingLoss": training_loss}
    if validation_losses:
        d["validationMetrics"] = [{"validationLoss": v} for v in validation_losses]
    return d


@dataclass
class CustomizationJob(Resource):
    TYPE: ClassVar[str] = "model-customization-job"
    jobArn: str = ""
    jobName: str = ""
    customModelName: str = ""
    roleArn: str = ""
    clientRequestToken: str | None = None
    baseModelId: str = ""
    baseModelArn: str = ""             # always the foundation model (botocore: FoundationModelArn)
    sourceModelArn: str | None = None  # the custom model a continued customization starts from
    customizationType: str = "FINE_TUNING"
    hyperParameters: dict = field(default_factory=dict)
    trainingDataConfig: dict = field(default_factory=dict)
    validationDataConfig: dict = field(default_factory=dict)
    outputDataConfig: dict = field(default_factory=dict)
    customizationConfig: dict | None = None
    vpcConfig: dict | None = None
    customModelKmsKeyId: str | None = None
    customModelTags: list = field(default_factory=list)
    status: str = "InProgress"
    created: float = 0.0
    lastModified: float = 0.0
    endTime: float | None = None
    t_validation_end: float = 0.0
    t_processing_end: float = 0.0
    t_end: float = 0.0
    failure: dict | None = None
    forced: str | None = None
    stopAt: float | None = None
    stoppedPhase: str | None = None
    outputModelArn: str | None = None
    n_train: int = 0
    n_val: int = 0
    train_tokens: int = 0
    epochs: int = 1
    trainingLoss: float | None = None
    validationLosses: list | None = None
    region: str = "us-east-1"
    failureMessage: str | None = None

    @property
    def job_id(self) -> str:
        return self.jobArn.rsplit("/", 1)[1]

    def end(self, status: str, t: float, record: Record, message: str | None = None) -> None:
        self.status, self.endTime, self.lastModified = status, t, t
        if message is not None:
            self.failureMessage = message
        record(self.jobArn, self.TYPE, self.jobName, status, t)

    def advance(self, now: float, record: Record, complete: Callable[[CustomizationJob], None]) -> bool:
        """Move along the lifecycle up to ``now``; ``complete`` does the work of a successful end (metric files,
        the custom model). True when something changed."""
        changed = False
        if self.status == "InProgress" and self.forced == "Stuck":
            return False
        if self.status == "InProgress":
            f = self.failure
            fail_at = (f.get("at") or self.t_validation_end) if f else None
            if f and fail_at is not None and now >= fail_at:
                self.end("Failed", fail_at, record, f["message"])
                return True
            if now >= self.t_end:
                complete(self)
                changed = True
        if self.status == "Stopping" and self.stopAt is not None and now >= self.stopAt + STOP_SECONDS:
            self.end("Stopped", self.stopAt + STOP_SECONDS, record)
            changed = True
        return changed

    def stop(self, now: float, record: Record) -> None:
        self.status, self.stopAt, self.lastModified, self.forced = "Stopping", now, now, None
        record(self.jobArn, self.TYPE, self.jobName, "Stopping", now)

    def status_details(self, now: float, iso: Iso) -> dict:
        """validation -> data processing -> training sub-statuses (docs/bedrock-facts.md §2.4)."""
        names = ["validationDetails", "dataProcessingDetails", "trainingDetails"]
        bounds = [(self.created, self.t_validation_end), (self.t_validation_end, self.t_processing_end),
                  (self.t_processing_end, self.t_end)]
        status = self.status
        if status == "Completed":
            current, cur_state = 3, None
        elif status == "Failed":
            phase = (self.failure or {}).get("phase", "training")
            current, cur_state = (0 if phase == "validation" else 2), "Failed"
        else:
            t = self.stopAt if status in ("Stopping", "Stopped") else now
            current = next((i for i, (_a, b) in enumerate(bounds) if t < b), 2)
            cur_state = status if status in ("Stopping", "Stopped") else "InProgress"
        out = {}
        for i, name in enumerate(names):
            st = "Completed" if i < current else (cur_state if i == current else "NotStarted")
            d: dict = {"status": st}
            if st != "NotStarted":
                d["creationTime"] = iso(bounds[i][0])
                d["lastModifiedTime"] = iso(bounds[i][1] if st == "Completed"
                                            else (self.endTime or min(now, bounds[i][1])))
            out[name] = d
        return out

    def to_summary(self, now: float, iso: Iso) -> dict:
        """ModelCustomizationJobSummary."""
        d = {"jobArn": self.jobArn, "baseModelArn": self.baseModelArn, "jobName": self.jobName,
             "status": self.status, "statusDetails": self.status_details(now, iso),
             "lastModifiedTime": iso(self.lastModified), "creationTime": iso(self.created),
             "customModelName": self.customModelName, "customizationType": self.customizationType}
        if self.endTime:
            d["endTime"] = iso(self.endTime)
        if self.outputModelArn:
            d["customModelArn"] = self.outputModelArn
        return d

    def to_wire(self, now: float, iso: Iso) -> dict:
        """GetModelCustomizationJob's response."""
        d = {"jobArn": self.jobArn, "jobName": self.jobName, "outputModelName": self.customModelName,
             "roleArn": self.roleArn, "status": self.status, "statusDetails": self.status_details(now, iso),
             "creationTime": iso(self.created), "lastModifiedTime": iso(self.lastModified),
             "baseModelArn": self.baseModelArn, "hyperParameters": self.hyperParameters,
             "trainingDataConfig": self.trainingDataConfig, "validationDataConfig": self.validationDataConfig,
             "outputDataConfig": self.outputDataConfig, "customizationType": self.customizationType}
        for k in ("clientRequestToken", "vpcConfig", "customizationConfig"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.failureMessage:
            d["failureMessage"] = self.failureMessage
        if self.endTime:
            d["endTime"] = iso(self.endTime)
        if self.outputModelArn:
            d["outputModelArn"] = self.outputModelArn
        return _with_metrics(d, self.trainingLoss, self.validationLosses)


@dataclass
class CustomModel(Resource):
    TYPE: ClassVar[str] = "custom-model"
    modelArn: str = ""
    modelName: str = ""
    jobName: str = ""
    jobArn: str = ""
    baseModelArn: str = ""
    baseModelId: str = ""
    parentModelArn: str | None = None  # a custom model of a custom model: the parent (GetCustomModel's baseModelArn)
    customizationType: str = "FINE_TUNING"
    hyperParameters: dict = field(default_factory=dict)
    trainingDataConfig: dict = field(default_factory=dict)
    validationDataConfig: dict = field(default_factory=dict)
    outputDataConfig: dict = field(default_factory=dict)
    customizationConfig: dict | None = None
    created: float = 0.0
    modelStatus: str = "Active"
    trainingLoss: float | None = None
    validationLosses: list | None = None

    def to_wire(self, iso: Iso) -> dict:
        """GetCustomModel's response."""
        d = {k: getattr(self, k) for k in ("modelArn", "modelName", "jobName", "jobArn",
                                            "customizationType", "hyperParameters", "trainingDataConfig",
                                            "validationDataConfig", "outputDataConfig")}
        # botocore: GetCustomModel's baseModelArn is a ModelArn (a custom model's or a foundation model's), the
        # job's a FoundationModelArn: a model customized from a custom model names that model here
        d["baseModelArn"] = self.parentModelArn or self.baseModelArn
        d["creationTime"] = iso(self.created)
        d["modelStatus"] = self.modelStatus
        if self.customizationConfig:
            d["customizationConfig"] = self.customizationConfig
        return _with_metrics(d, self.trainingLoss, self.validationLosses)

    def to_summary(self, iso: Iso, account_id: str) -> dict:
        """CustomModelSummary."""
        return {"modelArn": self.modelArn, "modelName": self.modelName, "creationTime": iso(self.created),
                "baseModelArn": self.parentModelArn or self.baseModelArn,
                "baseModelName": self.baseModelId.split(":")[0][:63],
                "customizationType": self.customizationType, "ownerAccountId": account_id,
                "modelStatus": self.modelStatus}


@dataclass
class ServingResource(Resource):
    """What a Provisioned Throughput and a custom model deployment share: each serves ``modelArn`` once its
    ``readyAt`` passes (unless a fault injected at create makes it fail), is billed from its create call to its
    delete call (nothing when it failed), and stays in the state after a delete (``deleted``: when). The fields
    stay on each subclass, in their own order (the state file's keys); these class variables name the ones whose
    names differ."""

    ARN_FIELD: ClassVar[str] = ""
    NAME_FIELD: ClassVar[str] = ""
    UPDATED_FIELD: ClassVar[str] = ""          # the last-modified time's field
    PENDING: ClassVar[tuple[str, ...]] = ("Creating",)   # the statuses that end at readyAt
    READY_STATUS: ClassVar[str] = ""
    INJECTED_FAILURE: ClassVar[str] = ""       # failureMessage of a create made to fail by a fault

    @property
    def live(self) -> bool:
        return not self.deleted

    def _serve(self) -> None:
        """What becomes true when the resource reaches READY_STATUS, besides the status."""

    def advance(self, now: float, record: Record, warm: Callable[[str], None]) -> bool:
        if self.deleted or self.status not in self.PENDING or now < self.readyAt:
            return False
        t = self.readyAt
        setattr(self, self.UPDATED_FIELD, t)
        if self.status == "Creating" and self.forced == "Failed":
            self.status, self.failureMessage = "Failed", self.INJECTED_FAILURE
        else:
            self.status = self.READY_STATUS
            self._serve()
            warm(self.modelArn)
        record(getattr(self, self.ARN_FIELD), self.TYPE, getattr(self, self.NAME_FIELD), self.status, t)
        return True

    def _units(self) -> int:
        return 1

    def billed_seconds(self, now: float) -> float:
        """Unit seconds from the create call to the delete call; one that failed to become ready is free."""
        if self.status == "Failed":
            return 0.0
        return self._units() * max(0.0, (self.deleted or now) - self.created)


@dataclass
class ProvisionedThroughput(ServingResource):
    TYPE: ClassVar[str] = "provisioned-model-throughput"
    ARN_FIELD: ClassVar[str] = "provisionedModelArn"
    NAME_FIELD: ClassVar[str] = "provisionedModelName"
    UPDATED_FIELD: ClassVar[str] = "lastModified"
    PENDING: ClassVar[tuple[str, ...]] = ("Creating", "Updating")
    READY_STATUS: ClassVar[str] = "InService"
    INJECTED_FAILURE: ClassVar[str] = ("Provisioning failed because of an internal error (injected fault). Delete "
                                       "this provisioned throughput and create it again.")
    provisionedModelArn: str = ""
    provisionedModelName: str = ""
    modelArn: str = ""
    desiredModelArn: str = ""
    foundationModelArn: str = ""
    baseModelId: str = ""
    modelUnits: int = 1
    desiredModelUnits: int = 1
    status: str = "Creating"
    created: float = 0.0
    lastModified: float = 0.0
    readyAt: float = 0.0
    forced: str | None = None
    commitmentDuration: str | None = None
    deleted: float | None = None
    failureMessage: str | None = None

    def _serve(self) -> None:
        self.modelArn = self.desiredModelArn     # an update's new model serves from now on

    def _units(self) -> int:
        return self.modelUnits

    def to_wire(self, iso: Iso, summary: bool = False) -> dict:
        """GetProvisionedModelThroughput's response (``summary``: ProvisionedModelSummary)."""
        d = {k: getattr(self, k) for k in ("modelUnits", "desiredModelUnits", "provisionedModelName",
                                            "provisionedModelArn", "modelArn", "desiredModelArn",
                                            "foundationModelArn", "status")}
        d["creationTime"] = iso(self.created)
        d["lastModifiedTime"] = iso(self.lastModified)
        if self.failureMessage and not summary:
            d["failureMessage"] = self.failureMessage
        if self.commitmentDuration:
            d["commitmentDuration"] = self.commitmentDuration
        return d


@dataclass
class CustomModelDeployment(ServingResource):
    TYPE: ClassVar[str] = "custom-model-deployment"
    ARN_FIELD: ClassVar[str] = "customModelDeploymentArn"
    NAME_FIELD: ClassVar[str] = "modelDeploymentName"
    UPDATED_FIELD: ClassVar[str] = "lastUpdated"
    READY_STATUS: ClassVar[str] = "Active"
    INJECTED_FAILURE: ClassVar[str] = ("Deployment failed because of an internal error (injected fault). Delete the "
                                       "deployment and create it again.")
    customModelDeploymentArn: str = ""
    modelDeploymentName: str = ""
    modelArn: str = ""
    baseModelId: str = ""
    description: str | None = None
    status: str = "Creating"
    created: float = 0.0
    lastUpdated: float = 0.0
    readyAt: float = 0.0
    forced: str | None = None
    deleted: float | None = None
    failureMessage: str | None = None

    def to_wire(self, iso: Iso, summary: bool = False) -> dict:
        """GetCustomModelDeployment's response (``summary``: CustomModelDeploymentSummary; docs/bedrock-facts.md
        §2.8: the list names the deployment customModelDeploymentName and has no description)."""
        out = {"customModelDeploymentArn": self.customModelDeploymentArn,
               "customModelDeploymentName" if summary else "modelDeploymentName": self.modelDeploymentName,
               "modelArn": self.modelArn, "createdAt": iso(self.created), "status": self.status,
               "lastUpdatedAt": iso(self.lastUpdated)}
        if self.description and not summary:
            out["description"] = self.description
        if self.failureMessage:
            out["failureMessage"] = self.failureMessage
        return out

    def to_summary(self, iso: Iso) -> dict:
        """CustomModelDeploymentSummary."""
        return self.to_wire(iso, summary=True)
