"""tasks/iam.py against moto's IAM: least-privilege service role, get-or-create, drift repair."""

from __future__ import annotations

import json

import pytest

from tasks import iam
from tasks.aws.tags import standard_tags
from tasks.config import PipelineConfig
from tasks.run.names import resource_names
from tasks.run.types import UploadedData

ACCOUNT = "123456789012"   # moto's default (fake) account


def make_config(**over) -> PipelineConfig:
    base = {"name": "banking", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "data.jsonl"}}
    base.update(over)
    return PipelineConfig.model_validate(base)


UPLOADED = UploadedData(bucket="forge-data", train_uri="s3://forge-data/pre/data/abc/train.jsonl",
                        validation_uri="s3://forge-data/pre/data/abc/validation.jsonl",
                        output_uri="s3://forge-data/pre/output/k1/", input_prefix="pre/data/abc/",
                        output_prefix="pre/output/k1/")


@pytest.fixture
def clients(moto_clients):
    return moto_clients


def _statements(policy: dict) -> list[dict]:
    return policy["Statement"]


def test_role_is_least_privilege_and_trusts_only_bedrock_jobs_of_this_account(clients):
    cfg = make_config()
    names = resource_names(cfg, "k1k1k1k1k1k1")
    info = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, standard_tags("k1", "fr", {}))
    assert info.created and not info.updated and info.role_arn.endswith(f":role/{names.role}")

    role = clients.iam.get_role(RoleName=names.role)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    (st,) = trust["Statement"]
    assert st["Principal"] == {"Service": "bedrock.amazonaws.com"} and st["Action"] == "sts:AssumeRole"
    assert st["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert st["Condition"]["ArnLike"] == {
        "aws:SourceArn": f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-customization-job/*"}
    assert {t["Key"]: t["Value"] for t in role["Tags"]}["managed-by"] == "bedrock-forge"

    policy = clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    stmts = _statements(policy)
    actions = [a for s in stmts for a in s["Action"]]
    assert not any("*" in a for a in actions)
    assert set(actions) == {"s3:GetObject", "s3:ListBucket", "s3:PutObject"}   # no KMS, no teacher, no grader
    by_action: dict[str, list[str]] = {}
    for s in stmts:
        for a in s["Action"]:
            by_action.setdefault(a, []).extend(s["Resource"])
    assert by_action["s3:PutObject"] == ["arn:aws:s3:::forge-data/pre/output/k1/*"]
    assert set(by_action["s3:GetObject"]) == {"arn:aws:s3:::forge-data/pre/data/abc/*",
                                              "arn:aws:s3:::forge-data/pre/output/k1/*"}
    (listing,) = [s for s in stmts if "s3:ListBucket" in s["Action"]]
    assert listing["Resource"] == ["arn:aws:s3:::forge-data"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["pre/data/abc/*", "pre/output/k1/*"]}}


def test_rerun_adopts_and_drift_is_repaired(clients):
    cfg = make_config()
    names = resource_names(cfg, "k2k2k2k2k2k2")
    iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    again = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    assert not again.created and not again.updated
    # someone widened the inline policy and loosened the trust policy
    clients.iam.put_role_policy(RoleName=names.role, PolicyName=iam.POLICY_NAME, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    clients.iam.update_assume_role_policy(RoleName=names.role, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))
    fixed = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    assert fixed.updated and not fixed.created
    assert clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.POLICY_NAME)["PolicyDocument"] == \
        iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")
    assert clients.iam.get_role(RoleName=names.role)["Role"]["AssumeRolePolicyDocument"] == \
        iam.trust_policy(ACCOUNT, "us-east-1")
    assert len([r for r in clients.iam.list_roles()["Roles"] if r["RoleName"] == names.role]) == 1


def test_kms_distillation_and_rft_add_only_their_own_resources():
    kms = make_config(aws={"kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"})
    (k,) = [s for s in _statements(iam.permission_policy(kms, UPLOADED, ACCOUNT, "us-east-1"))
            if s["Sid"] == "UseDataKey"]
    assert k["Resource"] == [f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"]
    assert "kms:Decrypt" in k["Action"]

    dist = make_config(customization_type="DISTILLATION", data={"source": "d.jsonl"},
                       distillation={"teacher_model": "us.amazon.nova-pro-v1:0"})
    (t,) = [s for s in _statements(iam.permission_policy(dist, UPLOADED, ACCOUNT, "us-east-1"))
            if s["Sid"] == "InvokeTeacher"]
    assert t["Action"] == ["bedrock:InvokeModel"]
    assert f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.amazon.nova-pro-v1:0" in t["Resource"]

    lam = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:grader"
    rft = make_config(base_model="amazon.nova-2-lite-v1:0:256k", customization_type="REINFORCEMENT_FINE_TUNING",
                      rft={"grader_lambda_arn": lam})
    (g,) = [s for s in _statements(iam.permission_policy(rft, UPLOADED, ACCOUNT, "us-east-1"))
            if s["Sid"] == "InvokeGrader"]
    assert g == {"Sid": "InvokeGrader", "Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": [lam]}
    for cfg in (kms, dist, rft):
        acts = [a for s in _statements(iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")) for a in s["Action"]]
        assert not any(a.endswith("*") for a in acts)


def test_a_role_someone_else_manages_is_used_unchanged(clients):
    cfg = make_config(aws={"role_name": "team-bedrock-role"})
    names = resource_names(cfg, "k3k3k3k3k3k3")
    theirs = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                                                      "Principal": {"Service": "bedrock.amazonaws.com"},
                                                      "Action": "sts:AssumeRole"}]}
    arn = clients.iam.create_role(RoleName="team-bedrock-role",
                                  AssumeRolePolicyDocument=json.dumps(theirs))["Role"]["Arn"]
    info = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, standard_tags("k3", "fr", {}))
    assert info.role_arn == arn and not info.created and not info.updated
    assert clients.iam.get_role(RoleName="team-bedrock-role")["Role"]["AssumeRolePolicyDocument"] == theirs
    assert clients.iam.list_role_policies(RoleName="team-bedrock-role")["PolicyNames"] == []


# -- partial failures, drift and scope -------------------------------------------------------------
def test_a_drifted_role_is_updated_in_place_never_recreated(clients, monkeypatch):
    cfg = make_config()
    names = resource_names(cfg, "k4k4k4k4k4k4")
    first = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    role_id = clients.iam.get_role(RoleName=names.role)["Role"]["RoleId"]
    clients.iam.put_role_policy(
        RoleName=names.role,
        PolicyName=iam.POLICY_NAME,
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}]}
        ),
    )

    def no_create(**kw):
        raise AssertionError("create_role called for an existing role")

    monkeypatch.setattr(clients.iam, "create_role", no_create)
    fixed = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    assert fixed.updated and not fixed.created and fixed.role_arn == first.role_arn
    assert clients.iam.get_role(RoleName=names.role)["Role"]["RoleId"] == role_id


def test_an_unmanaged_role_keeps_even_a_wide_policy_of_our_name(clients):
    cfg = make_config(aws={"role_name": "team-role-2"})
    names = resource_names(cfg, "k5k5k5k5k5k5")
    clients.iam.create_role(
        RoleName="team-role-2", AssumeRolePolicyDocument=json.dumps(iam.trust_policy(ACCOUNT, "us-east-1"))
    )
    wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    clients.iam.put_role_policy(RoleName="team-role-2", PolicyName=iam.POLICY_NAME, PolicyDocument=json.dumps(wide))
    info = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    assert not info.created and not info.updated
    assert clients.iam.get_role_policy(RoleName="team-role-2", PolicyName=iam.POLICY_NAME)["PolicyDocument"] == wide


def test_put_role_policy_failing_surfaces_and_nothing_is_reported_created(clients, monkeypatch):
    from botocore.exceptions import ClientError

    from tasks.aws.errors import StageError
    from tests.support.aws import client_error

    cfg = make_config()
    names = resource_names(cfg, "k6k6k6k6k6k6")
    real_put = clients.iam.put_role_policy

    def refuse(code: str, status: int, message: str):
        def put_role_policy(**kw):
            raise client_error(code, status, message, "PutRolePolicy")

        return put_role_policy

    monkeypatch.setattr(clients.iam, "put_role_policy", refuse("AccessDenied", 403, "no iam:PutRolePolicy"))
    with pytest.raises(StageError, match="PutRolePolicy: AccessDenied: no iam:PutRolePolicy"):
        iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    # the role exists (tagged ours) but without its permissions; nothing returned a RoleInfo for it
    assert clients.iam.list_role_policies(RoleName=names.role)["PolicyNames"] == []
    monkeypatch.setattr(clients.iam, "put_role_policy", refuse("Throttling", 400, "Rate exceeded"))
    with pytest.raises(ClientError):  # transient: passed through unchanged for Prefect's retry
        iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    monkeypatch.setattr(clients.iam, "put_role_policy", real_put)
    rerun = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})  # the rerun finishes it
    assert not rerun.created and rerun.updated
    assert clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.POLICY_NAME)[
        "PolicyDocument"
    ] == iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")


@pytest.mark.parametrize(
    "region, partition", [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_trust_is_conditioned_on_this_account_and_its_jobs_in_the_region(region, partition):
    (st,) = iam.trust_policy(ACCOUNT, region)["Statement"]
    assert st["Effect"] == "Allow" and st["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert st["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:{partition}:bedrock:{region}:{ACCOUNT}:model-customization-job/*"},
    }


def test_s3_permissions_never_use_a_star_resource_beyond_the_run_prefixes():
    bucket_arn = "arn:aws:s3:::forge-data"
    allowed = (f"{bucket_arn}/{UPLOADED.input_prefix}*", f"{bucket_arn}/{UPLOADED.output_prefix}*")
    for cfg in (make_config(), make_config(aws={"kms_key_id": "alias/k"})):
        for st in iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")["Statement"]:
            if not any(a.startswith("s3:") for a in st["Action"]):
                continue
            for res in st["Resource"]:
                assert res != "*" and res != f"{bucket_arn}/*"
                assert res == bucket_arn or res in allowed, res
