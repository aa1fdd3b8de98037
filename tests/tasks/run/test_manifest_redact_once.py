"""Manifest._save with the S3 store attached: the document is redacted once per save (file and push share the
body); a conflict's re-apply makes it again, and the file and the store then hold the re-applied document."""

from __future__ import annotations

import json

import pytest

from tasks.run import manifest as manifest_mod
from tasks.run.manifest import Manifest
from tasks.run.store import S3RunStore
from tests.support.aws import moto_s3

BUCKET = "forge-runs-test"
ACCT = "123456789012"


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch, BUCKET) as client:
        yield client


def _remote(s3, run_id: str) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=f"team/runs/{run_id}/manifest.json")["Body"].read())


@pytest.fixture
def redactions(monkeypatch):
    calls = []
    real = manifest_mod.redact

    def counting(doc):
        calls.append(1)
        return real(doc)

    monkeypatch.setattr(manifest_mod, "redact", counting)
    return calls


def test_one_redaction_per_save_with_the_store_attached(s3, tmp_path, redactions):
    m = Manifest.create(tmp_path, "r-1", {"name": "x"})
    m.attach(S3RunStore.of_run(s3, BUCKET, "team"), account=ACCT)
    arn = f"arn:aws:bedrock:us-east-1:{ACCT}:custom-model/abc"
    for change in (lambda: m.step_done("prepare"), lambda: m.add_resource("model", arn), m.save):
        redactions.clear()
        change()
        assert len(redactions) == 1, "the file body and the pushed body are one redaction"
        remote = _remote(s3, "r-1")
        assert remote == json.loads(m.path.read_text()), "the file and the store hold the same body"
    assert ACCT not in json.dumps(_remote(s3, "r-1")), "the pushed body is redacted"
    assert m.doc.resources["model"] == arn, "in memory the ARN is whole"


def test_a_conflict_redacts_again_and_both_copies_hold_the_reapplied_document(s3, tmp_path, redactions):
    store = S3RunStore.of_run(s3, BUCKET, "team")
    flow = Manifest.create(tmp_path / "a", "r-2", {"name": "x"})
    flow.attach(store, account=ACCT)
    other = Manifest(tmp_path / "b" / "r-2" / "manifest.json", store.get("r-2")[0])
    other.attach(store, account=ACCT)
    other.update(error="watchdog: the run's process died")     # the flow's ETag is now stale
    redactions.clear()
    flow.step_done("prepare")                                    # conflict: re-read, re-apply, push again
    assert len(redactions) == 2, "one body before the conflict, one of the re-applied document"
    remote = _remote(s3, "r-2")
    assert remote["error"] == "watchdog: the run's process died"
    assert remote["steps"]["prepare"]["status"] == "completed"
    assert json.loads(flow.path.read_text()) == remote, "the file is rewritten with the re-applied document"
