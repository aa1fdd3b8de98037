"""Per-record keys on disk, and the steps of ``prepare`` that work on them in bounded memory.

Pass 1 of ``tasks.prepare`` keeps, per good record, a few fixed-size numbers (``COLUMNS``: the
exact/near/prompt keys, the answer key, a label id, a character count and the line). They go to
column files in a temporary directory a chunk at a time (``KeyStore``). Every later step reads them
back a chunk at a time, or hash-partitions them into buckets of about ``BUCKET_RECORDS`` records
(``Buckets``: records with equal keys land in the same bucket), so the memory a step needs is set by
those two constants, not by the size of the file. The one array as long as the file is the split
byte of each record (``assign``, 1 byte a record), which the write pass reads.

Seeded choices (the ``max_records`` sample, the split of each duplicate group, the preset's train
cap) rank items by a score, ``scores(position, salt)``: splitmix64 of the record's position, a
bijection, so scores are distinct, spread uniformly and the same in every process (the keys
themselves use Python's per-process ``hash``, so they only decide equality, never order).
"Take the k lowest scores of each stratum" is exact (``rank_cuts``): a histogram of each score's top
byte finds the byte the k-th score falls in, and a second read sorts only that byte's scores.

Bounded, with one caveat: all records of one key value land in one bucket, so a file in which a
single text repeats more than ``BUCKET_RECORDS`` times makes that bucket as big as its copies
(24 bytes each). Disk: about 40 bytes a record for the columns plus 24 for the bucket being built,
in the output directory, removed when prepare ends (also on failure).

Codes in ``assign``: 0/1/2 the split (train/validation/test), ``KEPT`` kept with no split yet,
``OUT`` not in the ``max_records`` sample, ``DUP`` dropped as a duplicate, ``CAPPED`` sampled out of
train by the preset's cap. Only 0/1/2 are written.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHUNK = 1 << 15            # records per read of a column file
BUCKET_RECORDS = 1 << 15   # records per hash bucket, on average
MAX_BUCKETS = 256          # open bucket files at once; beyond 256 x 32k = 8M records a bucket holds more

COLUMNS = {"exact": "q", "near": "q", "prompt": "q", "answer": "I", "label": "h", "chars": "i", "line": "q"}
_DTYPE = {"q": np.int64, "I": np.uint32, "h": np.int16, "i": np.int32}

OUT, DUP, CAPPED, KEPT = -1, -3, -2, 3

# salts of the three seeded choices (``salt``): one seed gives independent orders
SAMPLE, SPLIT, CAP = 1, 2, 3


class KeyStore:
    """Column files of fixed-size numbers, one row per good record: appended in chunks, read in chunks."""

    def __init__(self, parent: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=parent, prefix=".prepare-keys-"))
        self._out = {c: open(self.dir / c, "wb") for c in COLUMNS}    # noqa: SIM115 - closed in finish/close
        self.n = 0

    def append(self, cols: dict[str, array]) -> None:
        """Append one chunk (every column the same length)."""
        for c, a in cols.items():
            a.tofile(self._out[c])
        self.n += len(cols["exact"])

    def finish(self) -> None:
        for f in self._out.values():
            f.close()

    def read(self, col: str, start: int, stop: int) -> np.ndarray:
        dtype = _DTYPE[COLUMNS[col]]
        stop = min(stop, self.n)
        if stop <= start:
            return np.zeros(0, dtype=dtype)
        return np.fromfile(self.dir / col, dtype=dtype, count=stop - start, offset=start * np.dtype(dtype).itemsize)

    def at(self, col: str, i: int) -> int:
        return int(self.read(col, i, i + 1)[0])

    def chunks(self, *cols: str) -> Iterator[tuple[int, list[np.ndarray]]]:
        """(first record index, one array per column), ``CHUNK`` records at a time."""
        for a in range(0, self.n, CHUNK):
            yield a, [self.read(c, a, a + CHUNK) for c in cols]

    def close(self) -> None:
        for f in self._out.values():
            f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Buckets:
    """The records whose ``assign`` code is in ``codes``, hash-partitioned by the column ``key``: a bucket
    holds every record of its key values, in record order, as a structured array with the fields
    ``key``, ``cols`` and ``idx`` (the record's index). Iterate to get the buckets one at a time."""

    def __init__(self, store: KeyStore, assign: np.ndarray, key: str, cols: tuple[str, ...],
                 codes: tuple[int, ...]) -> None:
        self.dtype = np.dtype([(c, _DTYPE[COLUMNS[c]]) for c in (key, *cols)] + [("idx", np.int64)])
        want = np.zeros(256, dtype=bool)                    # code -> wanted, indexed by the code's byte
        want[np.array(codes, dtype=np.int8).view(np.uint8)] = True
        count = sum(int(np.count_nonzero(want[assign[a:a + CHUNK].view(np.uint8)]))
                    for a in range(0, len(assign), CHUNK))
        self.n_buckets = min(MAX_BUCKETS, max(1, math.ceil(count / BUCKET_RECORDS)))
        self.paths = [store.dir / f"{key}-{b}" for b in range(self.n_buckets)]
        p = np.uint64(self.n_buckets)
        files = [open(path, "wb", buffering=0) for path in self.paths]   # noqa: SIM115 - unbuffered: one write per
        # bucket per chunk already, and no 8 KiB buffer per open bucket
        try:
            for a, arrays in store.chunks(key, *cols):
                m = want[assign[a:a + len(arrays[0])].view(np.uint8)]
                rows = np.empty(int(m.sum()), dtype=self.dtype)
                for name, arr in zip((key, *cols), arrays, strict=True):
                    rows[name] = arr[m]
                rows["idx"] = np.flatnonzero(m) + a
                # bucket = the key's high 32 bits scaled to [0, n_buckets) (keys are hashes: uniform)
                bucket = ((rows[key].view(np.uint64) >> np.uint64(32)) * p >> np.uint64(32)).astype(np.uint16)
                order = np.argsort(bucket, kind="stable")          # record order kept within a bucket (a radix sort)
                rows = rows[order]
                bounds = np.searchsorted(bucket[order], np.arange(self.n_buckets + 1))
                for b in np.flatnonzero(np.diff(bounds)):
                    files[b].write(rows[bounds[b]:bounds[b + 1]].tobytes())
        finally:
            for f in files:
                f.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            yield np.fromfile(path, dtype=self.dtype)

    def close(self) -> None:
        for path in self.paths:
            if path.exists():
                os.unlink(path)


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """``starts[j]``: element j of a sorted array differs from the one before (a new run)."""
    starts = np.ones(len(sorted_keys), dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
    return starts


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def scores(idx: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64(idx + salt): a bijection of 64-bit integers (distinct positions, distinct scores)."""
    z = idx.astype(np.uint64) + np.uint64(salt)
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def salt(seed: int, purpose: int) -> int:
    """The salt of one seeded choice (``SAMPLE``, ``SPLIT``, ``CAP``) for a config's seed."""
    return int(scores(np.array([(seed * 4 + purpose) % 2**64], dtype=np.uint64), 0x9E3779B97F4A7C15)[0])


class Cuts:
    """Per stratum, score thresholds: an item is ``below(j)`` when fewer than ``ranks[s, j]`` items of its
    stratum score lower than it, i.e. it is among the ``ranks[s, j]`` lowest."""

    def __init__(self, thr: np.ndarray, every: np.ndarray) -> None:
        self.thr, self.every = thr, every

    def below(self, strata: np.ndarray, sc: np.ndarray, j: int) -> np.ndarray:
        s = strata.astype(np.int64)
        return self.every[s, j] | (sc < self.thr[s, j])


def rank_cuts(stream: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], ranks: np.ndarray) -> Cuts:
    """Thresholds for the ``ranks[s, j]`` lowest scores of each stratum ``s``, from two reads of ``stream``
    (chunks of (stratum, score); strata in ``[0, len(ranks))``, scores distinct). Memory: a 256-bin
    histogram per stratum, then only the scores sharing a top byte with a threshold (about 1/256 of them
    per threshold)."""
    n_strata, n_ranks = ranks.shape
    hist = np.zeros(n_strata * 256, dtype=np.int64)
    for st, sc in stream():
        hist += np.bincount(st.astype(np.int64) * 256 + (sc >> np.uint64(56)).astype(np.int64),
                            minlength=n_strata * 256)
    cum = np.cumsum(hist.reshape(n_strata, 256), axis=1)
    every = ranks >= cum[:, -1:]                       # the rank takes the whole stratum
    thr = np.zeros((n_strata, n_ranks), dtype=np.uint64)
    todo = [(s, j) for s in range(n_strata) for j in range(n_ranks) if not every[s, j]]
    if not todo:
        return Cuts(thr, every)
    top = {(s, j): int(np.searchsorted(cum[s], ranks[s, j], side="right")) for s, j in todo}   # byte of the rank-th
    want = np.zeros(n_strata * 256, dtype=bool)
    for (s, _), b in top.items():
        want[s * 256 + b] = True
    got_bin, got_sc = [], []
    for st, sc in stream():
        binno = st.astype(np.int64) * 256 + (sc >> np.uint64(56)).astype(np.int64)
        m = want[binno]
        got_bin.append(binno[m])
        got_sc.append(sc[m])
    bins = np.concatenate(got_bin)
    vals = np.concatenate(got_sc)
    order = np.lexsort((vals, bins))
    bins, vals = bins[order], vals[order]
    for (s, j), b in top.items():
        lo = int(np.searchsorted(bins, s * 256 + b))
        before = int(cum[s, b - 1]) if b else 0
        thr[s, j] = vals[lo + int(ranks[s, j]) - before]
    return Cuts(thr, every)


# ---------------------------------------------------------------------------------------------
# the steps, in the order prepare runs them
# ---------------------------------------------------------------------------------------------
def _positions(n: int) -> Iterator[np.ndarray]:
    for a in range(0, n, CHUNK):
        yield np.arange(a, min(n, a + CHUNK), dtype=np.int64)


def sample(n: int, k: int | None, seed: int) -> np.ndarray:
    """The ``assign`` array: ``KEPT`` for a seeded sample of ``k`` of the ``n`` records (all of them when
    ``k`` is None or >= n), ``OUT`` for the others."""
    assign = np.full(n, KEPT, dtype=np.int8)
    if k is None or n <= k:
        return assign
    s = salt(seed, SAMPLE)
    cuts = rank_cuts(lambda: ((np.zeros(len(i), np.int64), scores(i, s)) for i in _positions(n)), np.array([[k]]))
    for i in _positions(n):
        assign[i[0]:i[-1] + 1][~cuts.below(np.zeros(len(i), np.int64), scores(i, s), 0)] = OUT
    return assign


@dataclass
class Duplicates:
    selected: int = 0          # records looked at (the sample)
    distinct_exact: int = 0    # distinct texts
    distinct_near: int = 0     # distinct normalized texts (near-duplicate groups)
    # first 10: (record, first of its group, exact?)
    examples: list[tuple[int, int, bool]] = field(default_factory=list)


def find_duplicates(store: KeyStore, assign: np.ndarray, drop: bool) -> Duplicates:
    """Exact and near duplicates among the ``KEPT`` records; with ``drop`` every record but the first of
    each near-duplicate group becomes ``DUP``."""
    out = Duplicates()
    buckets = Buckets(store, assign, "near", ("exact",), (KEPT,))
    try:
        for b in buckets:
            if not len(b):
                continue
            b = b[np.argsort(b["near"], kind="stable")]        # record order kept within a near key
            starts = run_starts(b["near"])
            out.selected += len(b)
            out.distinct_near += int(starts.sum())
            # distinct texts (equal texts have equal near keys, so all copies of one text are in this bucket)
            out.distinct_exact += int(run_starts(np.sort(b["exact"])).sum())
            dup = ~starts
            if not dup.any():
                continue
            first_row = np.flatnonzero(starts)[np.cumsum(starts) - 1][dup]   # the first record of each one's group
            di, fi = b["idx"][dup], b["idx"][first_row]
            if drop:
                assign[di] = DUP
            top = np.argsort(di, kind="stable")[:10]
            same = b["exact"][dup][top] == b["exact"][first_row][top]
            out.examples = sorted(out.examples + list(zip(di[top].tolist(), fi[top].tolist(), same.tolist(),
                                                          strict=True)))[:10]
    finally:
        buckets.close()
    return out


def _split_ranks(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """(test, validation) groups of a stratum of ``n`` groups, at least one group left in train."""
    n_test = int(round(n * fractions[2]))
    n_val = int(round(n * fractions[1]))
    if n_test + n_val >= n and n > 0:
        over = n_test + n_val - (n - 1)
        cut = min(over, n_test)
        n_test -= cut
        n_val -= over - cut
    return n_test, n_val


class PromptGroups:
    """Records with the same normalized prompt (duplicates, conflicting answers) form a group, and a group
    never straddles two splits. Partitioned once by prompt key; ``scan`` counts, ``split`` assigns."""

    def __init__(self, store: KeyStore, assign: np.ndarray) -> None:
        self.store, self.assign = store, assign
        self.buckets = Buckets(store, assign, "prompt", ("answer", "label"), (KEPT, DUP))   # the whole sample
        self.groups = store.dir / "groups"         # (first record, its label) of each group of KEPT records

    def _sorted(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The bucket sorted by prompt (record order within one prompt), where each prompt's run starts, its
        KEPT rows, and where each group (a prompt's KEPT rows) starts among them."""
        b = b[np.argsort(b["prompt"], kind="stable")]
        starts = run_starts(b["prompt"])
        kept = self.assign[b["idx"]] == KEPT
        k = b[kept]
        return b, starts, k, run_starts(k["prompt"])

    def scan(self) -> tuple[int, np.ndarray]:
        """(prompts seen with more than one answer in the sample, histogram of KEPT records' label ids + 1)."""
        conflicts = 0
        hist = np.zeros(1, dtype=np.int64)
        dtype = np.dtype([("first", np.int64), ("label", np.int16)])
        with open(self.groups, "wb") as gf:
            for b in self.buckets:
                if not len(b):
                    continue
                b, starts, k, gstarts = self._sorted(b)
                at = np.flatnonzero(starts)
                ans = b["answer"]
                conflicts += int(np.count_nonzero(np.minimum.reduceat(ans, at) != np.maximum.reduceat(ans, at)))
                lab = np.bincount(k["label"].astype(np.int64) + 1)
                if len(lab) > len(hist):
                    hist = np.concatenate([hist, np.zeros(len(lab) - len(hist), np.int64)])
                hist[:len(lab)] += lab
                g = np.empty(int(gstarts.sum()), dtype=dtype)
                g["first"], g["label"] = k["idx"][gstarts], k["label"][gstarts]
                gf.write(g.tobytes())
        self._gdtype = dtype
        return conflicts, hist

    def split(self, stratify: bool, n_strata: int, fractions: tuple[float, float, float], seed: int) -> None:
        """Each group of KEPT records to test (the lowest scores of its stratum), validation (the next) or
        train; a group's stratum is its first record's label when ``stratify``."""
        s = salt(seed, SPLIT)
        n_strata = n_strata if stratify else 1

        def group_rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            """(first record, stratum) of each group, a chunk at a time."""
            with open(self.groups, "rb") as gf:
                while len(g := np.fromfile(gf, dtype=self._gdtype, count=CHUNK)):
                    yield g["first"], (g["label"] if stratify else np.zeros(len(g), np.int16))

        per_stratum = np.zeros(n_strata, dtype=np.int64)
        for _, st in group_rows():
            per_stratum += np.bincount(st.astype(np.int64), minlength=n_strata)
        ranks = np.array([[t, t + v] for t, v in (_split_ranks(int(c), fractions) for c in per_stratum)],
                         dtype=np.int64)
        cuts = rank_cuts(lambda: ((st, scores(first, s)) for first, st in group_rows()), ranks.reshape(n_strata, 2))
        for b in self.buckets:
            if not len(b):
                continue
            _, _, k, starts = self._sorted(b)
            if not len(k):
                continue
            first = k["idx"][starts]
            st = k["label"][starts] if stratify else np.zeros(len(first), np.int16)
            sc = scores(first, s)
            code = np.where(cuts.below(st, sc, 0), 2, np.where(cuts.below(st, sc, 1), 1, 0)).astype(np.int8)
            self.assign[k["idx"]] = code[np.cumsum(starts) - 1]

    def close(self) -> None:
        self.buckets.close()
        if self.groups.exists():
            os.unlink(self.groups)


def cap_train(store: KeyStore, assign: np.ndarray, cap: int | None, stratify: bool, n_strata: int, seed: int) -> int:
    """Sample the train split down to ``cap`` records (the others become ``CAPPED``), in proportion per
    label when ``stratify`` (largest remainders get the leftover places). Returns how many were dropped."""
    n_strata = n_strata if stratify else 1
    s = salt(seed, CAP)

    def train_rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(record indices, their strata) of the train records, a chunk at a time."""
        for a, (lab,) in store.chunks("label"):
            m = assign[a:a + len(lab)] == 0
            yield np.flatnonzero(m) + a, (lab[m] if stratify else np.zeros(int(m.sum()), np.int16))

    counts = np.zeros(n_strata, dtype=np.int64)
    for _, st in train_rows():
        counts += np.bincount(st.astype(np.int64), minlength=n_strata)
    total = int(counts.sum())
    if cap is None or total <= cap:
        return 0
    quota = np.floor(counts * cap / total).astype(np.int64)
    present = np.flatnonzero(counts)
    remainder = (counts * cap / total - quota)[present]
    quota[present[np.argsort(-remainder, kind="stable")[:cap - int(quota.sum())]]] += 1
    cuts = rank_cuts(lambda: ((st, scores(idx, s)) for idx, st in train_rows()), quota.reshape(n_strata, 1))
    dropped = 0
    for idx, st in train_rows():
        out = idx[~cuts.below(st, scores(idx, s), 0)]
        assign[out] = CAPPED
        dropped += len(out)
    return dropped


@dataclass
class Stats:
    counts: list[int]                    # records per split
    kept: int                            # records kept after dedupe (the cap's dropped ones included)
    chars_min: int
    chars_max: int
    chars_sum: int
    train_chars: int
    labels: list[dict[int, int]]         # per split: label id -> records, in order of first appearance


def split_stats(store: KeyStore, assign: np.ndarray, with_labels: bool) -> Stats:
    st = Stats([0, 0, 0], 0, 2**31, 0, 0, 0, [{}, {}, {}])
    for a, (chars, lab) in store.chunks("chars", "label"):
        code = assign[a:a + len(chars)]
        kept = (code >= 0) & (code < KEPT) | (code == CAPPED)
        if kept.any():
            c = chars[kept]
            st.kept += len(c)
            st.chars_min = min(st.chars_min, int(c.min()))
            st.chars_max = max(st.chars_max, int(c.max()))
            st.chars_sum += int(c.sum(dtype=np.int64))
        st.train_chars += int(chars[code == 0].sum(dtype=np.int64))
        for k in range(3):
            m = code == k
            st.counts[k] += int(m.sum())
            if with_labels and m.any():
                u, first, cnt = np.unique(lab[m], return_index=True, return_counts=True)
                seen = st.labels[k]
                for j in np.argsort(first, kind="stable"):        # new labels in the order they first appear
                    seen[int(u[j])] = seen.get(int(u[j]), 0) + int(cnt[j])
    if not st.kept:
        st.chars_min = 0
    return st


def eval_keys(store: KeyStore, assign: np.ndarray) -> np.ndarray:
    """Sorted near and prompt keys of the validation and test records (augmented copies must not match one)."""
    parts = []
    for a, (near, prompt) in store.chunks("near", "prompt"):
        m = assign[a:a + len(near)] > 0
        m &= assign[a:a + len(near)] < KEPT
        parts += [near[m], prompt[m]]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
