"""Data files for tests: slices of the BANKING77 example (examples/data/banking77-small.csv)."""

from __future__ import annotations

import csv
from pathlib import Path

from scenarios.harness import REPO


def banking77_slice(path: Path, first: int, n: int, wrong_every: int = 0) -> str:
    """Rows ``first`` .. ``first + n`` of BANKING77 written to ``path`` (text, category); with ``wrong_every`` k,
    every k-th label is the next row's (wrong) label. Returns the path as a string (a config's data.source)."""
    with (REPO / "examples/data/banking77-small.csv").open() as fh:
        rows = list(csv.DictReader(fh))[first:first + n]
    if wrong_every:
        labels = [r["category"] for r in rows]
        for i, r in enumerate(rows):
            if i % wrong_every == 0:
                r["category"] = labels[(i + 1) % len(labels)]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "category"])
        w.writeheader()
        w.writerows(rows)
    return str(path)
