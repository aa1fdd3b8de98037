"""tasks/aws/redact.py: account ids out of ARNs of every service the pipeline touches, and bare ids."""

from __future__ import annotations

import json

import pytest

from tasks.aws.redact import REDACTED, redact, redact_obj, redact_text, unredact

ACCOUNT = "123456789012"    # the emulator's dummy account

ARNS = [
    f"arn:aws:bedrock:us-east-1:{ACCOUNT}:custom-model/amazon.nova-micro-v1:0:128k/abcdef123456",
    f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-customization-job/amazon.nova-micro-v1:0:128k/abcdef123456",
    f"arn:aws:bedrock:us-east-1:{ACCOUNT}:provisioned-model/abcdef123456",
    f"arn:aws:bedrock:us-east-1:{ACCOUNT}:custom-model-deployment/abcdef123456",
    f"arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.amazon.nova-pro-v1:0",
    f"arn:aws:iam::{ACCOUNT}:role/bedrock-forge-banking-abc",
    f"arn:aws:sts::{ACCOUNT}:assumed-role/forge-ci/session-1",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/forge-data",
    f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:grader:$LATEST",
    f"arn:aws:s3:us-east-1:{ACCOUNT}:accesspoint/forge",
    f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/bedrock/forge:*",
    f"arn:aws-us-gov:bedrock:us-gov-west-1:{ACCOUNT}:custom-model/x.y/abcdef123456",
    f"arn:aws-cn:iam::{ACCOUNT}:role/r",
]


@pytest.mark.parametrize("arn", ARNS)
def test_the_account_of_every_arn_we_touch_is_redacted_and_restored(arn):
    for fn in (redact, redact_text, redact_obj):
        out = fn(f"failed on {arn} (retry)")
        assert ACCOUNT not in out and f":{REDACTED}:" in out
    assert unredact(redact(arn), ACCOUNT) == arn


def test_arns_without_an_account_are_left_alone():
    for arn in ("arn:aws:s3:::forge-data/pre/data/abc/train.jsonl", "arn:aws:bedrock:us-east-1::foundation-model/"
                "amazon.nova-pro-v1:0", "arn:aws:iam::aws:policy/ReadOnlyAccess"):
        assert redact_text(arn) == arn == redact(arn)


@pytest.mark.parametrize("text", [
    json.dumps({"Account": ACCOUNT, "UserId": "AIDAEXAMPLE"}), f"account {ACCOUNT}: 3 resources swept",
    f"owner={ACCOUNT}", f"[{ACCOUNT}]", f"{ACCOUNT}", f"\t{ACCOUNT}\n",
])
def test_bare_account_ids_are_redacted_in_printed_text(text):
    out = redact_text(text)
    assert ACCOUNT not in out and REDACTED in out


@pytest.mark.parametrize("text", [
    "1700000000000 ms", "run key 1234567890123", "forge-banking-123456789012-pt", "v1.123456789012",
    "sha 0123456789abcdef", "s3://b/p/123456789012/x", "12345678901",
])
def test_other_numbers_and_names_are_not_taken_for_account_ids(text):
    assert redact_text(text) == text


def test_a_known_account_is_redacted_wherever_it_appears_as_a_whole_number():
    text = f"bucket logs-{ACCOUNT}-us-east-1, other 999999999999x"
    assert redact_text(text, ACCOUNT) == f"bucket logs-{REDACTED}-us-east-1, other 999999999999x"
    assert redact_text(f"1{ACCOUNT}", ACCOUNT) == f"1{ACCOUNT}"      # part of a longer number: not an account


def test_redact_obj_walks_dicts_lists_keys_and_numbers():
    doc = {"resources": [{"arn": ARNS[2], "owner": ACCOUNT}], ACCOUNT: {"n": int(ACCOUNT)},
           "nested": ({"deep": [f"id {ACCOUNT}"]},), "keep": 3, "flag": True}
    out = redact_obj(doc, ACCOUNT)
    assert ACCOUNT not in json.dumps(out)
    assert out["keep"] == 3 and out["flag"] is True
    assert out[REDACTED] == {"n": REDACTED}
    assert redact_obj(doc)["resources"][0]["owner"] == REDACTED          # bare id, no account given
