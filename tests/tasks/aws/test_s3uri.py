"""tasks/aws/s3uri.py: split and join s3:// URIs."""

from __future__ import annotations

import pytest

from tasks.aws.s3uri import s3_uri, split_s3_uri


@pytest.mark.parametrize("uri, parts", [
    ("s3://bucket/key.jsonl", ("bucket", "key.jsonl")),
    ("s3://b-1/pre/output/k/", ("b-1", "pre/output/k/")),
    ("s3://bucket", ("bucket", "")),
    ("s3://bucket/", ("bucket", "")),
    ("s3://bucket/a//b", ("bucket", "a//b")),          # keys are kept as they are
])
def test_split_and_join_round_trip(uri, parts):
    assert split_s3_uri(uri) == parts
    assert split_s3_uri(s3_uri(*parts)) == parts


@pytest.mark.parametrize("bad", ["bucket/key", "https://bucket.s3.amazonaws.com/key", "S3://bucket/key", "s3://",
                                 "s3:///key", "", None])
def test_a_non_s3_uri_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="S3 URI"):
        split_s3_uri(bad)


def test_join():
    assert s3_uri("b", "p/train.jsonl") == "s3://b/p/train.jsonl"
    assert s3_uri("b", "") == s3_uri("b") == "s3://b/"
    with pytest.raises(ValueError, match="bucket"):
        s3_uri("", "k")


def test_child_key_joins_under_a_prefix_with_one_slash():
    from tasks.aws.s3uri import child_key

    assert child_key("out/k/", "evaluation/e.json") == "out/k/evaluation/e.json"
    assert child_key("out/k", "a.json") == "out/k/a.json"
    assert child_key("", "a.json") == "a.json"
