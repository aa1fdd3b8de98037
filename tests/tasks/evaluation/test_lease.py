"""The evaluation lease (tasks/evaluation/lease.py): one of two runs of the same model serves, the other waits."""

from __future__ import annotations

import json
import time

import pytest

from tasks.evaluation import lease
from tests.support.aws import moto_s3

BUCKET, KEY = "forge-lease-test", "p/output/rk/evaluation/abc.lease"


@pytest.fixture
def s3(monkeypatch):
    with moto_s3(monkeypatch, BUCKET) as client:
        yield client


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


# --- acquire_or_wait: the whole protocol of one run, without Prefect ------------------------------------
class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def _peer_lease(s3, owner: str = "peer-run") -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"owner": owner, "heartbeat": time.time()}).encode())


def test_acquire_or_wait_takes_a_free_lease_without_loading(s3):
    clock = FakeClock()
    loads: list[int] = []
    out = lease.acquire_or_wait(s3, BUCKET, KEY, "run-a", lambda: loads.append(1), deadline=100.0, settle_s=0,
                                clock=clock, sleep=clock.sleep)
    assert out.recorded is None and out.peer is None and loads == []
    assert lease.read_lease(s3, BUCKET, KEY)["owner"] == "run-a"


def test_acquire_or_wait_reuses_the_peer_record_once_it_appears(s3):
    _peer_lease(s3)
    clock = FakeClock()
    answers = iter([None, None, {"gate": "passed"}])
    waited: list[str] = []
    out = lease.acquire_or_wait(s3, BUCKET, KEY, "run-b", lambda: next(answers), deadline=100.0, poll_s=2.0,
                                settle_s=0, clock=clock, sleep=clock.sleep, on_wait=waited.append)
    assert out.recorded == {"gate": "passed"} and out.peer == "peer-run"
    assert waited == ["peer-run"] and clock.sleeps == [2.0, 2.0]
    assert lease.read_lease(s3, BUCKET, KEY)["owner"] == "peer-run", "the waiting run never wrote the lease"


def test_acquire_or_wait_takes_over_when_the_peer_leaves_without_a_record(s3):
    _peer_lease(s3)
    clock = FakeClock()
    calls = [0]

    def load():
        calls[0] += 1
        if calls[0] == 2:
            s3.delete_object(Bucket=BUCKET, Key=KEY)   # the peer finished (or failed) without recording
        return None

    out = lease.acquire_or_wait(s3, BUCKET, KEY, "run-b", load, deadline=100.0, settle_s=0, clock=clock,
                                sleep=clock.sleep)
    assert out.recorded is None, "we hold the lease now: serve ourselves"
    assert lease.read_lease(s3, BUCKET, KEY)["owner"] == "run-b"


def test_acquire_or_wait_gives_up_at_the_deadline(s3, monkeypatch):
    _peer_lease(s3)
    clock = FakeClock()
    monkeypatch.setattr(lease, "held_by_other", lambda *a, **k: True)   # a peer that beats forever
    with pytest.raises(RuntimeError, match="flow run peer-run held the evaluation lease for longer than"):
        lease.acquire_or_wait(s3, BUCKET, KEY, "run-b", lambda: None, deadline=10.0, poll_s=3.0, settle_s=0,
                              clock=clock, sleep=clock.sleep)
    assert clock.t >= 10.0 and len(clock.sleeps) == 4


def test_acquire_or_wait_ignores_the_lease_of_an_earlier_attempt(s3):
    _peer_lease(s3, owner="attempt-1")
    clock = FakeClock()
    out = lease.acquire_or_wait(s3, BUCKET, KEY, "attempt-2", lambda: None, deadline=10.0, ours=["attempt-1"],
                                settle_s=0, clock=clock, sleep=clock.sleep)
    assert out.recorded is None and clock.sleeps == [0]
