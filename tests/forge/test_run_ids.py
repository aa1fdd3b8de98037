"""A RUN_ID is a name, never a path (issue 16): `forge rerun`, `forge status`, `forge evaluate` and the flow's
``run_id`` parameter refuse one that would read or write outside ``--runs-dir``, with exit 2 and what a run id
looks like — and touch nothing outside it."""

from __future__ import annotations

import json

import pytest

from forge.cli import main
from tasks.run.manifest import Manifest
from tasks.run.names import InvalidRunId

HOSTILE = ["../outside", "/etc", "a/../../b", "..", "C:\\x", "x/y", "run\x00id"]


@pytest.fixture
def outside(tmp_path):
    """A run folder outside --runs-dir that a path-shaped RUN_ID would reach."""
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "manifest.json").write_text(json.dumps({"run_id": "outside", "status": "failed", "config": {}}))
    runs = tmp_path / "runs"
    runs.mkdir()
    return runs, victim


@pytest.mark.parametrize("verb", ["status", "rerun", "evaluate"])
@pytest.mark.parametrize("run_id", HOSTILE)
def test_a_path_as_run_id_is_refused_with_exit_2(verb, run_id, outside, capsys):
    runs, victim = outside
    before = sorted(p.name for p in victim.parent.rglob("*"))
    code = main([verb, run_id, "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2
    assert "run id" in err.lower() and "Traceback" not in err
    assert sorted(p.name for p in victim.parent.rglob("*")) == before, "nothing written anywhere"


@pytest.mark.parametrize("run_id", HOSTILE)
def test_the_manifest_refuses_a_path_whoever_calls_it(run_id, outside):
    runs, _ = outside
    with pytest.raises(InvalidRunId):
        Manifest.find(runs, run_id)
    with pytest.raises(InvalidRunId):
        Manifest.create(runs, run_id, {})


def test_a_real_run_id_still_works(tmp_path):
    m = Manifest.create(tmp_path, "banking77-20261202-010203-ab12", {"name": "banking77"})
    assert Manifest.find(tmp_path, m.run_id).run_id == m.run_id
