"""tasks/run/status.py: what `forge status` shows, judged from the manifest, Prefect's state and the S3 heartbeat.
The harshest cases are the lies a manifest alone would tell: "running" for a run whose machine is gone."""

from __future__ import annotations

import pytest

from tasks.run.liveness import Heartbeat
from tasks.run.status import NO_HEARTBEAT, current_step, heartbeat_location_of, judge, recorded_serving

PT = "arn:aws:bedrock:us-east-1:<account>:provisioned-model/abc"


def _doc(status="running", steps=None, serving=True, torn_down=False) -> dict:
    d = {"run_id": "r-1", "run_key": "k" * 16, "status": status,
         "steps": steps if steps is not None else {"prepare": {"status": "completed"},
                                                   "evaluate": {"status": "running"}},
         "config": {"aws": {"prefix": "team/forge"}},
         "resources": {"data": {"output": "s3://bkt/team/forge/output/kkkk/"}}}
    if serving:
        d["resources"]["serving"] = {"kind": "provisioned", "arn": PT}
    if torn_down:
        d["teardown"] = {"deleted": [PT]}
    return d


def _p(kind: str, message: str = "") -> dict:
    return {"type": kind, "name": kind.title(), "message": message}


STALE, FRESH, GONE = Heartbeat(age_s=600.0), Heartbeat(age_s=5.0), Heartbeat(age_s=None)

CASES = [
    # (manifest, prefect, heartbeat, expected label)
    (_doc(), None, STALE, NO_HEARTBEAT),                         # a lost machine: no Prefect, a stale beat
    (_doc(), _p("RUNNING"), STALE, NO_HEARTBEAT),                # Prefect not told yet: the heartbeat wins
    (_doc(), _p("CRASHED", "marked Crashed: no heartbeat for 90 s"), None, NO_HEARTBEAT),   # zombie automation
    (_doc(), _p("CRASHED", "Flow run infrastructure exited with non-zero status code -9"), None, "crashed"),
    (_doc(), _p("CANCELLED"), None, "cancelled"),
    (_doc(), _p("CANCELLING"), FRESH, "cancelling"),
    (_doc(), _p("RUNNING"), FRESH, "running"),
    (_doc(), None, FRESH, "running"),
    (_doc(), _p("FAILED"), None, "failed"),
    (_doc(), None, None, "running (unconfirmed)"),               # nothing to check against: said so
    (_doc(), None, GONE, "running (unconfirmed)"),
    (_doc("interrupted"), _p("CANCELLED"), None, "cancelled"),   # a cancel is not shown as a failure
    (_doc("failed"), _p("CANCELLED"), None, "cancelled"),
    (_doc("failed"), _p("FAILED"), None, "failed"),
    (_doc("succeeded", torn_down=True), _p("RUNNING"), STALE, "succeeded"),   # the run's end is the truth
    (_doc("gate_failed"), None, None, "gate_failed"),
]


@pytest.mark.parametrize(("doc", "prefect", "beat", "label"), CASES)
def test_the_state_shown(doc, prefect, beat, label):
    assert judge(doc, prefect=prefect, heartbeat=beat).label == label


def test_a_stale_bound_is_the_callers():
    assert judge(_doc(), heartbeat=Heartbeat(age_s=100.0), stale_after_s=120).label == "running"
    assert judge(_doc(), heartbeat=Heartbeat(age_s=100.0), stale_after_s=60).label == NO_HEARTBEAT


def test_the_step_and_the_serving_still_billing():
    st = judge(_doc(), heartbeat=STALE)
    assert st.step == "evaluate" and st.serving == [PT] and "600 s old" in st.why
    assert recorded_serving(_doc(torn_down=True)) == []
    assert current_step(_doc(steps={"upload": {"status": "failed"}})) == "upload"
    assert current_step(_doc(steps={})) is None


def test_the_heartbeat_is_found_from_the_manifest_alone():
    assert heartbeat_location_of(_doc()) == ("bkt", f"team/forge/output/{'k' * 16}/serving/heartbeat.json")
    assert heartbeat_location_of({"run_key": "k"}) is None       # before upload: nothing to read


def test_a_run_waiting_for_a_quota_slot_says_which_limit_and_since_when():
    doc = _doc(serving=False, steps={"prepare": {"status": "completed"}, "customize": {"status": "running"}})
    doc["waiting"] = {"step": "customize", "for": "quota", "limit": "bedrock-training-jobs:us-east-1", "in_use": 2,
                      "limit_value": 2, "needs": 1, "since": "2026-12-02T10:00:00+00:00"}
    st = judge(doc, prefect=_p("RUNNING"))
    assert st.label == "waiting for quota" and st.step == "customize"
    assert "bedrock-training-jobs:us-east-1 (2/2 in use, needs 1) since 2026-12-02T10:00:00" in st.why
    assert judge(doc, prefect=_p("CRASHED", "no heartbeat")).label == NO_HEARTBEAT, "a dead waiter is not waiting"
