"""tasks.data.keys: prepare's dedupe, sample and split work on on-disk keys in bounded memory. What a user
relies on: the outputs do not depend on how the keys are bucketed, the counts are those of a plain
in-memory reading, seeded choices take exactly the requested number, nothing is left on disk, and
memory does not grow with the file."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from tasks.config import PipelineConfig
from tasks.data import keys
from tasks.data.fingerprints import dedupe_key_text
from tasks.data.preparation import prepare
from tasks.data.problems import DataValidationError

TITAN = "amazon.titan-text-express-v1:0:8k"


def cfg(src: Path, preset: str = "balanced", **data) -> PipelineConfig:
    return PipelineConfig.model_validate({"name": "k", "base_model": TITAN, "preset": preset,
                                          "data": {"source": str(src), **data}})


def raw_jsonl(path: Path, n: int, labels: list[str], seed: int = 1) -> Path:
    """Prompt/completion records with exact duplicates, near duplicates (case, punctuation) and
    conflicting answers (one prompt, another label) mixed in."""
    rng = random.Random(seed)
    recent: list[dict] = []
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.05 and recent:
                rec = dict(rng.choice(recent))
            elif r < 0.08 and recent:
                src = rng.choice(recent)
                rec = {"prompt": src["prompt"].upper() + " !", "completion": src["completion"]}
            elif r < 0.10 and recent:
                rec = {"prompt": rng.choice(recent)["prompt"], "completion": rng.choice(labels)}
            else:
                words = rng.choices(["card", "refund", "pin", "transfer", "top", "up", "fee"], k=rng.randint(3, 9))
                rec = {"prompt": f"message {i} " + " ".join(words), "completion": rng.choice(labels)}
                recent.append(rec)
            fh.write(json.dumps(rec) + "\n")
    return path


def outputs(prepared) -> tuple[list, dict]:
    files = [(f.sha256, f.records) if f else None for f in (prepared.train, prepared.validation, prepared.test)]
    report = json.loads(Path(prepared.report_path).read_text())
    report.pop("files")
    return files, report


# --- the outputs do not depend on the bucketing -----------------------------------------------------------
@pytest.mark.parametrize("preset,data", [
    ("balanced", {}),
    ("balanced", {"max_records": 1500}),
    ("balanced", {"dedupe": False}),
    ("balanced", {"split": {"stratify": "no", "seed": 9}}),
    ("quick", {"split": {"train": 0.9, "validation": 0.05, "test": 0.05}}),    # the 1,000-record train cap
])
def test_outputs_do_not_depend_on_bucket_or_chunk_size(tmp_path, monkeypatch, preset, data):
    src = raw_jsonl(tmp_path / "d.jsonl", 3000, [f"intent_{i}" for i in range(12)])
    one = outputs(prepare(cfg(src, preset, **data), tmp_path / "one"))       # one bucket, one chunk
    monkeypatch.setattr(keys, "CHUNK", 97)
    monkeypatch.setattr(keys, "BUCKET_RECORDS", 40)                           # ~70 buckets
    many = outputs(prepare(cfg(src, preset, **data), tmp_path / "many"))
    assert many == one


# --- the counts are those of a plain reading ----------------------------------------------------------------
def test_duplicate_conflict_and_split_counts_match_a_plain_in_memory_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "BUCKET_RECORDS", 50)
    labels = [f"intent_{i}" for i in range(8)]
    src = raw_jsonl(tmp_path / "d.jsonl", 2000, labels, seed=4)
    p = prepare(cfg(src), tmp_path / "o")
    report = json.loads(Path(p.report_path).read_text())

    recs = [json.loads(line) for line in src.read_text().splitlines()]
    texts = {(r["prompt"], r["completion"]) for r in recs}
    near_first: dict[tuple, int] = {}
    for i, r in enumerate(recs):
        near_first.setdefault((dedupe_key_text(r["prompt"]), dedupe_key_text(r["completion"])), i)
    answers = defaultdict(set)
    for r in recs:
        answers[dedupe_key_text(r["prompt"])].add(dedupe_key_text(r["completion"]))
    kept = sorted(near_first.values())
    group_label: dict[str, str] = {}          # group = normalized prompt; its label = its first kept record's
    for i in kept:
        group_label.setdefault(dedupe_key_text(recs[i]["prompt"]), recs[i]["completion"])
    c = report["counts"]
    assert c["exact_duplicates"] == len(recs) - len(texts)
    assert c["near_duplicates"] == len(texts) - len(near_first)
    assert c["dropped_duplicates"] == len(recs) - len(kept)
    assert c["conflicting_prompts"] == sum(1 for a in answers.values() if len(a) > 1)
    # per label: round(10 %) of its groups in test, round(10 %) in validation, the rest in train
    groups_per_label = Counter(group_label.values())
    split_of_group: dict[str, str] = {}
    for name in ("train", "validation", "test"):
        for line in Path(getattr(p, name).path).read_text().splitlines():
            prompt = dedupe_key_text(json.loads(line)["prompt"])
            assert split_of_group.setdefault(prompt, name) == name           # a group never straddles splits
    for label, n in groups_per_label.items():
        got = Counter(split_of_group[g] for g, lab in group_label.items() if lab == label)
        assert (got["test"] == round(n * 0.1) and got["validation"] == round(n * 0.1)
                and got["train"] == n - 2 * round(n * 0.1))


# --- seeded choices take exactly the requested number ---------------------------------------------------------
def _stream(strata: np.ndarray, sc: np.ndarray, chunk: int = 37):
    return lambda: ((strata[a:a + chunk], sc[a:a + chunk]) for a in range(0, len(sc), chunk))


@pytest.mark.parametrize("sizes,ranks", [
    ([1000], [[0, 1, 500, 999, 1000, 5000]]),          # none, one, half, all but one, all, more than all
    ([0, 3, 257], [[0, 1], [1, 3], [100, 200]]),       # an empty stratum, a tiny one
    ([40, 40], [[10, 20], [39, 40]]),
])
def test_rank_cuts_take_exactly_the_lowest_scores(sizes, ranks):
    strata = np.repeat(np.arange(len(sizes)), sizes)
    sc = keys.scores(np.arange(len(strata)), keys.salt(7, keys.SPLIT))
    cuts = keys.rank_cuts(_stream(strata, sc), np.array(ranks))
    for s in range(len(sizes)):
        mine = np.sort(sc[strata == s])
        for j, k in enumerate(ranks[s]):
            below = sc[strata == s][cuts.below(strata[strata == s], sc[strata == s], j)]
            assert sorted(below.tolist()) == mine[:k].tolist()


def test_rank_cuts_when_scores_share_their_top_byte():
    sc = (np.arange(500, dtype=np.uint64) * np.uint64(7919)) | np.uint64(0xAB << 56)    # one histogram bin
    strata = np.zeros(500, dtype=np.int64)
    cuts = keys.rank_cuts(_stream(strata, sc), np.array([[123]]))
    assert int(cuts.below(strata, sc, 0).sum()) == 123
    assert sc[cuts.below(strata, sc, 0)].max() < sc[~cuts.below(strata, sc, 0)].min()


def test_seeded_sample_is_exact_reproducible_and_seed_sensitive():
    a = keys.sample(10_000, 1234, seed=3)
    assert int((a == keys.KEPT).sum()) == 1234 and int((a == keys.OUT).sum()) == 10_000 - 1234
    assert np.array_equal(a, keys.sample(10_000, 1234, seed=3))
    assert not np.array_equal(a, keys.sample(10_000, 1234, seed=4))
    assert (keys.sample(50, 100, seed=3) == keys.KEPT).all()                   # fewer records than asked: all


# --- nothing is left behind --------------------------------------------------------------------------------
def test_key_files_are_removed_after_success_and_after_refusal(tmp_path):
    src = raw_jsonl(tmp_path / "d.jsonl", 300, ["a", "b", "c"])
    out = tmp_path / "o"
    prepare(cfg(src), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "test.jsonl", "train.jsonl", "validation.jsonl"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(src.read_text() + '{"prompt": "", "completion": "a"}\n')
    with pytest.raises(DataValidationError):
        prepare(cfg(bad), tmp_path / "o2")
    # the refused run leaves no output folder at all (it worked in .o2.prepare-<pid>-<token>, now removed)
    assert not (tmp_path / "o2").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "d.jsonl", "o"]


# --- memory does not grow with the file ------------------------------------------------------------------------
def test_prepare_memory_does_not_grow_with_file_size(tmp_path, monkeypatch):
    # small chunks and buckets so the bounded paths run at test scale (bench/prepare.py measures 50k vs 200k)
    monkeypatch.setattr(keys, "CHUNK", 512)
    monkeypatch.setattr(keys, "BUCKET_RECORDS", 512)
    monkeypatch.setattr("tasks.data.preparation.COPY_CHUNK", 8192)
    labels = [f"intent_{i}" for i in range(10)]
    small = raw_jsonl(tmp_path / "s.jsonl", 2_000, labels)
    big = raw_jsonl(tmp_path / "b.jsonl", 16_000, labels)

    def peak(src: Path) -> int:
        """The lower of two traced peaks: tracemalloc also counts other threads' allocations (a Prefect log worker
        left running by an earlier test of the suite), which only ever add to a measurement."""
        prepare(cfg(src), tmp_path / f"warm-{src.stem}")     # warm caches (imports, compiled regexes)
        tops = []
        for i in range(2):
            tracemalloc.start()
            prepare(cfg(src), tmp_path / f"out-{src.stem}-{i}")
            tops.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        return min(tops)

    p_small, p_big = peak(small), peak(big)
    # 8x the records: what may grow is the split byte of each record (14 kB more); 2 bytes a record + 32 kB noise
    assert p_big - p_small < 2 * 14_000 + 32_000, (p_small, p_big)
