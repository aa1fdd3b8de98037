"""Issue 15: a run killed while its provisioned throughput (PT) is InService and its evaluation is calling it, with
the DEFAULT ``serving.max_hours`` (``forge-expires-at`` two hours away: it cannot be what cleans up) and the default
sweep stale bound, leaves 0 PTs and at most 300 s of PT time after the kill; its manifest tells the truth.

Three kills (bench/leak.py drives them; its table is bench/leak.md):
- SIGKILL of ``forge run`` (its pid; its whole process group is the fault matrix's ``sigkill`` row);
- SIGKILL of a real ``prefect worker start`` process worker on a real ``prefect server start`` (SQLite in a temp
  PREFECT_HOME), the run triggered through the ``customize`` deployment registered by ``forge deploy``;
- SIGTERM of that worker (a normal stop).
A scheduled-style sweeper (``flows.sweep.sweep_now`` every 30 s, default stale bound) runs all along: it must not be
what deletes these PTs (the run's own layers are faster), and it must never delete a live one.

Each row runs once per module (~45 s each on the 2-core CI machine); the tests read its outcome.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from bench import leak

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.machines, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = leak.open_lab(tmp_path_factory.mktemp("worker-loss"), server=True, sweep_every_s=30.0)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def outcome(lab):
    done: dict[str, leak.Outcome] = {}

    def get(row: str) -> leak.Outcome:
        if row not in done:
            done[row] = leak.run_row(lab, row)
            print(leak.table([done[row]]) + "\n" + leak.details([done[row]]))
        return done[row]

    return get


def _explain(o: leak.Outcome) -> str:
    return leak.table([o]) + "\n" + leak.details([o])


def _assert_no_leak_within_target(o: leak.Outcome) -> None:
    assert o.pt, _explain(o)
    assert o.leaked == [], _explain(o)
    assert o.pt_s_after_kill is not None and o.pt_s_after_kill <= leak.TARGET_S, _explain(o)
    # the default max_hours was in force: the PT's last net was still ~2 h away when it was deleted
    expires = datetime.fromisoformat(o.expires_at.replace("Z", "+00:00")).timestamp()
    assert expires - o.pt_deleted_real >= 0.9 * leak.default_max_hours() * 3600, _explain(o)


def test_the_benchmark_uses_the_default_max_hours():
    assert leak.default_max_hours() >= 1.0
    assert leak.leak_config("x")["serving"]["max_hours"] == leak.default_max_hours()


def test_sigterm_of_the_process_worker(lab, outcome):
    """The worker answers SIGTERM by SIGKILLing its flow-run process at once (anyio closes the process it was
    awaiting): no finally, no hook; the watchdog deletes the PT and marks the manifest interrupted."""
    o = outcome("worker-term")
    _assert_no_leak_within_target(o)
    # two truthful endings, depending on where the worker is when SIGTERM lands (both seen on this machine):
    # it SIGKILLs its flow-run process (the watchdog deletes the PT, manifest interrupted), or it lets the run
    # finish (its own finally deletes the PT, manifest succeeded)
    if o.deleted_by == "watchdog":
        assert o.manifest_status == "interrupted", _explain(o)
        assert any("SIGKILL" in s for s in o.signals), _explain(o)
    else:
        assert o.deleted_by.startswith("finally"), _explain(o)
        leak.settle_flow_states(lab.api, [o])
        assert o.manifest_final == "succeeded" and o.flow_state_final == "Completed", _explain(o)


def test_sigkill_of_forge_run_is_cleaned_by_its_watchdog(outcome):
    """(The whole process group variant is the fault matrix's `sigkill` row: tests/flows/test_fault_matrix.py.)"""
    o = outcome("forge-run-kill")
    _assert_no_leak_within_target(o)
    assert o.deleted_by == "watchdog", _explain(o)
    assert o.manifest_status == "interrupted", _explain(o)


def test_sigkill_of_the_process_worker(lab, outcome):
    """The flow-run process is in its own session and its output is not piped through the worker
    (`stream_output: false`, set by forge deploy): it outlives the worker and FINISHES its run, tearing down in its
    own finally — never the sweep. "succeeded" is the truth then: the run completed and nothing is left alive."""
    o = outcome("worker-kill")
    _assert_no_leak_within_target(o)
    assert not o.deleted_by.startswith("sweep"), _explain(o)
    leak.settle_flow_states(lab.api, [o])    # the surviving run may still be finishing when the row ends
    assert o.manifest_final in ("succeeded", "failed", "interrupted"), _explain(o)


def test_prefect_does_not_leave_the_killed_run_running(lab, outcome):
    """`forge deploy`'s zombie automation ends a run whose process was killed Crashed within the zombie bound."""
    o = outcome("worker-term")
    leak.settle_flow_states(lab.api, [o])
    if o.deleted_by != "watchdog":   # the worker let the run finish (see above): nothing to detect
        assert o.flow_state_final == "Completed" and o.manifest_final == "succeeded", _explain(o)
        return
    assert o.flow_state_final in ("Crashed", "Failed"), _explain(o)
    assert o.flow_marked_s is not None and o.flow_marked_s <= leak.zombie_bound_s(), _explain(o)
    assert o.manifest_final in ("failed", "interrupted"), _explain(o)   # agrees with Prefect, never "succeeded"


def test_a_run_that_outlived_its_worker_ends_with_prefect_and_the_manifest_agreeing(lab, outcome):
    o = outcome("worker-kill")
    leak.settle_flow_states(lab.api, [o])
    assert o.flow_state_final in ("Completed", "Crashed", "Failed"), _explain(o)   # never left Running
    assert (o.flow_state_final == "Completed") == (o.manifest_final == "succeeded"), _explain(o)


def test_sigkill_of_forge_run_leaves_no_process_behind(outcome):
    """The temporary Prefect server runs in its own session (Ctrl-C must not reach it) but dies with `forge run`
    (PR_SET_PDEATHSIG, forge/commands/run.py); the watchdog exits once it has deleted the PT."""
    o = outcome("forge-run-kill")
    assert o.survivors == [], _explain(o)
