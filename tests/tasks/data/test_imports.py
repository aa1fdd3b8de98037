"""The data verbs start fast: tasks.data / tasks.config never import Prefect, and tasks.config never imports
tasks.data (no import cycle). Each check runs in a fresh interpreter and reads its ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

DATA_MODULES = ["tasks.data.problems", "tasks.data.readers", "tasks.data.rules", "tasks.data.scanner",
                "tasks.data.formats", "tasks.data.keys", "tasks.data.fingerprints", "tasks.data.validate",
                "tasks.data.preparation"]


def _modules_after(code: str) -> list[str]:
    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", DATA_MODULES)
def test_data_modules_do_not_import_prefect(module):
    mods = _modules_after(f"import {module}")
    assert not [m for m in mods if m.split(".")[0] == "prefect"]


def test_config_does_not_import_tasks_data_or_prefect():
    mods = _modules_after("import tasks.config, tasks.config.checks, tasks.config.yaml_lines, tasks.config.problems")
    assert not [m for m in mods if m.startswith("tasks.data") or m.split(".")[0] == "prefect"]


def test_forge_validate_and_prepare_do_not_import_prefect(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"question {i}?", "completion": "yes" if i % 2 else "no"}) + "\n"
                           for i in range(40)), encoding="utf-8")
    model = "amazon.titan-text-express-v1:0:8k"
    for argv in (["validate", str(src), "--base-model", model],
                 ["prepare", str(src), "--base-model", model, "--out", str(tmp_path / "out")]):
        mods = _modules_after(f"from forge.cli import main\nrc = main({argv!r})\nassert rc == 0, rc")
        assert not [m for m in mods if m.split(".")[0] == "prefect"], argv
    assert (tmp_path / "out" / "train.jsonl").is_file()
