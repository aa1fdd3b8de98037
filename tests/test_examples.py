"""The shipped examples: configs load, the BANKING77 slice is stratified, small and carries its licence."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tasks.catalog import CustomizationType, load_catalog
from tasks.config import load_config
from tests.support import REPO_ROOT, shared_dir

ROOT = REPO_ROOT
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"
SOURCE = (shared_dir() or Path("/nonexistent")) / "datasets" / "banking77"   # shared/ beside the repo


def _rows() -> list[dict]:
    with open(DATA / "banking77-small.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name, model, ctype", [
    ("banking77.yaml", "amazon.nova-micro-v1:0:128k", CustomizationType.FINE_TUNING),
    ("cpt.yaml", "amazon.titan-text-express-v1:0:8k", CustomizationType.CONTINUED_PRE_TRAINING),
    ("distillation.yaml", "amazon.nova-micro-v1:0:128k", CustomizationType.DISTILLATION),
])
def test_example_configs_load_and_point_at_shipped_data(name, model, ctype):
    cfg = load_config(EXAMPLES / name)
    assert cfg.base_model == model and cfg.customization_type is ctype
    assert Path(cfg.data.source).is_file(), f"{name}: data.source {cfg.data.source} is not in the repo"
    assert cfg.serving.commitment is None
    assert cfg.budget.max_usd is not None


def test_banking77_example_is_the_demo_described_in_the_readme():
    cfg = load_config(EXAMPLES / "banking77.yaml")
    assert cfg.name == "banking77-demo" and cfg.preset == "quick"
    assert (cfg.data.columns.prompt, cfg.data.columns.completion) == ("text", "category")
    assert cfg.serving.mode == "provisioned" and cfg.serving.model_units == 1
    assert cfg.gate.metric == "accuracy" and cfg.gate.min_delta == pytest.approx(0.05)
    assert cfg.evaluation.concurrency == 8
    # the pipeline's own split must leave enough test rows for the 100-example evaluation
    n_test = len(_rows()) * cfg.data.split.test
    assert 80 <= n_test <= 150 and cfg.evaluation.max_examples <= n_test


def test_distillation_example_has_a_supported_teacher_and_enough_prompts():
    cfg = load_config(EXAMPLES / "distillation.yaml")
    assert cfg.distillation.teacher_model in load_catalog().distillation_teachers
    lim = load_catalog().spec(cfg.base_model, cfg.customization_type).limits
    min_train = max(lim.min_train_records or 0, lim.min_total_records or 0)   # Llama: train + validation >= 100
    prompts = _jsonl("distill-prompts.jsonl")
    assert all(p["prompt"].strip() for p in prompts)
    assert int(len(prompts) * cfg.data.split.train) >= min_train     # docs/bedrock-facts.md §5: >= 100 prompts


def test_cpt_example_is_unlabeled_text():
    cfg = load_config(EXAMPLES / "cpt.yaml")
    assert cfg.data.columns.text == "text" and cfg.data.columns.completion is None
    notes = _jsonl("support-notes.jsonl")
    assert len(notes) >= 100 and all(set(n) == {"text"} and len(n["text"]) > 100 for n in notes)


def test_banking77_slice_covers_all_77_intents_without_duplicates():
    counts = Counter(r["category"] for r in _rows())
    assert len(counts) == 77 and min(counts.values()) >= 10
    texts = [r["text"] for r in _rows()]
    normalized = [re.sub(r"[^a-z0-9]+", " ", t.lower()).strip() for t in texts]
    assert len(set(normalized)) == len(texts), "near-duplicate queries in the slice"
    assert all(t.strip() for t in texts)


@pytest.mark.skipif(not (SOURCE / "train.csv").exists(), reason="BANKING77 source folder not on this machine")
def test_banking77_slice_keeps_each_intents_share_of_the_source():
    with open(SOURCE / "train.csv", encoding="utf-8", newline="") as fh:
        source = Counter(r["category"] for r in csv.DictReader(fh))
    sliced = Counter(r["category"] for r in _rows())
    n_src, n_slice = sum(source.values()), sum(sliced.values())
    for intent, c in source.items():
        expected = max(10, c * n_slice / n_src)
        assert abs(sliced[intent] - expected) <= 1.5, f"{intent}: {sliced[intent]} rows, share says {expected:.1f}"


def test_no_example_text_breaks_nova_prompt_rules():
    """docs/bedrock-facts.md §5: these strings anywhere in a Nova prompt fail the job."""
    banned = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
    texts = [r["text"] for r in _rows()] + [p["prompt"] for p in _jsonl("distill-prompts.jsonl")]
    assert not [t for t in texts if any(b in t for b in banned)]


def test_example_data_carries_its_licence_and_stays_small():
    lic = (DATA / "LICENSE-banking77.md").read_text(encoding="utf-8")
    for needed in ("CC BY 4.0", "creativecommons.org/licenses/by/4.0", "PolyAI-LDN/task-specific-datasets",
                   "Casanueva", "Efficient Intent Detection with Dual Sentence Encoders"):
        assert needed in lic
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert total < 300_000, f"examples/data is {total:,} bytes; keep the repo small"


@pytest.mark.skipif(not (SOURCE / "train.csv").exists(), reason="BANKING77 source folder not on this machine")
def test_committed_data_is_exactly_what_the_script_builds(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "scripts" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(SOURCE, tmp_path)
    for name in ("banking77-small.csv", "support-notes.jsonl", "distill-prompts.jsonl", "LICENSE-banking77.md"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), \
            f"{name} differs: rerun scripts/make_examples.py"
    # every row is a real BANKING77 query with its real label
    with (open(SOURCE / "train.csv", encoding="utf-8", newline="") as a,
          open(SOURCE / "test.csv", encoding="utf-8", newline="") as b):
        source = {(r["text"].strip(), r["category"]) for f in (a, b) for r in csv.DictReader(f)}
    assert all((r["text"], r["category"]) in source for r in _rows())


def test_banking77_prepares_into_three_stratified_splits(tmp_path):
    from tasks.data.preparation import prepare

    cfg = load_config(EXAMPLES / "banking77.yaml")
    prepared = prepare(cfg, tmp_path)
    assert prepared.label_like
    assert 80 <= prepared.test.records <= 150
    assert prepared.train.records + prepared.validation.records + prepared.test.records == len(_rows())
