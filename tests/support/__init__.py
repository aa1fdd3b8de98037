"""Helpers the tests share, imported normally (``from tests.support import ...``); fixtures are in
``tests/conftest.py``. Tests never import each other."""

from __future__ import annotations

from pathlib import Path

from scenarios.harness import DUMMY_ENV  # noqa: F401 - dummy credentials, one definition for tests and scenarios

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DATA = REPO_ROOT / "tests" / "data"      # the good/bad input corpus


def shared_dir() -> Path | None:
    """The workspace's shared/ folder (real public datasets), beside the repo; None when absent."""
    for cand in (REPO_ROOT.parent / "shared", Path("/work/shared")):
        if (cand / "datasets").is_dir():
            return cand
    return None
