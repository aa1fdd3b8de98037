"""docker/forge-init, the containers' PID 1, on the host (no Docker needed: it makes itself a child subreaper).

Its promises: COMMAND's exit status is its own; the stop signals reach COMMAND; what COMMAND leaves behind (a flow
run's watchdog, orphaned when the worker kills its flow-run process) is waited for before it exits — the drain that
keeps a stopped worker container alive until the watchdog has deleted the provisioned throughput — and for at most
FORGE_DRAIN_SECONDS, after which the leftovers are killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

INIT = REPO_ROOT / "docker" / "forge-init"
PY = sys.executable


def _start(*cmd: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, str(INIT), *cmd], env={**os.environ, **(env or {})}, stderr=subprocess.PIPE,
                            text=True)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.05)
    return path.read_text().strip()


# a child that starts a detached grandchild (its own session, like the watchdog), writes the grandchild's pid,
# and exits at once; the grandchild sleeps SECONDS, then writes "done"
ORPHAN = """
import subprocess, sys
pid_file, done_file, seconds = sys.argv[1], sys.argv[2], sys.argv[3]
g = subprocess.Popen([sys.executable, "-c",
    f"import time; time.sleep({seconds}); open({done_file!r}, 'w').write('done')"], start_new_session=True)
open(pid_file, "w").write(str(g.pid))
"""


@pytest.mark.parametrize("code", [0, 7])
def test_the_exit_status_is_the_commands(code):
    p = _start(PY, "-c", f"import sys; sys.exit({code})")
    assert p.wait(timeout=30) == code


def test_a_command_ended_by_a_signal_exits_128_plus_it():
    p = _start(PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert p.wait(timeout=30) == 128 + signal.SIGKILL


def test_sigterm_is_forwarded_to_the_command(tmp_path):
    marker = tmp_path / "got"
    code = ("import signal, sys, time\n"
            f"def h(s, f): open({str(marker)!r}, 'w').write(str(s)); sys.exit(3)\n"
            "signal.signal(signal.SIGTERM, h)\n"
            f"open({str(tmp_path / 'ready')!r}, 'w').write('1')\n"
            "time.sleep(60)\n")
    p = _start(PY, "-c", code)
    _wait_for(tmp_path / "ready")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 3
    assert marker.read_text() == str(int(signal.SIGTERM))


def test_what_the_command_left_is_waited_for_before_exiting(tmp_path):
    """The worker's SIGTERM case: the command is gone, its orphan (the watchdog) still has work to finish."""
    pid_file, done = tmp_path / "pid", tmp_path / "done"
    t0 = time.monotonic()
    p = _start(PY, "-c", ORPHAN, str(pid_file), str(done), "1.5", env={"FORGE_DRAIN_SECONDS": "30"})
    assert p.wait(timeout=60) == 0
    took = time.monotonic() - t0
    assert done.read_text() == "done", "forge-init exited before the orphan finished"
    assert took >= 1.5
    _, err = p.communicate()
    assert "every process it left has exited" in err, err
    assert not _alive(int(pid_file.read_text())), "the orphan was not reaped"


def test_the_drain_is_bounded_and_kills_what_is_left(tmp_path):
    pid_file, done = tmp_path / "pid", tmp_path / "done"
    p = _start(PY, "-c", ORPHAN, str(pid_file), str(done), "60", env={"FORGE_DRAIN_SECONDS": "1"})
    assert p.wait(timeout=30) == 0
    _, err = p.communicate()
    orphan = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(orphan), "the orphan outlived the drain budget"
    assert "killing" in err and not done.exists(), err


def test_no_drain_message_when_nothing_was_left():
    p = _start(PY, "-c", "pass")
    assert p.wait(timeout=30) == 0
    _, err = p.communicate()
    assert "waiting" not in err, err


def test_a_bad_budget_falls_back_to_the_default_and_says_so(tmp_path):
    pid_file, done = tmp_path / "pid", tmp_path / "done"
    p = _start(PY, "-c", ORPHAN, str(pid_file), str(done), "0.5", env={"FORGE_DRAIN_SECONDS": "soon"})
    assert p.wait(timeout=60) == 0
    _, err = p.communicate()
    assert "FORGE_DRAIN_SECONDS='soon' is not a number: using 60" in err, err
    assert done.read_text() == "done"


def test_a_missing_command_is_127_and_no_command_is_2():
    assert _start("/nonexistent/forge-command").wait(timeout=30) == 127
    assert _start().wait(timeout=30) == 2
