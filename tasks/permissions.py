"""The IAM policy the identity that RUNS the pipeline needs, for one config (issue 20: least privilege for the
operator too). ``forge permissions CONFIG`` prints it; docs/permissions.md is generated from it.

``permission_policy(config, role, account=...)`` returns a typed :class:`PermissionPolicy`: one
:class:`Statement` per thing the pipeline does, each naming the boto3 calls it covers (``calls``), the steps
that make them (``steps``) and why its resources are what they are (``why``). ``.document()`` is the IAM JSON.

Roles (who runs what):

- ``worker``: the identity a run executes as (``forge run``/``rerun``, a Prefect worker, the cancel and failure
  hooks, the serving watchdog) — every call of prepare → pre-flight → upload → create-role → customize → poll →
  provision → evaluate → teardown, for this config only;
- ``sweeper``: ``forge sweep`` / the sweep deployment (flows/sweep.py): lists serving resources, reads the
  heartbeats of this config's bucket, deletes only resources tagged ``managed-by=bedrock-forge``, stops only
  managed jobs (stuck cancellations);
- ``oncall``: worker + sweeper (``forge rerun``, ``forge sweep``, ``forge resources``);
- ``readonly``: ``forge resources``, ``forge validate --live`` and ``forge estimate --live``: lists and reads, no
  mutation.

Rules the statements follow:

- every name the run makes is derived from the config with the run key (12 hex characters, unknown until the
  data is prepared) replaced by ``?`` wildcards of exactly that length, so a policy covers every run of the
  config and nothing else (``?`` matches one character:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html);
- Bedrock resources whose ARN carries an id Bedrock assigns (jobs, custom models, provisioned throughputs,
  deployments) are granted on ``<type>/*`` of this account and Region, conditioned on
  ``aws:ResourceTag/managed-by = bedrock-forge`` (reads, deletes, invokes) or ``aws:RequestTag/managed-by``
  (creates) — the condition keys each action supports, per the Service Authorization Reference
  (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html);
- ``Resource: "*"`` only for actions that have no resource type (the List* calls, ``pricing:GetProducts``), each
  saying so;
- no config value becomes a wildcard: a model id is named exactly (the LLM judge's, ``evaluation.judge.model``, is
  refused when it carries ``*``, ``?`` or ``$``);
- no ``*`` in any action.

Not granted, on purpose: ``sts:GetCallerIdentity`` needs no permission and cannot be denied
(https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html).

Plain functions over ``PipelineConfig``: no AWS call, no Prefect import (``forge permissions`` is a data verb).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, Field

from tasks.aws.clients import partition_of
from tasks.aws.tags import FLOW_RUN_TAG, MANAGED_BY_KEY, MANAGED_BY_VALUE
from tasks.catalog import CustomizationType, load_catalog
from tasks.config import PipelineConfig
from tasks.run.liveness import heartbeat_location
from tasks.run.names import compute_run_key, resource_names
from tasks.run.plan import serving_kind

Role = Literal["worker", "sweeper", "oncall", "readonly"]
ROLES: tuple[Role, ...] = ("worker", "sweeper", "oncall", "readonly")

SAR_BEDROCK = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html"
SAR_S3 = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html"
SAR_IAM = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html"
SAR_KMS = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awskeymanagementservice.html"
MANAGED_POLICY_MAX_CHARS = 6144   # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html

_MANAGED = {"StringEquals": {f"aws:ResourceTag/{MANAGED_BY_KEY}": MANAGED_BY_VALUE}}
_CREATES_MANAGED = {"StringEquals": {f"aws:RequestTag/{MANAGED_BY_KEY}": MANAGED_BY_VALUE}}


class Statement(BaseModel):
    """One IAM statement and what it is for."""

    sid: str = Field(pattern=r"^[A-Za-z0-9]+$")
    actions: list[str]
    resources: list[str]
    condition: dict[str, dict[str, str | list[str]]] = Field(default_factory=dict)
    steps: list[str] = Field(description="the pipeline steps / verbs whose calls need it")
    calls: list[str] = Field(description="the boto3 calls it covers, e.g. s3.head_bucket")
    why: str = Field(description="what it allows and why its resources are these (sources for wildcards)")

    def to_iam(self) -> dict:
        st: dict = {"Sid": self.sid, "Effect": "Allow", "Action": list(self.actions),
                    "Resource": self.resources[0] if len(self.resources) == 1 else list(self.resources)}
        if self.condition:
            st["Condition"] = json.loads(json.dumps(self.condition))
        return st


class PermissionPolicy(BaseModel):
    """The policy of one role for one config."""

    config_name: str
    role: Role
    account: str
    region: str
    statements: list[Statement]
    notes: list[str] = Field(default_factory=list)

    def document(self, *, without: str | None = None) -> dict:
        """The IAM policy document (``without``: the same minus the statement with that Sid)."""
        if without is not None and without not in self.sids():
            raise KeyError(f"no statement {without!r} in the {self.role} policy of {self.config_name}")
        return {"Version": "2012-10-17",
                "Statement": [s.to_iam() for s in self.statements if s.sid != without]}

    def sids(self) -> list[str]:
        return [s.sid for s in self.statements]

    def statement(self, sid: str) -> Statement:
        for s in self.statements:
            if s.sid == sid:
                return s
        raise KeyError(sid)

    def size(self) -> int:
        """Characters IAM counts against the managed-policy quota (whitespace is not counted)."""
        return len(json.dumps(self.document(), separators=(",", ":")))

    def documents(self, limit: int = MANAGED_POLICY_MAX_CHARS) -> list[dict]:
        """The statements packed, in order, into as few documents of at most ``limit`` characters as fit (one
        document when the policy fits one managed policy; attach them all)."""
        docs: list[list[dict]] = [[]]
        for st in self.statements:
            trial = {"Version": "2012-10-17", "Statement": [*docs[-1], st.to_iam()]}
            if docs[-1] and len(json.dumps(trial, separators=(",", ":"))) > limit:
                docs.append([])
            docs[-1].append(st.to_iam())
        return [{"Version": "2012-10-17", "Statement": d} for d in docs]


# ---------------------------------------------------------------------------------------------
# what a config makes: names with the run key as a wildcard
# ---------------------------------------------------------------------------------------------
class RunPatterns(BaseModel):
    """ARN patterns of everything the runs of one config touch."""

    partition: str
    region: str
    account: str
    bucket: str
    role_name: str
    role_is_named: bool
    data_files: str                  # object key pattern of the uploaded splits
    output_prefix: str               # <prefix>/output/<run key>/ (pattern)
    heartbeat_key: str
    lease_key: str
    evaluation_record_key: str
    metrics_prefix: str              # <output>/model-customization-job-<job id>/ (pattern)
    manifest_key: str                # <prefix>/runs/<run id>/manifest.json (pattern)
    data_report_key: str             # <prefix>/runs/<run id>/prepare-report.json (pattern)
    report_keys: list[str]           # the evaluation report's S3 copies (tasks/evaluate.py publish_report)
    registry_key: str                # <prefix>/registry/<name>/registry.json (tasks/registry)

    def s3(self, key: str = "") -> str:
        return f"arn:{self.partition}:s3:::{self.bucket}" + (f"/{key}" if key else "")

    def bedrock(self, kind: str, suffix: str, *, account: bool = True) -> str:
        return f"arn:{self.partition}:bedrock:{self.region}:{self.account if account else ''}:{kind}/{suffix}"

    def role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{self.role_name}"


def _wildcard(n: int) -> str:
    return "?" * n


def run_patterns(config: PipelineConfig, account: str) -> RunPatterns:
    """The names ``tasks.run.names.resource_names`` gives a run of ``config``, with the run key as ``?``s.

    The layout of the keys under ``aws.prefix`` is the one tasks/upload.py, tasks/run/liveness.py,
    tasks/evaluation/lease.py, tasks/evaluate.py and tasks/customize.py write (tests/permissions checks the
    patterns against those functions)."""
    key_len = len(compute_run_key(config, ""))
    sentinel = "k" * key_len                      # a run key made of one letter: replaced by '?'s below
    names = resource_names(config, sentinel, account=account)
    q = _wildcard(key_len)
    region = config.aws.region
    base = config.aws.prefix.strip("/")
    base = f"{base}/" if base else ""
    content = _wildcard(16)                       # tasks/upload.data_prefix: the content hash's first 16 chars
    out = f"{base}output/{q}/"
    _, beat = heartbeat_location(names.bucket, config.aws.prefix, q)
    role = names.role if config.aws.role_name else names.role.removesuffix(sentinel) + q
    return RunPatterns(
        partition=partition_of(region), region=region, account=account, bucket=names.bucket,
        role_name=role, role_is_named=config.aws.role_name is not None,
        data_files=f"{base}data/{content}/*.jsonl", output_prefix=out,
        heartbeat_key=beat.replace(sentinel, q), lease_key=f"{out}evaluation/serving.lease",
        evaluation_record_key=f"{out}evaluation/{_wildcard(16)}.json",
        metrics_prefix=f"{out}model-customization-job-{_wildcard(12)}/",
        manifest_key=f"{base}runs/*/manifest.json", data_report_key=f"{base}runs/*/prepare-report.json",
        report_keys=[f"{out}evaluation/{_wildcard(16)}/*", f"{out}evaluation/reeval-{_wildcard(8)}-{_wildcard(6)}/*"],
        registry_key=f"{base}registry/{config.name}/registry.json")


def serves(config: PipelineConfig) -> bool:
    """A run of this config serves its model (provision → evaluate → teardown): evaluation on, a test split."""
    return bool(config.evaluation.enabled and config.data.split.test > 0)


# ---------------------------------------------------------------------------------------------
# statements
# ---------------------------------------------------------------------------------------------
def _fm(p: RunPatterns, model_id: str, region: str | None = None) -> str:
    return f"arn:{p.partition}:bedrock:{region or p.region}::foundation-model/{model_id}"


def _teacher_model(config: PipelineConfig) -> str | None:
    """The id the pre-flight reads for the distillation teacher (a profile's model id, tasks/preflight.py)."""
    if config.customization_type != CustomizationType.DISTILLATION or config.distillation is None:
        return None
    cat = load_catalog()
    teacher = config.distillation.teacher_model
    if teacher.startswith("arn:"):
        return None   # an ARN teacher: the pre-flight reads nothing it can name here (see notes)
    geo = teacher.split(".", 1)[0]
    return teacher.split(".", 1)[1] if geo in cat.inference_profiles.geographies else teacher


def _read_foundation_models(config: PipelineConfig, p: RunPatterns) -> Statement:
    models = [config.base_model]
    teacher = _teacher_model(config)
    if teacher and teacher not in models:
        models.append(teacher)
    return Statement(
        sid="ReadFoundationModels", actions=["bedrock:GetFoundationModel"], resources=[_fm(p, m) for m in models],
        steps=["pre-flight", "forge validate --live"], calls=["bedrock.get_foundation_model"],
        why="the live pre-flight reads the base model" + (" and the distillation teacher" if teacher else "")
            + " (lifecycle, customizations) before anything is created; exact foundation-model ARNs")


SAR_PRICING = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_pricing.html"


def reads_prices(config: PipelineConfig) -> bool:
    """The run reads the AWS Price List: ``budget.live_prices`` on and the catalog names the base model's usage types
    in the run's Region (tasks/estimate.py ``live_prices`` asks nothing otherwise)."""
    from tasks.estimate import price_usage_types

    return config.budget.live_prices and any(price_usage_types(config).values())


def _read_prices(steps: list[str]) -> Statement:
    return Statement(
        sid="ReadPrices", actions=["pricing:GetProducts"], resources=["*"], steps=steps,
        calls=["pricing.get_products"],
        why="the spend guard reads the base model's prices from the AWS Price List before the run spends "
            "(budget.live_prices; read-only); pricing:GetProducts has no resource type, so Resource \"*\" "
            f"({SAR_PRICING})")


_LIST_BUCKET_WHY = ("HeadBucket is authorized as s3:ListBucket, and a GetObject/HeadObject of a key that does not "
                    "exist answers 404 only with s3:ListBucket (403 without: https://docs.aws.amazon.com/AmazonS3/"
                    "latest/API/API_GetObject.html), which the upload skip check and the reads of the evaluation "
                    "record, the lease and the heartbeat rely on; unconditioned because HeadBucket carries no "
                    "s3:prefix")


def _list_run_bucket(p: RunPatterns, steps: list[str]) -> Statement:
    return Statement(sid="ListRunBucket", actions=["s3:ListBucket"], resources=[p.s3()], steps=steps,
                     calls=["s3.get_object (404 of a missing key)", "s3.list_objects_v2"],
                     why=_LIST_BUCKET_WHY + "; forge status --runs-uri lists <prefix>/runs/; the run's bucket only")


def _bucket_statements(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    out = [
        Statement(
            sid="SetUpRunBucket",
            actions=["s3:ListBucket", "s3:CreateBucket", "s3:GetBucketLocation", "s3:GetBucketPublicAccessBlock",
                     "s3:PutBucketPublicAccessBlock", "s3:GetEncryptionConfiguration",
                     "s3:PutEncryptionConfiguration", "s3:GetBucketPolicy", "s3:PutBucketPolicy"],
            resources=[p.s3()], steps=["upload", "evaluate"],
            calls=["s3.head_bucket", "s3.list_objects_v2", "s3.create_bucket", "s3.get_bucket_location",
                   "s3.get_public_access_block",
                   "s3.put_public_access_block", "s3.get_bucket_encryption", "s3.put_bucket_encryption",
                   "s3.get_bucket_policy", "s3.put_bucket_policy"],
            why="ensure_bucket: find the run's bucket, create it when missing, block public access, default "
                "encryption, the TLS-only bucket policy (each Put only when the setting drifted); this bucket only. "
                + _LIST_BUCKET_WHY),
        Statement(
            sid="UploadTrainingData",
            actions=["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:AbortMultipartUpload"],
            resources=[p.s3(p.data_files)], steps=["upload", "evaluate (on another machine)"],
            calls=["s3.head_object", "s3.upload_file", "s3.download_file"],
            why="the prepared splits at <prefix>/data/<16 hex of the content hash>/<split>.jsonl: HeadObject "
                "(s3:GetObject) skips an unchanged upload, and a re-evaluation on another machine downloads the "
                "test split it uploaded (GetObject); PutObject with the managed-by tag needs "
                "s3:PutObjectTagging too (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html); "
                "s3transfer aborts a failed multipart upload (files of 8 MiB and more) with AbortMultipartUpload"),
    ]
    src = config.data.source
    if src.startswith("s3://"):
        bucket, _, key = src[len("s3://"):].partition("/")
        out.append(Statement(
            sid="ReadSourceData", actions=["s3:GetObject"], resources=[f"arn:{p.partition}:s3:::{bucket}/{key}"],
            steps=["prepare"], calls=["s3.head_object", "s3.get_object"],
            why="data.source is an S3 object: prepare reads it (and HeadObject for the cache key); that object only"))
    if config.serving.delete_data:
        out.append(Statement(
            sid="DeleteUploadedData", actions=["s3:GetObjectTagging", "s3:DeleteObject"],
            resources=[p.s3(p.data_files)], steps=["teardown"],
            calls=["s3.get_object_tagging", "s3.delete_object"],
            why="serving.delete_data: teardown deletes the uploaded splits, after reading that they carry the "
                "managed-by tag"))
    return out


def _role_statements(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    role = p.role_arn()
    out = [Statement(
        sid="ReadServiceRole", actions=["iam:GetRole"], resources=[role], steps=["create-role"],
        calls=["iam.get_role"],
        why=("aws.role_name names an existing role: the run reads it and uses it unchanged" if p.role_is_named else
             "get-or-create: the run looks the service role up first (unconditioned: a tag condition would turn "
             "NoSuchEntity into AccessDenied for a role that does not exist yet); the name is "
             "bedrock-forge-<config name>-<run key>"))]
    if not p.role_is_named:
        out += [
            Statement(
                sid="CreateServiceRole", actions=["iam:CreateRole"], resources=[role], condition=_CREATES_MANAGED,
                steps=["create-role"], calls=["iam.create_role"],
                why="creates the run's service role, only with the managed-by tag (aws:RequestTag, " + SAR_IAM + ")"),
            Statement(
                sid="WriteRolePolicy",
                actions=["iam:GetRolePolicy", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy",
                         "iam:ListRolePolicies", "iam:DeleteRolePolicy"],
                resources=[role], condition=_MANAGED, steps=["create-role", "poll (release the run's policy)"],
                calls=["iam.get_role_policy", "iam.put_role_policy", "iam.update_assume_role_policy",
                       "iam.list_role_policies", "iam.delete_role_policy"],
                why="writes the run's inline permission policy (and a drifted trust policy) on its own role; deletes "
                    "it once the job no longer needs it, and prunes finished runs' policies when the role's inline "
                    "policies are full (tasks/iam.py release_run_policy, prune_role_policies); only while the role "
                    "carries managed-by=bedrock-forge (aws:ResourceTag, " + SAR_IAM + ")"),
        ]
    out.append(Statement(
        sid="PassServiceRole", actions=["iam:PassRole"], resources=[role],
        condition={"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}, steps=["customize"],
        calls=["bedrock.create_model_customization_job"],
        why="CreateModelCustomizationJob passes the service role: only this role, only to Bedrock "
            "(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html)"))
    return out


def _kms_statements(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    key = config.aws.kms_key_id
    if not key:
        return []
    tail = key.rsplit(":", 1)[-1] if key.startswith("arn:") else key
    key_any = f"arn:{p.partition}:kms:{p.region}:{p.account}:key/*"
    out: list[Statement] = []
    if tail.startswith("alias/"):
        out.append(Statement(
            sid="ResolveKmsAlias", actions=["kms:DescribeKey"], resources=[key_any],
            condition={"StringEquals": {"kms:RequestAlias": tail}}, steps=["create-role"],
            calls=["kms.describe_key"],
            why=f"aws.kms_key_id is an alias: DescribeKey resolves it to the key ARN the service role is granted on. "
                f"The key id is what the alias resolves to, so key/* conditioned on kms:RequestAlias={tail} "
                "(https://docs.aws.amazon.com/kms/latest/developerguide/alias-authorization.html)"))
        key_resources, key_cond = [key_any], {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [tail]}}
    else:
        arn = key if key.startswith("arn:") else f"arn:{p.partition}:kms:{p.region}:{p.account}:key/{key}"
        key_resources, key_cond = [arn], {}
    out += [
        Statement(
            sid="UseKmsKeyThroughS3", actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=key_resources,
            condition={**key_cond, "StringEquals": {"kms:ViaService": f"s3.{p.region}.amazonaws.com"}},
            steps=["upload", "poll", "evaluate"], calls=["s3.upload_file", "s3.put_object", "s3.get_object"],
            why="the bucket encrypts with this key (SSE-KMS): S3 generates a data key for every put and decrypts "
                "every get on the caller's behalf (https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
                "UsingKMSEncryption.html); only through S3 in this Region"),
        Statement(
            sid="UseKmsKeyThroughBedrock",
            actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant"],
            resources=key_resources,
            condition={**key_cond, "StringEquals": {"kms:ViaService": f"bedrock.{p.region}.amazonaws.com"}},
            steps=["customize", "provision", "evaluate"],
            calls=["bedrock.create_model_customization_job", "bedrock.create_provisioned_model_throughput",
                   "bedrock-runtime.invoke_model"],
            why="the custom model is encrypted with this key (customModelKmsKeyId): Bedrock uses it for the "
                "identity that creates the job and the one that invokes the model "
                "(https://docs.aws.amazon.com/nova/latest/userguide/customize-fine-tune-encrypt.html); only "
                "through Bedrock in this Region"),
    ]
    return out


def _job_statements(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    jobs = p.bedrock("model-customization-job", "*")
    return [
        _list_jobs(["customize", "cancel"]),
        Statement(
            sid="StartJob", actions=["bedrock:CreateModelCustomizationJob"],
            resources=[_fm(p, config.base_model), p.bedrock("custom-model", "*")], condition=_CREATES_MANAGED,
            steps=["customize"], calls=["bedrock.create_model_customization_job"],
            why="on the base model's foundation-model ARN and the custom model it creates, whose id Bedrock "
                "assigns (custom-model/*), only with the managed-by request tag (the action's resource types "
                "custom-model and foundation-model support aws:RequestTag, " + SAR_BEDROCK + ")"),
        Statement(
            sid="ReadManagedJobs", actions=["bedrock:GetModelCustomizationJob", "bedrock:ListTagsForResource"],
            resources=[jobs], condition=_MANAGED, steps=["customize", "poll", "cancel"],
            calls=["bedrock.get_model_customization_job", "bedrock.list_tags_for_resource"],
            why="poll the job, confirm an adopted job is this run's (its tags); job ids are assigned by Bedrock, so "
                "model-customization-job/* of this account and Region, only jobs tagged managed-by=bedrock-forge "
                "(aws:ResourceTag, " + SAR_BEDROCK + ")"),
        Statement(
            sid="RetagResumedJob", actions=["bedrock:TagResource"], resources=[jobs],
            condition={**_MANAGED, "ForAllValues:StringEquals": {"aws:TagKeys": [FLOW_RUN_TAG]}},
            steps=["customize"], calls=["bedrock.tag_resource"],
            why=f"a resumed run re-tags its own running job with its new {FLOW_RUN_TAG} (so cancelling it stops "
                "the job); managed jobs only, and that one tag key only"),
        Statement(
            sid="StopManagedJobs", actions=["bedrock:StopModelCustomizationJob"], resources=[jobs],
            condition=_MANAGED, steps=["cancel", "poll (job.stop_on_timeout)"],
            calls=["bedrock.stop_model_customization_job"],
            why="cancelling a run stops the job it started (job.stop_on_cancel); managed jobs only"),
        Statement(
            sid="ReadManagedModels", actions=["bedrock:GetCustomModel"],
            resources=[p.bedrock("custom-model", "*")], condition=_MANAGED,
            steps=["poll", "customize (start_from champion)"], calls=["bedrock.get_custom_model"],
            why="the finished job's model ARN, when GetModelCustomizationJob does not carry outputModelArn, and the "
                "champion a job continues from (start_from: champion); custom-model/* (ids assigned by Bedrock), "
                "managed models only"),
    ]


def _list_jobs(steps: list[str]) -> Statement:
    return Statement(
        sid="ListJobs", actions=["bedrock:ListModelCustomizationJobs"], resources=["*"], steps=steps,
        calls=["bedrock.list_model_customization_jobs"],
        why="finds the run's job by its deterministic name (and the running jobs of a cancelled flow run). "
            "Resource \"*\": ListModelCustomizationJobs has no resource type (" + SAR_BEDROCK + ")")


def _list_serving(steps: list[str]) -> Statement:
    return Statement(
        sid="ListServing",
        actions=["bedrock:ListProvisionedModelThroughputs", "bedrock:ListCustomModelDeployments"],
        resources=["*"], steps=steps,
        calls=["bedrock.list_provisioned_model_throughputs", "bedrock.list_custom_model_deployments"],
        why="finds serving resources by name (adopt) and by tags (teardown, cleanup hooks, sweep, forge resources). "
            "Resource \"*\": both List actions have no resource type (" + SAR_BEDROCK + ")")


def _serving_tags(kind: str, p: RunPatterns, steps: list[str]) -> Statement:
    arn = p.bedrock("provisioned-model" if kind == "provisioned" else "custom-model-deployment", "*")
    what = "Throughput" if kind == "provisioned" else "Deployment"
    return Statement(
        sid=f"Read{what}Tags", actions=["bedrock:ListTagsForResource"], resources=[arn], condition=_MANAGED,
        steps=steps, calls=["bedrock.list_tags_for_resource"],
        why="every delete and every sweep verdict reads the resource's tags first; ids are assigned by Bedrock, so "
            f"{arn.rsplit(':', 1)[1]} of this account and Region, only resources tagged managed-by=bedrock-forge "
            "(others are never read, hence never touched)")


def _delete_serving(kind: str, p: RunPatterns, steps: list[str]) -> Statement:
    if kind == "provisioned":
        arn, action, what = p.bedrock("provisioned-model", "*"), "DeleteProvisionedModelThroughput", \
            "Throughput"
    else:
        arn, action, what = p.bedrock("custom-model-deployment", "*"), "DeleteCustomModelDeployment", "Deployment"
    return Statement(
        sid=f"Delete{what}", actions=[f"bedrock:{action}"], resources=[arn], condition=_MANAGED, steps=steps,
        calls=[f"bedrock.{_snake(action)}"],
        why="teardown, the cleanup hooks, the watchdog and the sweep delete serving resources tagged "
            "managed-by=bedrock-forge only (aws:ResourceTag, " + SAR_BEDROCK + ")")


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


_PROFILE_PREREQ = "https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-prereq.html"


def _is_profile_id(target: str) -> bool:
    """A system cross-Region inference profile id (``us.amazon.nova-lite-v1:0``): a geography prefix."""
    geo = target.split(".", 1)[0]
    return geo in load_catalog().inference_profiles.geographies and target.count(".") >= 2


def _profile_targets(p: RunPatterns, target: str) -> list[str]:
    """InvokeModel through an inference profile is authorized on the profile and on the foundation model in each
    of its destination Regions (``_PROFILE_PREREQ``). Raises UnknownProfileError when the catalog cannot name
    the Regions (a ``global.`` profile, an unknown one)."""
    model = target.split(".", 1)[1]
    regions = load_catalog().profile_regions(target)
    return ([f"arn:{p.partition}:bedrock:{p.region}:{p.account}:inference-profile/{target}"]
            + [_fm(p, model, r) for r in regions])


def _base_model_targets(config: PipelineConfig, p: RunPatterns) -> tuple[list[str], str]:
    """ARNs to allow bedrock:InvokeModel on for the base model the evaluation compares with."""
    target = load_catalog().inference_id(config.base_model)
    if _is_profile_id(target):
        return (_profile_targets(p, target),
                f"the base model through the inference profile {target}: the profile and the foundation model in "
                f"each of its destination Regions ({_PROFILE_PREREQ})")
    return [_fm(p, target)], f"the base model {target} on demand"


# ---------------------------------------------------------------------------------------------
# the LLM judge (evaluation.judge, issue 19): tasks/evaluate.py judge_outputs, tasks/evaluation/judge.py
# ---------------------------------------------------------------------------------------------
# the wildcards and the policy-variable sign of an IAM Resource: never taken from a config value
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html,
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html)
_POLICY_SPECIAL = "*?$"


def judge_invoke_id(config: PipelineConfig) -> str | None:
    """The id the judge is invoked with (``Catalog.invoke_id``, as tasks/evaluate.py ``judge_target`` uses it);
    None without ``evaluation.judge``."""
    jc = config.evaluation.judge
    return None if jc is None else load_catalog().invoke_id(jc.model)


def judge_cache_key(config: PipelineConfig, p: RunPatterns) -> str | None:
    """The S3 key of the judge's cache (tasks/evaluation/judge.py ``cache_uri``): <output>/evaluation/judge/
    <cache_name(model, rubric)>.json, with the run key as ``?``s; None without ``evaluation.judge``."""
    jc = config.evaluation.judge
    if jc is None:
        return None
    # imported only with a judge: the module brings pandas
    from tasks.evaluation.judge import cache_name

    return f"{p.output_prefix}evaluation/judge/{cache_name(jc.model, jc.rubric)}.json"


def _judge_targets(config: PipelineConfig, p: RunPatterns) -> tuple[list[str], str, str | None]:
    """(ARNs to allow bedrock:InvokeModel on for the judge, why, a note when the policy cannot name them all)."""
    target = judge_invoke_id(config)
    assert target is not None
    bad = sorted(set(target) & set(_POLICY_SPECIAL))
    if bad:
        raise ValueError(f"evaluation.judge.model {target!r} contains {' '.join(bad)}: a model id never does, and "
                         "in a policy it would be a wildcard")
    cat = load_catalog()
    if target.startswith("arn:"):
        res, why = [target], f"the judge given as an ARN ({target}): that ARN exactly"
        if ":inference-profile/" in target:
            pid = target.rsplit("inference-profile/", 1)[1]
            try:
                regions = cat.profile_regions(pid)
            except ValueError:       # UnknownProfileError: no Regions to name
                return res, why, (f"evaluation.judge.model is the inference profile ARN {target}: only that ARN is "
                                  "granted; add the foundation model in each Region it routes to "
                                  f"({_PROFILE_PREREQ})")
            res += [_fm(p, pid.split(".", 1)[1], r) for r in regions]
            why += f", and the foundation model in each destination Region of the profile ({_PROFILE_PREREQ})"
        return res, why, None
    if _is_profile_id(target):
        try:
            return (_profile_targets(p, target),
                    f"the judge through the inference profile {target}: the profile and the foundation model in "
                    f"each of its destination Regions ({_PROFILE_PREREQ})", None)
        except ValueError:           # UnknownProfileError: a global. profile, or one the catalog lacks
            return ([f"arn:{p.partition}:bedrock:{p.region}:{p.account}:inference-profile/{target}"],
                    f"the judge through the inference profile {target}: the profile",
                    f"the judge's inference profile {target} routes to Regions the catalog does not list: only the "
                    f"profile is granted; add the foundation model in each Region it routes to ({_PROFILE_PREREQ})")
    return [_fm(p, target)], f"the judge {target} on demand (its foundation-model ARN exactly)", None


def _judge_statements(config: PipelineConfig, p: RunPatterns, serving: list[Statement]) -> list[Statement]:
    """``serving`` (the serving statements, InvokeBaseModel among them) with the judge's grants: its invoke targets
    that InvokeBaseModel does not already grant (none left: InvokeBaseModel names the judge too), and its cache."""
    if config.evaluation.judge is None:
        return serving
    res, why, _ = _judge_targets(config, p)
    steps = ["evaluate (evaluation.judge)", "forge evaluate"]     # flows/customize.py, flows/evaluate.py
    invoke: Statement | None = Statement(
        sid="InvokeJudgeModel", actions=["bedrock:InvokeModel"], resources=res, steps=steps,
        calls=["bedrock-runtime.invoke_model"],
        why="the LLM judge compares the custom model's answers with the base model's (and the champion's), each "
            "pair asked twice (tasks/evaluation/judge.py), after the serving is gone: " + why
            + "; foundation models and inference profiles support no tag condition (" + SAR_BEDROCK + ")")
    out: list[Statement] = []
    for st in serving:
        if st.sid == "InvokeBaseModel" and invoke is not None and _covers(st, invoke):   # the base's target
            st = st.model_copy(update={
                "steps": list(dict.fromkeys(st.steps + steps)),
                "why": st.why + "; the LLM judge (evaluation.judge) invokes the same target"})
            invoke = None
        elif st.sid == "InvokeBaseModel" and invoke is not None:
            rest = [r for r in invoke.resources if r not in st.resources]
            if rest != invoke.resources:
                invoke = invoke.model_copy(update={
                    "resources": rest, "why": invoke.why + "; the ARNs InvokeBaseModel grants are not repeated"})
        out.append(st)
    if invoke is not None:
        out.append(invoke)
    key = judge_cache_key(config, p)
    assert key is not None
    out.append(Statement(
        sid="ReadWriteJudgeCache", actions=["s3:GetObject", "s3:PutObject"], resources=[p.s3(key)], steps=steps,
        calls=["s3.get_object", "s3.put_object"],
        why="the judge's cache, one document next to the evaluation records (tasks/evaluation/judge.py cache_uri): "
            "read before judging (a missing one answers 404 with the s3:ListBucket of SetUpRunBucket: https://docs.aws."
            "amazon.com/AmazonS3/latest/API/API_GetObject.html) and written "
            "after, so a rerun pays for no judge call; <output>/evaluation/judge/<sha256 of the judge model and "
            "rubric, 16 hex>.json, the file name fixed by the config"))
    return out


def _serving_kind_actions(kind: str, p: RunPatterns) -> tuple[str, str, str, str, str]:
    """(resource pattern, Sid word, create / get / delete action) of a serving ``kind``: a no-commitment PT
    ("provisioned") or an on-demand custom model deployment (anything else)."""
    if kind == "provisioned":
        return (p.bedrock("provisioned-model", "*"), "Throughput", "CreateProvisionedModelThroughput",
                "GetProvisionedModelThroughput", "DeleteProvisionedModelThroughput")
    return (p.bedrock("custom-model-deployment", "*"), "Deployment", "CreateCustomModelDeployment",
            "GetCustomModelDeployment", "DeleteCustomModelDeployment")


def _serving_statements(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    kind = serving_kind(config)
    models = p.bedrock("custom-model", "*")
    res, what, create, get, delete = _serving_kind_actions(kind, p)
    base, base_why = _base_model_targets(config, p)
    return [
        Statement(
            sid=f"Create{what}", actions=[f"bedrock:{create}"], resources=[models],
            condition={"StringEquals": {f"aws:ResourceTag/{MANAGED_BY_KEY}": MANAGED_BY_VALUE,
                                        f"aws:RequestTag/{MANAGED_BY_KEY}": MANAGED_BY_VALUE}},
            steps=["provision"], calls=[f"bedrock.{_snake(create)}"],
            why=f"serves the run's custom model for the evaluation ({serving_kind(config)}): only a managed custom "
                "model, only with the managed-by request tag (the custom-model resource type supports "
                "aws:ResourceTag and aws:RequestTag, " + SAR_BEDROCK + ")"),
        Statement(
            sid=f"Manage{what}", actions=[f"bedrock:{get}", "bedrock:ListTagsForResource", f"bedrock:{delete}"],
            resources=[res], condition=_MANAGED, steps=["provision", "teardown", "cleanup hooks", "watchdog"],
            calls=[f"bedrock.{_snake(get)}", "bedrock.list_tags_for_resource", f"bedrock.{_snake(delete)}"],
            why="waits for it to be in service; reads its tags before deleting it (teardown, the cleanup hooks and "
                "the watchdog delete only what carries managed-by=bedrock-forge) and deletes it; ids are assigned "
                "by Bedrock, so <type>/* of this account and Region, managed resources only (aws:ResourceTag, "
                + SAR_BEDROCK + ")"),
        Statement(
            sid=f"Invoke{what}", actions=["bedrock:InvokeModel"], resources=[res], condition=_MANAGED,
            steps=["evaluate"], calls=["bedrock-runtime.invoke_model"],
            why="the evaluation calls the custom model through its serving resource; managed ones only "
                "(InvokeModel supports aws:ResourceTag on these resource types, " + SAR_BEDROCK + ")"),
        Statement(
            sid="InvokeBaseModel", actions=["bedrock:InvokeModel"], resources=base, steps=["evaluate"],
            calls=["bedrock-runtime.invoke_model"],
            why=base_why + "; foundation models and inference profiles support no tag condition"),
        Statement(
            sid="WriteServingLeases", actions=["s3:PutObject", "s3:DeleteObject"],
            resources=[p.s3(p.heartbeat_key), p.s3(p.lease_key)],
            steps=["provision", "evaluate", "teardown", "watchdog"], calls=["s3.put_object", "s3.delete_object"],
            why="while it serves, the run's liveness heartbeat (tasks/run/liveness.py) and the serving lease "
                "(tasks/evaluation/lease.py), each refreshed and deleted afterwards; those keys only"),
    ]


def _read_heartbeats(p: RunPatterns, steps: list[str]) -> Statement:
    return Statement(
        sid="ReadServingHeartbeats", actions=["s3:GetObject"], resources=[p.s3(p.heartbeat_key)], steps=steps,
        calls=["s3.get_object"],
        why="whether the owner of a serving resource is alive (the key its forge-heartbeat tag names) decides "
            "whether the sweep deletes it; this config's heartbeat keys only")


def _output_reads(config: PipelineConfig, p: RunPatterns) -> Statement:
    keys = [p.metrics_prefix + "*", p.evaluation_record_key]
    if serves(config):
        keys += [p.lease_key, p.heartbeat_key]
    keys += [p.manifest_key, p.data_report_key]
    return Statement(
        sid="ReadRunOutputs", actions=["s3:GetObject"], resources=[p.s3(k) for k in keys],
        steps=["poll", "evaluate"] + (["evaluate (rerun)"] if serves(config) else [])
              + ["upload (run manifest)", "forge rerun --runs-uri"], calls=["s3.get_object", "s3.head_object"],
        why="the metric files the job writes under <output>/model-customization-job-<job id>/ "
            "(docs/bedrock-facts.md §6); a recorded evaluation, which a rerun reuses before serving anything"
            + ("; the serving lease (tasks/evaluation/lease.py) and the heartbeat a rerun checks before deleting "
               "what an earlier attempt left" if serves(config) else "")
            + "; the run's manifest in its bucket (tasks/run/store.py) and whether the prepared data's report "
              "there is current (HeadObject); <output> = <prefix>/output/<run key>/")


def _record_writes(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    keys = ([p.evaluation_record_key] if serves(config) else []) + [p.manifest_key, p.data_report_key]
    reports = [Statement(
        sid="WriteReports", actions=["s3:PutObject"], resources=[p.s3(k) for k in p.report_keys],
        steps=["evaluate", "forge evaluate"], calls=["s3.put_object"],
        why="the evaluation report's files (report.md, charts, examples.csv, summary.json) next to the evaluation "
            "record, readable from any machine: <output>/evaluation/<evaluation key>/ for a run, "
            "<output>/evaluation/reeval-<yyyymmdd>-<hhmmss>/ for a re-evaluation (tasks/evaluate.py publish_report); "
            "the artifacts link them (a presigned link is signed locally and needs the reader's s3:GetObject only "
            "when opened, on another S3 endpoint than AWS's)")] if serves(config) else []
    return reports + [Statement(
        sid="WriteRunRecords", actions=["s3:PutObject"], resources=[p.s3(k) for k in keys],
        steps=(["evaluate"] if serves(config) else []) + ["upload and after", "watchdog", "cleanup hooks"],
        calls=["s3.put_object"],
        why=("the finished evaluation's record next to the job output, which a rerun reuses; " if serves(config)
             else "")
            + "the run's manifest in its bucket from the upload on (tasks/run/store.py, conditional puts) and "
              "the prepared data's report next to it: <prefix>/runs/<run id>/manifest.json and prepare-report.json, "
              "where a run id is a name people may choose "
              "(tasks/run/names.py RUN_ID_RE), hence the * segment")]


# ---------------------------------------------------------------------------------------------
# roles
# ---------------------------------------------------------------------------------------------
def _worker(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    out = [_read_foundation_models(config, p), *_bucket_statements(config, p), *_role_statements(config, p),
           *_kms_statements(config, p), *_job_statements(config, p), _output_reads(config, p),
           _list_serving(["provision", "teardown", "cleanup hooks"])]
    out += _record_writes(config, p)
    if reads_prices(config):
        out.append(_read_prices(["spend guard", "forge estimate --live"]))
    if serves(config):
        out += _judge_statements(config, p, _serving_statements(config, p))
    out += _production_statements(config, p)
    if config.serving.delete_custom_model:
        out.append(Statement(
            sid="DeleteManagedCustomModel", actions=["bedrock:DeleteCustomModel", "bedrock:ListTagsForResource"],
            resources=[p.bedrock("custom-model", "*")], condition=_MANAGED, steps=["teardown"],
            calls=["bedrock.list_tags_for_resource", "bedrock.delete_custom_model"],
            why="serving.delete_custom_model: after a passed run, teardown deletes the custom model (its tags are "
                "read first); managed models only"))
    return out


def _production_statements(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    """Registry and promotion (tasks/registry, tasks/promote.py) when the config has a production section."""
    out = [Statement(
        sid="ReadWriteRegistry", actions=["s3:GetObject", "s3:PutObject"], resources=[p.s3(p.registry_key)],
        steps=["customize (start_from champion)", "promote", "forge models", "forge promote", "forge rollback"],
        calls=["s3.get_object", "s3.put_object"],
        why="the lineage's registry (versions, champion pointer), conditional writes (tasks/registry): "
            "<prefix>/registry/<config name>/registry.json only"),
        Statement(
            sid="TagManagedModels", actions=["bedrock:TagResource", "bedrock:UntagResource",
                                             "bedrock:ListTagsForResource"],
            resources=[p.bedrock("custom-model", "*")], condition=_MANAGED, steps=["promote"],
            calls=["bedrock.tag_resource", "bedrock.untag_resource", "bedrock.list_tags_for_resource"],
            why="forge-lineage/forge-version on the run's custom model, and forge-role=production moved to the "
                "champion's model (teardown never deletes a production model); managed models only")]
    if config.production.mode == "none":
        if config.start_from == "champion":     # reads the champion pointer only; promotion is not this config's
            return [Statement(
                sid="ReadRegistry", actions=["s3:GetObject"], resources=[p.s3(p.registry_key)],
                steps=["customize (start_from champion)"], calls=["s3.get_object"],
                why="the lineage's champion, which the job continues from (start_from: champion): "
                    "<prefix>/registry/<config name>/registry.json only")]
        return []                # no registry, no champion, no promotion (flows/customize.py)
    q = p.output_prefix.split("/output/", 1)[0] + "/output/" if "/output/" in p.output_prefix else "output/"
    outputs = f"{p.output_prefix}evaluation/outputs/*.json"
    champion_outputs = f"{q}*/evaluation/outputs/*.json"
    out.append(Statement(
        sid="RecordOutputsForChallengers", actions=["s3:PutObject", "s3:GetObject"],
        resources=[p.s3(outputs), p.s3(champion_outputs)], steps=["evaluate"],
        calls=["s3.put_object", "s3.get_object"],
        why="the model's per-example outputs on its test split, which a later challenger on the same split reuses "
            "instead of serving the champion again (tasks/evaluation/champion.py); the champion's own, read under "
            "its run key's output prefix: <prefix>/output/<run key>/evaluation/outputs/<key>.json"))
    from tasks.run.plan import production_kind

    kind = production_kind(config)
    res, what, create, get, delete = _serving_kind_actions(kind, p)
    return out + [
        Statement(
            sid=f"CreateProduction{what}", actions=[f"bedrock:{create}"], resources=[p.bedrock("custom-model", "*")],
            condition={"StringEquals": {f"aws:ResourceTag/{MANAGED_BY_KEY}": MANAGED_BY_VALUE,
                                        f"aws:RequestTag/{MANAGED_BY_KEY}": MANAGED_BY_VALUE}},
            steps=["promote", "forge rollback"], calls=[f"bedrock.{_snake(create)}"],
            why=f"production serving of the champion ({kind}, production.mode {config.production.mode}): only a "
                "managed custom model, only with the managed-by request tag"),
        Statement(
            sid=f"ManageProduction{what}", actions=[f"bedrock:{get}", "bedrock:ListTagsForResource",
                                                    f"bedrock:{delete}", "bedrock:InvokeModel"],
            resources=[res], condition=_MANAGED, steps=["promote", "forge rollback"],
            calls=[f"bedrock.{_snake(get)}", "bedrock.list_tags_for_resource", f"bedrock.{_snake(delete)}",
                   "bedrock-runtime.invoke_model"],
            why="waits for the new production serving, smoke-tests it (one InvokeModel) before the registry switch, "
                "and retires the old champion's; managed ones only"),
    ]


def _sweeper(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    steps = ["sweep"]
    return [
        _list_serving(steps),
        _serving_tags("provisioned", p, steps),
        _serving_tags("deployment", p, steps),
        _list_run_bucket(p, steps),
        _read_heartbeats(p, steps),
        _delete_serving("provisioned", p, steps),
        _delete_serving("deployment", p, steps),
        _list_jobs(["sweep (stuck cancellations)"]),
        Statement(
            sid="ReadManagedJobTags", actions=["bedrock:ListTagsForResource"],
            resources=[p.bedrock("model-customization-job", "*")], condition=_MANAGED,
            steps=["sweep (stuck cancellations)"], calls=["bedrock.list_tags_for_resource"],
            why="a flow run stuck in Cancelling: its jobs are found by their forge-flow-run-id tag; managed jobs "
                "only"),
        Statement(
            sid="StopManagedJobs", actions=["bedrock:StopModelCustomizationJob"],
            resources=[p.bedrock("model-customization-job", "*")], condition=_MANAGED,
            steps=["sweep (stuck cancellations)"], calls=["bedrock.stop_model_customization_job"],
            why="stops the job of a flow run whose worker died while cancelling it; managed jobs only"),
    ]


def _readonly(config: PipelineConfig, p: RunPatterns) -> list[Statement]:
    steps = ["forge resources"]
    prices = [_read_prices(["forge estimate --live"])] if reads_prices(config) else []
    return [_read_foundation_models(config, p), *prices, _list_serving(steps), _serving_tags("provisioned", p, steps),
            _serving_tags("deployment", p, steps),
            _list_run_bucket(p, ["forge resources", "forge status --runs-uri"]), _read_heartbeats(p, steps),
            Statement(
                sid="ReadRunManifests", actions=["s3:GetObject"], resources=[p.s3(p.manifest_key)],
                steps=["forge status --runs-uri"], calls=["s3.get_object"],
                why="forge status --runs-uri lists the runs kept in the bucket (s3:ListBucket) and reads their "
                    "manifests (tasks/run/store.py); <prefix>/runs/<run id>/manifest.json only")]


def _covers(a: Statement, b: Statement) -> bool:
    """``a`` grants everything ``b`` does (same condition, a superset of actions and resources)."""
    return a.condition == b.condition and set(b.actions) <= set(a.actions) and set(b.resources) <= set(a.resources)


def _union(*groups: list[Statement]) -> list[Statement]:
    """Statements of several roles: one per Sid (the same Sid must mean the same grant), and none that another
    statement already covers (each statement left is needed: removing it denies something)."""
    out: dict[str, Statement] = {}
    for group in groups:
        for st in group:
            have = out.get(st.sid)
            if have is None:
                out[st.sid] = st
                continue
            if (have.actions, have.resources, have.condition) != (st.actions, st.resources, st.condition):
                raise ValueError(f"statement {st.sid} differs between roles")
            out[st.sid] = have.model_copy(update={"steps": list(dict.fromkeys(have.steps + st.steps))})
    items = list(out.values())

    def covered(i: int) -> int | None:
        """The index of a statement that covers statement ``i`` (of two that cover each other, the first stays)."""
        for j, other in enumerate(items):
            if j != i and _covers(other, items[i]) and not (j > i and _covers(items[i], other)):
                return j
        return None

    by = {i: covered(i) for i in range(len(items))}
    kept = [i for i in range(len(items)) if by[i] is None]
    steps = {i: list(items[i].steps) for i in kept}
    for i, j in by.items():
        while j is not None and by[j] is not None:     # follow to a statement that stays
            j = by[j]
        if j is not None:
            steps[j] = list(dict.fromkeys(steps[j] + items[i].steps))
    return [items[i].model_copy(update={"steps": steps[i]}) for i in kept]


def permission_policy(config: PipelineConfig, role: Role = "worker", *, account: str) -> PermissionPolicy:
    """The least-privilege policy of ``role`` for the runs of ``config`` in ``account`` (12 digits)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not (isinstance(account, str) and len(account) == 12 and account.isdigit()):
        raise ValueError(f"account must be a 12-digit AWS account id, got {account!r}")
    p = run_patterns(config, account)
    if role == "worker":
        statements = _worker(config, p)
    elif role == "sweeper":
        statements = _sweeper(config, p)
    elif role == "oncall":
        statements = _union(_worker(config, p), _sweeper(config, p))
    else:
        statements = _readonly(config, p)
    sids = [s.sid for s in statements]
    if len(set(sids)) != len(sids):
        raise ValueError(f"duplicate statement ids in the {role} policy: {sids}")
    for st in statements:
        if any("*" in a or "?" in a for a in st.actions):
            raise ValueError(f"{st.sid}: an action with a wildcard")
    notes = _notes(config, p, role)
    policy = PermissionPolicy(config_name=config.name, role=role, account=account, region=p.region,
                              statements=statements, notes=notes)
    if policy.size() > MANAGED_POLICY_MAX_CHARS:
        policy.notes.append(f"{policy.size()} characters: over IAM's {MANAGED_POLICY_MAX_CHARS} for one managed "
                            "policy; split it in two (by statement) or use an inline role policy (10,240)")
    return policy


def _notes(config: PipelineConfig, p: RunPatterns, role: Role) -> list[str]:
    notes = ["sts:GetCallerIdentity is not listed: it needs no permission "
             "(https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html)"]
    if role in ("worker", "oncall"):
        if p.role_is_named:
            notes.append(f"aws.role_name {p.role_name!r}: the policy assumes a role you manage (trust and "
                         "permissions as tasks/iam.py describes); the run neither creates it nor writes its policies")
        if not serves(config):
            notes.append("no serving statements: evaluation is off or the test split is empty, so a run never "
                         "provisions or invokes")
        if config.evaluation.judge is not None and serves(config):
            judge_note = _judge_targets(config, p)[2]
            if judge_note:
                notes.append(judge_note)
        if config.distillation is not None and config.distillation.teacher_model.startswith("arn:"):
            notes.append("the teacher is given as an ARN: the pre-flight's GetFoundationModel of the teacher is not "
                         "granted (add its foundation-model ARN if you want that check)")
    return notes


# ---------------------------------------------------------------------------------------------
# people's output
# ---------------------------------------------------------------------------------------------
def explain(policy: PermissionPolicy) -> str:
    """The policy as people read it: one block per statement, then the document."""
    lines = [f"# IAM policy for role {policy.role!r} of config {policy.config_name!r} "
             f"(account {policy.account}, {policy.region}); {len(policy.statements)} statements, "
             f"{policy.size()} characters"]
    for st in policy.statements:
        lines.append(f"# {st.sid} [{', '.join(st.steps)}]: {', '.join(st.actions)}")
        lines.append(f"#     on {', '.join(st.resources)}" + (f" when {json.dumps(st.condition)}"
                                                                  if st.condition else ""))
        lines.append(f"#     why: {st.why}")
    for note in policy.notes:
        lines.append(f"# note: {note}")
    lines.append(json.dumps(policy.document(), indent=2))
    return "\n".join(lines)


def markdown(policies: list[PermissionPolicy], *, title: str = "", source: str = "") -> str:
    """A markdown section per policy (docs/permissions.md is made of these)."""
    out = [title] if title else []
    for pol in policies:
        out.append(f"### `{pol.config_name}` — role `{pol.role}`\n")
        out.append(f"{len(pol.statements)} statements, {pol.size()} characters (IAM allows "
                   f"{MANAGED_POLICY_MAX_CHARS} per managed policy).{' ' + source if source else ''}\n")
        out.append("| Sid | actions | resources | condition | needed by | why |")
        out.append("|---|---|---|---|---|---|")
        for st in pol.statements:
            cond = "; ".join(f"{op} {k}={v}" for op, kv in st.condition.items() for k, v in kv.items()) or "-"
            why = st.why.replace("|", "\\|")
            out.append(f"| {st.sid} | {'<br>'.join(st.actions)} | {'<br>'.join(f'`{r}`' for r in st.resources)} | "
                       f"{cond.replace('|', chr(92) + '|')} | {', '.join(st.steps)} | {why} |")
        for note in pol.notes:
            out.append(f"\nNote: {note}")
        out.append("\n<details><summary>policy document</summary>\n\n```json\n"
                   + compact_json(pol.document()) + "\n```\n</details>\n")
    return "\n".join(out)


def compact_json(document: dict) -> str:
    """A policy document with one statement per line (valid JSON, shorter to read than ``indent=2``)."""
    lines = ",\n".join("    " + json.dumps(st) for st in document["Statement"])
    return f'{{\n  "Version": "{document["Version"]}",\n  "Statement": [\n{lines}\n  ]\n}}'

