"""The LLM judge's grants (issue 19 item 5 / issue 20): `evaluation.judge` makes the evaluate step invoke a judge
model and read and write its cache in S3 (tasks/evaluate.py judge_outputs, tasks/evaluation/judge.py); the worker
policy grants exactly that: InvokeJudgeModel on the judge's exact ARNs, ReadWriteJudgeCache on the one cache key.

Checked against the pipeline's own functions (tasks/evaluate.py judge_target, tasks/evaluation/judge.py cache_uri,
tasks/run/names.py, tasks/upload.py output_prefix) with a real run key; the whole pipeline under the printed policy
with a judge is tests/permissions/test_pipeline_under_policy.py's ``judge`` variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from emulator.iam_enforce import AuthRequest, evaluate
from forge.cli import main
from tasks.catalog import load_catalog
from tasks.config import PipelineConfig, load_config
from tasks.permissions import ROLES, judge_invoke_id, permission_policy, run_patterns
from tests.support import REPO_ROOT

ACCT = "111122223333"
B77 = REPO_ROOT / "examples" / "banking77.yaml"
JUDGE_SIDS = {"InvokeJudgeModel", "ReadWriteJudgeCache"}
PROFILE_JUDGE = "us.amazon.nova-lite-v1:0"


def _raw(path: Path = B77) -> dict:
    return load_config(path).model_dump(mode="json")


def _cfg(judge: dict | None = None, path: Path = B77, **over) -> PipelineConfig:
    raw = _raw(path)
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    if judge is not None:
        raw["evaluation"] = {**raw["evaluation"], "judge": judge}
    return PipelineConfig.model_validate(raw)


def _worker(cfg: PipelineConfig, role: str = "worker"):
    return permission_policy(cfg, role, account=ACCT)


def _allows(policy, action: str, resource: str) -> bool:
    return evaluate([("p", policy.document())], AuthRequest(action, resource, {})).allowed


def _fm(model: str, region: str = "us-east-1") -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model}"


# ---------------------------------------------------------------------------------------------
# when the statements exist
# ---------------------------------------------------------------------------------------------
def test_the_judge_statements_exist_only_with_a_judge_on_a_config_that_serves():
    assert not JUDGE_SIDS & set(_worker(_cfg()).sids()), "no judge: no judge grants"
    with_judge = _worker(_cfg({"model": PROFILE_JUDGE}))
    assert JUDGE_SIDS <= set(with_judge.sids())
    assert set(with_judge.sids()) - set(_worker(_cfg()).sids()) == JUDGE_SIDS, "the judge adds these two only"
    # the judge runs inside the evaluate step: a config that never serves never judges
    off = _cfg({"model": PROFILE_JUDGE}, evaluation={"enabled": False})
    no_test = _cfg({"model": PROFILE_JUDGE}, data={"split": {"train": 0.9, "validation": 0.1, "test": 0.0}})
    for cfg in (off, no_test):
        assert not JUDGE_SIDS & set(_worker(cfg).sids())


def test_the_judge_statements_are_the_workers_and_on_calls_only():
    cfg = _cfg({"model": PROFILE_JUDGE})
    wk, on = _worker(cfg), _worker(cfg, "oncall")
    for sid in JUDGE_SIDS:
        assert on.statement(sid) == wk.statement(sid), "on-call reruns: the worker's grant, unchanged"
        st = wk.statement(sid)
        assert st.steps == ["evaluate (evaluation.judge)", "forge evaluate"]
        assert st.calls and st.why and not st.condition
    for role in ("sweeper", "readonly"):
        assert not JUDGE_SIDS & set(_worker(cfg, role).sids())


# ---------------------------------------------------------------------------------------------
# the judge's exact ARNs
# ---------------------------------------------------------------------------------------------
def test_a_profile_judge_is_granted_the_profile_and_its_model_in_each_destination_region():
    st = _worker(_cfg({"model": PROFILE_JUDGE})).statement("InvokeJudgeModel")
    regions = load_catalog().profile_regions(PROFILE_JUDGE)
    assert regions == ["us-east-1", "us-east-2", "us-west-2"]
    assert st.actions == ["bedrock:InvokeModel"]
    assert st.resources == [f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/{PROFILE_JUDGE}"] + [
        _fm("amazon.nova-lite-v1:0", r) for r in regions]
    assert "inference-profiles-prereq.html" in st.why


@pytest.mark.parametrize("model, invoke_shape, want", [
    ("amazon.nova-lite-v1:0", None, _fm("amazon.nova-lite-v1:0")),                 # the catalog's, on demand
    ("amazon.nova-lite-v1:0:300k", None, None),                                    # -> its profile (below)
    ("anthropic.claude-judge-v9:0", "claude", _fm("anthropic.claude-judge-v9:0")),  # unknown: the id as written
    (_fm("anthropic.claude-judge-v9:0", "us-west-2"), "claude", _fm("anthropic.claude-judge-v9:0", "us-west-2")),
])
def test_a_plain_judge_is_granted_its_exact_foundation_model_arn(model, invoke_shape, want):
    from tasks.evaluate import judge_target

    cfg = _cfg({"model": model, **({"invoke_shape": invoke_shape} if invoke_shape else {})})
    st = _worker(cfg).statement("InvokeJudgeModel")
    target = judge_target(cfg.evaluation.judge)[0]
    if want is None:      # a customizable id: invoked through the catalog's inference profile
        assert target == PROFILE_JUDGE
        assert st.resources[0] == f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/{PROFILE_JUDGE}"
    else:
        assert st.resources == [want]
    assert not any(c in r for r in st.resources for c in "*?"), "no wildcard from a config value"


def test_an_inference_profile_arn_judge_is_that_arn_and_the_profiles_models():
    arn = f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/{PROFILE_JUDGE}"
    st = _worker(_cfg({"model": arn, "invoke_shape": "nova"})).statement("InvokeJudgeModel")
    assert st.resources == [arn] + [_fm("amazon.nova-lite-v1:0", r) for r in ("us-east-1", "us-east-2", "us-west-2")]


def test_a_profile_the_catalog_cannot_resolve_is_granted_exactly_and_said_in_a_note():
    pol = _worker(_cfg({"model": "global.anthropic.claude-judge-v9:0", "invoke_shape": "claude"}))
    assert pol.statement("InvokeJudgeModel").resources == [
        f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/global.anthropic.claude-judge-v9:0"]
    assert any("global.anthropic.claude-judge-v9:0" in n and "add the foundation model" in n for n in pol.notes)


@pytest.mark.parametrize("model", ["us.amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-lite-v1:0:300k",
                                   "amazon.nova-micro-v1:0:128k", "us.amazon.nova-micro-v1:0",
                                   "anthropic.claude-judge-v9:0", _fm("anthropic.claude-judge-v9:0")])
def test_the_invoked_id_is_the_evaluate_stages(model):
    """tasks/permissions.py cannot import tasks/evaluate.py (a Prefect stage; `forge permissions` starts without
    Prefect): its copy of judge_target must give the same id."""
    from tasks.evaluate import judge_target

    cfg = _cfg({"model": model, "invoke_shape": "nova"})
    assert judge_invoke_id(cfg) == judge_target(cfg.evaluation.judge)[0]
    pol = _worker(cfg)
    target = judge_invoke_id(cfg)
    arn = target if target.startswith("arn:") else (
        f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/{target}" if target.startswith("us.") else _fm(target))
    assert _allows(pol, "bedrock:InvokeModel", arn), "the very target the judge invokes is allowed"


def test_another_model_than_the_judge_is_not_allowed():
    pol = _worker(_cfg({"model": PROFILE_JUDGE}))
    for other in (f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/us.amazon.nova-pro-v1:0",
                  _fm("amazon.nova-pro-v1:0"), _fm("amazon.nova-lite-v1:0", "eu-west-1"),
                  f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/us.amazon.nova-lite-v1:0x"):
        assert not _allows(pol, "bedrock:InvokeModel", other), other


@pytest.mark.parametrize("model", ["us.amazon.*", "amazon.nova-lite-v1:?", "arn:aws:bedrock:us-east-1::foundation-"
                                                                          "model/${aws:username}"])
def test_a_judge_id_with_a_policy_wildcard_is_refused(model, tmp_path, capsys):
    cfg = _cfg({"model": model, "invoke_shape": "nova"})
    with pytest.raises(ValueError, match="evaluation.judge.model"):
        _worker(cfg)
    path = tmp_path / "wild.yaml"
    path.write_text(yaml.safe_dump(_yaml_of(cfg)))
    assert main(["permissions", str(path), "--account", ACCT]) == 2
    assert "evaluation.judge.model" in capsys.readouterr().err


def test_a_judge_that_is_the_base_models_target_adds_no_invoke_resource():
    base = _worker(_cfg()).statement("InvokeBaseModel")
    for model in ("us.amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0:128k"):   # banking77's base and its profile
        pol = _worker(_cfg({"model": model}))
        assert "InvokeJudgeModel" not in pol.sids() and "ReadWriteJudgeCache" in pol.sids()
        st = pol.statement("InvokeBaseModel")
        assert st.resources == base.resources and st.actions == base.actions
        assert "evaluate (evaluation.judge)" in st.steps and "judge" in st.why
    # the base model's foundation model in us-east-1 is already granted: a plain judge of it adds nothing either
    pol = _worker(_cfg({"model": "amazon.nova-micro-v1:0"}))
    assert "InvokeJudgeModel" not in pol.sids()
    invoked = [r for st in pol.statements if "bedrock:InvokeModel" in st.actions for r in st.resources]
    assert len(invoked) == len(set(invoked)), "no ARN granted twice"


def test_a_judge_that_shares_some_arns_with_the_base_model_gets_only_the_others():
    base = _worker(_cfg()).statement("InvokeBaseModel").resources     # Nova Micro's profile and its 3 models
    # the Nova Micro profile of another account, given as its ARN: the profile is new, its models are the base's
    other = "arn:aws:bedrock:us-east-1:444455556666:inference-profile/us.amazon.nova-micro-v1:0"
    pol = _worker(_cfg({"model": other, "invoke_shape": "nova"}))
    judge = pol.statement("InvokeJudgeModel")
    assert judge.resources == [other] and "not repeated" in judge.why
    assert pol.statement("InvokeBaseModel").resources == base
    # the base model's own profile given as its ARN, or one of its models: nothing new, no statement
    for model in (base[0], base[2]):
        pol = _worker(_cfg({"model": model, "invoke_shape": "nova"}))
        assert "InvokeJudgeModel" not in pol.sids() and pol.statement("InvokeBaseModel").resources == base
    # a judge of another family shares nothing with the base model
    pol = _worker(_cfg({"model": PROFILE_JUDGE}))
    assert not set(pol.statement("InvokeJudgeModel").resources) & set(base)


# ---------------------------------------------------------------------------------------------
# the cache key is the one the judge reads and writes
# ---------------------------------------------------------------------------------------------
def test_the_cache_key_pattern_is_what_cache_uri_computes_for_a_real_run_key():
    from tasks import upload
    from tasks.aws.s3uri import split_s3_uri
    from tasks.evaluation.judge import cache_uri
    from tasks.run.names import compute_run_key, resource_names

    rubric = "Prefer the answer that names the right banking intent."
    cfg = _cfg({"model": PROFILE_JUDGE, "rubric": rubric})
    key = compute_run_key(cfg, "f" * 64)
    names = resource_names(cfg, key, account=ACCT)
    out_uri = f"s3://{names.bucket}/{upload.output_prefix(cfg.aws.prefix, key)}"
    bucket, cache_key = split_s3_uri(cache_uri(out_uri, PROFILE_JUDGE, rubric))
    pol = _worker(cfg)
    st = pol.statement("ReadWriteJudgeCache")
    assert st.actions == ["s3:GetObject", "s3:PutObject"]
    # the statement's one key is the written key with the run key as '?'s (and nothing else wild)
    assert st.resources == [f"arn:aws:s3:::{bucket}/{cache_key.replace(key, '?' * len(key))}"]
    arn = f"arn:aws:s3:::{bucket}/{cache_key}"
    assert _allows(pol, "s3:GetObject", arn) and _allows(pol, "s3:PutObject", arn)
    assert not _allows(pol, "s3:DeleteObject", arn), "the cache is kept (a rerun reuses it)"
    # another run of the config: covered; another rubric's or model's cache, another config, another bucket: not
    other_key = compute_run_key(cfg, "e" * 64)
    assert other_key != key
    assert _allows(pol, "s3:PutObject", arn.replace(key, other_key))
    for model, rub in ((PROFILE_JUDGE, rubric + "!"), ("amazon.nova-lite-v1:0", rubric)):
        assert not _allows(pol, "s3:PutObject", f"arn:aws:s3:::{bucket}/" + split_s3_uri(cache_uri(out_uri, model,
                                                                                                    rub))[1])
    assert not _allows(pol, "s3:PutObject", arn.replace("bedrock-forge/output/", "other/output/"))
    assert not _allows(pol, "s3:PutObject", arn.replace(bucket, "another-bucket"))
    assert not _allows(pol, "s3:PutObject", arn.replace(key, key + "0"))
    # the ListBucket a missing cache's 404 needs is the bucket's (SetUpRunBucket)
    assert _allows(pol, "s3:ListBucket", f"arn:aws:s3:::{bucket}")


def test_the_cache_key_pattern_follows_the_prefix_and_the_rubric():
    a = run_patterns(_cfg({"model": PROFILE_JUDGE}), ACCT)
    pol = _worker(_cfg({"model": PROFILE_JUDGE}, aws={"prefix": "team/forge"}))
    (res,) = pol.statement("ReadWriteJudgeCache").resources
    assert "/team/forge/output/????????????/evaluation/judge/" in res and a.bucket in res
    r1 = _worker(_cfg({"model": PROFILE_JUDGE, "rubric": "one"})).statement("ReadWriteJudgeCache").resources
    r2 = _worker(_cfg({"model": PROFILE_JUDGE, "rubric": "two"})).statement("ReadWriteJudgeCache").resources
    assert r1 != r2


# ---------------------------------------------------------------------------------------------
# forge permissions with a judge
# ---------------------------------------------------------------------------------------------
def _yaml_of(cfg: PipelineConfig) -> dict:
    return json.loads(cfg.model_dump_json(exclude_none=True))


def test_forge_permissions_prints_the_judge_statements(tmp_path, capsys):
    cfg = _cfg({"model": PROFILE_JUDGE, "max_examples": 5})
    path = tmp_path / "judge.yaml"
    path.write_text(yaml.safe_dump(_yaml_of(cfg)))
    assert main(["permissions", str(path), "--account", ACCT]) == 0
    out = capsys.readouterr().out
    assert "# InvokeJudgeModel [evaluate (evaluation.judge), forge evaluate]: bedrock:InvokeModel" in out
    assert "# ReadWriteJudgeCache [evaluate (evaluation.judge), forge evaluate]: s3:GetObject, s3:PutObject" in out
    assert main(["permissions", str(path), "--account", ACCT, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == _worker(cfg).document()
    assert main(["permissions", str(path), "--account", ACCT, "--markdown"]) == 0
    assert "| InvokeJudgeModel | bedrock:InvokeModel |" in capsys.readouterr().out
    for role in ROLES:
        assert main(["permissions", str(path), "--account", ACCT, "--role", role, "--json", "--split"]) == 0
        docs = json.loads(capsys.readouterr().out)
        assert [s for d in docs for s in d["Statement"]] == _worker(cfg, role).document()["Statement"]
        assert all(len(json.dumps(d, separators=(",", ":"))) <= 6144 for d in docs)
