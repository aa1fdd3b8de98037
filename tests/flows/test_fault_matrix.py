"""The fault matrix (issue 9, item 1): each scenario runs the real flow on a private emulator with one
fault injected, then the on-call rerun, then the sweeper (scenario code: scenarios/faults.py, which
bench/faults.py also runs to write bench/faults.md). After all three, for every scenario:

- no managed serving resource (provisioned throughput / deployment) is alive;
- no duplicate create (job name, job attempt while the previous one still ran, serving overlap);
- the data objects in S3 are byte-identical to the prepared files;
- the faulty run's failure message names the cause; the rerun succeeds.
"""

from __future__ import annotations

import pytest

from scenarios import faults

pytestmark = pytest.mark.usefixtures("prefect_backend")

# The ctrl-c row was a known race until 2026-12-02: a Ctrl-C landing somewhere in the evaluation was swallowed and
# the run finished "succeeded". The signal handler now also records the stop (tasks/run/stop.py), checked at every
# step boundary and while evaluation waits; tests/flows/test_customize_flow.py swallows one on purpose.
KNOWN_RACES: dict[str, str] = {}   # row -> reason, for a race under investigation (xfail, not strict)
PARAMS = [pytest.param(name, marks=([pytest.mark.slow] if sc.slow else [])
                       + ([pytest.mark.xfail(reason=KNOWN_RACES[name], strict=False)] if name in KNOWN_RACES else []),
                       id=name)
          for name, sc in faults.SCENARIOS.items()]


@pytest.mark.parametrize("name", PARAMS)
def test_fault_scenario_leaves_nothing_running_and_duplicates_nothing(name, tmp_path):
    sc = faults.SCENARIOS[name]
    o = faults.run_scenario(name, tmp_path)
    detail = detail_of(o)

    assert o.leaked == [], f"serving resources left running: {o.leaked} ({detail})"
    assert o.duplicates == [], f"duplicate creates: {o.duplicates} ({detail})"
    assert o.data_ok, f"S3 data not intact: {o.data_note}"
    assert o.rerun_status == "succeeded", detail
    if sc.expect_first:
        assert o.first_status == sc.expect_first, detail
    for words in sc.expect_message:
        assert words in o.message.lower(), f"the failure message must name the cause ({words!r}): {o.message!r}"
    _scenario_specific(name, o)


def _scenario_specific(name: str, o: faults.Outcome) -> None:
    led = o.ledger
    if name in ("promotion-interrupted", "concurrent-promotions"):
        # one champion serving in production, and no second one left over (duplicates() also says so)
        assert len(faults.production_alive(led)) == 1, (faults.production_alive(led), detail_of(o))
        created = faults.calls(led, "CreateCustomModelDeployment")
        deleted = faults.calls(led, "DeleteCustomModelDeployment")
        assert len(created) - len(deleted) == 1, (len(created), len(deleted))
        if name == "concurrent-promotions":
            assert any("1 champion" in n and "not-champion" in n for n in o.notes), o.notes
    jobs_created = faults.calls(led, "CreateModelCustomizationJob")
    if name in ("throttling", "5xx-burst"):
        assert faults.injected(led), "the fault must actually have hit calls"
        assert len(jobs_created) >= 1
    if name == "read-timeout":
        # the create whose answer timed out reached the emulator; the retry replayed the same clientRequestToken
        assert len(faults.calls(led, "CreateModelCustomizationJob", ok=False)) >= 2
        assert len([r for r in led["resources"].values() if r["type"] == faults.JOB_TYPE]) == 1
    if name in ("job-failed", "job-stuck", "cancel-poll"):
        states = sorted(r["state"] for r in led["resources"].values() if r["type"] == faults.JOB_TYPE)
        first_attempt = "Failed" if name == "job-failed" else "Stopped"
        assert states == sorted(["Completed", first_attempt]), \
            f"attempt 1 {first_attempt}, attempt 2 Completed: {states}"
    if name == "cancel-poll":
        assert o.hook_effect and all(s in ("Stopping", "Stopped") for s in o.hook_effect), o.hook_effect
    if name == "cancel-evaluate":
        assert o.hook_effect == [], "the cancellation hook must delete the PT while evaluation still runs"
    if name == "pt-quota":
        foreign = {r["name"]: r["state"] for r in led["resources"].values() if r["name"].startswith("someone-else")}
        assert foreign == {"someone-else-1": "Deleted", "someone-else-2": "InService"}, \
            f"a PT without the bedrock-forge tag must never be touched: {foreign}"
    if name == "sigkill":
        # SIGKILL skips finally and hooks; the run's watchdog (own session) deletes the PT within seconds, with
        # the default serving.max_hours — not the sweep at forge-expires-at
        assert o.cleaned_by == "the run's watchdog", o.cleaned_by
        assert o.exit_code == -9
        assert "forge rerun" in o.message, "the watchdog's manifest note says how to resume"
    if name in ("sigterm", "crash", "eval-exception", "pt-failed", "cancel-evaluate", "ctrl-c",
                "delete-fails-once"):
        assert o.cleaned_by.startswith("the run itself"), o.cleaned_by
    if name == "ctrl-c":
        assert o.exit_code == 130, "Ctrl-C exits 130 (interrupted), having deleted serving itself"
        assert any("after" in n and float(n.split(" after ")[1].split(" s")[0]) < 30 for n in o.notes
                   if n.startswith("forge run exit")), o.notes
    if name == "delete-fails-once":
        refused = faults.calls(led, "DeleteProvisionedModelThroughput", ok=False)
        assert [c["error"] for c in refused if c.get("error")] == ["AccessDeniedException"], \
            "the refused delete happened once"
    if name == "delete-fails-always":
        assert o.hook_effect, "the manifest names the ARN still billing (teardown.alive)"
        assert o.cleaned_by in ("rerun", "final sweep"), o.cleaned_by
    if name == "cancel-dead-worker":
        assert any("stuck in Cancelling" in n and "marked Cancelled" in n for n in o.notes), o.notes
        states = sorted(r["state"] for r in led["resources"].values() if r["type"] == faults.JOB_TYPE)
        assert states == ["Completed", "Stopped"], f"the sweep stopped the dead run's job: {states}"
    if name == "cancel-duplicate":
        assert o.hook_effect and not any(s in ("Stopping", "Stopped") for s in o.hook_effect), \
            f"cancelling the duplicate must not stop the original's job: {o.hook_effect}"
        assert o.first_status == "succeeded + succeeded", detail_of(o)
        assert len(jobs_created) == 1
    if name == "nan-config":
        assert o.hook_effect == [], "the hook (parameters with null for NaN) must still delete the PT"
    if name == "concurrent":
        assert len(jobs_created) == 1, "two concurrent runs of one config must share one job"
        # the evaluation lease (tasks/evaluation/lease.py): one run serves and evaluates, the other reuses its record
        assert o.first_status == "succeeded + succeeded", detail_of(o)
        assert len(faults.calls(led, "CreateProvisionedModelThroughput")) == 1, "one PT for both runs"
    if name == "emulator-restart":
        assert o.first_status == "succeeded" and len(jobs_created) == 1


def detail_of(o: faults.Outcome) -> str:
    return f"{o.outcome}; notes {o.notes}; message {o.message[:500]!r}"


def _res(typ: str, name: str, history: list[tuple[str, str]], run_key: str = "k1") -> dict:
    return {"type": typ, "name": name, "state": history[-1][1],
            "history": [{"t": f"2026-01-01T{t}:00+00:00", "state": s} for t, s in history],
            "tags": {"managed-by": "bedrock-forge", "forge-run-key": run_key}}


def test_the_duplicate_judge_catches_overlaps_and_allows_sequences():
    """The matrix's verdict is only as good as this judge: it must flag real duplicates and nothing else."""
    pt, job = "provisioned-model-throughput", faults.JOB_TYPE
    sequential = {"calls": [], "resources": {
        "a": _res(pt, "x-pt", [("01:00", "Creating"), ("01:10", "InService"), ("02:00", "Deleted")]),
        "b": _res(pt, "x-pt", [("03:00", "Creating"), ("03:10", "InService"), ("04:00", "Deleted")]),
        "j1": _res(job, "x", [("00:00", "InProgress"), ("00:30", "Failed")]),
        "j2": _res(job, "x-a2", [("00:40", "InProgress"), ("01:00", "Completed")])}}
    assert faults.duplicates(sequential) == []
    assert faults.alive_serving(sequential) == []

    overlapping = {"calls": [], "resources": {
        "a": _res(pt, "x-pt", [("01:00", "Creating"), ("01:10", "InService"), ("02:00", "Deleted")]),
        "b": _res(pt, "x-pt", [("01:30", "Creating"), ("01:40", "InService")]),
        "j1": _res(job, "x", [("00:00", "InProgress"), ("00:30", "Completed")]),
        "j2": _res(job, "x-a2", [("00:40", "InProgress"), ("01:00", "Completed")])}}
    found = faults.duplicates(overlapping)
    assert any("alive at once" in d for d in found) and any("second job" in d for d in found), found
    assert faults.alive_serving(overlapping) == ["b"]
