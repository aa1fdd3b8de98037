"""tasks/run/names.py: the run key and the deterministic resource names."""

from __future__ import annotations

import re

import pytest

from tasks.config import PipelineConfig
from tasks.run import names as run_names


def make_config(**over) -> PipelineConfig:
    base = {"name": "banking", "base_model": "amazon.nova-micro-v1:0:128k", "data": {"source": "data.jsonl"}}
    base.update(over)
    return PipelineConfig.model_validate(base)


def test_run_key_is_stable_and_ignores_what_does_not_change_the_model():
    cfg = make_config()
    key = run_names.compute_run_key(cfg, "abc")
    assert re.fullmatch(r"[0-9a-f]{12}", key)
    same = make_config(evaluation={"concurrency": 32}, gate={"min_delta": 0.1}, budget={"max_usd": 5},
                       tags={"team": "x"}, job={"timeout_hours": 2}, serving={"max_hours": 1},
                       data={"source": "elsewhere.csv"}, aws={"retry_mode": "standard", "endpoint_url": "http://e"})
    assert run_names.compute_run_key(same, "abc") == key
    # the preset's defaults spelled out explicitly are the same model
    assert run_names.compute_run_key(make_config(hyperparameters={"epochCount": "2"}), "abc") == key


def test_run_key_changes_with_data_and_training_settings():
    key = run_names.compute_run_key(make_config(), "abc")
    assert run_names.compute_run_key(make_config(), "abd") != key
    assert run_names.compute_run_key(make_config(hyperparameters={"epochCount": 3}), "abc") != key
    assert run_names.compute_run_key(make_config(base_model="amazon.nova-lite-v1:0:300k"), "abc") != key
    assert run_names.compute_run_key(make_config(aws={"region": "us-west-2"}), "abc") != key


# -- names ---------------------------------------------------------------------------------------
def test_names_fit_bedrock_patterns_even_for_the_longest_config_name():
    cfg = make_config(name="a" * 15 + "-" + "b" * 16)
    n = run_names.resource_names(cfg, "0123456789ab")
    assert len(n.job_attempt(9)) <= 63 and "_" not in n.job_attempt(9)
    assert run_names.JOB_NAME_RE.fullmatch(n.job_attempt(12))
    assert run_names.MODEL_NAME_RE.fullmatch(n.model_attempt(3)) and "." not in n.custom_model
    assert run_names.PT_NAME_RE.fullmatch(n.provisioned) and len(n.provisioned) <= 63
    assert len(n.role) <= 64 and run_names.BUCKET_RE.fullmatch(n.bucket) and len(n.bucket) <= 63
    assert run_names.TOKEN_RE.fullmatch(n.job_token_attempt(2))
    assert n.job_attempt(1) == n.job and n.job_attempt(2) == n.job + "-a2"
    assert run_names.ResourceNames.attempt_of(n.job + "-a7", n.job) == 7
    assert run_names.ResourceNames.attempt_of(n.job + "-other", n.job) is None


def test_default_bucket_is_per_account_without_leaking_the_account_and_config_bucket_wins():
    cfg = make_config()
    a = run_names.resource_names(cfg, "0" * 12, account="111122223333").bucket
    b = run_names.resource_names(cfg, "0" * 12, account="444455556666").bucket
    assert a != b and "111122223333" not in a and a.endswith("-us-east-1") and a.startswith("bedrock-forge-")
    assert run_names.resource_names(make_config(aws={"bucket": "my-data"}), "0" * 12).bucket == "my-data"
    with pytest.raises(ValueError, match="not a valid S3 bucket"):
        run_names.resource_names(make_config(aws={"bucket": "My_Bucket"}), "0" * 12)


# -- RUN_ID is a name, never a path (issue 16) ----------------------------------------------------------------
def test_generated_run_ids_pass_check_run_id():
    from tasks.run.manifest import new_run_id

    for name in ("t", "banking77", "a" * 32, "my-run-2"):
        rid = new_run_id(name)
        assert run_names.check_run_id(rid) == rid
    for rid in ("fr-1", "run-to-cancel", "Run_7.retry", "x" * run_names.RUN_ID_MAX):
        assert run_names.check_run_id(rid) == rid


@pytest.mark.parametrize("bad, why", [
    ("../x", "is a path"), ("/etc", "is a path"), ("a/../../b", "is a path"), ("C:\\x", "is a path"),
    ("C:x", "is a path"), ("a\\b", "is a path"), ("/abs/path/run-1", "is a path"), ("runs/r1", "is a path"),
    ("..", "holds '..'"), ("a..b", "holds '..'"), ("", "is empty"), ("x" * 129, "129 characters long"),
    ("r1\x00", "control character"), ("r1\n", "control character"), ("r\x7f", "control character"),
    (".hidden", "characters a run id does not"), ("-rf", "characters a run id does not"),
    ("run id", "characters a run id does not"), ("run*", "characters a run id does not"),
    ("~root", "characters a run id does not"), ("r\u00e9", "characters a run id does not"),
    ("$(id)", "characters a run id does not"),
])
def test_check_run_id_refuses_paths_and_says_what_a_run_id_looks_like(bad, why):
    with pytest.raises(run_names.InvalidRunId) as exc:
        run_names.check_run_id(bad)
    msg = str(exc.value)
    assert why in msg and "a run id is a name like" in msg and "never a path" in msg
    assert isinstance(exc.value, ValueError)
    assert len(msg) < 400                       # an over-long id is not echoed whole


def test_check_run_id_refuses_a_non_string():
    with pytest.raises(run_names.InvalidRunId, match="not a string"):
        run_names.check_run_id(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("bucket", ["my.bucket.name", "xn--abc", "sthree-x", "amzn-s3-demo-x", "b-s3alias",
                                    "b--ol-s3", "b.mrap", "b--x-s3", "b--table-s3", "192.168.5.4", "ab", "A-b"])
def test_resource_names_use_the_configs_bucket_rules(bucket):
    """The derived-names check and the config check are one rule set: a bypassed config still cannot name one."""
    cfg = make_config()
    bypass = cfg.model_copy(update={"aws": cfg.aws.model_copy(update={"bucket": bucket})})
    with pytest.raises(ValueError, match="aws.bucket: .*is not a valid S3 bucket name"):
        run_names.resource_names(bypass, "abcabcabcabc")
