"""emulator/iam_enforce.py: IAM's evaluation logic as AWS documents it, what each request needs, and the emulator's
enforcing mode end to end (real boto3 clients: AWS-shaped AccessDenied per service, the identities, the log)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from emulator.iam_enforce import (
    AuthRequest,
    BedrockLookup,
    bedrock_requests,
    denial_message,
    evaluate,
    iam_requests,
    kms_requests,
    s3_requests,
)

ACCT = "111122223333"


def doc(*statements: dict) -> list[tuple[str, dict]]:
    return [("p", {"Version": "2012-10-17", "Statement": list(statements)})]


def allow(action, resource, **extra) -> dict:
    return {"Sid": extra.pop("Sid", "A"), "Effect": "Allow", "Action": action, "Resource": resource, **extra}


def req(action, resource, ctx=None) -> AuthRequest:
    return AuthRequest(action, resource, ctx or {})


# ---------------------------------------------------------------------------------------------
# evaluation logic
# ---------------------------------------------------------------------------------------------
def test_implicit_deny_allow_and_explicit_deny_wins():
    bucket = "arn:aws:s3:::b1"
    assert not evaluate(doc(), req("s3:ListBucket", bucket)).allowed
    d = evaluate(doc(allow("s3:ListBucket", bucket)), req("s3:ListBucket", bucket))
    assert d.allowed and d.allowed_by == ["p/A"]
    both = doc(allow("s3:*", "*"), {"Sid": "D", "Effect": "Deny", "Action": "s3:ListBucket", "Resource": bucket})
    d = evaluate(both, req("s3:ListBucket", bucket))
    assert not d.allowed and d.reason == "explicit deny" and d.denied_by == "p/D"
    assert evaluate(both, req("s3:GetObject", bucket + "/k")).allowed
    # a Deny in another policy document denies too
    two = doc(allow("s3:*", "*")) + [("q", {"Statement": {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}})]
    assert not evaluate(two, req("s3:GetObject", bucket + "/k")).allowed


def test_actions_match_case_insensitively_with_wildcards():
    p = doc(allow(["bedrock:Get*", "s3:?utObject"], "*"))
    assert evaluate(p, req("bedrock:getfoundationmodel", "*")).allowed
    assert evaluate(p, req("s3:PutObject", "x")).allowed and not evaluate(p, req("s3:GetObject", "x")).allowed
    assert not evaluate(p, req("s3:PutObjectTagging", "x")).allowed, "? is one character, and the match is whole"
    assert not evaluate(p, req("bedrock:ListTagsForResource", "*")).allowed


def test_not_action_and_not_resource():
    p = doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert evaluate(p, req("s3:GetObject", "x")).allowed and not evaluate(p, req("iam:CreateRole", "x")).allowed
    p = doc({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::secret/*"})
    assert evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/k")).allowed
    assert not evaluate(p, req("s3:GetObject", "arn:aws:s3:::secret/k")).allowed


def test_resources_match_case_sensitively_and_per_arn_segment():
    p = doc(allow("s3:GetObject", "arn:aws:s3:::b1/data/????/*.jsonl"))
    assert evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/data/abcd/train.jsonl")).allowed
    assert evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/data/abcd/x/y.jsonl")).allowed, "* spans '/'"
    assert not evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/data/abcde/train.jsonl")).allowed
    assert not evaluate(p, req("s3:GetObject", "arn:aws:s3:::B1/data/abcd/train.jsonl")).allowed, "case-sensitive"
    # a * in one of the first five segments stays inside it (the account here), the last segment keeps colons
    p = doc(allow("bedrock:GetCustomModel", "arn:aws:bedrock:us-east-1:*:custom-model/*"))
    assert evaluate(p, req("bedrock:GetCustomModel",
                           f"arn:aws:bedrock:us-east-1:{ACCT}:custom-model/amazon.nova-micro-v1:0:128k/abc")).allowed
    assert not evaluate(p, req("bedrock:GetCustomModel", "arn:aws:bedrock:us-east-1:1:2:custom-model/x")).allowed
    assert not evaluate(p, req("bedrock:GetCustomModel", "*")).allowed, "an ARN pattern does not match '*'"


def test_policy_variables():
    p = doc(allow("s3:GetObject", "arn:aws:s3:::b1/home/${aws:username}/*"),
            allow("s3:PutObject", "arn:aws:s3:::b1/literal/${*}", Sid="L"))
    me = {"aws:username": ["ana"]}
    assert evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/home/ana/x", me)).allowed
    assert not evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/home/bob/x", me)).allowed
    assert not evaluate(p, req("s3:GetObject", "arn:aws:s3:::b1/home/ana/x")).allowed, "unresolved: no match"
    assert evaluate(p, req("s3:PutObject", "arn:aws:s3:::b1/literal/*")).allowed
    assert not evaluate(p, req("s3:PutObject", "arn:aws:s3:::b1/literal/x")).allowed, "${*} is a literal *"


@pytest.mark.parametrize("operator, policy_value, request_value, expected", [
    ("StringEquals", "bedrock-forge", ["bedrock-forge"], True),
    ("StringEquals", "bedrock-forge", ["Bedrock-Forge"], False),
    ("StringEquals", "bedrock-forge", None, False),
    ("StringEqualsIgnoreCase", "bedrock-forge", ["Bedrock-Forge"], True),
    ("StringNotEquals", "bedrock-forge", ["other"], True),
    ("StringNotEquals", "bedrock-forge", ["bedrock-forge"], False),
    ("StringNotEquals", "bedrock-forge", None, True),                 # absent key: a negated operator holds
    ("StringLike", "bedrock-*", ["bedrock-forge"], True),
    ("StringLike", "bedrock-?", ["bedrock-forge"], False),
    ("StringNotLike", "bedrock-*", ["other"], True),
    ("StringEqualsIfExists", "bedrock-forge", None, True),
    ("StringEqualsIfExists", "bedrock-forge", ["other"], False),
    ("ArnLike", "arn:aws:bedrock:*:111122223333:model-customization-job/*",
     ["arn:aws:bedrock:us-east-1:111122223333:model-customization-job/x/y"], True),
    ("ArnLike", "arn:aws:bedrock:*:111122223333:model-customization-job/*",
     ["arn:aws:bedrock:us-east-1:999999999999:model-customization-job/x"], False),
    ("Bool", "true", ["true"], True),
    ("Bool", True, ["false"], False),
    ("Null", "true", None, True),
    ("Null", "false", None, False),
    ("Null", "false", ["x"], True),
    ("NumericLessThan", "10", ["3"], True),
    ("NumericLessThan", "10", ["30"], False),
    ("NumericGreaterThanEquals", "10", ["ten"], False),
    ("DateEquals", "2026-01-01", ["2026-01-01"], False),               # not modelled: never holds
])
def test_condition_operators(operator, policy_value, request_value, expected):
    p = doc(allow("s3:GetObject", "*", Condition={operator: {"aws:ResourceTag/managed-by": policy_value}}))
    ctx = {} if request_value is None else {"aws:ResourceTag/managed-by": request_value}
    assert evaluate(p, req("s3:GetObject", "x", ctx)).allowed is expected


def test_condition_keys_are_case_insensitive_values_any_of_and_blocks_all_of():
    p = doc(allow("s3:GetObject", "*", Condition={
        "StringEquals": {"AWS:ResourceTag/Managed-By": ["a", "bedrock-forge"], "s3:prefix": "x/"},
        "Bool": {"aws:SecureTransport": "true"}}))
    good = {"aws:resourcetag/managed-by": ["bedrock-forge"], "s3:prefix": ["x/"], "aws:SecureTransport": ["true"]}
    assert evaluate(p, req("s3:GetObject", "k", good)).allowed
    for key in good:
        assert not evaluate(p, req("s3:GetObject", "k", {k: v for k, v in good.items() if k != key})).allowed, key


def test_set_qualifiers_on_multivalued_keys():
    only = doc(allow("bedrock:TagResource", "*", Condition={
        "ForAllValues:StringEquals": {"aws:TagKeys": ["forge-flow-run-id"]}}))
    assert evaluate(only, req("bedrock:TagResource", "x", {"aws:TagKeys": ["forge-flow-run-id"]})).allowed
    assert not evaluate(only, req("bedrock:TagResource", "x", {"aws:TagKeys": ["forge-flow-run-id", "owner"]})).allowed
    assert evaluate(only, req("bedrock:TagResource", "x", {})).allowed, "ForAllValues of an absent key holds"
    some = doc(allow("bedrock:TagResource", "*", Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}))
    assert evaluate(some, req("bedrock:TagResource", "x", {"aws:TagKeys": ["b", "a"]})).allowed
    assert not evaluate(some, req("bedrock:TagResource", "x", {})).allowed
    bad = doc(allow("bedrock:TagResource", "*", Condition={"ForEvery:StringEquals": {"aws:TagKeys": ["a"]}}))
    assert not evaluate(bad, req("bedrock:TagResource", "x", {"aws:TagKeys": ["a"]})).allowed


def test_policy_documents_as_iam_returns_them():
    raw = json.dumps({"Statement": [allow("s3:GetObject", "*")]})
    from urllib.parse import quote

    for d in (raw, raw.encode(), quote(raw)):
        assert evaluate([("p", d)], req("s3:GetObject", "x")).allowed
    assert not evaluate([("p", "not json")], req("s3:GetObject", "x")).allowed


def test_denial_message_names_the_permission_as_aws_does():
    d = evaluate(doc(), req("bedrock:CreateModelCustomizationJob", "arn:aws:bedrock:us-east-1::foundation-model/m"))
    assert denial_message(f"arn:aws:iam::{ACCT}:user/w", d) == (
        f"User: arn:aws:iam::{ACCT}:user/w is not authorized to perform: bedrock:CreateModelCustomizationJob on "
        "resource: arn:aws:bedrock:us-east-1::foundation-model/m because no identity-based policy allows the "
        "bedrock:CreateModelCustomizationJob action")
    d = evaluate(doc({"Effect": "Deny", "Action": "*", "Resource": "*"}), req("s3:GetObject", "arn:aws:s3:::b/k"))
    assert denial_message("u", d).endswith("with an explicit deny in an identity-based policy")


# ---------------------------------------------------------------------------------------------
# what each request needs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op, path, headers, want", [
    ("HeadBucket", "/b1", {}, [("s3:ListBucket", "arn:aws:s3:::b1")]),
    ("CreateBucket", "/b1", {}, [("s3:CreateBucket", "arn:aws:s3:::b1")]),
    ("GetBucketLocation", "/b1", {}, [("s3:GetBucketLocation", "arn:aws:s3:::b1")]),
    ("PutPublicAccessBlock", "/b1", {}, [("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::b1")]),
    ("GetBucketEncryption", "/b1", {}, [("s3:GetEncryptionConfiguration", "arn:aws:s3:::b1")]),
    ("PutBucketPolicy", "/b1", {}, [("s3:PutBucketPolicy", "arn:aws:s3:::b1")]),
    ("HeadObject", "/b1/a/b.json", {}, [("s3:GetObject", "arn:aws:s3:::b1/a/b.json")]),
    ("PutObject", "/b1/a/b.json", {}, [("s3:PutObject", "arn:aws:s3:::b1/a/b.json")]),
    ("PutObject", "/b1/a/b.json", {"x-amz-tagging": "managed-by=bedrock-forge"},
     [("s3:PutObject", "arn:aws:s3:::b1/a/b.json"), ("s3:PutObjectTagging", "arn:aws:s3:::b1/a/b.json")]),
    ("UploadPart", "/b1/a/big", {}, [("s3:PutObject", "arn:aws:s3:::b1/a/big")]),
    ("AbortMultipartUpload", "/b1/a/big", {}, [("s3:AbortMultipartUpload", "arn:aws:s3:::b1/a/big")]),
    ("GetObjectTagging", "/b1/k", {}, [("s3:GetObjectTagging", "arn:aws:s3:::b1/k")]),
    ("DeleteObject", "/b1/k", {}, [("s3:DeleteObject", "arn:aws:s3:::b1/k")]),
    ("ListBuckets", "/", {}, [("s3:ListAllMyBuckets", "*")]),
])
def test_s3_requests(op, path, headers, want):
    assert [(r.action, r.resource) for r in s3_requests(op, path, {}, headers, b"")] == want


def test_s3_list_carries_its_prefix_and_delete_objects_each_key():
    (r,) = s3_requests("ListObjectsV2", "/b1", {"prefix": ["runs/"], "list-type": ["2"]}, {}, b"")
    assert (r.action, r.resource, r.context) == ("s3:ListBucket", "arn:aws:s3:::b1", {"s3:prefix": ["runs/"]})
    body = b"<Delete><Object><Key>a/1</Key></Object><Object><Key>b/2</Key></Object></Delete>"
    assert [r.resource for r in s3_requests("DeleteObjects", "/b1", {"delete": [""]}, {}, body)] == \
        ["arn:aws:s3:::b1/a/1", "arn:aws:s3:::b1/b/2"]


class FakeBedrock(BedrockLookup):
    def __init__(self, resources: dict[tuple[str, str], tuple[str, dict]]):
        self.resources = resources

    def resource(self, kind, ident):
        return self.resources.get((kind, ident))

    def model_target(self, ident):
        found = self.resources.get(("provisioned-model", ident))
        return [found] if found else [(f"arn:aws:bedrock:us-east-1::foundation-model/{ident}", None)]


def test_bedrock_requests_of_a_job_create_need_the_models_and_the_passed_role():
    body = {"baseModelIdentifier": "amazon.nova-micro-v1:0:128k", "customModelName": "m1",
            "roleArn": f"arn:aws:iam::{ACCT}:role/r", "jobTags": [{"key": "managed-by", "value": "bedrock-forge"}],
            "customModelTags": [{"key": "team", "value": "x"}]}
    fm, model, passrole = bedrock_requests("CreateModelCustomizationJob", {}, body, "us-east-1", ACCT, FakeBedrock({}))
    assert fm.resource == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k"
    assert model.resource == f"arn:aws:bedrock:us-east-1:{ACCT}:custom-model/m1"
    assert fm.context["aws:RequestTag/managed-by"] == ["bedrock-forge"] and fm.context["aws:RequestTag/team"] == ["x"]
    assert sorted(fm.context["aws:TagKeys"]) == ["managed-by", "team"]
    assert (passrole.action, passrole.resource, passrole.context) == (
        "iam:PassRole", f"arn:aws:iam::{ACCT}:role/r", {"iam:PassedToService": ["bedrock.amazonaws.com"]})


def test_bedrock_requests_carry_the_resource_tags_and_lists_are_star():
    pt = f"arn:aws:bedrock:us-east-1:{ACCT}:provisioned-model/abc"
    look = FakeBedrock({("provisioned-model", "my-pt"): (pt, {"managed-by": "bedrock-forge"}),
                        ("provisioned-model", pt): (pt, {"managed-by": "bedrock-forge"})})
    (r,) = bedrock_requests("DeleteProvisionedModelThroughput", {"provisionedModelId": "my-pt"}, {}, "us-east-1",
                            ACCT, look)
    assert (r.action, r.resource, r.context) == ("bedrock:DeleteProvisionedModelThroughput", pt,
                                                 {"aws:ResourceTag/managed-by": ["bedrock-forge"]})
    (r,) = bedrock_requests("GetProvisionedModelThroughput", {"provisionedModelId": pt + "x"}, {}, "us-east-1",
                            ACCT, look)
    assert r.resource == pt + "x" and r.context == {}, "a resource that does not exist has no tags"
    (r,) = bedrock_requests("ListProvisionedModelThroughputs", {}, {}, "us-east-1", ACCT, look)
    assert r.resource == "*"
    (r,) = bedrock_requests("InvokeModel", {"modelId": "my-pt"}, {}, "us-east-1", ACCT, look)
    assert (r.action, r.resource) == ("bedrock:InvokeModel", pt)
    (r,) = bedrock_requests("Converse", {"modelId": "amazon.titan"}, {}, "us-east-1", ACCT, look)
    assert r.action == "bedrock:InvokeModel", "Converse is authorized as bedrock:InvokeModel"
    (r,) = bedrock_requests("TagResource", {}, {"resourceARN": pt, "tags": [{"key": "k", "value": "v"}]},
                            "us-east-1", ACCT, look)
    assert r.context["aws:RequestTag/k"] == ["v"] and r.context["aws:ResourceTag/managed-by"] == ["bedrock-forge"]


def test_iam_and_kms_requests():
    tags = {"Tags.member.1.Key": "managed-by", "Tags.member.1.Value": "bedrock-forge"}
    (r,) = iam_requests("CreateRole", {"RoleName": "r", **tags}, ACCT, lambda k, n: None)
    assert (r.action, r.resource, r.context["aws:RequestTag/managed-by"]) == (
        "iam:CreateRole", f"arn:aws:iam::{ACCT}:role/r", ["bedrock-forge"])
    (r,) = iam_requests("PutRolePolicy", {"RoleName": "r"}, ACCT,
                        lambda k, n: (f"arn:aws:iam::{ACCT}:role/svc/r", {"managed-by": "bedrock-forge"}))
    assert r.resource == f"arn:aws:iam::{ACCT}:role/svc/r" and r.context == {
        "aws:ResourceTag/managed-by": ["bedrock-forge"]}
    (r,) = kms_requests("DescribeKey", {"KeyId": "alias/data"}, "us-east-1", ACCT, lambda k: f"arn:aws:kms:us-east-1:"
                        f"{ACCT}:key/1234")
    assert (r.action, r.resource, r.context) == ("kms:DescribeKey", f"arn:aws:kms:us-east-1:{ACCT}:key/1234",
                                                 {"kms:RequestAlias": ["alias/data"]})


# ---------------------------------------------------------------------------------------------
# the enforcing emulator, end to end with boto3
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def enforcing(iam_lab):
    return iam_lab


def _user(lab, statements: list[dict]):
    return lab.identity("unit", [{"Version": "2012-10-17", "Statement": statements}])


def _clients(lab, ident, *services):
    import boto3

    s = boto3.Session(aws_access_key_id=ident.key, aws_secret_access_key=ident.secret, region_name="us-east-1")
    return [s.client(svc, endpoint_url=lab.url) for svc in services]


def _code(exc) -> tuple[str, int, str]:
    e = exc.value.response
    return e["Error"]["Code"], e["ResponseMetadata"]["HTTPStatusCode"], e["Error"].get("Message", "")


def test_each_service_answers_access_denied_in_its_own_shape(enforcing):
    lab = enforcing
    lab.root("s3").create_bucket(Bucket="enf-shapes")
    lab.root("s3").put_object(Bucket="enf-shapes", Key="k", Body=b"1")
    u = _user(lab, [allow("s3:ListBucket", "arn:aws:s3:::enf-shapes")])
    s3, iam, bedrock, sts, kms = _clients(lab, u, "s3", "iam", "bedrock", "sts", "kms")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="enf-shapes", Key="k")
    code, status, msg = _code(exc)
    assert (code, status) == ("AccessDenied", 403)
    assert msg == (f"User: {u.arn} is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::enf-shapes/k "
                   "because no identity-based policy allows the s3:GetObject action")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="enf-shapes", Key="k")
    assert _code(exc)[:2] == ("403", 403), "HEAD: a 403 without a body, as S3 answers"
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName="enf-r", AssumeRolePolicyDocument="{}")
    assert _code(exc)[:2] == ("AccessDenied", 403) and "iam:CreateRole" in _code(exc)[2]
    with pytest.raises(ClientError) as exc:
        bedrock.list_custom_models()
    assert _code(exc)[:2] == ("AccessDeniedException", 403) and "bedrock:ListCustomModels on resource: *" in \
        _code(exc)[2]
    with pytest.raises(ClientError) as exc:
        kms.create_key()
    assert _code(exc)[:2] == ("AccessDeniedException", 400) and "kms:CreateKey" in _code(exc)[2]
    assert sts.get_caller_identity()["Arn"] == u.arn, "GetCallerIdentity needs no permission"
    assert s3.head_bucket(Bucket="enf-shapes") is not None, "what the policy allows goes through"


def test_a_missing_key_answers_404_only_to_a_caller_allowed_to_list_the_bucket(enforcing):
    lab = enforcing
    lab.root("s3").create_bucket(Bucket="enf-missing")
    get_only = _user(lab, [allow("s3:GetObject", "arn:aws:s3:::enf-missing/*")])
    (s3,) = _clients(lab, get_only, "s3")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="enf-missing", Key="nope")
    code, status, msg = _code(exc)
    assert (code, status) == ("AccessDenied", 403) and "s3:ListBucket on resource: arn:aws:s3:::enf-missing" in msg
    lab.set_policy(get_only, [{"Version": "2012-10-17", "Statement": [
        allow("s3:GetObject", "arn:aws:s3:::enf-missing/*"), allow("s3:ListBucket", "arn:aws:s3:::enf-missing",
                                                                   Sid="L")]}])
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="enf-missing", Key="nope")
    assert _code(exc)[:2] == ("NoSuchKey", 404)


def test_tag_conditions_see_the_resources_tags(enforcing):
    lab = enforcing
    b = lab.root("bedrock")
    mine = b.list_foundation_models()["modelSummaries"][0]["modelId"]
    u = _user(lab, [allow("bedrock:GetFoundationModel", f"arn:aws:bedrock:us-east-1::foundation-model/{mine}"),
                    allow("bedrock:ListTagsForResource", f"arn:aws:bedrock:us-east-1:{lab.account}:*", Sid="T",
                          Condition={"StringEquals": {"aws:ResourceTag/managed-by": "bedrock-forge"}})])
    (bedrock,) = _clients(lab, u, "bedrock")
    assert bedrock.get_foundation_model(modelIdentifier=mine)["modelDetails"]["modelId"] == mine
    with pytest.raises(ClientError) as exc:
        bedrock.list_tags_for_resource(resourceARN=f"arn:aws:bedrock:us-east-1:{lab.account}:provisioned-model/"
                                                   "doesnotexist")
    assert _code(exc)[0] == "AccessDeniedException", "authorization first: a resource that does not exist has no tags"


def test_an_assumed_role_session_gets_the_roles_policies(enforcing):
    lab = enforcing
    iam = lab.root("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                      "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName="enf-worker-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="enf-worker-role", PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [allow("s3:ListAllMyBuckets", "*")]}))
    creds = lab.root("sts").assume_role(RoleArn=arn, RoleSessionName="ci")["Credentials"]
    import boto3

    s = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                      aws_session_token=creds["SessionToken"], region_name="us-east-1")
    s3, iam_as_role = s.client("s3", endpoint_url=lab.url), s.client("iam", endpoint_url=lab.url)
    assert "Buckets" in s3.list_buckets()
    with pytest.raises(ClientError) as exc:
        iam_as_role.get_role(RoleName="enf-worker-role")
    assert f"User: arn:aws:sts::{lab.account}:assumed-role/enf-worker-role/ci is not authorized" in _code(exc)[2]


def test_the_root_is_unrestricted_and_every_decision_is_logged(enforcing):
    lab = enforcing
    lab.root("bedrock").list_custom_models()          # the dummy keys: the account root
    u = _user(lab, [allow("s3:ListAllMyBuckets", "*")])
    (bedrock,) = _clients(lab, u, "bedrock")
    with pytest.raises(ClientError):
        bedrock.list_custom_models()
    (last,) = lab.decisions(u.arn)
    assert last["action"] == "bedrock:ListCustomModels" and last["allowed"] is False
    assert last["reason"] == "no identity-based policy allows" and last["resource"] == "*"
    assert all(d["principal"] != f"arn:aws:iam::{lab.account}:root" for d in lab.decisions())


def test_enforcement_is_off_by_default_and_can_be_switched(tmp_path, monkeypatch, lab_of):
    from emulator.iam_enforce import ENV_FLAG
    from emulator.testing import running_emulator

    monkeypatch.delenv(ENV_FLAG, raising=False)
    with running_emulator(speed=2000.0, state_dir=tmp_path / "s") as emu:
        lab = lab_of(emu)
        assert emu.health()["enforce_iam"] is False
        u = _user(lab, [allow("s3:ListAllMyBuckets", "*")])
        (bedrock,) = _clients(lab, u, "bedrock")
        assert bedrock.list_custom_models() is not None, "off: a user without that permission may do anything"
        assert lab.decisions() == []
        lab.set_enforcing(True)
        with pytest.raises(ClientError):
            bedrock.list_custom_models()
        lab.set_enforcing(False)
        assert bedrock.list_custom_models() is not None
    monkeypatch.setenv(ENV_FLAG, "1")
    with running_emulator(speed=2000.0, state_dir=tmp_path / "s2") as emu:
        assert emu.health()["enforce_iam"] is True, "FORGE_EMULATOR_ENFORCE_IAM=1 switches it on"


def test_the_cli_flag_switches_enforcement_on(monkeypatch):
    import argparse

    from emulator.iam_enforce import ENV_FLAG
    from emulator.server import add_arguments

    monkeypatch.setenv(ENV_FLAG, "")          # restored (unset) after the test: the flag sets it
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).enforce_iam is None
    import os

    assert os.environ[ENV_FLAG] == ""
    assert p.parse_args(["--enforce-iam"]).enforce_iam is True
    assert os.environ[ENV_FLAG] == "1", "python -m emulator / forge emulator pass it on through the environment"


def test_a_kms_alias_is_authorized_on_its_key_with_request_alias(enforcing):
    """The generator's ResolveKmsAlias statement, on the emulator: the pipeline's DescribeKey of the configured alias
    goes through; the same key by its id, or another alias, does not."""
    from tasks.config import PipelineConfig
    from tasks.permissions import permission_policy

    lab = enforcing
    kms = lab.root("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/forge-data", TargetKeyId=key)
    other = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/other", TargetKeyId=other)
    cfg = PipelineConfig.model_validate({"name": "kms-run", "base_model": "amazon.nova-micro-v1:0:128k",
                                         "data": {"source": "x.csv"}, "aws": {"kms_key_id": "alias/forge-data"}})
    st = permission_policy(cfg, "worker", account=lab.account).statement("ResolveKmsAlias")
    u = _user(lab, [st.to_iam()])
    (client,) = _clients(lab, u, "kms")
    assert client.describe_key(KeyId="alias/forge-data")["KeyMetadata"]["Arn"] == key
    for denied in (key, "alias/other"):
        with pytest.raises(ClientError) as exc:
            client.describe_key(KeyId=denied)
        assert _code(exc)[0] == "AccessDeniedException" and "kms:DescribeKey" in _code(exc)[2]
