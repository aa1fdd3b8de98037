"""Create-role stage: the least-privilege service role Bedrock assumes to run the customization job.

Trust (docs/bedrock-facts.md §7, docs): ``bedrock.amazonaws.com`` only, conditioned on ``aws:SourceAccount`` = this
account and ``aws:SourceArn`` like ``arn:aws:bedrock:<region>:<account>:model-customization-job/*``.

Permissions (docs/bedrock-facts.md §7): ``s3:GetObject`` on the run's input prefix; ``s3:GetObject`` on the media
the records reference (images/videos, docs/bedrock-facts.md §5: in the dataset's bucket, read by the service role;
exact object ARNs, or their exact folders when the objects would not fit, ``tasks/data/media.py``);
``s3:ListBucket`` on the bucket limited by ``s3:prefix`` to the input and output prefixes; ``s3:PutObject`` +
``s3:GetObject`` on the output prefix; KMS decrypt-side actions on the configured key only; ``bedrock:InvokeModel``
on the distillation teacher; ``lambda:InvokeFunction`` on the RFT grader. No ``*`` action anywhere.

No wildcard from a config can reach a policy: every name, ARN and id is checked against AWS's grammar when
the config loads (``tasks.config.grammar``), and ``permission_policy`` refuses (``PolicyWildcardError``) any
``*``/``?`` in an Action, Resource or condition value other than the trailing ``*`` of the run's own input and
output prefixes and of the records' media folders (``media_grants``: in the run's bucket, wildcard-free, never
over the pipeline's own ``data/`` or ``output/``). A policy longer than IAM's 10,240 characters per role is
refused before anything is written (``PolicyTooLarge``). A cross-Region teacher profile is granted with one
exact foundation-model ARN per destination Region (``Catalog.profile_regions``); a KMS alias is resolved to its
key ARN with DescribeKey (an alias ARN in Resource grants nothing on the key).

Get-or-create: an existing role of ours (``managed-by=bedrock-forge``) with a drifted trust or permission
policy is rewritten (``RoleInfo.updated``), never duplicated; a role without that tag (``aws.role_name``
naming a role someone manages by hand) is used as it is.

**Shared roles.** Each run writes its permissions as its own inline policy, ``policy_name(run_key)``
(``bedrock-forge-job-<run key>``): two runs sharing ``aws.role_name`` each add theirs, neither rewrites or
narrows the other's while its job runs; the trust keeps the job ARN patterns of every Region a run added
(``_widened_trust``). IAM allows 10,240 characters of inline policies per role in total
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): without cleanup a shared role
(a weekly retrain) would fill up after some tens of runs and PutRolePolicy would then fail with LimitExceeded.
So a run's policy is deleted once its job no longer needs it (``release_run_policy``: the job is Completed;
only the customization job uses the service role, serving does not, see below), and ``prune_role_policies``
deletes the policies of *other* runs on a managed role whose jobs are all terminal (never a live run's: a run
with no job yet, or a job InProgress/Stopping, keeps its policy; a Failed/Stopped one is kept
``RERUN_GRACE_S`` for ``forge rerun --from customize``, which reuses the recorded role). ``ensure_role`` prunes
and retries once when PutRolePolicy hits that limit. IAM is eventually consistent: after creating the role we poll
``get_role`` until it is visible; the remaining window in which Bedrock cannot assume a fresh role is covered by
``tasks.customize.start_job``, which retries job creation on that specific error for about a minute.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel, Field

from tasks.aws.clients import Clients, partition_of
from tasks.aws.errors import StageError, error_code, stage_error
from tasks.aws.logs import get_logger
from tasks.aws.retry import Backoff, aws_task
from tasks.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE, to_iam_tags
from tasks.catalog import CustomizationType
from tasks.config import PipelineConfig
from tasks.config.grammar import wildcard_in
from tasks.run.names import ResourceNames
from tasks.run.types import RoleInfo, UploadedData

POLICY_NAME = "bedrock-forge-job-access"     # the one shared inline policy name before issue 16 (left in place)
POLICY_PREFIX = "bedrock-forge-job-"
# IAM: "Role policy size cannot exceed 10,240 characters" for all inline policies of a role together, whitespace not
# counted (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html, IAM and STS character limits)
ROLE_POLICY_CHARS = 10_240
_sleep = time.sleep

# Destination Regions of cross-Region inference profiles, used only when the catalog has no
# ``Catalog.profile_regions`` (TODO: remove once tasks.catalog.Catalog.profile_regions is committed).
# https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html (US profiles of the Nova
# family: us-east-1, us-east-2, us-west-2).
_FALLBACK_PROFILE_REGIONS = {"us": ["us-east-1", "us-east-2", "us-west-2"]}
_GEOS = ("us", "eu", "apac", "jp", "au", "ca", "global", "us-gov")


class PolicyWildcardError(ValueError):
    """A permission policy would hold a wildcard outside the run's own S3 prefixes: never written."""


class MediaGrantError(ValueError):
    """The records' media cannot be granted exactly (another bucket, a folder over the pipeline's own data)."""


class PolicyTooLarge(ValueError):
    """The run's permission policy alone would exceed IAM's inline-policy size for a role: never written."""


def policy_name(run_key: str) -> str:
    """The run's own inline policy on the role (iam policyNameType: [\\w+=,.@-]{1,128}): two runs sharing
    ``aws.role_name`` each keep their policy, neither rewrites the other's while its job runs."""
    return f"{POLICY_PREFIX}{run_key}"


def trust_policy(account: str, region: str) -> dict:
    part = partition_of(region)
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "bedrock.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account},
                "ArnLike": {"aws:SourceArn": f"arn:{part}:bedrock:{region}:{account}:model-customization-job/*"},
            },
        }],
    }


def kms_key_arn(key: str, region: str, account: str, part: str, resolve: Callable[[str], str] | None = None) -> str:
    """The key ARN to grant on. A key id becomes its ARN; an alias (``alias/x`` or an alias ARN) is resolved with
    ``resolve`` (DescribeKey, read-only): an alias in a policy's Resource applies to the alias, not to the key it
    points to (https://docs.aws.amazon.com/kms/latest/developerguide/alias-authorization.html), so granting the
    alias ARN would let no SSE-KMS object be read. ``kms:RequestAlias`` does not help either: S3 calls KMS with
    the key ARN stored with each object, not with the alias."""
    tail = key.rsplit(":", 1)[-1] if key.startswith("arn:") else key
    if tail.startswith("alias/"):
        if resolve is None:
            raise ValueError(f"aws.kms_key_id {key!r} is an alias: it must be resolved to its key ARN "
                             "(kms:DescribeKey) before it can be granted; or give the key ARN")
        arn = resolve(key)
        if not arn.startswith(f"arn:{part}:kms:") or ":key/" not in arn:
            raise ValueError(f"aws.kms_key_id {key!r} resolved to {arn!r}, not a key ARN")
        return arn
    if key.startswith("arn:"):
        return key
    return f"arn:{part}:kms:{region}:{account}:key/{key}"


def _profile_regions(profile_id: str) -> list[str]:
    from tasks.catalog import load_catalog

    lookup = getattr(load_catalog(), "profile_regions", None)
    if lookup is not None:
        return list(lookup(profile_id))              # raises ValueError for a profile with no fixed list
    geo = profile_id.split(".", 1)[0]
    if geo not in _FALLBACK_PROFILE_REGIONS:
        raise ValueError(f"teacher {profile_id!r}: the destination Regions of {geo}. profiles are not known; "
                         "use a us. profile or a model id")
    return _FALLBACK_PROFILE_REGIONS[geo]


def _model_resources(model: str, region: str, account: str, part: str) -> list[str]:
    """ARNs to allow ``bedrock:InvokeModel`` on for a teacher: a model id or foundation-model ARN as it is; a
    cross-Region inference profile (id or ARN) plus the foundation model in each of its destination Regions,
    one exact ARN per Region (geographic-cross-region-inference.html, "IAM policy requirements": "the
    foundation model in all destination Regions listed in the geographic profile")."""
    if model.startswith("arn:") and ":inference-profile/" not in model:
        return [model]
    profile = model.rsplit("inference-profile/", 1)[-1]
    geo = profile.split(".", 1)[0]
    if geo not in _GEOS or profile.count(".") < 2:
        return [model if model.startswith("arn:") else f"arn:{part}:bedrock:{region}::foundation-model/{model}"]
    base = profile.split(".", 1)[1]
    profile_arn = model if model.startswith("arn:") else \
        f"arn:{part}:bedrock:{region}:{account}:inference-profile/{profile}"
    return [profile_arn] + [f"arn:{part}:bedrock:{r}::foundation-model/{base}" for r in _profile_regions(profile)]


def permission_policy(config: PipelineConfig, uploaded: UploadedData, account: str, region: str, *,
                      kms_arn: str | None = None) -> dict:
    """The job's permissions, built only from exact, validated names (``kms_arn``: the resolved key ARN when
    ``aws.kms_key_id`` is an alias). Raises ``PolicyWildcardError`` rather than return a policy with a
    wildcard beyond the trailing ``*`` of the run's own S3 prefixes."""
    part = partition_of(region)
    bucket_arn = f"arn:{part}:s3:::{uploaded.bucket}"
    stmts: list[dict[str, Any]] = [
        {"Sid": "ReadTrainingData", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{bucket_arn}/{uploaded.input_prefix}*"]},
    ]
    media, _ = media_grants(uploaded, bucket_arn, config.aws.prefix)
    if media:
        # docs/bedrock-facts.md §5: media the records reference are read by the job with this role
        stmts.append({"Sid": "ReadRecordMedia", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": media})
    stmts += [
        {"Sid": "ListRunPrefixes", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn],
         "Condition": {"StringLike": {"s3:prefix": [f"{uploaded.input_prefix}*", f"{uploaded.output_prefix}*"]}}},
        {"Sid": "WriteJobOutput", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": [f"{bucket_arn}/{uploaded.output_prefix}*"]},
    ]
    # docs/bedrock-facts.md §7: exact action set unconfirmed; decrypt-side actions on this key only
    if config.aws.kms_key_id:
        key = kms_arn or kms_key_arn(config.aws.kms_key_id, region, account, part)
        stmts.append({"Sid": "UseDataKey", "Effect": "Allow",
                      "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant"],
                      "Resource": [key]})
    if config.customization_type == CustomizationType.DISTILLATION and config.distillation:
        stmts.append({"Sid": "InvokeTeacher", "Effect": "Allow", "Action": ["bedrock:InvokeModel"],
                      "Resource": _model_resources(config.distillation.teacher_model, region, account, part)})
    if config.customization_type == CustomizationType.REINFORCEMENT_FINE_TUNING and config.rft:
        stmts.append({"Sid": "InvokeGrader", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                      "Resource": [config.rft.grader_lambda_arn]})
    policy = {"Version": "2012-10-17", "Statement": stmts}
    assert_exact(policy, uploaded, bucket_arn, config.aws.prefix)
    size = policy_size(policy)
    if size > ROLE_POLICY_CHARS:
        raise PolicyTooLarge(f"the run's permission policy would be {size:,} characters; IAM allows "
                             f"{ROLE_POLICY_CHARS:,} for all inline policies of a role together "
                             "(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html): keep the "
                             "records' media under fewer folders")
    return policy


def policy_size(policy: dict) -> int:
    """Characters IAM counts for a policy document: its JSON without whitespace (reference_iam-quotas.html:
    "IAM does not count white space when calculating the size of a policy")."""
    return len(json.dumps(policy, separators=(",", ":")))


def media_grants(uploaded: UploadedData, bucket_arn: str, prefix: str) -> tuple[list[str], set[str]]:
    """(Resource ARNs of ``s3:GetObject`` for the records' media, the wildcard ARNs among them). ``uploaded.media``
    (tasks/data/media.py) holds exact object URIs and folder URIs (ending in ``/``); each must be in the run's
    bucket (Bedrock reads media only from the dataset's bucket, docs/bedrock-facts.md §5), be wildcard-free with
    Bedrock's media name characters, and a folder never covers the pipeline's own data or outputs under
    ``aws.prefix`` (other runs' training data and models' outputs) nor the whole bucket."""
    from tasks.data.media import MEDIA_NAME_RE

    root = prefix.strip("/") + "/" if prefix.strip("/") else ""
    own = [f"{root}data/", f"{root}output/"]
    arns: list[str] = []
    wild: set[str] = set()
    for uri in uploaded.media:
        head = f"s3://{uploaded.bucket}/"
        if not isinstance(uri, str) or not uri.startswith(head):
            raise MediaGrantError(f"media {uri!r} is not in the run's bucket {uploaded.bucket!r}: Bedrock reads media "
                                  "only from the dataset's bucket (docs/bedrock-facts.md §5)")
        key = uri[len(head):]
        if not key or key.startswith("/") or wildcard_in(key) or not MEDIA_NAME_RE.fullmatch(key):
            raise PolicyWildcardError(f"media {uri!r} is not an exact object or folder name")
        if key.endswith("/"):
            if any(o.startswith(key) or key.startswith(o) for o in own):
                raise MediaGrantError(f"media folder {uri!r} would let the job read the pipeline's own data or "
                                      f"outputs under {root or 'the bucket root'}: keep media in another folder")
            arn = f"{bucket_arn}/{key}*"
            wild.add(arn)
        else:
            arn = f"{bucket_arn}/{key}"
        arns.append(arn)
    return sorted(set(arns)), wild


def assert_exact(policy: dict, uploaded: UploadedData, bucket_arn: str, prefix: str = "") -> None:
    """Defence in depth: no ``*``/``?`` in any Action, Resource or condition value, except the trailing ``*``
    appended to the run's own input/output prefixes and to the records' media folders (``media_grants``; all of
    them must themselves be wildcard-free)."""
    allowed = set(media_grants(uploaded, bucket_arn, prefix)[1])
    for prefix in (uploaded.input_prefix, uploaded.output_prefix):
        if wildcard_in(prefix) or wildcard_in(uploaded.bucket) or not prefix.endswith("/"):
            raise PolicyWildcardError(f"S3 prefix {prefix!r} of bucket {uploaded.bucket!r} is not an exact prefix")
        allowed |= {f"{bucket_arn}/{prefix}*", f"{prefix}*"}
    for st in policy["Statement"]:
        values = [*st["Action"], *st["Resource"]]
        for cond in (st.get("Condition") or {}).values():
            for v in cond.values():
                values += v if isinstance(v, list) else [v]
        for v in values:
            if wildcard_in(v) and v not in allowed:
                raise PolicyWildcardError(f"refusing to write an IAM policy with a wildcard: {st.get('Sid')}: {v!r}")


def _doc(value: Any) -> dict:
    """IAM returns policy documents URL-encoded JSON strings on the wire; boto3 usually decodes them."""
    if isinstance(value, dict):
        return value
    text = str(value)
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(unquote(text))


def _managed(role: dict) -> bool:
    return any(t.get("Key") == MANAGED_BY_KEY and t.get("Value") == MANAGED_BY_VALUE for t in role.get("Tags") or [])


def _norm(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _resolve_alias(clients: Clients, key: str | None) -> str | None:
    """The key ARN behind an alias ``aws.kms_key_id`` (DescribeKey, read-only), else None."""
    if not key or not (key.startswith("alias/") or ":alias/" in key):
        return None
    kms = getattr(clients, "kms", None)
    if kms is None:
        raise StageError(f"aws.kms_key_id {key!r} is an alias: give the key ARN (this worker has no KMS client "
                         "to resolve the alias with kms:DescribeKey)")
    from botocore.exceptions import ClientError

    try:
        return kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    except ClientError as err:
        raise stage_error(f"KMS alias {key!r} (DescribeKey)", err) from err


def _get_or_create(iam, config: PipelineConfig, names: ResourceNames, trust: dict,
                   tags: dict[str, str]) -> tuple[dict, bool]:
    from botocore.exceptions import ClientError

    try:
        return iam.get_role(RoleName=names.role)["Role"], False
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
    try:
        role = iam.create_role(
            RoleName=names.role, AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"bedrock-forge: customization job service role ({config.name})",
            Tags=to_iam_tags({**tags, MANAGED_BY_KEY: MANAGED_BY_VALUE}))["Role"]
        get_logger().info("created IAM role %s", names.role)
        return role, True
    except ClientError as err:
        if error_code(err) != "EntityAlreadyExists":   # a concurrent run created it: adopt
            raise
        return iam.get_role(RoleName=names.role)["Role"], False


def _widened_trust(current: dict, ours: dict) -> dict:
    """Our trust, keeping the job ARN patterns of other Regions that a run sharing this role relies on (a run
    never narrows a role another live run depends on). Anything not of our exact shape is replaced by ours."""
    try:
        (cur,), (new,) = current["Statement"], ours["Statement"]
        same_shape = ({k: v for k, v in cur.items() if k != "Condition"}
                      == {k: v for k, v in new.items() if k != "Condition"}
                      and cur["Condition"]["StringEquals"] == new["Condition"]["StringEquals"]
                      and set(cur["Condition"]) == {"StringEquals", "ArnLike"})
        theirs = cur["Condition"]["ArnLike"]["aws:SourceArn"]
    except (KeyError, TypeError, ValueError):
        return ours
    mine = new["Condition"]["ArnLike"]["aws:SourceArn"]
    theirs = theirs if isinstance(theirs, list) else [theirs]
    account = new["Condition"]["StringEquals"]["aws:SourceAccount"]
    pattern = f":bedrock:[a-z0-9-]+:{account}:model-customization-job/\\*"
    if not same_shape or not all(isinstance(a, str) and re.fullmatch(f"arn:aws[a-z-]*{pattern}", a) for a in theirs):
        return ours
    arns = sorted({*theirs, mine})
    if arns == [mine]:
        return ours
    widened = json.loads(json.dumps(ours))
    widened["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"] = arns
    return widened


def ensure_role(clients: Clients, config: PipelineConfig, names: ResourceNames, uploaded: UploadedData,
                account: str, tags: dict[str, str]) -> RoleInfo:
    """Get-or-create the job's service role; rewrite a drifted trust or this run's permission policy."""
    from botocore.exceptions import ClientError

    iam, log = clients.iam, get_logger()
    region = clients.region
    kms_arn = _resolve_alias(clients, config.aws.kms_key_id)
    trust = trust_policy(account, region)
    try:
        perms = permission_policy(config, uploaded, account, region, kms_arn=kms_arn)
    except ValueError as err:          # PolicyWildcardError, a profile with no known Regions: nothing written
        raise StageError(f"IAM role {names.role!r}: {err}") from None
    pname = policy_name(names.run_key)
    updated = False
    try:
        role, created = _get_or_create(iam, config, names, trust, tags)
        if not created and not _managed(role):
            # a role the user manages (aws.role_name): use it as it is, never rewrite its policies
            log.warning("IAM role %s is not tagged managed-by=bedrock-forge: using it unchanged; it needs the trust "
                        "and permissions described in tasks/iam.py (docs/bedrock-facts.md §7)", names.role)
            return RoleInfo(role_name=names.role, role_arn=role["Arn"], created=False, updated=False)
        if not created:
            current_trust = _doc(role.get("AssumeRolePolicyDocument", {}))
            want = _widened_trust(current_trust, trust)
            if _norm(current_trust) != _norm(want):
                iam.update_assume_role_policy(RoleName=names.role, PolicyDocument=json.dumps(want))
                updated = True
        try:
            current = _doc(iam.get_role_policy(RoleName=names.role, PolicyName=pname)["PolicyDocument"])
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            current = None
        if current is None or _norm(current) != _norm(perms):
            _put_policy(clients, names, pname, perms)
            updated = updated or (not created)
            if not created and current is not None:
                log.info("IAM role %s: permission policy %s drifted, rewritten", names.role, pname)
    except ClientError as err:
        raise stage_error(f"IAM role {names.role!r}", err) from err
    if created:
        _wait_visible(iam, names.role)
    return RoleInfo(role_name=names.role, role_arn=role["Arn"], created=created, updated=updated)


def _put_policy(clients: Clients, names: ResourceNames, pname: str, perms: dict) -> None:
    """PutRolePolicy; when the role's inline policies are full (LimitExceeded: 10,240 characters per role), prune
    the policies of finished runs (``prune_role_policies``) and try once more."""
    from botocore.exceptions import ClientError

    doc = json.dumps(perms)
    try:
        clients.iam.put_role_policy(RoleName=names.role, PolicyName=pname, PolicyDocument=doc)
        return
    except ClientError as err:
        if error_code(err) != "LimitExceeded":
            raise
        first = err
    pruned = prune_role_policies(clients, names.role, keep_run_key=names.run_key)
    if not pruned.deleted:
        raise StageError(f"IAM role {names.role!r}: its inline policies are full (IAM allows {ROLE_POLICY_CHARS:,} "
                         "characters per role, reference_iam-quotas.html) and no other run's policy could be "
                         f"removed ({'; '.join(pruned.kept) or 'none found'}): use another aws.role_name, or wait "
                         "for the runs sharing this role to finish", code="LimitExceeded") from first
    get_logger().info("IAM role %s: removed %d finished run(s)' policies to make room", names.role,
                      len(pruned.deleted))
    clients.iam.put_role_policy(RoleName=names.role, PolicyName=pname, PolicyDocument=doc)


# ---------------------------------------------------------------------------------------------
# releasing the run's policy once its job no longer needs it
# ---------------------------------------------------------------------------------------------
# Only the customization job uses the service role: CreateModelCustomizationJob takes ``roleArn``, while
# CreateProvisionedModelThroughput (clientRequestToken, modelUnits, provisionedModelName, modelId, commitmentDuration,
# tags) and CreateCustomModelDeployment (modelDeploymentName, modelArn, description, tags, clientRequestToken) take no
# role (https://docs.aws.amazon.com/cli/v1/reference/bedrock/create-provisioned-model-throughput.html; botocore's
# ``bedrock`` service model 1.44); evaluation invokes the model with the worker's own credentials.
TERMINAL_JOB_STATUSES = ("Completed", "Failed", "Stopped")     # GetModelCustomizationJob ``status`` enum (botocore)
RERUN_GRACE_S = 3 * 24 * 3600     # a Failed/Stopped run's policy is kept this long for `forge rerun --from customize`
_RUN_POLICY_RE = re.compile(re.escape(POLICY_PREFIX) + r"([0-9a-f]{12})")     # tasks.run.names.compute_run_key


class PruneReport(BaseModel):
    role_name: str
    deleted: list[str] = Field(default_factory=list, description="inline policies deleted")
    kept: list[str] = Field(default_factory=list, description="policies of other runs kept, each with why")
    skipped_unmanaged: bool = False


def release_run_policy(clients: Clients, role_name: str, run_key: str, job_status: str) -> bool:
    """Delete this run's inline policy (``policy_name(run_key)``) from its service role once its job is terminal
    (``TERMINAL_JOB_STATUSES``; the flow calls it after the poll step reports the job Completed). True when it
    deleted it; False when it was already gone, the role is gone, or the role is not ours (``managed-by``: a role
    the user manages is never touched). A job that is not terminal still needs the role: ValueError, nothing
    deleted."""
    from botocore.exceptions import ClientError

    if job_status not in TERMINAL_JOB_STATUSES:
        raise ValueError(f"job status {job_status!r} is not terminal: the job still needs the role's policy")
    iam = clients.iam
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
        if not _managed(role):
            return False
        iam.get_role_policy(RoleName=role_name, PolicyName=policy_name(run_key))   # read first: a rerun makes no
        iam.delete_role_policy(RoleName=role_name, PolicyName=policy_name(run_key))  # mutating call
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return False
        raise stage_error(f"IAM role {role_name!r}: delete policy {policy_name(run_key)}", err) from err
    get_logger().info("IAM role %s: deleted policy %s (job %s)", role_name, policy_name(run_key), job_status)
    return True


def _jobs_of_run_key(clients: Clients, run_key: str) -> list[tuple[int, dict]]:
    """(attempt, summary) of the customization jobs named after ``run_key`` (``forge-<name>-<run key>``, attempts
    ``-a2``...; tasks/run/names.py): ListModelCustomizationJobs has no tag filter (docs/bedrock-facts.md §2.5)."""
    pattern = re.compile(r"forge-[a-z0-9-]+-" + re.escape(run_key) + r"(?:-a(\d+))?")
    pages = clients.bedrock.get_paginator("list_model_customization_jobs").paginate(nameContains=run_key)
    found = []
    for page in pages:
        for summary in page.get("modelCustomizationJobSummaries", []):
            m = pattern.fullmatch(summary.get("jobName", ""))
            if m is not None:
                found.append((int(m.group(1) or 1), summary))
    return found


def _prune_verdict(jobs: list[tuple[int, dict]], now: float, grace_s: float) -> str | None:
    """None when a run's policy may go (every job terminal, the latest Completed or ended over ``grace_s`` ago);
    else why it is kept."""
    if not jobs:
        return "no job found (its run may not have started it yet)"
    live = [j for _, j in jobs if j.get("status") not in TERMINAL_JOB_STATUSES]
    if live:
        return f"job {live[0].get('jobName')} is {live[0].get('status')}"
    _, latest = max(jobs, key=lambda aj: aj[0])
    if latest.get("status") == "Completed":
        return None
    ended = latest.get("endTime") or latest.get("lastModifiedTime")
    ended_s = ended.timestamp() if hasattr(ended, "timestamp") else None
    if ended_s is None or now - ended_s < grace_s:
        return (f"job {latest.get('jobName')} ended {latest.get('status')} less than {grace_s / 3600:g} h ago "
                "(kept for a rerun)")
    return None


def prune_role_policies(clients: Clients, role_name: str, keep_run_key: str | None = None, *,
                        grace_s: float = RERUN_GRACE_S, now: float | None = None) -> PruneReport:
    """Delete the inline policies of *other* runs (``bedrock-forge-job-<run key>``, not ``keep_run_key``'s) from a
    managed role, each only when that run's jobs are all terminal (``_prune_verdict``); a live run's policy is
    never touched. A role without ``managed-by=bedrock-forge`` is left alone, as are policies not named after a
    run key (the pre-issue-16 ``bedrock-forge-job-access``, anything else)."""
    from botocore.exceptions import ClientError

    iam, report = clients.iam, PruneReport(role_name=role_name)
    now = time.time() if now is None else now
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
        if not _managed(role):
            report.skipped_unmanaged = True
            return report
        names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name)
                 for n in page.get("PolicyNames", [])]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return report
        raise stage_error(f"IAM role {role_name!r}: list policies", err) from err
    for name in sorted(names):
        m = _RUN_POLICY_RE.fullmatch(name)
        if m is None or m.group(1) == keep_run_key:
            continue
        try:
            why = _prune_verdict(_jobs_of_run_key(clients, m.group(1)), now, grace_s)
        except ClientError as err:
            report.kept.append(f"{name}: its jobs could not be listed ({error_code(err)})")
            continue
        if why is not None:
            report.kept.append(f"{name}: {why}")
            continue
        try:
            iam.delete_role_policy(RoleName=role_name, PolicyName=name)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":     # already gone (a concurrent prune): nothing to do
                raise stage_error(f"IAM role {role_name!r}: delete policy {name}", err) from err
            continue
        report.deleted.append(name)
    if report.deleted:
        get_logger().info("IAM role %s: pruned %s", role_name, ", ".join(report.deleted))
    return report


def _wait_visible(iam, role_name: str, timeout_s: float = 30.0) -> None:
    """Poll get_role with backoff until the new role reads back (IAM is eventually consistent)."""
    from botocore.exceptions import ClientError

    deadline, backoff = time.monotonic() + timeout_s, Backoff(start=0.5, cap=5)
    while True:
        try:
            iam.get_role(RoleName=role_name)
            return
        except ClientError as err:
            if error_code(err) != "NoSuchEntity" or time.monotonic() > deadline:
                raise StageError(f"IAM role {role_name!r} created but not readable after {timeout_s:.0f} s: "
                                 "rerun in a minute") from None
        _sleep(backoff())


ensure_role_task = aws_task(ensure_role, name="create-role")
release_run_policy_task = aws_task(release_run_policy, name="release-role-policy")
prune_role_policies_task = aws_task(prune_role_policies, name="prune-role-policies")
