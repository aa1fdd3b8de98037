"""tasks/config/grammar.py and rules.py: the copied AWS patterns match the installed botocore, and the config's
serving-kind rule is the one tasks/run/plan.py acts on."""

from __future__ import annotations

import botocore.session
import pytest

from tasks.config import PipelineConfig, grammar
from tasks.config.rules import buys_provisioned_throughput

SESSION = botocore.session.get_session()


@pytest.mark.parametrize("service, shape, pattern, maximum", [
    ("bedrock", "TeacherModelIdentifier", grammar.TEACHER_MODEL_PATTERN, None),
    ("bedrock", "LambdaArn", grammar.LAMBDA_ARN_PATTERN, grammar.LAMBDA_ARN_MAX),
    ("bedrock", "KmsKeyId", grammar.KMS_KEY_ID_PATTERN, grammar.KMS_KEY_ID_MAX),
    ("bedrock", "TagKey", grammar.TAG_PATTERN, grammar.TAG_KEY_MAX),
    ("bedrock", "TagValue", grammar.TAG_PATTERN, grammar.TAG_VALUE_MAX),
    ("iam", "roleNameType", grammar.ROLE_NAME_PATTERN, grammar.ROLE_NAME_MAX),
    ("kms", "AliasNameType", None, grammar.KMS_ALIAS_MAX),
])
def test_copied_patterns_match_botocore(service, shape, pattern, maximum):
    meta = SESSION.get_service_model(service).shape_for(shape).metadata
    if pattern is not None:
        assert meta["pattern"] == pattern
    if maximum is not None:
        assert meta["max"] == maximum


@pytest.mark.parametrize("value", ["amazon.nova-pro-v1:0", "us.amazon.nova-pro-v1:0",
                                   "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0",
                                   "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0"])
def test_legal_teachers_pass(value):
    assert grammar.teacher_problem(value) is None


@pytest.mark.parametrize("value", ["1234abcd-12ab-34cd-56ef-1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab",
                                   "alias/forge", "arn:aws:kms:us-east-1:123456789012:alias/forge/data",
                                   "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"])
def test_legal_kms_keys_pass(value):
    assert grammar.kms_key_problem(value) is None


@pytest.mark.parametrize("value", ["bedrock-forge", "teams/nlp", "a/b/c/", "x_(1)!'.-"])
def test_legal_prefixes_pass(value):
    assert grammar.prefix_problem(value) is None


@pytest.mark.parametrize("mode", ["auto", "provisioned", "on_demand"])
@pytest.mark.parametrize("model, region", [("amazon.nova-micro-v1:0:128k", "us-east-1"),
                                           ("amazon.nova-micro-v1:0:128k", "eu-west-1"),
                                           ("amazon.titan-text-express-v1:0:8k", "us-east-1")])
def test_the_config_rule_and_the_plan_agree_on_what_the_run_buys(mode, model, region):
    from tasks.run.plan import family_of, serving_kind

    raw = {"name": "t", "base_model": model, "data": {"source": "x.jsonl"}, "aws": {"region": region},
           "serving": {"mode": "provisioned"}}
    cfg = PipelineConfig.model_validate(raw)
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"mode": mode})})  # bypass the region rule
    assert buys_provisioned_throughput(cfg, family_of(cfg)) == (serving_kind(cfg) == "provisioned")
