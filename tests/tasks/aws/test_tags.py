"""tasks/aws/tags.py: the standard tags, their expiry, the two tag shapes, managed or not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tasks.aws import tags as aws_tags


def test_standard_tags_and_expiry():
    now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    tags = aws_tags.standard_tags("k" * 12, "fr-1", {"team": "ml"}, expires_in_hours=2, now=now)
    assert tags["managed-by"] == "bedrock-forge" and tags["forge-run-key"] == "k" * 12
    assert tags["forge-flow-run-id"] == "fr-1" and tags["team"] == "ml"
    assert tags["forge-expires-at"] == "2026-01-01T12:00:00Z"
    assert aws_tags.parse_expiry(tags["forge-expires-at"]) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert "forge-expires-at" not in aws_tags.standard_tags("k", "f", {})
    assert aws_tags.to_tag_list({"a": "b"}) == [{"key": "a", "value": "b"}]
    with pytest.raises(ValueError, match="reserved"):
        aws_tags.standard_tags("k", "f", {"managed-by": "me"})
    with pytest.raises(ValueError, match="letters, digits"):
        aws_tags.standard_tags("k", "f", {"bad": "a,b"})


def test_iam_tag_shape_expiry_parsing_and_managed():
    assert aws_tags.to_iam_tags({"a": "b"}) == [{"Key": "a", "Value": "b"}]
    assert aws_tags.parse_expiry(None) is None and aws_tags.parse_expiry("not a time") is None
    assert aws_tags.parse_expiry("2026-01-01T12:00:00") == datetime(2026, 1, 1, 12, tzinfo=UTC)   # naive = UTC
    assert aws_tags.is_managed({"managed-by": "bedrock-forge"})
    assert not aws_tags.is_managed({"managed-by": "someone-else"}) and not aws_tags.is_managed({})
