"""Where ``prepare`` writes: a work folder published as one set, never a half-written or clobbered output.

- ``check_out(source, out)``: an output folder that holds the input is refused (``forge prepare
  DIR/train.jsonl --out DIR`` would overwrite its input; ``--split 1,0,0`` on ``DIR/validation.jsonl``
  would delete it).
- ``WorkDir.start(out)``: every file of a run (split files, report.json, the on-disk keys, a downloaded
  S3 source) goes into one work folder named ``.<out>.prepare-<pid>-<token>`` next to the output folder.
  ``publish()`` makes it the output folder with **one rename**: ``rename(2)`` when the output folder does
  not exist or is empty, else Linux ``renameat2(RENAME_EXCHANGE)`` (one atomic swap, the old set then
  removed; where it is unsupported, the old folder is renamed aside first: a reader sees the old set, no
  folder, or the new set, never a mix). An output folder holding files prepare did not write, one that is a
  mount point (a container volume), or one whose parent is not writable gets the work folder inside it and
  each file renamed into place, report.json last.
  ``discard()`` (every error path, ENOSPC included) removes the work folder.
- ``sweep(out)``: work folders of killed runs are removed at start, only when older than ``STALE_AFTER_S``
  and their pid (in the name) is not a live process; ``.prepare-keys-*`` folders of older versions
  (no pid in the name) after ``LEGACY_STALE_AFTER_S``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from tasks.data.problems import DataValidationError, Problem

OUTPUT_NAMES = ("train.jsonl", "validation.jsonl", "test.jsonl", "report.json")
OURS = frozenset(OUTPUT_NAMES) | {".source"}       # what a previous prepare leaves in its output folder
STALE_AFTER_S = 3600                                # a work folder this old whose pid is gone is swept
LEGACY_STALE_AFTER_S = 24 * 3600                    # .prepare-keys-* / .train.*.tmp of versions with no pid

_WORK_RE = re.compile(r"\.prepare-(\d+)-[0-9a-f]{8}$")
_LEGACY_RE = re.compile(r"\.prepare-keys-\w+$|\.(train|validation|test)\.\w+\.tmp$")
_RENAME_EXCHANGE = 2                                # linux/fs.h


def check_out(source: str, out: Path) -> None:
    """``DataValidationError`` when the output folder is, or contains, the input file."""
    if source.startswith("s3://"):
        return
    try:
        src = Path(source).resolve()
        dst = out.resolve()
    except (OSError, RuntimeError):      # a symlink loop: the reader reports the source
        return
    if src == dst or src.is_relative_to(dst):
        raise DataValidationError([Problem(
            file=source, field="out",
            message=f"is inside the output folder {out}: preparing would overwrite or delete it",
            fix="write the output to another folder (forge prepare --out NEW_DIR), or move the data out of it")])


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:              # another user's live process
        return True
    except OSError:                      # pragma: no cover - pid out of range and the like
        return False
    return True


def _stale(entry: Path, now: float) -> bool:
    try:
        age = now - entry.lstat().st_mtime
    except OSError:
        return False
    m = _WORK_RE.search(entry.name)
    if m:
        return age > STALE_AFTER_S and not _alive(int(m.group(1)))
    return bool(_LEGACY_RE.fullmatch(entry.name)) and age > LEGACY_STALE_AFTER_S


def sweep(out: Path) -> list[Path]:
    """Remove work folders and temporary files of killed runs of this output folder; returns them."""
    now = time.time()
    removed: list[Path] = []
    places = [(out.parent, f".{out.name}.prepare-"), (out, ".prepare-"), (out, ".train."), (out, ".validation."),
              (out, ".test.")]
    for folder, prefix in places:
        try:
            entries = [e for e in folder.iterdir() if e.name.startswith(prefix)]
        except OSError:
            continue
        for e in entries:
            if _stale(e, now):
                _remove(e)
                removed.append(e)
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


class WorkDir:
    """One run's work folder and how it is published (see the module docstring)."""

    def __init__(self, out: Path, path: Path, whole: bool):
        self.out, self.path, self.whole = out, path, whole
        self.published = False

    @classmethod
    def start(cls, out: Path) -> WorkDir:
        out = out.resolve()
        sweep(out)
        foreign = _foreign(out)
        name = f"prepare-{os.getpid()}-{secrets.token_hex(4)}"
        if not foreign and not _own_filesystem(out):
            path = out.parent / f".{out.name}.{name}"
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(path)
                return cls(out, path, whole=True)
            except PermissionError:
                pass                      # the parent is not writable: work inside the output folder
        out.mkdir(parents=True, exist_ok=True)
        path = out / f".{name}"
        os.mkdir(path)
        return cls(out, path, whole=False)

    def publish(self) -> None:
        """The work folder's outputs become the output folder's (one rename when ``whole``)."""
        src = self.path / ".source"
        if src.exists():
            shutil.rmtree(src, ignore_errors=True)
        if self.whole:
            self._publish_whole()
        else:
            self._publish_files()
        self.published = True

    def _publish_whole(self) -> None:
        try:
            os.rename(self.path, self.out)         # the output folder is absent or empty: one atomic rename
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if _exchange(self.path, self.out):         # one atomic swap; self.path now holds the old set
            shutil.rmtree(self.path, ignore_errors=True)
            return
        old = self.out.parent / f".{self.out.name}.prepare-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(self.out, old)                   # pragma: no cover - kernels without renameat2
        os.rename(self.path, self.out)             # pragma: no cover
        shutil.rmtree(old, ignore_errors=True)     # pragma: no cover

    def _publish_files(self) -> None:
        for name in OUTPUT_NAMES:                  # report.json last: it names the files above it
            new, final = self.path / name, self.out / name
            if new.exists():
                os.replace(new, final)
            elif final.exists():
                final.unlink()                     # an empty validation/test split: the old file goes too
        shutil.rmtree(self.path, ignore_errors=True)

    def discard(self) -> None:
        if not self.published:
            shutil.rmtree(self.path, ignore_errors=True)


def _own_filesystem(out: Path) -> bool:
    """An existing output folder that is a mount point (a container volume) or on another filesystem than
    its parent: a folder cannot be renamed onto it, so the work folder goes inside it."""
    try:
        return os.path.ismount(out) or out.stat().st_dev != out.parent.stat().st_dev
    except OSError:
        return False


def _foreign(out: Path) -> list[str]:
    """Entries of an existing output folder that prepare did not write ([] for a missing folder)."""
    try:
        names = [e.name for e in out.iterdir()]
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise DataValidationError([Problem(file=str(out), field="out", message="is a file, not a folder",
                                           fix="pass a folder for the output (it is created if missing)")]) from None
    return [n for n in names if n not in OURS and not _WORK_RE.search(n) and not _LEGACY_RE.fullmatch(n)]
