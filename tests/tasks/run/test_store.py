"""tasks/run/store.py + Manifest.attach: the run's manifest in S3, conditional writes, no lost update."""

from __future__ import annotations

import json

import pytest

from tasks.run.manifest import Manifest
from tasks.run.store import S3RunStore, StoreConflict
from tests.support.aws import moto_s3

BUCKET = "forge-runs-test"


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch, BUCKET) as client:
        yield client


def _remote(s3, run_id: str) -> dict:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=f"team/runs/{run_id}/manifest.json")["Body"].read())


def test_a_stale_writer_is_refused(s3):
    store = S3RunStore.of_run(s3, BUCKET, "team")
    etag = store.put("r-1", {"run_id": "r-1"}, None)
    with pytest.raises(StoreConflict):
        store.put("r-1", {"run_id": "r-1", "v": 2}, None)          # "only if there is none"
    store.put("r-1", {"run_id": "r-1", "v": 2}, etag)
    with pytest.raises(StoreConflict):
        store.put("r-1", {"run_id": "r-1", "v": 3}, etag)          # etag is now stale


def test_attach_pushes_and_every_change_follows(s3, tmp_path):
    m = Manifest.create(tmp_path / "a", "r-2", {"name": "x"})
    m.step_done("prepare")
    m.attach(S3RunStore.of_run(s3, BUCKET, "team"))
    assert _remote(s3, "r-2")["steps"]["prepare"]["status"] == "completed"
    m.step_started("upload")
    m.finish("failed")
    remote = _remote(s3, "r-2")
    assert remote["steps"]["upload"]["status"] == "running" and remote["status"] == "failed"
    assert remote == json.loads(m.path.read_text()), "the local file is the cache of the same document"


def test_two_writers_lose_neither_update(s3, tmp_path):
    """The flow and its watchdog (or a hook in another process) write one manifest: each re-applies its own
    change to the other's copy instead of overwriting it."""
    store = S3RunStore.of_run(s3, BUCKET, "team")
    flow = Manifest.create(tmp_path / "a", "r-3", {"name": "x"})
    flow.attach(store)
    other = Manifest(tmp_path / "b" / "r-3" / "manifest.json", store.get("r-3")[0])
    other.attach(store)
    flow.step_done("prepare")
    other.update(error="watchdog: the run's process died")      # written on a copy without prepare done
    flow.step_started("upload")                                  # written on a copy without the error
    remote = _remote(s3, "r-3")
    assert remote["steps"]["prepare"]["status"] == "completed"
    assert remote["steps"]["upload"]["status"] == "running"
    assert remote["error"] == "watchdog: the run's process died"
    assert flow.doc.error == "watchdog: the run's process died", "the writer adopted the other's update"


def test_run_ids_lists_the_runs_folder(s3, tmp_path):
    store = S3RunStore.at(s3, f"s3://{BUCKET}/team/runs")
    for rid in ("b-run", "a-run"):
        Manifest.create(tmp_path, rid, {"name": rid}).attach(store)
    s3.put_object(Bucket=BUCKET, Key="team/runs-other/x/manifest.json", Body=b"{}")
    assert store.run_ids() == ["a-run", "b-run"]
    assert store.get("no-such-run") is None


def test_a_run_id_that_is_a_path_is_refused(s3):
    store = S3RunStore.of_run(s3, BUCKET, "team")
    with pytest.raises(ValueError):
        store.get("../other-team/runs/x")


def test_a_run_file_is_written_once_and_not_again_while_unchanged(s3, tmp_path):
    """The prepared data's report next to the manifest (issue 18): a rerun with the same file writes nothing."""
    store = S3RunStore.of_run(s3, BUCKET, "team")
    report = tmp_path / "report.json"
    report.write_text('{"records": 12}')
    uri = store.put_file("run-7", "prepare-report.json", report)
    assert uri == f"s3://{BUCKET}/team/runs/run-7/prepare-report.json"
    etag = s3.head_object(Bucket=BUCKET, Key="team/runs/run-7/prepare-report.json")["ETag"]
    puts = []
    real = s3.put_object
    s3.put_object = lambda **kw: (puts.append(kw["Key"]), real(**kw))[1]
    try:
        store.put_file("run-7", "prepare-report.json", report)
        assert puts == [], "unchanged: not written again"
        report.write_text('{"records": 13}')
        store.put_file("run-7", "prepare-report.json", report)
        assert puts == ["team/runs/run-7/prepare-report.json"]
    finally:
        s3.put_object = real
    assert s3.head_object(Bucket=BUCKET, Key="team/runs/run-7/prepare-report.json")["ETag"] != etag
    assert json.loads(s3.get_object(Bucket=BUCKET, Key="team/runs/run-7/prepare-report.json")["Body"].read()) == \
        {"records": 13}
