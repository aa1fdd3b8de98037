"""tasks/permissions.py: the policy `forge permissions` prints, checked against the code it must cover.

- every boto3 call the pipeline makes (scanned from tasks/, flows/, forge/) is covered by a statement's ``calls``;
- the name patterns match the exact keys/names the pipeline writes (its own functions, a real run key) and not
  another config's;
- no wildcard action; ``Resource: "*"`` only for the List actions that have no resource type; tag conditions where
  the plan says; the options of a config (role name, KMS key, serving kind, deletes, an S3 source) change exactly
  the statements they should; size limits; deterministic.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from emulator.iam_enforce import AuthRequest, evaluate
from tasks.config import PipelineConfig, load_config
from tasks.permissions import (
    MANAGED_POLICY_MAX_CHARS,
    ROLES,
    SAR_BEDROCK,
    SAR_PRICING,
    Statement,
    explain,
    markdown,
    permission_policy,
    run_patterns,
    serves,
)
from tests.permissions.emulator_coverage import NOT_SEEN_BY_EMULATOR, seen_by_emulator
from tests.support import REPO_ROOT

ACCT = "111122223333"
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
NO_RESOURCE_TYPE = {"bedrock:ListModelCustomizationJobs", "bedrock:ListProvisionedModelThroughputs",
                    "bedrock:ListCustomModelDeployments",     # the Service Authorization Reference: no resource type
                    "pricing:GetProducts"}                    # (list_amazonbedrock.html, list_pricing.html)


def _cfg(path: Path = REPO_ROOT / "examples" / "banking77.yaml", **over) -> PipelineConfig:
    raw = load_config(path).model_dump(mode="json")
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    return PipelineConfig.model_validate(raw)


def _allows(policy, action: str, resource: str, **ctx) -> bool:
    return evaluate([("p", policy.document())], AuthRequest(action, resource, ctx)).allowed


# ---------------------------------------------------------------------------------------------
# every boto3 call is covered
# ---------------------------------------------------------------------------------------------
_CLIENT_CALL = re.compile(r"\b(?:clients\.|self\.|ctx\.clients\.)?"
                          r"(s3|iam|sts|kms|bedrock|bedrock_runtime|runtime_client)\.([a-z][a-z0-9_]+)\(")
_HELPER_CALL = re.compile(r'_client\(clients, "(s3|bedrock-runtime)"\)\.([a-z_]+)\(')
_PAGINATOR = re.compile(r'(s3|bedrock|b)\.get_paginator\("([a-z_]+)"\)')
NOT_API = {"get_paginator", "paginate", "close", "meta", "exceptions", "can_paginate", "get_waiter"}
# STS API reference: GetCallerIdentity needs no permission, cannot be denied; a presigned URL is signed locally
# (botocore), no request is made
NEEDS_NO_PERMISSION = {"sts.get_caller_identity", "s3.generate_presigned_url"}


def pipeline_calls() -> dict[str, set[str]]:
    """``service.operation`` -> files, for every boto3 client call in tasks/, flows/, forge/."""
    out: dict[str, set[str]] = {}
    service_of = {"bedrock_runtime": "bedrock-runtime", "runtime_client": "bedrock-runtime", "b": "bedrock"}
    for folder in ("tasks", "flows", "forge"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text()
            found = [(service_of.get(s, s), op) for s, op in _CLIENT_CALL.findall(text)]
            found += [(service_of.get(s, s), op) for s, op in _HELPER_CALL.findall(text)]
            found += [(service_of.get(s, s), op) for s, op in _PAGINATOR.findall(text)]
            for svc, op in found:
                if op not in NOT_API:
                    out.setdefault(f"{svc}.{op}", set()).add(str(path.relative_to(REPO_ROOT)))
    return out


def _everything_configs() -> list[PipelineConfig]:
    """Configs that switch every optional statement on: the examples, deletes, a KMS alias, an S3 source,
    on-demand serving, production serving of both kinds."""
    out = [load_config(p) for p in EXAMPLES]
    out.append(_cfg(serving={"delete_custom_model": True, "delete_data": True},
                    aws={"kms_key_id": "alias/forge-data"}))
    out.append(_cfg(data={"source": "s3://source-bucket/raw/banking.csv"}))
    out.append(_cfg(serving={"mode": "on_demand"}))
    out.append(_cfg(production={"mode": "on-demand"}))          # registry, champion, promotion (issue 19)
    out.append(_cfg(production={"mode": "provisioned", "model_units": 1}))
    return out


def test_every_boto3_call_of_the_pipeline_is_covered_by_a_statement():
    calls = pipeline_calls()
    assert {"s3.head_bucket", "bedrock.create_model_customization_job", "bedrock-runtime.invoke_model",
            "iam.put_role_policy", "kms.describe_key", "bedrock.list_provisioned_model_throughputs"} <= set(calls), \
        "the scan finds the calls (else the check below proves nothing)"
    covered: set[str] = set()
    for cfg in _everything_configs():
        for role in ROLES:
            for st in permission_policy(cfg, role, account=ACCT).statements:
                covered |= {c.split(" ", 1)[0] for c in st.calls}
    missing = {c: sorted(f) for c, f in calls.items() if c not in covered and c not in NEEDS_NO_PERMISSION}
    assert not missing, f"boto3 calls no statement covers: {missing}"


def test_the_scan_would_see_a_new_call(tmp_path):
    text = 'x = clients.bedrock.update_provisioned_model_throughput(provisionedModelId=a)\n'
    assert _CLIENT_CALL.findall(text) == [("bedrock", "update_provisioned_model_throughput")]


# ---------------------------------------------------------------------------------------------
# the patterns are the pipeline's own names
# ---------------------------------------------------------------------------------------------
def test_patterns_match_what_the_pipeline_writes_and_nothing_of_another_config():
    from tasks import customize, upload
    from tasks import evaluate as evaluate_stage
    from tasks.evaluation import lease
    from tasks.run.liveness import heartbeat_location
    from tasks.run.names import compute_run_key, resource_names
    from tasks.run.store import S3RunStore

    cfg = _cfg()
    key = compute_run_key(cfg, "f" * 64)
    names = resource_names(cfg, key, account=ACCT)
    out_uri = f"s3://{names.bucket}/{upload.output_prefix(cfg.aws.prefix, key)}"
    data_key = upload.data_prefix(cfg.aws.prefix, "ab" * 32) + "train.jsonl"
    _b, train_csv, _v = customize.metric_keys(out_uri, f"arn:aws:bedrock:us-east-1:{ACCT}:model-customization-job/"
                                                       "amazon.nova-micro-v1:0:128k/abcdefghijkl")
    keys = {"data": data_key, "metrics": train_csv,
            "heartbeat": heartbeat_location(names.bucket, cfg.aws.prefix, key)[1],
            "lease": lease.lease_key(out_uri, "serving")[1],
            "record": evaluate_stage._record_key(out_uri, "0123456789abcdef")[1],
            "manifest": S3RunStore.of_run(None, names.bucket, cfg.aws.prefix).key("banking77-demo-20261202-x")}
    worker = permission_policy(cfg, "worker", account=ACCT)
    s3 = f"arn:aws:s3:::{names.bucket}/"
    assert _allows(worker, "s3:PutObject", s3 + keys["data"])
    assert _allows(worker, "s3:GetObject", s3 + keys["metrics"])
    for k in ("heartbeat", "lease"):
        assert _allows(worker, "s3:PutObject", s3 + keys[k]) and _allows(worker, "s3:DeleteObject", s3 + keys[k])
    assert _allows(worker, "s3:PutObject", s3 + keys["record"]) and _allows(worker, "s3:GetObject", s3 + keys["record"])
    assert not _allows(worker, "s3:DeleteObject", s3 + keys["record"]), "the record is written, never deleted"
    assert _allows(worker, "s3:PutObject", s3 + keys["manifest"]) and _allows(worker, "s3:GetObject",
                                                                              s3 + keys["manifest"])
    role = f"arn:aws:iam::{ACCT}:role/{names.role}"
    assert _allows(worker, "iam:GetRole", role)
    assert _allows(worker, "iam:PassRole", role, **{"iam:PassedToService": ["bedrock.amazonaws.com"]})
    assert not _allows(worker, "iam:PassRole", role, **{"iam:PassedToService": ["ec2.amazonaws.com"]})
    # another config's names (a name that extends this one, another prefix, another key length) are not covered
    other = resource_names(_cfg(name="banking77-demo-x"), key, account=ACCT)
    assert not _allows(worker, "iam:GetRole", f"arn:aws:iam::{ACCT}:role/{other.role}")
    assert not _allows(worker, "iam:GetRole", f"arn:aws:iam::{ACCT}:role/{names.role}0")
    assert not _allows(worker, "s3:PutObject", s3 + keys["data"].replace("bedrock-forge/", "other/"))
    assert not _allows(worker, "s3:PutObject", s3 + "bedrock-forge/output/" + key + "x/serving/heartbeat.json")
    assert not _allows(worker, "s3:PutObject", f"arn:aws:s3:::another-bucket/{keys['data']}")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_no_wildcard_action_and_star_only_where_there_is_no_resource_type(path):
    cfg = load_config(path)
    for role in ROLES:
        pol = permission_policy(cfg, role, account=ACCT)
        for st in pol.statements:
            assert not any(c in a for a in st.actions for c in "*?"), st.sid
            if "*" in st.resources:
                assert st.resources == ["*"] and set(st.actions) <= NO_RESOURCE_TYPE, st.sid
                assert "no resource type" in st.why, st.sid
                assert (SAR_PRICING if st.actions == ["pricing:GetProducts"] else SAR_BEDROCK) in st.why, st.sid
            for r in st.resources:
                assert r == "*" or r.startswith("arn:aws:"), r
                assert r == "*" or ACCT in r or ":s3:::" in r or "::foundation-model/" in r, r
            assert st.why and st.steps and st.calls, st.sid


def test_bedrock_resources_with_assigned_ids_are_tag_conditioned():
    pol = permission_policy(_cfg(), "oncall", account=ACCT)
    for st in pol.statements:
        for r in st.resources:
            if any(f":{kind}/*" in r for kind in ("model-customization-job", "custom-model", "provisioned-model",
                                                  "custom-model-deployment")):
                cond = json.dumps(st.condition)
                assert "aws:ResourceTag/managed-by" in cond or "aws:RequestTag/managed-by" in cond, st.sid


def test_the_sweeper_lists_and_deletes_only_managed_resources():
    pol = permission_policy(_cfg(), "sweeper", account=ACCT)
    pt = f"arn:aws:bedrock:us-east-1:{ACCT}:provisioned-model/abcdefghijkl"
    dep = f"arn:aws:bedrock:us-east-1:{ACCT}:custom-model-deployment/abcdefghijkl"
    managed = {"aws:ResourceTag/managed-by": ["bedrock-forge"]}
    for arn, action in ((pt, "bedrock:DeleteProvisionedModelThroughput"), (dep, "bedrock:DeleteCustomModelDeployment")):
        assert _allows(pol, action, arn, **managed)
        assert not _allows(pol, action, arn), "untagged: never deleted"
        assert not _allows(pol, action, arn, **{"aws:ResourceTag/managed-by": ["someone"]})
        assert _allows(pol, "bedrock:ListTagsForResource", arn, **managed)
        assert not _allows(pol, "bedrock:ListTagsForResource", arn)
    assert not any(a.startswith(("s3:Put", "s3:Delete", "iam:", "bedrock:Create")) for st in pol.statements
                   for a in st.actions), "the sweeper creates nothing"


def test_readonly_mutates_nothing():
    pol = permission_policy(_cfg(), "readonly", account=ACCT)
    verbs = {a.split(":", 1)[1] for st in pol.statements for a in st.actions}
    assert all(v.startswith(("Get", "List")) for v in verbs), verbs


# ---------------------------------------------------------------------------------------------
# what the config changes
# ---------------------------------------------------------------------------------------------
def test_a_named_role_is_only_read_and_passed():
    pol = permission_policy(_cfg(aws={"role_name": "team-bedrock-role"}), "worker", account=ACCT)
    assert "CreateServiceRole" not in pol.sids() and "WriteRolePolicy" not in pol.sids()
    role = f"arn:aws:iam::{ACCT}:role/team-bedrock-role"
    assert pol.statement("ReadServiceRole").resources == [role] == pol.statement("PassServiceRole").resources
    assert not any(a.startswith("iam:") and a not in ("iam:GetRole", "iam:PassRole")
                   for st in pol.statements for a in st.actions)
    default = permission_policy(_cfg(), "worker", account=ACCT)
    assert default.statement("CreateServiceRole").condition == {
        "StringEquals": {"aws:RequestTag/managed-by": "bedrock-forge"}}
    assert default.statement("ReadServiceRole").resources == [
        f"arn:aws:iam::{ACCT}:role/bedrock-forge-banking77-demo-????????????"]


def test_kms_only_on_the_configured_key():
    key = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    pol = permission_policy(_cfg(aws={"kms_key_id": key}), "worker", account=ACCT)
    assert "ResolveKmsAlias" not in pol.sids()
    for sid, service in (("UseKmsKeyThroughS3", "s3"), ("UseKmsKeyThroughBedrock", "bedrock")):
        st = pol.statement(sid)
        assert st.resources == [key] and not seen_by_emulator(sid)
        assert st.condition == {"StringEquals": {"kms:ViaService": f"{service}.us-east-1.amazonaws.com"}}
    alias = permission_policy(_cfg(aws={"kms_key_id": "alias/forge-data"}), "worker", account=ACCT)
    st = alias.statement("ResolveKmsAlias")
    assert st.actions == ["kms:DescribeKey"]
    assert st.condition == {"StringEquals": {"kms:RequestAlias": "alias/forge-data"}}
    assert alias.statement("UseKmsKeyThroughS3").condition["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": ["alias/forge-data"]}
    assert not any(a.startswith("kms:") for st in permission_policy(_cfg(), "worker", account=ACCT).statements
                   for a in st.actions), "no key configured: no KMS permission"


def test_the_emulator_coverage_table_is_the_statements_a_service_makes_for_the_caller():
    """tests/permissions/emulator_coverage.py lists exactly the statements AWS checks on calls a service makes for
    the caller (conditioned on kms:ViaService), for a key given by ARN and by alias, in every role."""
    key = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    via_service: set[str] = set()
    every: set[str] = set()
    for kms_key_id in (key, "alias/forge-data"):
        for role in ROLES:
            for st in permission_policy(_cfg(aws={"kms_key_id": kms_key_id}), role, account=ACCT).statements:
                every.add(st.sid)
                if any("kms:ViaService" in kv for kv in st.condition.values()):
                    via_service.add(st.sid)
    assert via_service == set(NOT_SEEN_BY_EMULATOR), (via_service, set(NOT_SEEN_BY_EMULATOR))
    assert set(NOT_SEEN_BY_EMULATOR) <= every
    assert seen_by_emulator("ResolveKmsAlias"), "the caller's own DescribeKey: the emulator enforces it"
    for path in EXAMPLES:       # the configs the pipeline matrix runs set no key: nothing of theirs is left out
        for role in ROLES:
            assert all(seen_by_emulator(s) for s in permission_policy(load_config(path), role, account=ACCT).sids())


def test_the_generator_does_not_know_the_emulator():
    """What the pipeline prints (``forge permissions``, docs/permissions.md) is about AWS only: which statements a
    local emulator can check is the tests' fact (emulator_coverage.py), not a field of the policy."""
    assert not any("emulator" in name for name in Statement.model_fields)
    key = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    policies = [permission_policy(_cfg(aws={"kms_key_id": key}), role, account=ACCT) for role in ROLES]
    text = "\n".join([markdown(policies), *map(explain, policies), *(json.dumps(p.model_dump()) for p in policies)])
    assert "UseKmsKeyThroughS3" in text
    assert "emulator" not in text.lower() and "AWS only" not in text


def test_the_serving_kind_decides_the_serving_statements():
    pt = permission_policy(_cfg(), "worker", account=ACCT)
    od = permission_policy(_cfg(serving={"mode": "on_demand"}), "worker", account=ACCT)
    assert {"CreateThroughput", "ManageThroughput", "InvokeThroughput"} <= set(pt.sids())
    assert not any("Deployment" in s for s in pt.sids())
    assert {"CreateDeployment", "ManageDeployment", "InvokeDeployment"} <= set(od.sids())
    assert not any("Throughput" in s for s in od.sids())
    off = _cfg(evaluation={"enabled": False})
    no_test = _cfg(data={"split": {"train": 0.9, "validation": 0.1, "test": 0.0}})
    for cfg in (off, no_test):
        assert not serves(cfg)
        pol = permission_policy(cfg, "worker", account=ACCT)
        assert not any(s.startswith(("Create", "Manage", "Invoke", "Delete")) and s != "CreateServiceRole"
                       for s in pol.sids()), pol.sids()
        assert "ListServing" in pol.sids(), "the cleanup hooks still list serving resources"


def test_invoking_the_base_model_covers_its_inference_profile_regions():
    from tasks.catalog import load_catalog

    pol = permission_policy(_cfg(), "worker", account=ACCT)
    res = pol.statement("InvokeBaseModel").resources
    assert res[0] == f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/us.amazon.nova-micro-v1:0"
    regions = load_catalog().profile_regions("us.amazon.nova-micro-v1:0")
    assert res[1:] == [f"arn:aws:bedrock:{r}::foundation-model/amazon.nova-micro-v1:0" for r in regions]
    titan = permission_policy(load_config(REPO_ROOT / "examples/cpt.yaml").model_copy(
        update={"evaluation": _cfg().evaluation, "data": _cfg(data={"split": {"train": 0.8, "validation": 0.1,
                                                                              "test": 0.1}}).data}),
        "worker", account=ACCT)
    assert titan.statement("InvokeBaseModel").resources == [
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-text-express-v1"]


def test_the_distillation_teacher_is_read_by_the_preflight():
    pol = permission_policy(load_config(REPO_ROOT / "examples/distillation.yaml"), "worker", account=ACCT)
    assert pol.statement("ReadFoundationModels").resources == [
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"]


def test_optional_steps_add_their_statements():
    base = set(permission_policy(_cfg(), "worker", account=ACCT).sids())
    dels = permission_policy(_cfg(serving={"delete_custom_model": True, "delete_data": True}), "worker",
                             account=ACCT)
    assert set(dels.sids()) - base == {"DeleteManagedCustomModel", "DeleteUploadedData"}
    assert dels.statement("DeleteManagedCustomModel").condition == {
        "StringEquals": {"aws:ResourceTag/managed-by": "bedrock-forge"}}
    src = permission_policy(_cfg(data={"source": "s3://source-bucket/raw/banking.csv"}), "worker", account=ACCT)
    assert set(src.sids()) - base == {"ReadSourceData"}
    assert src.statement("ReadSourceData").resources == ["arn:aws:s3:::source-bucket/raw/banking.csv"]


def test_the_region_and_partition_come_from_the_config():
    pol = permission_policy(_cfg(aws={"region": "us-west-2"}, serving={"mode": "provisioned"}), "worker",
                            account=ACCT)
    text = json.dumps(pol.document())
    assert "us-east-1::foundation-model/amazon.nova-micro-v1:0:128k" not in text
    assert f"arn:aws:bedrock:us-west-2:{ACCT}:model-customization-job/*" in text
    assert run_patterns(_cfg(aws={"region": "us-west-2"}), ACCT).bucket.endswith("-us-west-2")


# ---------------------------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_documents_fit_iam_and_are_the_statements(path):
    cfg = load_config(path)
    for role in ROLES:
        pol = permission_policy(cfg, role, account=ACCT)
        docs = pol.documents()
        assert all(len(json.dumps(d, separators=(",", ":"))) <= MANAGED_POLICY_MAX_CHARS for d in docs)
        assert [s for d in docs for s in d["Statement"]] == pol.document()["Statement"]
        assert len(docs) == 1 or pol.size() > MANAGED_POLICY_MAX_CHARS
        assert (len(docs) > 1) == any("over IAM's" in n for n in pol.notes)
        assert pol.document(without=pol.sids()[0])["Statement"] == pol.document()["Statement"][1:]
        with pytest.raises(KeyError):
            pol.document(without="NoSuchSid")


def test_the_same_config_gives_the_same_policy_and_the_account_is_checked():
    a = permission_policy(_cfg(), "worker", account=ACCT)
    assert a == permission_policy(copy.deepcopy(_cfg()), "worker", account=ACCT)
    assert a.document() != permission_policy(_cfg(), "worker", account="444455556666").document()
    for bad in ("1234", "12345678901a", ""):
        with pytest.raises(ValueError, match="12-digit"):
            permission_policy(_cfg(), "worker", account=bad)
    with pytest.raises(ValueError, match="role must be one of"):
        permission_policy(_cfg(), "admin", account=ACCT)  # type: ignore[arg-type]


def test_the_oncall_policy_is_the_worker_and_the_sweeper_without_redundancy():
    cfg = _cfg()
    on, wk, sw = (permission_policy(cfg, r, account=ACCT) for r in ("oncall", "worker", "sweeper"))
    theirs = {s.sid: s for s in [*sw.statements, *wk.statements]}
    for st in on.statements:
        assert (st.actions, st.resources, st.condition) == \
            (theirs[st.sid].actions, theirs[st.sid].resources, theirs[st.sid].condition)
    assert {s.sid for s in wk.statements} <= {s.sid for s in on.statements}
    dropped = {s.sid for s in sw.statements} - {s.sid for s in on.statements}
    assert dropped == {"ListRunBucket", "ReadManagedJobTags", "ReadServingHeartbeats", "ReadThroughputTags",
                       "DeleteThroughput"}, dropped
    grants = {st.sid: {(a, r) for a in st.actions for r in st.resources} for st in on.statements}
    for st in on.statements:
        others = set().union(*(g for sid, g in grants.items()
                               if sid != st.sid and on.statement(sid).condition == st.condition))
        assert not grants[st.sid] <= others, f"{st.sid} is redundant"
