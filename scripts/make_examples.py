"""Build the small example data sets in examples/data/ from BANKING77 (seeded, reproducible).

    python scripts/make_examples.py [--source ../shared/datasets/banking77] [--out examples/data]

Writes
- banking77-small.csv     text,category: a stratified slice of train.csv keeping each intent's share
                          (~1,100 rows, at least 10 per intent, 77 intents), so the pipeline's own
                          stratified 80/10/10 split leaves ~110 test rows.
- support-notes.jsonl     {"text": ...}: unlabeled support notes for continued pre-training, each
                          joining 5 test.csv queries of one intent (2 notes × 77 intents).
- distill-prompts.jsonl   {"prompt": ...}: test.csv queries as prompts only, for distillation (3 × 77 =
                          231; the teacher writes the responses; distillation needs >= 100 prompts,
                          docs/bedrock-facts.md §5).
- LICENSE-banking77.md    the CC BY 4.0 attribution the dataset requires.

Queries are drawn without repeats across the three files, and near-duplicates (same text after
lower-casing and dropping punctuation) are skipped, so prepare's dedupe keeps every row.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from collections import defaultdict
from pathlib import Path

SEED = 77
SLICE_ROWS = 1100          # target size of banking77-small.csv (each intent keeps its share of train.csv)
MIN_PER_INTENT = 10
NOTES_PER_INTENT = 2
QUERIES_PER_NOTE = 5
PROMPTS_PER_INTENT = 3
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "datasets" / "banking77"

LICENSE_TEXT = """# BANKING77 — licence and attribution

The files `banking77-small.csv`, `support-notes.jsonl` and `distill-prompts.jsonl` in this folder are
derived from the BANKING77 dataset (a seeded, stratified slice of its queries and intent labels, built by
`scripts/make_examples.py`; the support notes join several queries of one intent; no text was edited).

- **Dataset**: BANKING77 — 13,083 online-banking customer queries, each labelled with one of 77 intents.
- **Source**: PolyAI-LDN/task-specific-datasets on GitHub, folder `banking_data/`
  (https://github.com/PolyAI-LDN/task-specific-datasets).
- **Paper**: Iñigo Casanueva, Tadas Temčinas, Daniela Gerz, Matthew Henderson, Ivan Vulić,
  "Efficient Intent Detection with Dual Sentence Encoders", Proceedings of the 2nd Workshop on
  Natural Language Processing for Conversational AI, 2020 (https://arxiv.org/abs/2003.04807).
- **Licence**: Creative Commons Attribution 4.0 International (CC BY 4.0),
  https://creativecommons.org/licenses/by/4.0/ — keep this attribution with any copy or derivative.
- **Changes**: subset selection only (see `scripts/make_examples.py`); rows shuffled with a fixed seed.
"""


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _read(path: Path) -> dict[str, list[str]]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            by_intent[row["category"]].append(row["text"].strip())
    return by_intent


def slice_size(intent_rows: int, source_rows: int) -> int:
    """Rows kept for one intent: its share of the source, scaled to SLICE_ROWS, at least MIN_PER_INTENT."""
    return max(MIN_PER_INTENT, round(intent_rows * SLICE_ROWS / source_rows))


def _take(pool: list[str], k: int, rng: random.Random, seen: set[str]) -> list[str]:
    out = []
    for text in rng.sample(pool, len(pool)):
        key = _norm(text)
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
        if len(out) == k:
            return out
    raise SystemExit(f"not enough distinct queries (wanted {k})")


def build(source: Path, out: Path) -> dict[str, int]:
    train, test = _read(source / "train.csv"), _read(source / "test.csv")
    intents = json.loads((source / "categories.json").read_text(encoding="utf-8"))
    rng = random.Random(SEED)
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    notes: list[dict] = []
    prompts: list[dict] = []
    n_source = sum(len(v) for v in train.values())
    for intent in intents:   # categories.json order: stable
        k = slice_size(len(train[intent]), n_source)
        rows += [(t, intent) for t in _take(train[intent], k, rng, seen)]
        topic = intent.replace("_", " ")
        for _ in range(NOTES_PER_INTENT):
            qs = _take(test[intent], QUERIES_PER_NOTE, rng, seen)
            notes.append({"text": f"Support notes on {topic}. Customers wrote: " + " ".join(f'"{q}"' for q in qs)})
        prompts += [{"prompt": t} for t in _take(test[intent], PROMPTS_PER_INTENT, rng, seen)]
    rng.shuffle(rows)
    rng.shuffle(notes)
    rng.shuffle(prompts)

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "banking77-small.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["text", "category"])
        w.writerows(rows)
    for name, recs in (("support-notes.jsonl", notes), ("distill-prompts.jsonl", prompts)):
        with open(out / name, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    (out / "LICENSE-banking77.md").write_text(LICENSE_TEXT, encoding="utf-8")
    return {"banking77-small.csv": len(rows), "support-notes.jsonl": len(notes), "distill-prompts.jsonl": len(prompts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                    help="BANKING77 folder (train.csv, test.csv, categories.json)")
    ap.add_argument("--out", type=Path, default=ROOT / "examples" / "data")
    args = ap.parse_args()
    if not (args.source / "train.csv").exists():
        raise SystemExit(f"{args.source}/train.csv not found: pass --source <banking77 folder>")
    for name, n in build(args.source, args.out).items():
        print(f"{args.out / name}: {n} records")


if __name__ == "__main__":
    main()
