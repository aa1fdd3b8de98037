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
    "llama31_too_few": lambda p: p.write_text(_jl(_pc(i) for i in range(99))),
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
# the data-file corpus of issue 16 (tests/data/bad/data/expected.yaml): hostile files
# ---------------------------------------------------------------------------------------------
DATA_BAD = BAD / "data"
DATA_CASES = yaml.safe_load((DATA_BAD / "expected.yaml").read_text(encoding="utf-8"))
TITAN = "amazon.titan-text-express-v1:0:8k"


def _deep(path: Path, n: int) -> None:
    path.write_text("[" * n + "]" * n + "\n", encoding="utf-8")


def _parquet_nonfinite(path: Path, prompt: list, completion: list) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": prompt, "completion": completion}), path)


def _make_case_file(case: dict, tmp_path: Path, monkeypatch) -> Path:
    """The case's file in tmp_path (a committed file is copied: prepare cases write next to it)."""
    path = tmp_path / case["file"]
    gen = case.get("generate", "")
    if (DATA_BAD / case["file"]).is_file():
        shutil.copyfile(DATA_BAD / case["file"], path)
    if gen == "fifo":
        import os

        os.mkfifo(path)
    elif gen == "dir":
        path.mkdir()
    elif gen.startswith("symlink:"):
        path.symlink_to(gen.split(":", 1)[1])
    elif gen.startswith("deep:"):
        _deep(path, int(gen.split(":")[1]))
    elif gen == "parquet_nan":
        _parquet_nonfinite(path, [1.5, float("nan")], ["a", "b"])
    elif gen == "parquet_inf":
        _parquet_nonfinite(path, ["a", "b"], [float("inf"), 2.0])
    elif gen == "overlong_csv":
        path.write_text("prompt,completion\nq," + "x" * 9_000_000 + "\nq2,a\n", encoding="utf-8")
    elif gen == "unreadable":        # tests run as root here: chmod 000 would still read, so deny the open
        import os

        import tasks.data.sources as sources

        real = os.open

        def deny(p, *a, **kw):
            if str(p) == str(path):
                raise PermissionError(13, "Permission denied", str(p))
            return real(p, *a, **kw)

        monkeypatch.setattr(sources.os, "open", deny)
    return path


def _s3_config(case: dict, tmp_path: Path) -> Path:
    """A pipeline config whose data source is an S3 object in the session emulator (moto S3)."""
    import boto3

    direct, kind = case["generate"].split(":")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="forge-corpus")
    uri = {"missing": "s3://forge-corpus/missing/train.jsonl", "nobucket": "s3://forge-corpus-nope/train.jsonl",
           "upload": f"s3://forge-corpus/data/{case['file']}"}[kind]
    if direct == "s3direct" and kind == "missing":
        uri = f"s3://forge-corpus/nope/{case['file']}"
    if kind == "upload":
        s3.upload_file(str(DATA_BAD / case["file"]), "forge-corpus", f"data/{case['file']}")
    if direct == "s3direct":                     # forge validate s3://... (DATA itself is the object)
        return Path(uri)
    cfg = tmp_path / "s3_source.yaml"
    cfg.write_text(f"name: corpus-s3\nbase_model: {case.get('base_model', TITAN)}\ndata:\n  source: {uri}\n",
                   encoding="utf-8")
    return cfg


def _argv(case: dict, path: Path) -> list[str]:
    if case.get("generate", "").startswith("s3:"):
        return ["validate", str(path)]
    verb = case.get("verb", "validate")
    data = str(path).replace("s3:/", "s3://", 1) if case.get("generate", "").startswith("s3direct:") else str(path)
    argv = [verb, data, "--base-model", case.get("base_model", TITAN), "--type", case.get("type", "fine-tuning")]
    if case.get("columns"):
        argv += ["--columns", case["columns"]]
    if verb == "prepare":
        argv += ["--out", str(path.parent if case.get("out") == "parent" else path.parent / "out")]
        if case.get("split"):
            argv += ["--split", case["split"]]
    return argv


def _check_output(case: dict, out: str, tmp_path: Path) -> None:
    assert case["expect"] in out, out
    assert "Traceback" not in out and "internal error" not in out
    shown = out.replace(str(tmp_path), "TMP")
    for secret in case.get("must_not_contain", []):
        assert secret not in shown, f"{secret!r} echoed: {shown}"
    last = out.rstrip().splitlines()[-1]
    assert ("nothing written" if case.get("verb") == "prepare" else "problem(s) in") in last, last


def test_data_corpus_is_big_and_every_file_has_an_expectation():
    assert len(DATA_CASES) >= 60
    on_disk = {p.name for p in DATA_BAD.iterdir() if p.name != "expected.yaml"}
    committed = {c["file"] for c in DATA_CASES if c.get("generate") in (None, "unreadable", "s3:upload",
                                                                           "s3direct:upload")}
    assert on_disk == committed, "every committed corpus file has an expectation and vice versa"
    assert len({c["file"] for c in DATA_CASES}) == len(DATA_CASES)
    assert sum(1 for c in DATA_CASES if c.get("cli")) >= 10


@pytest.mark.parametrize("case", DATA_CASES, ids=[c["file"] for c in DATA_CASES])
def test_data_corpus_file_is_refused_with_its_located_message(case, tmp_path, capsys, monkeypatch, request):
    if case.get("generate", "").startswith(("s3:", "s3direct:")):
        request.getfixturevalue("aws_env")
        path = _s3_config(case, tmp_path)
    else:
        request.getfixturevalue("no_aws")
        path = _make_case_file(case, tmp_path, monkeypatch)
    before = path.read_bytes() if case.get("verb") == "prepare" and path.is_file() else None
    rc = main(_argv(case, path))
    out = capsys.readouterr().out
    assert rc == 2, out
    _check_output(case, out, tmp_path)
    if before is not None:                       # the input inside --out is untouched, nothing was written
        assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


CLI_CASES = [c for c in DATA_CASES if c.get("cli")]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c["file"] for c in CLI_CASES])
def test_data_corpus_sample_through_the_installed_command(case, tmp_path, monkeypatch):
    import subprocess
    import sys

    path = _make_case_file(case, tmp_path, monkeypatch)
    forge = Path(sys.executable).parent / "forge"
    proc = subprocess.run([str(forge), *_argv(case, path)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**__import__("os").environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _check_output(case, proc.stdout, tmp_path)
    assert "Traceback" not in proc.stderr


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
    # Llama: at least 100 training + validation records (model-customization-prepare); raw_intents.csv has 60
    ("raw_intents_100.csv", "meta.llama3-1-8b-instruct-v1:0:128k", "fine-tuning", "prompt=text,completion=category"),
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


LLAMA = "meta.llama3-1-8b-instruct-v1:0:128k"     # train + validation 100..10,000 records (docs/bedrock-facts.md §10)


# (training records, validation records or None = no --validation, exit status, text in the output)
TOTAL_CASES = [
    (91, None, 2, "91 training record(s) and no validation file"),
    (91, None, 2, "pass that file with --validation FILE"),
    (91, 8, 2, "91 training + 8 validation records; meta.llama3-1-8b-instruct-v1:0:128k FINE_TUNING needs at least "
               "100"),
    (91, 9, 0, "OK, 9 record(s)"),
    (100, None, 0, "OK, 100 record(s)"),
    (9_500, 501, 2, "9,500 training + 501 validation records; total (train + validation) is at most 10,000"),
    (9_500, 500, 0, "OK, 9500 record(s)"),
]


@pytest.mark.parametrize(("n_train", "n_val", "rc", "expect"), TOTAL_CASES)
def test_validate_counts_the_validation_file_in_aws_totals(n_train, n_val, rc, expect, tmp_path, capsys, no_aws):
    """AWS counts a Llama job's training and validation files together (100..10,000): ``--validation`` checks
    the second file and counts it, so a 91-record training file is legal with 9 validation records, not with 8."""
    train = tmp_path / "train.jsonl"
    train.write_text(_jl(_pc(i) for i in range(n_train)))
    argv = ["validate", str(train), "--base-model", LLAMA]
    if n_val is not None:
        val = tmp_path / "validation.jsonl"
        val.write_text(_jl(_pc(100_000 + i) for i in range(n_val)))
        argv += ["--validation", str(val)]
    got = main(argv)
    out = capsys.readouterr().out
    assert got == rc and expect in out, out


def test_validate_with_validation_json_holds_both_reports(tmp_path, capsys, no_aws):
    train, val = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
    train.write_text(_jl(_pc(i) for i in range(90)))
    val.write_text(_jl(_pc(100 + i) for i in range(8)) + "not json\n")
    rc = main(["validate", str(train), "--validation", str(val), "--base-model", LLAMA, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 2 and doc["ok"] is False and doc["records"] == 90
    assert doc["validation"]["ok"] is False and doc["validation"]["records"] == 9
    assert doc["validation"]["problems"][0]["line"] == 9 and doc["validation"]["problems"][0]["field"] == "json"
    assert "90 training + 9 validation records" in doc["problems"][0]["message"]


def test_validate_with_an_s3_validation_file(tmp_path, capsys, aws_env):
    """``--validation s3://...`` is read from S3 like an s3:// DATA; a missing object is a located problem."""
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="forge-pair")
    s3.put_object(Bucket="forge-pair", Key="data/validation.jsonl", Body=_jl(_pc(100 + i) for i in range(9)))
    train = tmp_path / "train.jsonl"
    train.write_text(_jl(_pc(i) for i in range(91)))
    assert main(["validate", str(train), "--validation", "s3://forge-pair/data/validation.jsonl",
                 "--base-model", LLAMA]) == 0, capsys.readouterr().out
    assert "s3://forge-pair/data/validation.jsonl: OK, 9 record(s)" in capsys.readouterr().out
    assert main(["validate", str(train), "--validation", "s3://forge-pair/data/nope.jsonl",
                 "--base-model", LLAMA]) == 2
    out = capsys.readouterr().out
    assert "s3://forge-pair/data/nope.jsonl" in out and "91 training + 0 validation records" in out, out


def test_validate_validation_flag_usage_errors(tmp_path, capsys, no_aws):
    assert main(["validate", "x.jsonl", "--validation", "v.jsonl", "--role", "test", "--base-model", LLAMA]) == 2
    assert "--validation goes with a training DATA (--role train), not --role test" in capsys.readouterr().out
    assert main(["validate", str(REPO_ROOT / "examples" / "banking77.yaml"), "--validation", "v.jsonl"]) == 2
    assert "a config's split makes its own" in capsys.readouterr().out


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


def test_prepare_out_of_space_is_exit_1_names_the_output_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    import errno

    import tasks.data.preparation as tp

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tp._SplitWriter, "emit", full)
    out = tmp_path / "out"
    rc = main(["prepare", str(GOOD / "raw_intents.csv"), "--base-model", "amazon.nova-micro-v1:0:128k",
               "--columns", "prompt=text,completion=category", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 1
    assert text.strip() == f"{out}: cannot write: No space left on device; nothing written to {out}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []          # no out folder, no work folder
