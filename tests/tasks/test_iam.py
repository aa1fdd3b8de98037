"""tasks/iam.py against moto's IAM: least-privilege service role, get-or-create, drift repair."""

from __future__ import annotations

import json
import re

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

    assert clients.iam.list_role_policies(RoleName=names.role)["PolicyNames"] == [iam.policy_name(names.run_key)]
    policy = clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.policy_name(names.run_key))[
        "PolicyDocument"]
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
    clients.iam.put_role_policy(RoleName=names.role, PolicyName=iam.policy_name(names.run_key),
                                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                                    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    clients.iam.update_assume_role_policy(RoleName=names.role, PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "bedrock.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))
    fixed = iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    assert fixed.updated and not fixed.created
    assert clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.policy_name(names.run_key))[
        "PolicyDocument"] == iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")
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
        PolicyName=iam.policy_name(names.run_key),
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
    assert clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.policy_name(names.run_key))[
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
    key_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for cfg in (make_config(), make_config(aws={"kms_key_id": "alias/k"})):
        for st in iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1", kms_arn=key_arn)["Statement"]:
            if not any(a.startswith("s3:") for a in st["Action"]):
                continue
            for res in st["Resource"]:
                assert res != "*" and res != f"{bucket_arn}/*"
                assert res == bucket_arn or res in allowed, res


# -- issue 16: no wildcard can ever reach a policy ---------------------------------------------------------
LAMBDA = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:grader"
RFT = {"base_model": "amazon.nova-2-lite-v1:0:256k", "customization_type": "REINFORCEMENT_FINE_TUNING"}
DIST = {"customization_type": "DISTILLATION"}
HOSTILE = [
    ("rft.grader_lambda_arn", {**RFT, "rft": {"grader_lambda_arn": "*"}}),
    ("rft.grader_lambda_arn", {**RFT, "rft": {"grader_lambda_arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:*"}}),
    ("rft.grader_lambda_arn", {**RFT, "rft": {"grader_lambda_arn": f"arn:aws:lambda:*:{ACCOUNT}:function:g"}}),
    ("rft.grader_lambda_arn", {**RFT, "rft": {"grader_lambda_arn": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:g?"}}),
    ("rft.grader_lambda_arn", {**RFT, "rft": {"grader_lambda_arn": "grader"}}),
    ("distillation.teacher_model", {**DIST, "distillation": {"teacher_model": "arn:aws:bedrock:*:*:*"}}),
    ("distillation.teacher_model", {**DIST, "distillation": {"teacher_model": "us.amazon.*"}}),
    ("distillation.teacher_model", {**DIST, "distillation": {
        "teacher_model": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:?"}}),
    ("distillation.teacher_model", {**DIST, "distillation": {"teacher_model": "*"}}),
    ("aws.kms_key_id", {"aws": {"kms_key_id": "*"}}),
    ("aws.kms_key_id", {"aws": {"kms_key_id": "alias/*"}}),
    ("aws.kms_key_id", {"aws": {"kms_key_id": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/*"}}),
    ("aws.kms_key_id", {"aws": {"kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890a?"}}),
    ("aws.prefix", {"aws": {"prefix": "*"}}),
    ("aws.prefix", {"aws": {"prefix": "team/*"}}),
    ("aws.prefix", {"aws": {"prefix": "te?m"}}),
    ("aws.bucket", {"aws": {"bucket": "*"}}),
    ("aws.bucket", {"aws": {"bucket": "forge-*"}}),
    ("aws.role_name", {"aws": {"role_name": "*"}}),
]


@pytest.mark.parametrize("field, over", HOSTILE, ids=[f"{f}={json.dumps(o)[-40:]}" for f, o in HOSTILE])
def test_every_hostile_value_that_reaches_iam_is_refused_where_the_config_loads(field, over, tmp_path):
    """The same refusal from a dict (a deployment's parameters) and from a YAML file (forge validate/run)."""
    import yaml

    from tasks.config import ConfigError, load_config, parse_config

    raw = {"name": "banking", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "data.jsonl"}, **over}
    with pytest.raises(ConfigError) as from_dict:
        parse_config(json.loads(json.dumps(raw)), "params")
    assert any(p.startswith(f"params: {field}: ") for p in from_dict.value.problems), from_dict.value.problems
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError) as from_file:
        load_config(path)
    located = [p for p in from_file.value.problems if f": {field}: " in p]
    assert located and all(re.match(rf"{re.escape(str(path))}:\d+: ", p) for p in located), from_file.value.problems
    # the same message, whoever submitted the config
    assert {p.split(": ", 1)[1] for p in located} == {p.split(": ", 1)[1] for p in from_dict.value.problems
                                                     if p.startswith(f"params: {field}: ")}


def test_permission_policy_refuses_a_wildcard_even_when_validation_was_bypassed():
    cfg = make_config(**RFT, rft={"grader_lambda_arn": LAMBDA})
    bypass = cfg.model_copy(update={"rft": cfg.rft.model_copy(update={"grader_lambda_arn": "*"})})
    with pytest.raises(iam.PolicyWildcardError, match="InvokeGrader"):
        iam.permission_policy(bypass, UPLOADED, ACCOUNT, "us-east-1")
    wide = UPLOADED.model_copy(update={"input_prefix": "pre/*/"})
    with pytest.raises(iam.PolicyWildcardError, match="not an exact prefix"):
        iam.permission_policy(make_config(), wide, ACCOUNT, "us-east-1")


def test_a_cross_region_teacher_is_granted_one_exact_arn_per_destination_region():
    from tasks.catalog import load_catalog

    cfg = make_config(**DIST, distillation={"teacher_model": "us.amazon.nova-pro-v1:0"})
    (t,) = [s for s in iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")["Statement"]
            if s["Sid"] == "InvokeTeacher"]
    cat = load_catalog()
    regions = (cat.profile_regions("us.amazon.nova-pro-v1:0") if hasattr(cat, "profile_regions")
               else iam._FALLBACK_PROFILE_REGIONS["us"])
    assert len(regions) >= 2
    assert t["Resource"] == [f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.amazon.nova-pro-v1:0"] + [
        f"arn:aws:bedrock:{r}::foundation-model/amazon.nova-pro-v1:0" for r in regions]
    assert not any(iam.wildcard_in(r) for r in t["Resource"])
    direct = make_config(**DIST, distillation={"teacher_model": "amazon.nova-pro-v1:0"})
    (d,) = [s for s in iam.permission_policy(direct, UPLOADED, ACCOUNT, "us-east-1")["Statement"]
            if s["Sid"] == "InvokeTeacher"]
    assert d["Resource"] == ["arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"]


def test_a_kms_alias_is_granted_as_the_key_it_resolves_to(clients):
    """An alias ARN in Resource grants nothing on the key (kms alias-authorization.html): DescribeKey resolves it."""
    import boto3

    from tasks.aws.errors import StageError

    cfg = make_config(aws={"kms_key_id": "alias/forge-data"})
    names = resource_names(cfg, "k7k7k7k7k7k7")
    with pytest.raises(StageError, match="is an alias: give the key ARN"):
        iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    assert [r for r in clients.iam.list_roles()["Roles"] if r["RoleName"] == names.role] == []   # nothing created
    clients.kms = boto3.client("kms", region_name="us-east-1")
    key = clients.kms.create_key()["KeyMetadata"]
    clients.kms.create_alias(AliasName="alias/forge-data", TargetKeyId=key["KeyId"])
    iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
    doc = clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.policy_name(names.run_key))["PolicyDocument"]
    (k,) = [s for s in doc["Statement"] if s["Sid"] == "UseDataKey"]
    assert k["Resource"] == [key["Arn"]] and ":key/" in key["Arn"]
    assert iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1", kms_arn=key["Arn"]) == doc
    with pytest.raises(ValueError, match="must be resolved"):
        iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")


def test_two_runs_sharing_a_role_never_rewrite_each_others_policy(clients):
    first_cfg = make_config(aws={"role_name": "shared-forge-role"})
    second_cfg = make_config(aws={"role_name": "shared-forge-role", "region": "us-west-2"})
    a, b = resource_names(first_cfg, "aaaaaaaaaaaa"), resource_names(second_cfg, "bbbbbbbbbbbb")
    up_b = UPLOADED.model_copy(update={"output_prefix": "pre/output/k2/", "output_uri": "s3://forge-data/pre/output/k2/"})
    iam.ensure_role(clients, first_cfg, a, UPLOADED, ACCOUNT, {})
    policy_a = clients.iam.get_role_policy(RoleName=a.role, PolicyName=iam.policy_name("aaaaaaaaaaaa"))[
        "PolicyDocument"]
    west = type(clients)(**{**clients.__dict__, "region": "us-west-2"})
    info = iam.ensure_role(west, second_cfg, b, up_b, ACCOUNT, {})       # the second run, while the first's job runs
    assert info.updated and not info.created
    names = sorted(clients.iam.list_role_policies(RoleName=a.role)["PolicyNames"])
    assert names == [iam.policy_name("aaaaaaaaaaaa"), iam.policy_name("bbbbbbbbbbbb")]
    assert clients.iam.get_role_policy(RoleName=a.role, PolicyName=iam.policy_name("aaaaaaaaaaaa"))[
        "PolicyDocument"] == policy_a, "the first run's permissions are untouched"
    (trust,) = clients.iam.get_role(RoleName=a.role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"] == [
        f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-customization-job/*",
        f"arn:aws:bedrock:us-west-2:{ACCOUNT}:model-customization-job/*"], "trust widened, never narrowed"
    again = iam.ensure_role(clients, first_cfg, a, UPLOADED, ACCOUNT, {})  # the first run's rerun: nothing to change
    assert not again.updated


LEGAL = [
    {},
    {"aws": {"kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab", "prefix": "teams/nlp-1/forge"}},
    {"aws": {"kms_key_id": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"}},
    {"aws": {"kms_key_id": "mrk-1234abcd12ab34cd56ef1234567890ab"}},
    {**DIST, "distillation": {"teacher_model": "us.amazon.nova-pro-v1:0"}},
    {**DIST, "distillation": {"teacher_model": "amazon.nova-pro-v1:0"}},
    {**DIST, "distillation": {"teacher_model": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"}},
    {**RFT, "rft": {"grader_lambda_arn": LAMBDA}},
    {**RFT, "rft": {"grader_lambda_arn": LAMBDA + ":$LATEST"}},
    {**RFT, "rft": {"grader_lambda_arn": LAMBDA + ":live"}},
]


def test_roles_read_back_after_runs_with_every_legal_value_hold_no_wildcard(clients):
    """Defence: whatever the config said, the policies IAM holds have no '*' or '?' in any Action, Resource or
    condition value except the trailing '*' of the run's own prefixes."""
    allowed = {f"arn:aws:s3:::forge-data/{UPLOADED.input_prefix}*",
               f"arn:aws:s3:::forge-data/{UPLOADED.output_prefix}*",
               f"{UPLOADED.input_prefix}*", f"{UPLOADED.output_prefix}*"}
    seen = 0
    for i, over in enumerate(LEGAL):
        cfg = make_config(**over)
        names = resource_names(cfg, f"{i:012d}")
        iam.ensure_role(clients, cfg, names, UPLOADED, ACCOUNT, {})
        for pname in clients.iam.list_role_policies(RoleName=names.role)["PolicyNames"]:
            doc = clients.iam.get_role_policy(RoleName=names.role, PolicyName=pname)["PolicyDocument"]
            for st in doc["Statement"]:
                values = [*st["Action"], *st["Resource"]]
                values += [x for c in (st.get("Condition") or {}).values() for v in c.values()
                           for x in (v if isinstance(v, list) else [v])]
                bad = [v for v in values if ("*" in v or "?" in v) and v not in allowed]
                assert bad == [], (over, st)
                seen += len(values)
    assert seen > 10 * len(LEGAL)


# -- issue 16: media that records reference are readable by the role, exactly ------------------------------------
def _get_object_resources(doc: dict) -> set[str]:
    return {r for st in doc["Statement"] if "s3:GetObject" in st["Action"] for r in st["Resource"]}


def _wildcards(doc: dict) -> list[str]:
    values = [v for st in doc["Statement"] for v in (*st["Action"], *st["Resource"])]
    values += [x for st in doc["Statement"] for c in (st.get("Condition") or {}).values() for v in c.values()
               for x in (v if isinstance(v, list) else [v])]
    return sorted(v for v in values if "*" in v or "?" in v)


RUN_PREFIX_WILDCARDS = [f"arn:aws:s3:::forge-data/{UPLOADED.input_prefix}*",
                        f"arn:aws:s3:::forge-data/{UPLOADED.output_prefix}*",
                        f"{UPLOADED.input_prefix}*", f"{UPLOADED.output_prefix}*"]


def test_media_objects_are_granted_as_exact_arns_and_read_back_so(clients):
    media = ["s3://forge-data/media/img/a.png", "s3://forge-data/media/img/b.jpeg", "s3://forge-data/c.gif"]
    up = UPLOADED.model_copy(update={"media": media})
    cfg = make_config(base_model="amazon.nova-lite-v1:0:300k")
    names = resource_names(cfg, "m1m1m1m1m1m1")
    iam.ensure_role(clients, cfg, names, up, ACCOUNT, {})
    doc = clients.iam.get_role_policy(RoleName=names.role, PolicyName=iam.policy_name(names.run_key))["PolicyDocument"]
    (st,) = [s for s in doc["Statement"] if s["Sid"] == "ReadRecordMedia"]
    assert st["Action"] == ["s3:GetObject"] and st["Effect"] == "Allow" and "Condition" not in st
    assert st["Resource"] == sorted(f"arn:aws:s3:::{u[5:]}" for u in media)
    assert _get_object_resources(doc) == {f"arn:aws:s3:::forge-data/{UPLOADED.input_prefix}*",
                                          f"arn:aws:s3:::forge-data/{UPLOADED.output_prefix}*",
                                          *(f"arn:aws:s3:::{u[5:]}" for u in media)}
    assert sorted(set(_wildcards(doc))) == sorted(RUN_PREFIX_WILDCARDS), "no wildcard beyond the run's prefixes"
    # no media: no media statement at all (text-only runs keep the policy they had)
    plain = iam.permission_policy(cfg, UPLOADED, ACCOUNT, "us-east-1")
    assert [s["Sid"] for s in plain["Statement"]] == [s["Sid"] for s in doc["Statement"]
                                                      if s["Sid"] != "ReadRecordMedia"]


def test_media_folders_are_granted_with_exactly_one_trailing_star_each():
    media = ["s3://forge-data/media/cats/", "s3://forge-data/media/dogs/", "s3://forge-data/root.png"]
    doc = iam.permission_policy(make_config(), UPLOADED.model_copy(update={"media": media}), ACCOUNT, "us-east-1")
    (st,) = [s for s in doc["Statement"] if s["Sid"] == "ReadRecordMedia"]
    assert st["Resource"] == ["arn:aws:s3:::forge-data/media/cats/*", "arn:aws:s3:::forge-data/media/dogs/*",
                              "arn:aws:s3:::forge-data/root.png"]
    assert sorted(set(_wildcards(doc))) == sorted(RUN_PREFIX_WILDCARDS + st["Resource"][:2])


@pytest.mark.parametrize("uri, error, match", [
    ("s3://other-bucket/img/a.png", iam.MediaGrantError, "not in the run's bucket"),
    ("s3://forge-data-2/img/a.png", iam.MediaGrantError, "not in the run's bucket"),
    ("s3://forge-data/img/*.png", iam.PolicyWildcardError, "not an exact object or folder"),
    ("s3://forge-data/img/a?.png", iam.PolicyWildcardError, "not an exact object or folder"),
    ("s3://forge-data/img/*", iam.PolicyWildcardError, "not an exact object or folder"),
    ("s3://forge-data/", iam.PolicyWildcardError, "not an exact object or folder"),
    ("s3://forge-data//a.png", iam.PolicyWildcardError, "not an exact object or folder"),
    ("s3://forge-data/pre/", iam.MediaGrantError, "pipeline's own data"),          # aws.prefix "pre" below
    ("s3://forge-data/pre/output/", iam.MediaGrantError, "pipeline's own data"),
    ("s3://forge-data/pre/data/abc/", iam.MediaGrantError, "pipeline's own data"),
    ("s3://forge-data/pre/output/other-run/", iam.MediaGrantError, "pipeline's own data"),
])
def test_media_that_cannot_be_granted_exactly_is_refused_before_any_iam_call(clients, uri, error, match):
    from tasks.aws.errors import StageError

    cfg = make_config(aws={"prefix": "pre", "bucket": "forge-data"})
    up = UPLOADED.model_copy(update={"media": ["s3://forge-data/img/ok.png", uri]})
    with pytest.raises(error, match=match):
        iam.permission_policy(cfg, up, ACCOUNT, "us-east-1")
    names = resource_names(cfg, "m2m2m2m2m2m2")
    with pytest.raises(StageError, match=match):
        iam.ensure_role(clients, cfg, names, up, ACCOUNT, {})
    assert [r for r in clients.iam.list_roles()["Roles"] if r["RoleName"] == names.role] == []   # nothing created


def test_media_objects_inside_the_prefix_but_outside_its_data_and_output_are_fine():
    cfg = make_config(aws={"prefix": "pre"})
    up = UPLOADED.model_copy(update={"media": ["s3://forge-data/pre/media/", "s3://forge-data/pre/output/x.png"]})
    (st,) = [s for s in iam.permission_policy(cfg, up, ACCOUNT, "us-east-1")["Statement"]
             if s["Sid"] == "ReadRecordMedia"]
    assert st["Resource"] == ["arn:aws:s3:::forge-data/pre/media/*", "arn:aws:s3:::forge-data/pre/output/x.png"]


def test_assert_exact_allows_only_the_media_folders_it_was_given():
    cfg = make_config()
    up = UPLOADED.model_copy(update={"media": ["s3://forge-data/media/cats/"]})
    doc = iam.permission_policy(cfg, up, ACCOUNT, "us-east-1")
    sneaky = json.loads(json.dumps(doc))
    (st,) = [s for s in sneaky["Statement"] if s["Sid"] == "ReadRecordMedia"]
    st["Resource"].append("arn:aws:s3:::forge-data/media/*")           # a wider folder than the data named
    with pytest.raises(iam.PolicyWildcardError, match="ReadRecordMedia"):
        iam.assert_exact(sneaky, up, "arn:aws:s3:::forge-data")
    iam.assert_exact(doc, up, "arn:aws:s3:::forge-data")                  # the real one passes
    with pytest.raises(iam.PolicyWildcardError):                          # without the media, the folder is a wildcard
        iam.assert_exact(doc, UPLOADED, "arn:aws:s3:::forge-data")


def test_a_policy_over_iams_size_limit_is_refused_not_written(clients):
    from tasks.aws.errors import StageError

    media = [f"s3://forge-data/m/{i:04d}/{'x' * 40}.png" for i in range(200)]    # ~80 chars each: ~16 KB
    up = UPLOADED.model_copy(update={"media": media})
    with pytest.raises(iam.PolicyTooLarge, match="10,240"):
        iam.permission_policy(make_config(), up, ACCOUNT, "us-east-1")
    fits = UPLOADED.model_copy(update={"media": media[:40]})
    assert iam.policy_size(iam.permission_policy(make_config(), fits, ACCOUNT, "us-east-1")) <= iam.ROLE_POLICY_CHARS
    names = resource_names(make_config(), "m3m3m3m3m3m3")
    with pytest.raises(StageError, match="10,240"):
        iam.ensure_role(clients, make_config(), names, up, ACCOUNT, {})
    assert [r for r in clients.iam.list_roles()["Roles"] if r["RoleName"] == names.role] == []


def test_policy_size_counts_what_iam_counts():
    doc = iam.permission_policy(make_config(), UPLOADED, ACCOUNT, "us-east-1")
    assert iam.policy_size(doc) == len(re.sub(r"\s", "", json.dumps(doc, indent=4)))


def test_a_media_budget_policy_fits_iams_limit_with_every_other_statement():
    """The data side's budget (tasks/data/media.py) leaves room: the largest media list it lets through, with
    KMS and a cross-Region teacher, stays under 10,240 characters in the longest partition name."""
    from tasks.data.media import MEDIA_BUDGET, MediaRefs

    refs, i = MediaRefs(), 0
    while not refs.folded:                     # the most exact objects the data side keeps before it folds
        before = refs.entries()
        refs.add(f"s3://forge-data/{'d' * 20}/{i:06d}.png")
        i += 1
    assert len(before) > 50
    cfg = make_config(**DIST, distillation={"teacher_model": "us.amazon.nova-pro-v1:0"},
                      aws={"kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab", "prefix": "p" * 100})
    up = UPLOADED.model_copy(update={"media": before})
    for region in ("us-east-1", "us-gov-west-1"):
        doc = iam.permission_policy(cfg, up, ACCOUNT, region)
        assert iam.policy_size(doc) <= iam.ROLE_POLICY_CHARS
        (st,) = [s for s in doc["Statement"] if s["Sid"] == "ReadRecordMedia"]
        assert len(json.dumps(st["Resource"], separators=(",", ":"))) <= MEDIA_BUDGET


# -- issue 16: per-run inline policies are deleted once their job no longer needs them -------------------------
class FakeJobs:
    """ListModelCustomizationJobs (nameContains, one page) over a fixed list of job summaries."""

    def __init__(self, jobs: list[dict]):
        self.jobs, self.calls = jobs, []

    def get_paginator(self, op: str):
        assert op == "list_model_customization_jobs"
        fake = self

        class Pages:
            def paginate(self, nameContains: str = ""):
                fake.calls.append(nameContains)
                return [{"modelCustomizationJobSummaries": [j for j in fake.jobs if nameContains in j["jobName"]]}]

        return Pages()


def _job(name: str, status: str, ended_h_ago: float | None = None) -> dict:
    from datetime import UTC, datetime, timedelta

    j = {"jobName": name, "status": status,
         "jobArn": f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-customization-job/{name}"}
    if ended_h_ago is not None:
        j["endTime"] = datetime.now(UTC) - timedelta(hours=ended_h_ago)
    return j


def _shared_role_with_runs(clients, keys: list[str], role: str = "shared-prune-role") -> None:
    for k in keys:
        cfg = make_config(aws={"role_name": role})
        iam.ensure_role(clients, cfg, resource_names(cfg, k), UPLOADED, ACCOUNT, {})


def _policies(clients, role: str = "shared-prune-role") -> list[str]:
    return sorted(clients.iam.list_role_policies(RoleName=role)["PolicyNames"])


def test_release_deletes_the_runs_own_policy_once_and_tolerates_it_being_gone(clients):
    a, b = "aaaaaaaaaaa1", "bbbbbbbbbbb2"
    _shared_role_with_runs(clients, [a, b])
    with pytest.raises(ValueError, match="not terminal"):
        iam.release_run_policy(clients, "shared-prune-role", a, "InProgress")
    assert _policies(clients) == [iam.policy_name(a), iam.policy_name(b)]
    assert iam.release_run_policy(clients, "shared-prune-role", a, "Completed") is True
    assert _policies(clients) == [iam.policy_name(b)], "only the run's own policy went"
    deletes = []
    real_delete = clients.iam.delete_role_policy
    clients.iam.delete_role_policy = lambda **kw: deletes.append(kw) or real_delete(**kw)
    assert iam.release_run_policy(clients, "shared-prune-role", a, "Completed") is False      # already gone
    assert deletes == [], "a rerun reads, it makes no mutating call"
    assert iam.release_run_policy(clients, "no-such-role", a, "Completed") is False            # role gone
    clients.iam.create_role(RoleName="hand-made", AssumeRolePolicyDocument=json.dumps(iam.trust_policy(ACCOUNT,
                                                                                                    "us-east-1")))
    clients.iam.put_role_policy(RoleName="hand-made", PolicyName=iam.policy_name(a),
                                PolicyDocument=json.dumps(iam.permission_policy(make_config(), UPLOADED, ACCOUNT,
                                                                                "us-east-1")))
    assert iam.release_run_policy(clients, "hand-made", a, "Completed") is False               # not ours: untouched
    assert clients.iam.list_role_policies(RoleName="hand-made")["PolicyNames"] == [iam.policy_name(a)]


def test_prune_removes_only_other_runs_policies_whose_jobs_are_all_terminal(clients):
    keys = {"done": "d0d0d0d0d0d0", "running": "e1e1e1e1e1e1", "nojob": "f2f2f2f2f2f2",
            "failed_recent": "a3a3a3a3a3a3", "failed_old": "b4b4b4b4b4b4", "rerun_live": "c5c5c5c5c5c5",
            "stopping": "a6a6a6a6a6a6", "me": "a7a7a7a7a7a7", "rerun_done": "a8a8a8a8a8a8"}
    _shared_role_with_runs(clients, list(keys.values()))
    clients.iam.put_role_policy(RoleName="shared-prune-role", PolicyName=iam.POLICY_NAME,
                                PolicyDocument=json.dumps(iam.permission_policy(make_config(), UPLOADED, ACCOUNT,
                                                                                "us-east-1")))
    k = keys
    clients.bedrock = FakeJobs([
        _job(f"forge-banking-{k['done']}", "Completed", 1),
        _job(f"forge-banking-{k['running']}", "InProgress"),
        _job(f"forge-banking-{k['failed_recent']}", "Failed", 2),
        _job(f"forge-banking-{k['failed_old']}", "Failed", 24 * 10),
        _job(f"forge-banking-{k['rerun_live']}", "Failed", 24 * 10),
        _job(f"forge-banking-{k['rerun_live']}-a2", "InProgress"),
        _job(f"forge-banking-{k['stopping']}", "Stopping"),
        _job(f"forge-banking-{k['me']}", "Completed", 1),
        _job(f"forge-banking-{k['rerun_done']}", "Failed", 1),
        _job(f"forge-banking-{k['rerun_done']}-a2", "Completed", 0.5),
        _job(f"someone-else-{k['nojob']}-x", "Completed", 100),       # named like no job of ours
    ])
    report = iam.prune_role_policies(clients, "shared-prune-role", keep_run_key=k["me"])
    gone = {iam.policy_name(k[n]) for n in ("done", "failed_old", "rerun_done")}
    assert set(report.deleted) == gone
    assert _policies(clients) == sorted({iam.POLICY_NAME, *(iam.policy_name(v) for v in k.values())} - gone)
    kept = " | ".join(report.kept)
    for n, why in (("running", "is InProgress"), ("nojob", "no job found"), ("failed_recent", "kept for a rerun"),
                   ("rerun_live", "-a2 is InProgress"), ("stopping", "is Stopping")):
        assert f"{iam.policy_name(k[n])}: " in kept and why in kept, (n, kept)
    assert iam.policy_name(k["me"]) not in kept, "the caller's own run is never judged"
    again = iam.prune_role_policies(clients, "shared-prune-role", keep_run_key=k["me"])
    assert again.deleted == []                                       # idempotent


def test_prune_leaves_a_role_it_does_not_manage_alone(clients):
    clients.iam.create_role(RoleName="team-owned", AssumeRolePolicyDocument=json.dumps(iam.trust_policy(ACCOUNT,
                                                                                                     "us-east-1")))
    clients.iam.put_role_policy(RoleName="team-owned", PolicyName=iam.policy_name("d0d0d0d0d0d0"),
                                PolicyDocument=json.dumps(iam.permission_policy(make_config(), UPLOADED, ACCOUNT,
                                                                                "us-east-1")))
    clients.bedrock = FakeJobs([_job("forge-banking-d0d0d0d0d0d0", "Completed", 100)])
    report = iam.prune_role_policies(clients, "team-owned")
    assert report.skipped_unmanaged and report.deleted == [] and clients.bedrock.calls == []
    assert clients.iam.list_role_policies(RoleName="team-owned")["PolicyNames"] == [iam.policy_name("d0d0d0d0d0d0")]
    assert iam.prune_role_policies(clients, "no-such-role").deleted == []


def test_a_full_role_is_pruned_and_the_put_retried_once(clients, monkeypatch):
    """IAM's aggregate quota (10,240 characters of inline policies per role) modelled over moto, which does not
    enforce it: PutRolePolicy answers LimitExceeded when the role's policies would exceed it."""
    from tasks.aws.errors import StageError
    from tests.support.aws import client_error

    real_put = clients.iam.put_role_policy

    def quota_put(RoleName: str, PolicyName: str, PolicyDocument: str):
        others = [n for n in clients.iam.list_role_policies(RoleName=RoleName)["PolicyNames"] if n != PolicyName]
        used = sum(iam.policy_size(clients.iam.get_role_policy(RoleName=RoleName, PolicyName=n)["PolicyDocument"])
                   for n in others)
        if used + len(re.sub(r"\s", "", PolicyDocument)) > iam.ROLE_POLICY_CHARS:
            raise client_error("LimitExceeded", 409, "Maximum policy size of 10240 bytes exceeded", "PutRolePolicy")
        return real_put(RoleName=RoleName, PolicyName=PolicyName, PolicyDocument=PolicyDocument)

    monkeypatch.setattr(clients.iam, "put_role_policy", quota_put)
    per_run = iam.policy_size(iam.permission_policy(make_config(), UPLOADED, ACCOUNT, "us-east-1"))
    fit = iam.ROLE_POLICY_CHARS // per_run
    keys = [f"{i:012x}" for i in range(fit)]
    _shared_role_with_runs(clients, keys)                               # the role is full now
    clients.bedrock = FakeJobs([_job(f"forge-banking-{k}", "InProgress") for k in keys])
    late = make_config(aws={"role_name": "shared-prune-role"})
    with pytest.raises(StageError, match="inline policies are full"):  # every run still live: nothing removed
        iam.ensure_role(clients, late, resource_names(late, "ffffffffffff"), UPLOADED, ACCOUNT, {})
    assert len(_policies(clients)) == fit
    clients.bedrock.jobs[0]["status"] = "Completed"                     # one run finished its job
    iam.ensure_role(clients, late, resource_names(late, "ffffffffffff"), UPLOADED, ACCOUNT, {})
    assert _policies(clients) == sorted([iam.policy_name(k) for k in keys[1:]] + [iam.policy_name("ffffffffffff")])
