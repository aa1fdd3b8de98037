"""The evaluation lease (tasks/lease.py): one of two runs of the same model serves, the other waits."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from tasks import lease

BUCKET, KEY = "forge-lease-test", "p/output/rk/evaluation/abc.lease"


@pytest.fixture
def s3(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        c = boto3.client("s3", region_name="us-east-1")
        c.create_bucket(Bucket=BUCKET)
        yield c


def test_a_free_lease_is_taken_and_a_live_one_is_respected(s3):
    assert lease.acquire(s3, BUCKET, KEY, "run-a", settle_s=0) is None
    assert lease.acquire(s3, BUCKET, KEY, "run-b", settle_s=0) == "run-a"
    assert lease.acquire(s3, BUCKET, KEY, "run-a", settle_s=0) is None, "the holder may take it again"


def test_a_stale_lease_is_taken_over(s3):
    s3.put_object(Bucket=BUCKET, Key=KEY,
                  Body=json.dumps({"owner": "killed-run", "heartbeat": time.time() - lease.STALE_S - 1}).encode())
    assert lease.acquire(s3, BUCKET, KEY, "run-b", settle_s=0) is None


def test_a_run_arriving_during_the_settle_window_backs_off(s3):
    results = {}

    def a_settles(_s: float) -> None:     # B looks while A settles: A's lease is already there
        results["b"] = lease.acquire(s3, BUCKET, KEY, "run-b", settle_s=0)

    results["a"] = lease.acquire(s3, BUCKET, KEY, "run-a", sleep=a_settles)
    assert results == {"a": None, "b": "run-a"}


def test_two_runs_that_both_saw_no_lease_agree_on_one_holder(s3, monkeypatch):
    """The real race: A and B both read "no lease", then both write. After the settle time both read
    back the last writer (S3 is strongly consistent), so exactly one goes on."""
    real_read = lease.read_lease
    b_first_read = [True]

    def read(s3_, bucket, key):
        if b_first_read[0] and results.get("b_running"):
            b_first_read[0] = False
            return None                     # B's look happened before A's write
        return real_read(s3_, bucket, key)

    results: dict = {}
    monkeypatch.setattr(lease, "read_lease", read)

    def a_settles(_s: float) -> None:
        results["b_running"] = True
        results["b"] = lease.acquire(s3, BUCKET, KEY, "run-b", settle_s=0)

    results["a"] = lease.acquire(s3, BUCKET, KEY, "run-a", sleep=a_settles)
    assert (results["a"], results["b"]) == ("run-b", None), "B wrote last: B serves, A waits"


def test_holding_refreshes_the_heartbeat_and_releases_at_the_end(s3):
    assert lease.acquire(s3, BUCKET, KEY, "run-a", settle_s=0) is None
    first = lease.read_lease(s3, BUCKET, KEY)["heartbeat"]
    with lease.holding(s3, BUCKET, KEY, "run-a", heartbeat_s=0.05):
        time.sleep(0.3)
        assert lease.read_lease(s3, BUCKET, KEY)["heartbeat"] > first
    assert lease.read_lease(s3, BUCKET, KEY) is None
    assert lease.acquire(s3, BUCKET, KEY, "run-b", settle_s=0) is None


def test_a_rerun_supersedes_the_lease_of_its_own_earlier_attempt(s3):
    """On-call reruns a run whose worker was killed while it held the lease: no 90 s wait for staleness."""
    assert lease.acquire(s3, BUCKET, KEY, "attempt-1", settle_s=0) is None      # then SIGKILL
    assert lease.acquire(s3, BUCKET, KEY, "other-run", settle_s=0) == "attempt-1"
    assert lease.acquire(s3, BUCKET, KEY, "attempt-2", ours=["attempt-1"], settle_s=0) is None
