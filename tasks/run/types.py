"""Typed values that cross stage boundaries (prepare -> upload -> ... -> teardown).

Small pydantic models, JSON-able so Prefect can cache and persist them and the run manifest
can record them as they are.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SplitFile(BaseModel):
    path: str                    # local JSONL path
    records: int
    sha256: str                  # content hash of the file as written
    bytes: int


class PreparedData(BaseModel):
    """Output of prepare: three formatted JSONL splits plus the quality report."""

    format: str                  # catalog DataFormat value
    train: SplitFile
    validation: SplitFile | None = None
    test: SplitFile | None = None
    report_path: str
    label_like: bool = False     # completions look like class labels (accuracy/F1 apply)
    estimated_train_tokens: int = 0
    # media the records reference, as the service role must read them (tasks/data/media.py): exact object URIs
    # (s3://bucket/key) or, when those would not fit the role's policy, their folders (s3://bucket/folder/)
    media: list[str] = Field(default_factory=list)

    @property
    def content_hash(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for f in (self.train, self.validation, self.test):
            h.update((f.sha256 if f else "-").encode())
        return h.hexdigest()


class UploadedData(BaseModel):
    bucket: str
    train_uri: str
    validation_uri: str | None = None
    test_uri: str | None = None
    output_uri: str              # s3://bucket/prefix/output/<run_key>/
    input_prefix: str            # key prefix the service role may read
    output_prefix: str           # key prefix the service role may write
    skipped: list[str] = Field(default_factory=list)   # URIs already present with the same hash
    media: list[str] = Field(default_factory=list)     # PreparedData.media, checked to be in ``bucket``


class RoleInfo(BaseModel):
    role_name: str
    role_arn: str
    created: bool = False
    updated: bool = False


class StartPoint(BaseModel):
    """Where the run's customization job starts (``start_from``, issue 19): the base model, or the lineage's
    champion, a custom model of it (its ARN is then the job's baseModelIdentifier)."""

    model: str                           # the job's baseModelIdentifier
    champion_run: str | None = None      # the champion's run id when the job continues from it
    reason: str = ""

    @property
    def continues(self) -> bool:
        return self.champion_run is not None

    @property
    def custom_model(self) -> str | None:
        """The custom model the job continues from; None when it starts from the base model."""
        return self.model if self.continues else None


class JobInfo(BaseModel):
    job_arn: str
    job_name: str
    status: str
    adopted: bool = False
    attempt: int = 0


class TrainingResult(BaseModel):
    job_arn: str
    job_name: str
    status: str                          # Completed (anything else raises)
    custom_model_arn: str
    custom_model_name: str
    training_metrics: list[dict] = Field(default_factory=list)     # rows of step_wise_training_metrics.csv
    validation_metrics: list[dict] = Field(default_factory=list)   # rows of validation_metrics.csv
    final_training_loss: float | None = None
    final_validation_loss: float | None = None
    elapsed_seconds: float | None = None


class ServingEndpoint(BaseModel):
    kind: Literal["provisioned", "deployment"]
    arn: str                     # the id to invoke: PT ARN or deployment ARN
    name: str
    model_arn: str
    model_units: int | None = None
    status: str = "Creating"
    adopted: bool = False


class InvokeResult(BaseModel):
    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float = 0.0
    attempts: int = 1
    error: str | None = None     # set when the call finally failed (the example is kept as an error row)


class TeardownReport(BaseModel):
    deleted: list[str] = Field(default_factory=list)
    already_gone: list[str] = Field(default_factory=list)
    skipped_unmanaged: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    alive: list[str] = Field(default_factory=list, description="ARNs a delete was asked for and failed: still billing")
    kept: list[str] = Field(default_factory=list, description="sweep: managed resources kept, each with why")
    reasons: dict[str, str] = Field(default_factory=dict, description="sweep: why each resource was deleted")
    settled: list[str] = Field(default_factory=list,
                               description="sweep: flow runs stuck in Cancelling (dead worker) it finished")
