"""Create-role stage: the least-privilege service role Bedrock assumes to run the customization job.

Trust (docs/bedrock-facts.md §7, docs): ``bedrock.amazonaws.com`` only, conditioned on ``aws:SourceAccount`` = this
account and ``aws:SourceArn`` like ``arn:aws:bedrock:<region>:<account>:model-customization-job/*``.

Permissions (docs/bedrock-facts.md §7): ``s3:GetObject`` on the run's input prefix; ``s3:ListBucket`` on the bucket
limited by ``s3:prefix`` to the input and output prefixes; ``s3:PutObject`` + ``s3:GetObject`` on the output prefix;
KMS decrypt-side actions on the configured key only; ``bedrock:InvokeModel`` on the distillation teacher;
``lambda:InvokeFunction`` on the RFT grader. No ``*`` action anywhere.

Get-or-create: an existing role of ours (``managed-by=bedrock-forge``) with a drifted trust or inline
policy is rewritten (``RoleInfo.updated``), never duplicated; a role without that tag (``aws.role_name``
naming a role someone manages by hand) is used as it is. IAM is eventually consistent: after creating the role we poll
``get_role`` until it is visible; the remaining window in which Bedrock cannot assume a fresh role is covered by
``tasks.customize.start_job``, which retries job creation on that specific error for about a minute.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote

from tasks.aws.clients import Clients, partition_of
from tasks.aws.errors import StageError, error_code, stage_error
from tasks.aws.logs import get_logger
from tasks.aws.retry import Backoff, aws_task
from tasks.aws.tags import MANAGED_BY_KEY, MANAGED_BY_VALUE, to_iam_tags
from tasks.catalog import CustomizationType
from tasks.config import PipelineConfig
from tasks.run.names import ResourceNames
from tasks.run.types import RoleInfo, UploadedData

POLICY_NAME = "bedrock-forge-job-access"
_sleep = time.sleep


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


def _kms_key_arn(key: str, region: str, account: str, part: str) -> str:
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        return f"arn:{part}:kms:{region}:{account}:{key}"
    return f"arn:{part}:kms:{region}:{account}:key/{key}"


def _model_resources(model: str, region: str, account: str, part: str) -> list[str]:
    """ARNs to allow ``bedrock:InvokeModel`` on for a teacher id (docs/bedrock-facts.md §7: the inference profile plus
    the model in each of its regions when a cross-region profile is used)."""
    if model.startswith("arn:"):
        return [model]
    geo = model.split(".", 1)[0]
    if geo in ("us", "eu", "apac", "jp", "au", "ca", "global", "us-gov"):
        base = model.split(".", 1)[1]
        return [f"arn:{part}:bedrock:{region}:{account}:inference-profile/{model}",
                f"arn:{part}:bedrock:*::foundation-model/{base}"]
    return [f"arn:{part}:bedrock:{region}::foundation-model/{model}"]


def permission_policy(config: PipelineConfig, uploaded: UploadedData, account: str, region: str) -> dict:
    part = partition_of(region)
    bucket_arn = f"arn:{part}:s3:::{uploaded.bucket}"
    stmts: list[dict[str, Any]] = [
        {"Sid": "ReadTrainingData", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [f"{bucket_arn}/{uploaded.input_prefix}*"]},
        {"Sid": "ListRunPrefixes", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn],
         "Condition": {"StringLike": {"s3:prefix": [f"{uploaded.input_prefix}*", f"{uploaded.output_prefix}*"]}}},
        {"Sid": "WriteJobOutput", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": [f"{bucket_arn}/{uploaded.output_prefix}*"]},
    ]
    # docs/bedrock-facts.md §7: exact action set unconfirmed; decrypt-side actions on this key only
    if config.aws.kms_key_id:
        stmts.append({"Sid": "UseDataKey", "Effect": "Allow",
                      "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant"],
                      "Resource": [_kms_key_arn(config.aws.kms_key_id, region, account, part)]})
    if config.customization_type == CustomizationType.DISTILLATION and config.distillation:
        stmts.append({"Sid": "InvokeTeacher", "Effect": "Allow", "Action": ["bedrock:InvokeModel"],
                      "Resource": _model_resources(config.distillation.teacher_model, region, account, part)})
    if config.customization_type == CustomizationType.REINFORCEMENT_FINE_TUNING and config.rft:
        stmts.append({"Sid": "InvokeGrader", "Effect": "Allow", "Action": ["lambda:InvokeFunction"],
                      "Resource": [config.rft.grader_lambda_arn]})
    return {"Version": "2012-10-17", "Statement": stmts}


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


def ensure_role(clients: Clients, config: PipelineConfig, names: ResourceNames, uploaded: UploadedData,
                account: str, tags: dict[str, str]) -> RoleInfo:
    """Get-or-create the job's service role; rewrite a drifted trust or permission policy."""
    from botocore.exceptions import ClientError

    iam, log = clients.iam, get_logger()
    region = clients.region
    trust, perms = trust_policy(account, region), permission_policy(config, uploaded, account, region)
    created = updated = False
    try:
        try:
            role = iam.get_role(RoleName=names.role)["Role"]
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            role = None
        if role is None:
            try:
                role = iam.create_role(
                    RoleName=names.role, AssumeRolePolicyDocument=json.dumps(trust),
                    Description=f"bedrock-forge: customization job service role ({config.name})",
                    Tags=to_iam_tags({**tags, MANAGED_BY_KEY: MANAGED_BY_VALUE}))["Role"]
                created = True
                log.info("created IAM role %s", names.role)
            except ClientError as err:
                if error_code(err) != "EntityAlreadyExists":   # a concurrent run created it: adopt
                    raise
                role = iam.get_role(RoleName=names.role)["Role"]
        if not created and not _managed(role):
            # a role the user manages (aws.role_name): use it as it is, never rewrite its policies
            log.warning("IAM role %s is not tagged managed-by=bedrock-forge: using it unchanged; it needs the trust "
                        "and permissions described in tasks/iam.py (docs/bedrock-facts.md §7)", names.role)
            return RoleInfo(role_name=names.role, role_arn=role["Arn"], created=False, updated=False)
        if not created and _norm(_doc(role.get("AssumeRolePolicyDocument", {}))) != _norm(trust):
            iam.update_assume_role_policy(RoleName=names.role, PolicyDocument=json.dumps(trust))
            updated = True
        try:
            current = _doc(iam.get_role_policy(RoleName=names.role, PolicyName=POLICY_NAME)["PolicyDocument"])
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            current = None
        if current is None or _norm(current) != _norm(perms):
            iam.put_role_policy(RoleName=names.role, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(perms))
            updated = updated or (not created)
            if not created:
                log.info("IAM role %s: permission policy drifted, rewritten", names.role)
    except ClientError as err:
        raise stage_error(f"IAM role {names.role!r}", err) from err
    if created:
        _wait_visible(iam, names.role)
    return RoleInfo(role_name=names.role, role_arn=role["Arn"], created=created, updated=updated)


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
