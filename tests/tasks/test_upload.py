"""tasks/upload.py against moto's S3: bucket settings, content-addressed upload, skip when present."""

from __future__ import annotations

import hashlib
import json

import pytest

from tasks import upload as up
from tasks.aws.errors import StageError
from tasks.run.types import PreparedData, SplitFile


def write_prepared(tmp_path, n: int = 3, text: str = "hello") -> PreparedData:
    splits = {}
    for split in ("train", "validation", "test"):
        p = tmp_path / f"{split}.jsonl"
        p.write_text("".join(json.dumps({"prompt": f"{text} {split} {i}", "completion": "x"}) + "\n" for i in range(n)))
        data = p.read_bytes()
        splits[split] = SplitFile(path=str(p), records=n, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    return PreparedData(format="prompt-completion", report_path=str(tmp_path / "report.json"), **splits)


def treat_requests_as_tls(monkeypatch):
    """moto evaluates bucket-policy statements ignoring their Condition (moto/iam/policy_conditions.py: an
    unsupported operator such as Bool counts as met), so a TLS-only Deny denies every object call. Real S3
    is reached over HTTPS, where that statement never matches: evaluate the policy without it."""
    from moto.s3.models import FakeBucket

    original = FakeBucket.get_permission

    def get_permission(self, action, resource):
        if self.policy is None:
            return original(self, action, resource)
        saved = self.policy
        doc = json.loads(saved)
        doc["Statement"] = [st for st in doc.get("Statement", [])
                            if st.get("Condition") != {"Bool": {"aws:SecureTransport": "false"}}]
        self.policy = json.dumps(doc).encode()
        try:
            return original(self, action, resource)
        finally:
            self.policy = saved

    monkeypatch.setattr(FakeBucket, "get_permission", get_permission)


@pytest.fixture
def clients(monkeypatch, moto_clients):
    treat_requests_as_tls(monkeypatch)
    return moto_clients


def test_new_bucket_is_locked_down(clients):
    up.ensure_bucket(clients, "forge-test-bucket", "us-east-1", None)
    s3 = clients.s3
    pab = s3.get_public_access_block(Bucket="forge-test-bucket")["PublicAccessBlockConfiguration"]
    assert all(pab[k] for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))
    enc = s3.get_bucket_encryption(Bucket="forge-test-bucket")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket="forge-test-bucket")["Policy"])
    deny = [st for st in policy["Statement"] if st["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny[0]["Resource"]) == {"arn:aws:s3:::forge-test-bucket", "arn:aws:s3:::forge-test-bucket/*"}


def test_kms_key_and_other_region(clients):
    kms = "arn:aws:kms:us-west-2:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    up.ensure_bucket(clients, "forge-west", "us-west-2", kms)
    assert clients.s3.get_bucket_location(Bucket="forge-west")["LocationConstraint"] == "us-west-2"
    rule = clients.s3.get_bucket_encryption(Bucket="forge-west")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms}
    with pytest.raises(StageError, match="is in us-west-2, the run is in us-east-1"):
        up.ensure_bucket(clients, "forge-west", "us-east-1", None)


def test_existing_bucket_policy_is_kept_and_tls_statement_added_once(clients):
    clients.s3.create_bucket(Bucket="their-bucket")
    theirs = {"Sid": "Theirs", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
              "Resource": "arn:aws:s3:::their-bucket"}
    clients.s3.put_bucket_policy(Bucket="their-bucket",
                                 Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    up.ensure_bucket(clients, "their-bucket", "us-east-1", None)
    up.ensure_bucket(clients, "their-bucket", "us-east-1", None)
    sids = [s.get("Sid")
            for s in json.loads(clients.s3.get_bucket_policy(Bucket="their-bucket")["Policy"])["Statement"]]
    assert sids == ["Theirs", up.TLS_SID]


def test_upload_is_content_addressed_and_skips_identical_objects(clients, tmp_path):
    prepared = write_prepared(tmp_path)
    up.ensure_bucket(clients, "forge-data", "us-east-1", None)
    first = up.upload(clients, prepared, "forge-data", "bedrock-forge", "runkey000001")
    assert first.skipped == []
    assert first.train_uri == f"s3://forge-data/bedrock-forge/data/{prepared.content_hash[:16]}/train.jsonl"
    assert first.input_prefix == f"bedrock-forge/data/{prepared.content_hash[:16]}/"
    assert first.output_uri == "s3://forge-data/bedrock-forge/output/runkey000001/"
    key = first.train_uri.removeprefix("s3://forge-data/")
    head = clients.s3.head_object(Bucket="forge-data", Key=key)
    assert head["Metadata"]["sha256"] == prepared.train.sha256
    assert clients.s3.get_object(Bucket="forge-data", Key=key)["Body"].read() == open(prepared.train.path, "rb").read()
    again = up.upload(clients, prepared, "forge-data", "bedrock-forge", "runkey000002")
    assert sorted(again.skipped) == sorted([first.train_uri, first.validation_uri, first.test_uri])
    other = up.upload(clients, write_prepared(tmp_path / "..", text="other"), "forge-data", "bedrock-forge", "k")
    assert other.input_prefix != first.input_prefix and other.skipped == []


def test_upload_refuses_a_file_changed_after_prepare(clients, tmp_path):
    prepared = write_prepared(tmp_path)
    up.ensure_bucket(clients, "forge-data", "us-east-1", None)
    with open(prepared.train.path, "a") as fh:
        fh.write("{}\n")
    with pytest.raises(StageError, match="content changed since prepare"):
        up.upload(clients, prepared, "forge-data", "bedrock-forge", "k")


def test_bad_prefix_is_rejected_with_the_fix(clients, tmp_path):
    with pytest.raises(StageError, match="aws.prefix"):
        up.upload(clients, write_prepared(tmp_path), "forge-data", "my prefix=1", "k")


def test_rerun_on_a_compliant_bucket_makes_no_mutating_call(clients, tmp_path):
    up.ensure_bucket(clients, "forge-rerun", "us-east-1", None)
    prepared = write_prepared(tmp_path)
    up.upload(clients, prepared, "forge-rerun", "bedrock-forge", "k")
    ops: list[str] = []
    clients.s3.meta.events.register("before-call.s3.*", lambda model, **_: ops.append(model.name))
    up.ensure_bucket(clients, "forge-rerun", "us-east-1", None)
    up.upload(clients, prepared, "forge-rerun", "bedrock-forge", "k")
    assert ops and all(op.startswith(("Head", "Get")) for op in ops), ops
