"""`forge validate` / `forge prepare` through forge.cli.main: exit codes, located messages, the bad-input corpus.

The corpus lives in tests/data/bad/ with tests/data/bad/expectations.yaml; files too big to commit are
written at test time by ``GENERATORS``. Every corpus file must give exit 2, the expected located line,
and no AWS call (botocore's request path is made to fail the test if anything reaches it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from forge.cli import main
from tests.support import REPO_ROOT, TEST_DATA, shared_dir

DATA = TEST_DATA
BAD = DATA / "bad"
GOOD = DATA / "good"
BANKING77 = (shared_dir() or Path("/nonexistent")) / "datasets/banking77/train.csv"
EXPECTATIONS = yaml.safe_load((BAD / "expectations.yaml").read_text(encoding="utf-8"))


def _jl(records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _pc(i: int) -> dict:
    return {"prompt": f"question {i}", "completion": f"answer {i}"}


def _haiku(i: int, user: str | None = None) -> dict:
    return {"messages": [{"role": "user", "content": user or f"question {i}"},
                         {"role": "assistant", "content": "x" if user else f"answer {i}"}]}


def _nova(i: int) -> dict:
    return {"schemaVersion": "bedrock-conversation-2024",
            "messages": [{"role": "user", "content": [{"text": f"question {i}"}]},
                         {"role": "assistant", "content": [{"text": f"answer {i}"}]}]}


def _parquet(path: Path) -> None:
    import pandas as pd

    pd.DataFrame({"prompt": ["a", "b"], "answer": ["x", "y"]}).to_parquet(path)


GENERATORS = {
    "enormous_line": lambda p: p.write_text(_jl([_pc(0)]) + json.dumps({"prompt": "x" * 9_000_000,
                                                                        "completion": "y"}) + "\n"),
    "parquet_missing_column": _parquet,
    "titan_too_long": lambda p: p.write_text(_jl([{"prompt": "w" * 29_999, "completion": "x"}])),
    "llama31_too_long": lambda p: p.write_text(_jl([_pc(0), {"prompt": "w" * 119_999, "completion": "x"}])),
    "llama31_too_many": lambda p: p.write_text(_jl(_pc(i) for i in range(10_001))),
    "haiku_validation_too_many": lambda p: p.write_text(_jl(_haiku(i) for i in range(1_001))),
    "haiku_too_long": lambda p: p.write_text(_jl([*(_haiku(i) for i in range(32)), _haiku(0, user="w" * 100_001)])),
    "nova_too_many": lambda p: p.write_text(_jl(_nova(i) for i in range(20_001))),
}


@pytest.fixture
def no_aws(monkeypatch):
    """Any botocore API call fails the test: validation must make 0 AWS calls."""
    import botocore.client

    def refuse(self, operation_name, api_params):  # pragma: no cover - only runs on a regression
        raise AssertionError(f"validation made an AWS call: {operation_name}")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse)


def test_corpus_is_big_enough():
    files = {e["file"] for e in EXPECTATIONS}
    assert len(files) >= 40
    # files only: tests/data/bad/data/ (data corpus, issue 16) and tests/data/bad/configs/ have their own lists
    on_disk = {p.name for p in BAD.iterdir() if p.is_file() and p.name != "expectations.yaml"}
    generated = {e["file"] for e in EXPECTATIONS if e.get("generate")}
    assert on_disk == files - generated, "every corpus file has an expectation and vice versa"
    types = {e["type"] for e in EXPECTATIONS if not e.get("config")}
    assert types == {"fine-tuning", "continued-pretraining", "distillation", "reinforcement"}
    assert sum(1 for e in EXPECTATIONS if e.get("config")) >= 10    # configs: hyperparameters, names, region ...


@pytest.mark.parametrize("case", EXPECTATIONS, ids=[e["file"] for e in EXPECTATIONS])
def test_bad_corpus_file_is_rejected_with_located_message(case, tmp_path, capsys, no_aws):
    if case.get("generate"):
        path = tmp_path / case["file"]
        GENERATORS[case["generate"]](path)
    else:
        path = BAD / case["file"]
    if case.get("config"):
        argv = ["validate", str(path)]
    else:
        argv = ["validate", str(path), "--base-model", case["base_model"], "--type", case["type"]]
    if case.get("columns"):
        argv += ["--columns", case["columns"]]
    if case.get("role"):
        argv += ["--role", case["role"]]
    if case.get("teacher"):
        argv += ["--teacher", case["teacher"]]
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 2, out
    assert case["expect"] in out, out
    assert "Traceback" not in out
    last = out.rstrip().splitlines()[-1]                          # the summary line closes the output
    assert "problem(s) in" in last and ("config" in last if case.get("config") else last.endswith("record(s)"))


# ---------------------------------------------------------------------------------------------
# valid files
# ---------------------------------------------------------------------------------------------
GOOD_CASES = [
    ("titan_pc.jsonl", "amazon.titan-text-express-v1:0:8k", "fine-tuning", None),
    ("haiku_messages.jsonl", "anthropic.claude-3-haiku-20240307-v1:0:200k", "fine-tuning", None),
    ("nova_conversation.jsonl", "amazon.nova-micro-v1:0:128k", "fine-tuning", None),
    ("raw_intents.csv", "amazon.nova-micro-v1:0:128k", "fine-tuning", "prompt=text,completion=category"),
    ("raw_intents.csv", "anthropic.claude-3-haiku-20240307-v1:0:200k", "fine-tuning",
     "prompt=text,completion=category"),
    ("raw_intents.csv", "meta.llama3-1-8b-instruct-v1:0:128k", "fine-tuning", "prompt=text,completion=category"),
    ("cpt_text.jsonl", "amazon.titan-text-lite-v1:0:4k", "continued-pretraining", "text=text"),
    ("distill_prompts.jsonl", "amazon.nova-lite-v1:0:300k", "distillation", None),
    ("rft_prompts.jsonl", "amazon.nova-2-lite-v1:0:256k", "reinforcement", None),
]


@pytest.mark.parametrize("name,model,ctype,columns", GOOD_CASES)
def test_valid_files_exit_0(name, model, ctype, columns, capsys, no_aws):
    argv = ["validate", str(GOOD / name), "--base-model", model, "--type", ctype]
    if columns:
        argv += ["--columns", columns]
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.strip().splitlines()[-1].startswith(f"{GOOD / name}: OK")


@pytest.mark.parametrize("example", ["banking77.yaml", "cpt.yaml", "distillation.yaml"])
def test_validate_example_configs(example, capsys, no_aws):
    path = REPO_ROOT / "examples" / example
    if not path.exists():
        pytest.skip("examples not present")
    rc = main(["validate", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "dry-run prepare passed" in out


def test_validate_json_output(capsys):
    rc = main(["validate", str(BAD / "pc_broken_json.jsonl"), "--base-model", "amazon.titan-text-express-v1:0:8k",
               "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 2 and doc["ok"] is False
    assert doc["problems"][0]["line"] == 2 and doc["problems"][0]["field"] == "json"


def test_validate_caps_output_with_a_count(tmp_path, capsys):
    p = tmp_path / "many.jsonl"
    p.write_text("not json\n" * 250)
    rc = main(["validate", str(p), "--base-model", "amazon.titan-text-express-v1:0:8k"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 2
    assert len([ln for ln in lines if ": json: " in ln]) == 200
    assert "... and 50 more problem(s)" in lines
    assert lines[-1] == f"{p}: 250 problem(s) in 250 record(s)"


def test_validate_usage_errors_exit_2(capsys):
    assert main(["validate", "x.jsonl", "--base-model", "amazon.titan-text-express-v1:0:8k", "--type",
                 "fine-tunin"]) == 2
    assert "did you mean 'fine-tuning'" in capsys.readouterr().out
    assert main(["validate", "x.jsonl", "--base-model", "amazon.titan-text-express-v1:0:8k", "--columns",
                 "bogus=x"]) == 2
    assert "--columns: 'bogus=x'" in capsys.readouterr().out
    assert main(["validate", "missing.jsonl", "--base-model", "amazon.titan-text-express-v1:0:8k"]) == 2
    assert "missing.jsonl: file: not found" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# forge prepare
# ---------------------------------------------------------------------------------------------
def test_prepare_writes_splits_and_report(tmp_path, capsys):
    out = tmp_path / "prep"
    rc = main(["prepare", str(GOOD / "raw_intents.csv"), "--base-model", "amazon.nova-micro-v1:0:128k",
               "--columns", "prompt=text,completion=category", "--out", str(out), "--split", "0.6,0.2,0.2",
               "--seed", "3"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "report.json"):
        assert (out / name).is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["stratified"] is True and report["label_like"] is True
    assert "label-like, stratified" in text


def test_prepare_bad_input_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "prep"
    rc = main(["prepare", str(BAD / "haiku_roles_out_of_order.jsonl"), "--base-model",
               "anthropic.claude-3-haiku-20240307-v1:0:200k", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 2
    assert "haiku_roles_out_of_order.jsonl:35: messages[0].role: first turn is 'assistant'" in text
    assert "nothing written" in text
    assert not any(out.glob("*.jsonl")) and not (out / "report.json").exists()


def test_prepare_rejects_bad_split_and_unsupported_pair(tmp_path, capsys):
    src = str(GOOD / "titan_pc.jsonl")
    assert main(["prepare", src, "--base-model", "amazon.titan-text-express-v1:0:8k", "--out", str(tmp_path), "--split",
                 "0.8,0.3,0.1"]) == 2
    assert "--split" in capsys.readouterr().out
    assert main(["prepare", src, "--base-model", "amazon.titan-text-express-v1:0:8k", "--type", "distillation", "--out",
                 str(tmp_path)]) == 2
    assert "does not support DISTILLATION" in capsys.readouterr().out


def test_prepare_json_output(tmp_path, capsys):
    rc = main(["prepare", str(GOOD / "titan_pc.jsonl"), "--base-model", "amazon.titan-text-express-v1:0:8k",
               "--out", str(tmp_path / "o"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] is True
    assert doc["prepared"]["format"] == "prompt-completion"
    assert Path(doc["prepared"]["train"]["path"]).is_file()


def test_prepare_reports_progress_on_stderr(tmp_path, capsys, monkeypatch):
    import tasks.data.scanner as scanner

    monkeypatch.setattr(scanner, "PROGRESS_EVERY", 10)
    rc = main(["prepare", str(GOOD / "titan_pc.jsonl"), "--base-model", "amazon.titan-text-express-v1:0:8k", "--out",
               str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0
    assert "... 10 records read" in captured.err
    assert "records read" not in captured.out


@pytest.mark.skipif(not BANKING77.exists(), reason="shared BANKING77 copy not present")
def test_prepare_banking77_stratified(tmp_path, capsys):
    src = tmp_path / "banking77.csv"
    shutil.copy(BANKING77, src)
    out = tmp_path / "out"
    rc = main(["prepare", str(src), "--base-model", "amazon.nova-micro-v1:0:128k", "--columns",
               "prompt=text,completion=category",
               "--out", str(out), "--split", "0.8,0.1,0.1", "--seed", "42"])
    assert rc == 0, capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["stratified"] and report["labels"]["distinct"] == 77
    per = report["labels"]["per_split"]
    assert len(per["train"]) == len(per["test"]) == len(per["validation"]) == 77   # every intent in every split
    total = sum(per["train"].values()) + sum(per["validation"].values()) + sum(per["test"].values())
    assert abs(sum(per["test"].values()) / total - 0.1) < 0.01


def test_unexpected_errors_are_one_line_not_a_traceback(monkeypatch, capsys):
    import tasks.data.validate as v

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(v, "validate_source", boom)
    monkeypatch.delenv("FORGE_DEBUG", raising=False)
    rc = main(["validate", str(GOOD / "titan_pc.jsonl"), "--base-model", "amazon.titan-text-express-v1:0:8k"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "forge validate: internal error: RuntimeError: disk on fire" in err and "Traceback" not in err
