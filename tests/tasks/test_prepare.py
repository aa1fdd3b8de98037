"""tasks.prepare: what a user relies on — seeded and disjoint splits, stratified labels, dedupe,
train-only augmentation, refusal of bad input before writing, and the cached Prefect task."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from tasks.config import PipelineConfig
from tasks.data.fingerprints import dedupe_key_text
from tasks.data.formats import from_record
from tasks.data.problems import DataValidationError
from tasks.prepare import prepare
from tests.support import REPO_ROOT, TEST_DATA

NOVA = "amazon.nova-micro-v1:0:128k"
TITAN = "amazon.titan-text-express-v1:0:8k"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
GOOD = TEST_DATA / "good"


def config(source, base_model=NOVA, **data) -> PipelineConfig:
    d = {"source": str(source), **data}
    d.setdefault("columns", {"prompt": "text", "completion": "category"})
    return PipelineConfig.model_validate({"name": "t", "base_model": base_model, "data": d})


def labelled_csv(tmp_path: Path, per_label: dict[str, int], dup_every: int = 0) -> Path:
    p = tmp_path / "d.csv"
    rows = ["text,category"]
    i = 0
    for label, n in per_label.items():
        for _ in range(n):
            rows.append(f"customer message number {i} about {label},{label}")
            if dup_every and i % dup_every == 0:
                rows.append(f"Customer  message number {i} about {label}!,{label}")   # near duplicate
            i += 1
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def read_split(prepared, name: str) -> list:
    f = getattr(prepared, name)
    if f is None:
        return []
    return [from_record(prepared.format,
                        json.loads(ln)) for ln in Path(f.path).read_text(encoding="utf-8").splitlines()]


def test_seeded_split_is_reproducible_and_seed_sensitive(tmp_path):
    src = labelled_csv(tmp_path, {"a": 40, "b": 40})
    p1 = prepare(config(src), tmp_path / "o1")
    p2 = prepare(config(src), tmp_path / "o2")
    assert [p1.train.sha256, p1.validation.sha256, p1.test.sha256] == [p2.train.sha256, p2.validation.sha256,
                                                                       p2.test.sha256]
    p3 = prepare(config(src, split={"seed": 7}), tmp_path / "o3")
    assert p3.test.sha256 != p1.test.sha256


def test_splits_are_disjoint_even_with_duplicates_kept(tmp_path):
    src = labelled_csv(tmp_path, {"a": 50, "b": 30}, dup_every=3)
    p = prepare(config(src, dedupe=False), tmp_path / "o")
    seen: dict[str, str] = {}
    for name in ("train", "validation", "test"):
        for ex in read_split(p, name):
            key = dedupe_key_text(ex.prompt)
            assert seen.setdefault(key, name) == name, f"{ex.prompt!r} in {seen[key]} and {name}"
    report = json.loads(Path(p.report_path).read_text())
    assert report["counts"]["near_duplicates"] > 0 and report["counts"]["dropped_duplicates"] == 0


def test_dedupe_drops_exact_and_near_duplicates(tmp_path):
    src = labelled_csv(tmp_path, {"a": 30, "b": 30}, dup_every=2)
    with src.open("a") as fh:
        fh.write("customer message number 1 about a,a\n")          # exact duplicate of row 2
    p = prepare(config(src), tmp_path / "o")
    report = json.loads(Path(p.report_path).read_text())
    c = report["counts"]
    assert c["exact_duplicates"] == 1 and c["near_duplicates"] == 30 and c["dropped_duplicates"] == 31
    assert p.train.records + p.validation.records + p.test.records == 60
    assert report["duplicate_examples"][0]["kind"] == "near"


def test_stratified_split_keeps_label_proportions(tmp_path):
    src = labelled_csv(tmp_path, {"common": 120, "mid": 60, "rare": 20})
    p = prepare(config(src, split={"train": 0.6, "validation": 0.2, "test": 0.2}), tmp_path / "o")
    assert p.label_like
    for name in ("validation", "test"):
        counts = Counter(ex.completion for ex in read_split(p, name))
        assert counts == {"common": 24, "mid": 12, "rare": 4}, (name, counts)
    report = json.loads(Path(p.report_path).read_text())
    assert report["split"]["stratified"] is True
    assert report["labels"]["per_split"]["test"] == {"common": 24, "mid": 12, "rare": 4}
    assert report["labels"]["balance"] == {"most_common": {"common": 120}, "rarest": {"rare": 20}, "ratio": 6.0}


def test_stratify_no_gives_a_plain_shuffle(tmp_path):
    src = labelled_csv(tmp_path, {"common": 120, "mid": 60, "rare": 20})
    p = prepare(config(src, split={"stratify": "no"}), tmp_path / "o")
    report = json.loads(Path(p.report_path).read_text())
    assert report["split"]["stratified"] is False
    assert p.test.records == 20


def test_free_text_completions_are_not_label_like(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"question {i}",
                                     "completion": f"a long free-text answer number {i}"}) + "\n"
                         for i in range(50)))
    prepared = prepare(config(p, base_model=TITAN, columns={}), tmp_path / "o")
    assert not prepared.label_like
    assert json.loads(Path(prepared.report_path).read_text())["split"]["stratified"] is False


def test_augmentation_only_in_train(tmp_path):
    src = labelled_csv(tmp_path, {"a": 40, "b": 40})
    plain = prepare(config(src), tmp_path / "plain")
    aug = prepare(config(src, augment={"enabled": True, "prefixes": ["Question: ", "Customer says: "], "copies": 2}),
                  tmp_path / "aug")
    assert aug.train.records == plain.train.records * 3
    assert (aug.validation.sha256, aug.test.sha256) == (plain.validation.sha256, plain.test.sha256)
    for name in ("validation", "test"):
        assert not any(ex.prompt.startswith(("Question: ", "Customer says: ")) for ex in read_split(aug, name))
    prefixed = [ex for ex in read_split(aug, "train") if ex.prompt.startswith(("Question: ", "Customer says: "))]
    assert len(prefixed) == plain.train.records * 2
    report = json.loads(Path(aug.report_path).read_text())
    assert report["counts"]["augmented_train_copies"] == len(prefixed)


def test_max_records_is_a_seeded_sample(tmp_path):
    src = labelled_csv(tmp_path, {"a": 100, "b": 100})
    p1 = prepare(config(src, max_records=50), tmp_path / "o1")
    p2 = prepare(config(src, max_records=50), tmp_path / "o2")
    assert p1.train.records + p1.validation.records + p1.test.records == 50
    assert p1.train.sha256 == p2.train.sha256


def test_zero_fraction_split_is_omitted(tmp_path):
    src = labelled_csv(tmp_path, {"a": 20, "b": 20})
    p = prepare(config(src, split={"train": 0.9, "validation": 0.0, "test": 0.1}), tmp_path / "o")
    assert p.validation is None and not (tmp_path / "o" / "validation.jsonl").exists()
    assert p.test is not None and p.test.records == 4


def test_tokens_and_file_hashes(tmp_path):
    import hashlib

    src = labelled_csv(tmp_path, {"a": 20, "b": 20})
    p = prepare(config(src), tmp_path / "o")
    chars = sum(len(ex.prompt) + len(ex.completion) for ex in read_split(p, "train"))
    assert p.estimated_train_tokens == math.ceil(chars / 6)
    body = Path(p.train.path).read_bytes()
    assert p.train.sha256 == hashlib.sha256(body).hexdigest() and p.train.bytes == len(body)
    assert p.train.records == body.count(b"\n")


def test_bad_input_raises_every_problem_before_writing(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("text,category\nhello,a\n,b\nUser: hi,c\n", encoding="utf-8")
    out = tmp_path / "o"
    with pytest.raises(DataValidationError) as info:
        prepare(config(src), out)
    lines = info.value.lines()
    assert lines[0] == f"{src}:3: text: is empty (every record needs a non-empty prompt; fill it in or drop the record)"
    assert lines[1].startswith(f"{src}:4: text: contains the string 'User:', which Nova rejects")
    assert not out.exists() or not any(out.iterdir())


def test_a_stratified_split_that_leaves_no_test_record_is_refused(tmp_path):
    """40 labels with 3 records each: each label's 10 % of the test split rounds to 0, so the stratified split
    would leave the test split empty, the run would evaluate nothing, gate nothing, and still succeed. Refused at
    split.test with the fixes; a plain split of the same data has its test records."""
    src = labelled_csv(tmp_path, {f"label{i}": 3 for i in range(40)})
    with pytest.raises(DataValidationError) as info:
        prepare(config(src), tmp_path / "o")
    [line] = [ln for ln in info.value.lines() if "split.test" in ln]
    assert "the test split would be empty: 120 record(s), stratified by 40 labels" in line
    assert "stratify: no" in line and not (tmp_path / "o").exists()
    assert prepare(config(src, split={"stratify": "no"}), tmp_path / "o2").test.records == 12
    # no evaluation asked for: an empty test split is what it should be
    cfg = PipelineConfig.model_validate({"name": "t", "base_model": NOVA, "evaluation": {"enabled": False},
                                         "data": {"source": str(src), "columns": {"prompt": "text",
                                                                                  "completion": "category"}}})
    assert prepare(cfg, tmp_path / "o3").test is None


def test_split_counts_checked_against_model_limits(tmp_path):
    # Claude 3 Haiku needs >= 32 validation records when a validation set is given (docs/bedrock-facts.md §5)
    with pytest.raises(DataValidationError) as info:
        prepare(config(GOOD / "raw_intents.csv", base_model=HAIKU), tmp_path / "o")
    assert any("split.validation: the validation split would have 6 record(s)" in ln for ln in info.value.lines())
    ok = prepare(config(GOOD / "raw_intents.csv", base_model=HAIKU, split={"train": 0.9, "validation": 0, "test": 0.1}),
                 tmp_path / "o2")
    assert ok.format == "claude-messages" and ok.train.records == 54


LLAMA31 = "meta.llama3-1-8b-instruct-v1:0:128k"


def _llama_config(src: Path) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "t", "base_model": LLAMA31, "evaluation": {"enabled": False},
                                          "data": {"source": str(src), "columns": {"prompt": "text",
                                                                                   "completion": "category"},
                                                   "split": {"train": 0.9, "validation": 0.1, "test": 0.0}}})


def test_llama_needs_100_training_plus_validation_records(tmp_path):
    """model-customization-prepare: Llama 3.1/3.2/3.3 "Sum of training and validation records" minimum 100."""
    with pytest.raises(DataValidationError) as info:
        prepare(_llama_config(labelled_csv(tmp_path, {"a": 50, "b": 49})), tmp_path / "o")
    lines = info.value.lines()
    assert any(f"split: train + validation would be 99 record(s); {LLAMA31} FINE_TUNING needs at least 100 in total"
               in ln and "add data (at least 1 more record(s)" in ln for ln in lines), lines
    assert not (tmp_path / "o").exists()                       # refused before anything is written
    (tmp_path / "d.csv").unlink()
    ok = prepare(_llama_config(labelled_csv(tmp_path, {"a": 50, "b": 50})), tmp_path / "o2")
    assert ok.format == "prompt-completion" and ok.train.records + ok.validation.records == 100


def test_formatted_input_passes_through_unchanged(tmp_path):
    multi = {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "s"}], "messages": [
        {"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]},
        {"role": "user", "content": [{"text": "c"}]}, {"role": "assistant", "content": [{"text": "d"}]}]}
    recs = [multi] + [json.loads(ln) for ln in (GOOD / "nova_conversation.jsonl").read_text().splitlines()]
    for i, r in enumerate(recs[1:]):
        r["messages"][0]["content"][0]["text"] += f" #{i}"
    src = tmp_path / "f.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    p = prepare(config(src, columns={}, split={"train": 1.0, "validation": 0, "test": 0}), tmp_path / "o")
    written = [json.loads(ln) for ln in Path(p.train.path).read_text().splitlines()]
    assert written == recs


def test_system_prompt_and_template_are_applied(tmp_path):
    src = labelled_csv(tmp_path, {"a": 10, "b": 10})
    p = prepare(config(src, system_prompt="Classify the message.", prompt_template="Message: {prompt}",
                       split={"train": 1.0, "validation": 0, "test": 0}), tmp_path / "o")
    ex = read_split(p, "train")[0]
    assert ex.system == "Classify the message." and ex.prompt.startswith("Message: customer message")


def test_continued_pretraining_writes_input_records(tmp_path):
    cfg = PipelineConfig.model_validate({"name": "t", "base_model": "amazon.titan-text-lite-v1:0:4k",
                                         "customization_type": "CONTINUED_PRE_TRAINING",
                                         "data": {"source": str(GOOD / "cpt_text.jsonl"), "columns": {"text": "text"}}})
    p = prepare(cfg, tmp_path / "o")
    first = json.loads(Path(p.train.path).read_text().splitlines()[0])
    assert set(first) == {"input"} and first["input"].startswith("Paragraph")
    assert not p.label_like


def test_prepare_task_caches_and_refreshes(tmp_path, prefect_backend):
    from prefect import flow

    from tasks.prepare import prepare_task

    src = labelled_csv(tmp_path, {"a": 10, "b": 10})
    cfg = config(src)

    @flow
    def run(refresh: bool = False):
        return prepare_task(cfg, str(tmp_path / "o"), refresh=refresh, return_state=True)

    first = run()
    assert first.name == "Completed"
    assert run().name == "Cached"
    assert run(refresh=True).name == "Completed"
    src.write_text(src.read_text() + "one more customer message,a\n")    # a changed source is not served from cache
    assert run().name == "Completed"


def test_prepare_task_in_a_flow_raises_located_problems(tmp_path, prefect_backend):
    from prefect import flow

    from tasks.prepare import prepare_task

    src = tmp_path / "bad.csv"
    src.write_text("text,category\nhello,a\n,b\n", encoding="utf-8")

    @flow
    def run():
        return prepare_task(config(src), str(tmp_path / "o"))

    with pytest.raises(DataValidationError) as info:
        run()
    assert info.value.lines() == [f"{src}:3: text: is empty (every record needs a non-empty prompt; fill it in or drop "
                                  "the record)"]


def test_split_does_not_depend_on_the_process_hash_seed(tmp_path):
    """Duplicate keys use Python's per-process string hash; the split must still be identical."""
    import os
    import subprocess
    import sys

    src = labelled_csv(tmp_path, {"a": 30, "b": 20}, dup_every=4)
    code = ("import sys, json; from tasks.prepare import prepare; from tasks.config import PipelineConfig;"
            "c = PipelineConfig.model_validate(json.loads(sys.argv[1])); p = prepare(c, sys.argv[2]);"
            "print(p.train.sha256, p.validation.sha256, p.test.sha256)")
    cfg = json.dumps(config(src).model_dump(mode="json"))
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        r = subprocess.run([sys.executable, "-c", code, cfg, str(tmp_path / f"o{seed}")], capture_output=True,
                           text=True,
                           env=env, cwd=REPO_ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split())
    assert outs[0] == outs[1]


def test_s3_source_is_downloaded_then_prepared(tmp_path, aws_env):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="forge-prepare-src")
    s3.upload_file(str(GOOD / "raw_intents.csv"), "forge-prepare-src", "raw/intents.csv")
    p = prepare(config("s3://forge-prepare-src/raw/intents.csv"), tmp_path / "o")
    assert p.train.records + p.validation.records + p.test.records == 60
    assert p.label_like


def test_cache_key_follows_the_s3_object(aws_env):
    import boto3

    from tasks.prepare import _source_fingerprint

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="forge-prepare-fp")
    s3.put_object(Bucket="forge-prepare-fp", Key="d.csv", Body=b"text,category\na,b\n")
    cfg = config("s3://forge-prepare-fp/d.csv")
    first = _source_fingerprint(cfg)
    s3.put_object(Bucket="forge-prepare-fp", Key="d.csv", Body=b"text,category\na,b\nc,d\n")
    assert _source_fingerprint(cfg) != first


def test_preset_caps_training_records_keeping_label_shares(tmp_path):
    src = labelled_csv(tmp_path, {"a": 900, "b": 450, "c": 150})
    full = prepare(config(src), tmp_path / "full")
    cfg = config(src)
    cfg.preset = "quick"                           # at most 1,000 training records (tasks/catalog/__init__.py PRESETS)
    quick = prepare(cfg, tmp_path / "quick")
    assert full.train.records == 1200 and quick.train.records == 1000
    assert (quick.validation.sha256, quick.test.sha256) == (full.validation.sha256, full.test.sha256)
    assert Counter(ex.completion for ex in read_split(quick, "train")) == {"a": 600, "b": 300, "c": 100}
    report = json.loads(Path(quick.report_path).read_text())
    assert report["counts"]["train_capped_by_preset"] == 200


def test_source_changing_during_prepare_is_refused(tmp_path, monkeypatch):
    import tasks.data.readers as readers

    src = labelled_csv(tmp_path, {"a": 10, "b": 10})
    real = readers.iter_raw_lines
    calls = {"n": 0}

    def grow_then_read(fh):      # the write pass reads a file that grew since the check
        calls["n"] += 1
        if calls["n"] == 2:
            with open(src, "a") as extra:
                extra.write("a late customer message,a\n")
        return real(fh)

    monkeypatch.setattr(readers, "iter_raw_lines", grow_then_read)     # the scan and the write pass read here
    with pytest.raises(DataValidationError, match="changed while it was being prepared"):
        prepare(config(src), tmp_path / "o")
    assert not (tmp_path / "o" / "train.jsonl").exists()


@pytest.mark.parametrize("uri, message", [
    ("s3://forge-prepare-src/raw/missing.csv", "object not found"),
    ("s3://forge-prepare-nope/raw/intents.csv", "bucket 'forge-prepare-nope' not found"),
])
def test_s3_source_that_cannot_be_read_is_a_located_problem_not_a_client_error(tmp_path, aws_env, uri, message):
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="forge-prepare-src")
    with pytest.raises(DataValidationError) as info:
        prepare(config(uri), tmp_path / "o")
    p = info.value.problems[0]
    assert (p.file, p.field) == (uri, "file") and message in p.message
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []
