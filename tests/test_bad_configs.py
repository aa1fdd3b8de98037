"""The bad-config corpus (issue 16): tests/data/bad/configs/*.yaml, each with its expected located message in
a first-line header ``# expect: FILE[:LINE]: field: message``.

Every file through ``forge validate`` in-process (exit 2, the message printed, no traceback, no AWS call at all);
a sample through ``forge validate`` and ``forge run`` as subprocesses (``forge run`` against a private emulator
whose ledger must show 0 mutating calls, and no run folder left behind); and, for every file whose YAML is
well-formed, the same problems from ``parse_config`` on the parsed dict (a Prefect deployment's parameters) as
from the YAML loader: one validation path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import DUMMY_ENV, REPO_ROOT, TEST_DATA

CONFIGS = TEST_DATA / "bad" / "configs"
FILES = sorted(CONFIGS.glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    assert first.startswith("# expect: "), f"{path.name}: the first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


@pytest.fixture
def no_aws(monkeypatch):
    """Any botocore API call fails the test: a refused config makes 0 AWS calls, mutating or not."""
    import botocore.client

    def refuse(self, operation_name, api_params):  # pragma: no cover - only runs on a regression
        raise AssertionError(f"a bad config made an AWS call: {operation_name}")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse)


def test_corpus_is_big_and_covers_every_config_class():
    assert len(FILES) >= 90
    classes = {p.name.split("_", 2)[0] + ("_" + p.name.split("_")[1] if p.name.startswith("iam_") else "")
               for p in FILES}
    for needed in ("iam_lambda", "iam_teacher", "iam_kms", "iam_prefix", "iam_bucket", "iam_role", "tags", "yaml",
                   "num", "rule"):
        assert needed in classes, f"no bad config of class {needed}"
    located = [p for p in FILES if expectation(p).split(": ", 1)[0].startswith(f"{p.name}:")]
    assert len(located) >= 0.9 * len(FILES), "almost every expectation names its line"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_forge_validate_refuses_each_bad_config_with_its_located_message(path, capsys, no_aws):
    from forge.cli import main

    rc = main(["validate", str(path)])
    captured = capsys.readouterr()
    out = captured.out.replace(str(path), path.name)
    assert rc == 2, out
    assert expectation(path) in out, out
    for bad in ("Traceback", "internal error", "Error:"):
        assert bad not in captured.out + captured.err


WELL_FORMED = [p for p in FILES if not p.name.startswith("yaml_")]


@pytest.mark.parametrize("path", WELL_FORMED, ids=[p.stem for p in WELL_FORMED])
def test_the_same_dict_as_parameters_gets_the_same_problems(path):
    """A deployment passes the config as a dict: parse_config must refuse it with the same messages."""
    from tasks.config import ConfigError, load_config, parse_config

    with pytest.raises(ConfigError) as from_file:
        load_config(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    with pytest.raises(ConfigError) as from_dict:
        parse_config(raw, source="params")

    def messages(problems: list[str], prefix: str) -> set[str]:
        """``field: message`` of each ``PREFIX[:LINE]: field: message`` line."""
        assert all(p.startswith(prefix + ":") for p in problems), problems
        return {p.removeprefix(prefix).split(": ", 1)[1] for p in problems}

    assert messages(from_dict.value.problems, "params") == messages(from_file.value.problems, str(path))


SAMPLE = [CONFIGS / f"{n}.yaml" for n in ("iam_lambda_0", "iam_teacher_0", "iam_kms_0", "iam_prefix_0",
                                          "yaml_duplicate_serving", "yaml_deep_flow_20k", "yaml_int_5000_digits",
                                          "num_serving_max_hours_3", "rule_commitment_no_opt_in", "tags_0")]


def _forge(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, **DUMMY_ENV}
    return subprocess.run([sys.executable, "-m", "forge.cli", *argv], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("path", SAMPLE, ids=[p.stem for p in SAMPLE])
def test_forge_validate_as_a_command(path):
    out = _forge("validate", str(path))
    assert out.returncode == 2, out.stdout + out.stderr
    assert expectation(path) in out.stdout.replace(str(path), path.name)
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout


def test_forge_run_refuses_the_sample_before_any_mutating_call(fresh_emulator, tmp_path):
    runs = tmp_path / "runs"
    before = len(fresh_emulator.ledger()["calls"])
    for path in SAMPLE:
        out = _forge("run", str(path), "--endpoint", fresh_emulator.url, "--runs-dir", str(runs))
        assert out.returncode == 2, (path.name, out.stdout[-2000:], out.stderr[-2000:])
        assert expectation(path) in out.stderr.replace(str(path), path.name), out.stderr
        assert "Traceback" not in out.stderr + out.stdout
    new = fresh_emulator.ledger()["calls"][before:]
    assert [c["operation"] for c in new if c["mutating"]] == []
    assert not runs.exists() or not any(runs.iterdir()), "nothing half-created under --runs-dir"
