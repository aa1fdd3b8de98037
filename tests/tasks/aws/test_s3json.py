"""tasks/aws/s3json.py: the one conditional JSON write under the run state and the registry."""

from __future__ import annotations

import pytest

from tasks.aws.s3json import PreconditionLost, get_json, put_json
from tests.support.aws import moto_s3


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch, "json-bkt") as client:
        yield client


def test_create_only_once_then_only_from_the_etag_read(s3):
    assert get_json(s3, "json-bkt", "a/doc.json") is None
    e1 = put_json(s3, "json-bkt", "a/doc.json", {"n": 1}, None)
    with pytest.raises(PreconditionLost):
        put_json(s3, "json-bkt", "a/doc.json", {"n": "second creator"}, None)   # If-None-Match: *
    e2 = put_json(s3, "json-bkt", "a/doc.json", {"n": 2}, e1)
    with pytest.raises(PreconditionLost):
        put_json(s3, "json-bkt", "a/doc.json", {"n": "stale writer"}, e1)       # If-Match on an old ETag
    assert get_json(s3, "json-bkt", "a/doc.json") == ({"n": 2}, e2)


def test_a_deleted_document_is_a_lost_precondition_and_a_missing_bucket_reads_as_none(s3):
    e1 = put_json(s3, "json-bkt", "b.json", {"n": 1}, None)
    s3.delete_object(Bucket="json-bkt", Key="b.json")
    with pytest.raises(PreconditionLost):
        put_json(s3, "json-bkt", "b.json", {"n": 2}, e1)
    assert get_json(s3, "no-such-bkt", "b.json") is None


def test_an_error_that_is_not_absence_is_raised(s3):
    from botocore.exceptions import ClientError

    from tests.support.aws import client_error

    class Denied:
        def get_object(self, **_):
            raise client_error("AccessDenied", 403)

    with pytest.raises(ClientError):
        get_json(Denied(), "json-bkt", "c.json")
