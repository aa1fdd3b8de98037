"""Where prepare writes (tasks/data/outputs.py): an output folder holding the input is refused, the splits
are published as one set, nothing is left behind on any error (ENOSPC included), and the temporary
folders of killed runs are swept, only when old and owned by no live process."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tasks.data.outputs as outputs
import tasks.data.preparation as tp
from tasks.config import PipelineConfig
from tasks.data.problems import DataValidationError

TITAN = "amazon.titan-text-express-v1:0:8k"


def cfg(src: Path, **split) -> PipelineConfig:
    data: dict = {"source": str(src)}
    if split:
        data["split"] = split
    return PipelineConfig.model_validate({"name": "o", "base_model": TITAN, "data": data})


def pc_file(path: Path, n: int = 200, word: str = "question") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": f"{word} number {i} about things", "completion": f"c{i % 4}"})
                            + "\n" for i in range(n)), encoding="utf-8")
    return path


def leftovers(*folders: Path) -> list[str]:
    """Temporary names prepare may create, in the given folders."""
    return sorted(e.name for f in folders if f.exists() for e in f.iterdir()
                  if ".prepare-" in e.name or e.name.endswith(".tmp"))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- the input is never inside the output -------------------------------------------------------------------
def test_out_holding_its_input_is_refused_and_the_input_is_untouched(tmp_path):
    src = pc_file(tmp_path / "d" / "train.jsonl")
    before = src.read_bytes()
    with pytest.raises(DataValidationError) as info:
        tp.prepare(cfg(src), tmp_path / "d")
    p = info.value.problems[0]
    assert (p.file, p.field) == (str(src), "out") and "inside the output folder" in p.message
    assert src.read_bytes() == before and sorted(e.name for e in (tmp_path / "d").iterdir()) == ["train.jsonl"]


def test_split_1_0_0_on_validation_jsonl_in_the_out_folder_is_refused(tmp_path):
    src = pc_file(tmp_path / "d" / "validation.jsonl")
    with pytest.raises(DataValidationError, match="inside the output folder"):
        tp.prepare(cfg(src, train=1.0, validation=0.0, test=0.0), tmp_path / "d")
    assert src.exists()


def test_out_holding_the_input_deeper_or_through_a_symlink_is_refused(tmp_path):
    src = pc_file(tmp_path / "d" / "raw" / "x.jsonl")
    (tmp_path / "link").symlink_to(tmp_path / "d")
    for out in (tmp_path / "d", tmp_path / "link"):
        with pytest.raises(DataValidationError, match="inside the output folder"):
            tp.prepare(cfg(src), out)
    assert src.exists()


# --- one set, published with one rename ----------------------------------------------------------------------
def test_splits_are_published_with_one_rename_then_one_exchange(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    real_rename, real_exchange = os.rename, outputs._exchange

    def rename(a, b):
        calls.append(("rename", Path(b).name))
        return real_rename(a, b)

    def exchange(a, b):
        calls.append(("exchange", Path(b).name))
        return real_exchange(a, b)

    monkeypatch.setattr(outputs.os, "rename", rename)
    monkeypatch.setattr(outputs, "_exchange", exchange)
    out = tmp_path / "out"
    first = tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    assert calls == [("rename", "out")]                                # absent output folder: one rename
    calls.clear()
    second = tp.prepare(cfg(pc_file(tmp_path / "b.jsonl", word="other")), out)
    assert calls == [("rename", "out"), ("exchange", "out")]           # refused (not empty), then one swap
    assert first.train.sha256 != second.train.sha256
    assert Path(second.train.path).read_bytes().count(b"other") == second.train.records
    assert sorted(e.name for e in out.iterdir()) == ["report.json", "test.jsonl", "train.jsonl", "validation.jsonl"]
    assert leftovers(tmp_path, out) == []
    report = json.loads(Path(second.report_path).read_text())
    assert report["files"]["train"]["path"] == str(out.resolve() / "train.jsonl") == second.train.path


def test_an_empty_split_now_removes_the_old_split_file(tmp_path):
    out = tmp_path / "out"
    tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    assert (out / "validation.jsonl").exists()
    p = tp.prepare(cfg(pc_file(tmp_path / "a.jsonl"), train=0.9, validation=0.0, test=0.1), out)
    assert p.validation is None and not (out / "validation.jsonl").exists()


def test_out_with_other_files_keeps_them(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    p = tp.prepare(cfg(pc_file(tmp_path / "a.jsonl"), train=0.9, validation=0.0, test=0.1), out)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(e.name for e in out.iterdir()) == ["notes.txt", "report.json", "test.jsonl", "train.jsonl"]
    assert p.validation is None and leftovers(tmp_path, out) == []


def test_a_refused_run_leaves_the_previous_set_as_it_was(tmp_path):
    out = tmp_path / "out"
    good = tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    before = {e.name: e.read_bytes() for e in out.iterdir()}
    bad = pc_file(tmp_path / "bad.jsonl")
    bad.write_text(bad.read_text() + '{"prompt": "", "completion": "x"}\n')
    with pytest.raises(DataValidationError):
        tp.prepare(cfg(bad), out)
    assert {e.name: e.read_bytes() for e in out.iterdir()} == before and good.train.path
    assert leftovers(tmp_path, out) == []


@pytest.mark.parametrize("where", ["emit", "report"])
def test_enospc_removes_every_temporary_file(tmp_path, monkeypatch, where):
    out = tmp_path / "out"
    tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    before = {e.name: e.read_bytes() for e in out.iterdir()}
    full = OSError(errno.ENOSPC, "No space left on device")
    if where == "emit":
        n = {"calls": 0}
        real = tp._SplitWriter.emit

        def emit(self, *a, **kw):
            n["calls"] += 1
            if n["calls"] > 1:
                raise full
            return real(self, *a, **kw)

        monkeypatch.setattr(tp._SplitWriter, "emit", emit)
    else:
        monkeypatch.setattr(tp, "_report", lambda *a, **kw: (_ for _ in ()).throw(full))
    with pytest.raises(OSError) as info:
        tp.prepare(cfg(pc_file(tmp_path / "b.jsonl", word="other")), out)
    assert info.value.errno == errno.ENOSPC
    assert {e.name: e.read_bytes() for e in out.iterdir()} == before
    assert leftovers(tmp_path, out) == []


def test_enospc_in_a_folder_with_other_files_leaves_nothing_either(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(tp._SplitWriter, "emit", lambda *a, **kw: (_ for _ in ()).throw(OSError(errno.ENOSPC, "x")))
    with pytest.raises(OSError):
        tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    assert sorted(e.name for e in out.iterdir()) == ["notes.txt"]


# --- killed runs are swept at start ---------------------------------------------------------------------------
def _aged(p: Path, seconds: float) -> Path:
    t = time.time() - seconds
    os.utime(p, (t, t))
    return p


def test_stale_work_folders_of_dead_processes_are_swept_only(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead, old = dead_pid(), outputs.STALE_AFTER_S + 60
    stale = _aged(_mk(tmp_path / f".out.prepare-{dead}-deadbeef"), old)
    stale_inside = _aged(_mk(out / f".prepare-{dead}-0badf00d"), old)
    live = _aged(_mk(tmp_path / f".out.prepare-{os.getpid()}-00000001"), old)      # a live process's
    recent = _mk(tmp_path / f".out.prepare-{dead}-00000002")                       # dead, but recent
    legacy_old = _aged(_mk(out / ".prepare-keys-abc123"), outputs.LEGACY_STALE_AFTER_S + 60)
    legacy_new = _aged(_mk(out / ".prepare-keys-def456"), old)
    (out / ".train.x1y2.tmp").write_text("half")
    tmp_old = _aged(out / ".train.x1y2.tmp", outputs.LEGACY_STALE_AFTER_S + 60)
    other = _aged(_mk(tmp_path / f".other.prepare-{dead}-deadbeef"), old)         # another output folder's
    removed = outputs.sweep(out.resolve())
    assert {p.name for p in removed} == {stale.name, stale_inside.name, legacy_old.name, tmp_old.name}
    for p in (live, recent, legacy_new, other):
        assert p.exists()
    for p in (stale, stale_inside, legacy_old, tmp_old):
        assert not p.exists()


def test_prepare_sweeps_at_start(tmp_path):
    out = tmp_path / "out"
    stale = _mk(tmp_path / f".out.prepare-{dead_pid()}-deadbeef")
    (stale / "train.jsonl").write_text("half")
    _aged(stale, outputs.STALE_AFTER_S + 60)
    tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    assert not stale.exists() and leftovers(tmp_path, out) == []


def _mk(p: Path) -> Path:
    p.mkdir()
    return p


def test_out_that_is_a_file_is_a_located_problem(tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    with pytest.raises(DataValidationError, match="is a file, not a folder"):
        tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), f)


def test_a_mount_point_out_gets_the_work_folder_inside_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(outputs.os.path, "ismount", lambda p: Path(p) == out.resolve() or real(p))
    renamed: list[str] = []
    real_rename = os.rename
    monkeypatch.setattr(outputs.os, "rename", lambda a, b: renamed.append(str(b)) or real_rename(a, b))
    p = tp.prepare(cfg(pc_file(tmp_path / "a.jsonl")), out)
    assert renamed == []                                   # never a rename onto the mount point
    assert sorted(e.name for e in out.iterdir()) == ["report.json", "test.jsonl", "train.jsonl", "validation.jsonl"]
    assert Path(p.train.path).parent == out.resolve() and leftovers(tmp_path, out) == []
