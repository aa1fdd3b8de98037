"""prepare: raw data -> the base model's training format, quality report, seeded train/validation/test split.

``prepare(config, out_dir)`` writes ``train.jsonl``, ``validation.jsonl`` (when non-empty),
``test.jsonl`` (when non-empty) and ``report.json`` into ``out_dir`` and returns ``PreparedData``.
Bad input raises ``DataValidationError`` with every located problem before anything is written.
Plain functions (no Prefect): the stage's cached ``@task`` is ``tasks/prepare.py``.

Memory does not grow with the file: the text is never held, and the per-record keys go to files on
disk (``tasks/data/keys.py``); the one in-memory array as long as the file is the split byte of each
record. The phases, in order:

1. **scan** (``_scan``): ``tasks.data.scanner.SourceScanner`` reads in 64 KiB chunks (CSV rows, Parquet
   batches), checks every rule and keeps, per good record, fixed-size numbers (``fingerprints.KeyScan``):
   three 64-bit hashes (exact texts, normalized record, normalized prompt), the normalized answer's low
   32 bits, a 16-bit label id, a 32-bit character count and the line, appended to ``keys.KeyStore``
   column files every ``keys.CHUNK`` records. Label ids are tracked while completions look like labels
   (<= ``LABEL_MAX_DISTINCT`` short distinct values), then dropped. Formatted prompt/completion JSONL
   (the commonest input) is recognised inline by the scanner and handed to ``KeyScan.add_pc`` with no
   per-record object.
2. **sample, dedupe** (``_dedupe``), **split** (``_split``), **cap** (``_cap``): the seeded
   ``max_records`` sample, dedupe, conflict count, grouped (stratified) split and the preset's train cap
   read those files back a chunk at a time or hash-partitioned into buckets of bounded size
   (``tasks/data/keys.py``): duplicates are grouped by normalized text, records of one normalized prompt
   form a group, and a group never straddles two splits. The result is the ``assign`` byte per record.
   The splits' record counts are checked against the model's limits before anything is written.
3. **write** (``_write``): the source is streamed again and each record goes straight to its split file
   (sha256 computed while writing, in the work folder). A source already in the
   model's format is copied as it is, 256 KiB of lines at a time (``_copy_lines``; it passed every rule in
   pass 1); raw sources are converted again. Augmented copies are made on the fly for train records
   only; with augmentation on, the validation/test near and prompt keys are held in memory for the
   leak check (16 bytes per validation/test record), the one exception to the bound above.
4. **report** (``_report``): report.json and the ``PreparedData``.
5. **publish**: the work folder becomes the output folder with one rename (``tasks/data/outputs.py``);
   any error before that removes it and leaves the output folder as it was.

Every source goes through the pre-flight of ``tasks/data/sources.py`` first (regular files only, compression
and encoding sniffed; an ``s3://`` object streamed into the work folder after the same sniff).

Speed and memory against a plain per-line loop: see bench/results-prepare.md (bench/prepare.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from tasks.catalog import PRESETS, CustomizationType, DataFormat
from tasks.config import PipelineConfig
from tasks.data import keys, outputs, readers, sources
from tasks.data.fingerprints import (
    LABEL_MAX_CHARS,
    LABEL_MAX_DISTINCT,
    LABEL_MAX_SHARE,
    SHORT_CHARS,
    KeyScan,
    dedupe_key,
    dedupe_key_text,
    fingerprints,
)
from tasks.data.formats import Example, from_record, record_texts, to_record
from tasks.data.problems import DataValidationError, Problem, ValidationReport
from tasks.data.rules import Rules, check_record
from tasks.data.scanner import SourceScanner
from tasks.data.validate import validate_config
from tasks.run.types import PreparedData, SplitFile

__all__ = ["COPY_CHUNK", "LABEL_MAX_CHARS", "LABEL_MAX_DISTINCT", "LABEL_MAX_SHARE", "SHORT_CHARS", "SPLITS",
           "dedupe_key", "dedupe_key_text", "fingerprints", "prepare"]

SPLITS = ("train", "validation", "test")
COPY_CHUNK = 1 << 18           # bytes read at a time when a formatted source is copied (``_copy_lines``)

Progress = Callable[[int], None]


def prepare(config: PipelineConfig, out_dir: str | Path, *, progress: Progress | None = None,
            s3: Any = None) -> PreparedData:
    """Read, check, convert, dedupe, split, augment (train only) and write the splits + report.json.

    Everything is written into a work folder that becomes ``out_dir`` with one rename at the end
    (``tasks.data.outputs``): on any error (bad data, ENOSPC, a kill) ``out_dir`` is left as it was. An output
    folder that holds the source is refused. An ``s3://`` source is streamed into the work folder with ``s3``
    (a boto3 S3 client; default: ``tasks.aws.clients.make_clients(config.aws).s3``) after the same pre-flight."""
    out = Path(out_dir)
    outputs.check_out(config.data.source, out)
    work = outputs.WorkDir.start(out)
    try:
        source = _local_source(config, work.path, s3)
        stamp = _stamp(source)
        store = keys.KeyStore(work.path)
        try:
            scanned = _scan(config, source, store, progress)
            sel = _select(config, scanned, store, source)
            plan = _plan_augmentation(config, scanned.rules, sel, scanned.warnings)
            split_problems = _split_count_problems(source, scanned.rules, sel.counts["train"] + plan.n_planned,
                                                   sel.counts["validation"])
            split_problems += _empty_test_problems(config, source, sel)
            if split_problems:
                raise DataValidationError(split_problems)
            written = _write(config, source, work.path, scanned, store, sel.assign, plan)
            if _stamp(source) != stamp or (scanned.n and written.last != scanned.n - 1):
                written.discard()
                raise DataValidationError([Problem(file=str(source), field="file",
                                                   message="changed while it was being prepared",
                                                   fix="run prepare again once the file is complete")])
            files = written.commit(work.path, work.out)
            prepared = _report(config, work.path, work.out, scanned, sel, plan, written, files)
        finally:
            store.close()
        work.publish()
        return prepared
    finally:
        work.discard()


# ---------------------------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------------------------
def _local_source(config: PipelineConfig, work: Path, s3: Any = None) -> str:
    """The data source as a local path (an s3:// source is streamed once into the work folder's .source,
    after the pre-flight of ``tasks.data.sources.fetch_s3``)."""
    src = config.data.source
    if not src.startswith("s3://"):
        return src
    dest = work / ".source" / (Path(src).name or "source")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if s3 is None:
        from tasks.aws.clients import make_clients

        s3 = make_clients(config.aws).s3
    try:
        sources.fetch_s3(s3, src, dest)
    except sources.SourceProblem as e:
        raise DataValidationError([Problem(file=src, line=e.line, field=e.field, message=e.message,
                                           fix=e.fix)]) from None
    return str(dest)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None


def _scanner(config: PipelineConfig, source: str, progress: Progress | None, trusted: bool = False) -> SourceScanner:
    d = config.data
    return SourceScanner(source, config.base_model, config.customization_type, columns=d.columns, fmt="auto",
                         shown_as=d.source if d.source.startswith("s3://") else None,
                         role="source", system_prompt=d.system_prompt, prompt_template=d.prompt_template,
                         teacher=config.distillation.teacher_model if config.distillation else None,
                         kind=d.format if d.format != "auto" else "auto", progress=progress, trusted=trusted,
                         media_bucket=config.aws.bucket)


def _config_problems(config: PipelineConfig) -> list[Problem]:
    """Training-data settings problems: hyperparameters, system prompt, template, augmentation prefixes.
    (AWS names and region are checked by ``validate_config`` for ``forge validate CONFIG``, not here.)"""
    keep = ("hyperparameters", "rft.", "preset", "data.", "base_model")
    return [p for p in validate_config(config, "config") if p.field.startswith(keep)]


# ---------------------------------------------------------------------------------------------
# phase 1: scan (validate + per-record keys to disk)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Scanned:
    rules: Rules
    scan: KeyScan
    report: ValidationReport
    n: int                       # good records (rows of the key store)
    warnings: list[str]

    @property
    def formatted(self) -> bool:
        return self.report.stats.get("mode") == "formatted"


def _scan(config: PipelineConfig, source: str, store: keys.KeyStore, progress: Progress | None) -> _Scanned:
    """Pass 1: every rule on every record (raises ``DataValidationError`` with all of them), keys to disk."""
    scanner = _scanner(config, source, progress)
    rules = scanner.rules
    scan = KeyScan(rules, store) if rules is not None else None
    add = scan.add if scan is not None else None
    scanner.sink = scan.add_pc if scan is not None else None
    for item in scanner:
        add(item)  # type: ignore[misc]
    report = scanner.report()
    problems = list(report.problems)
    total = report.total_problems
    cfg_problems = _config_problems(config)
    problems += cfg_problems
    total += len(cfg_problems)
    if total or rules is None:
        raise DataValidationError(problems, total)
    assert rules is not None and scan is not None
    scan.flush()
    store.finish()
    d = config.data
    warnings: list[str] = list(report.stats.get("warnings") or [])
    if report.stats.get("mode") == "formatted" and (d.system_prompt or d.prompt_template != "{prompt}"):
        warnings.append("the input is already in the model's format: data.system_prompt / data.prompt_template "
                        "were not applied")
    return _Scanned(rules=rules, scan=scan, report=report, n=store.n, warnings=warnings)


# ---------------------------------------------------------------------------------------------
# phase 2: sample, dedupe, split, cap (tasks/data/keys.py: bounded memory)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Selection:
    assign: np.ndarray                    # the split byte of every record (keys.py codes)
    n_sel: int = 0                        # records in the max_records sample
    dup_examples: list[dict] = field(default_factory=list)
    exact_dups: int = 0
    near_only_dups: int = 0
    dropped: int = 0
    conflicts: int = 0
    labels: dict[str, int] | None = None
    n_distinct: int | None = None
    label_like: bool = False
    stratify: bool = False
    capped: int = 0
    stats: keys.Stats | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _select(config: PipelineConfig, scanned: _Scanned, store: keys.KeyStore, source: str) -> _Selection:
    """Which records go to which split: the seeded sample, duplicates, the grouped split, the train cap."""
    d = config.data
    sel = _Selection(assign=keys.sample(scanned.n, d.max_records, d.split.seed))
    _dedupe(sel, store, d.dedupe)
    n_strata = _split(config, scanned, store, sel, source)
    _cap(config, store, sel, n_strata, scanned.warnings)
    return sel


def _dedupe(sel: _Selection, store: keys.KeyStore, drop: bool) -> None:
    dups = keys.find_duplicates(store, sel.assign, drop=drop)
    sel.n_sel = dups.selected
    sel.dup_examples = [{"line": store.at("line", i), "duplicate_of_line": store.at("line", f),
                         "kind": "exact" if same else "near"} for i, f, same in dups.examples]
    sel.exact_dups = dups.selected - dups.distinct_exact
    sel.near_only_dups = dups.distinct_exact - dups.distinct_near
    sel.dropped = dups.selected - dups.distinct_near if drop else 0


def _split(config: PipelineConfig, scanned: _Scanned, store: keys.KeyStore, sel: _Selection, source: str) -> int:
    """Groups of one normalized prompt, label-like or not, the (stratified) split; returns the strata."""
    sp = config.data.split
    groups = keys.PromptGroups(store, sel.assign)
    try:
        sel.conflicts, label_hist = groups.scan()             # label_hist[id + 1]: kept records per label id
        n_kept = int(label_hist.sum())
        if n_kept == 0:
            raise DataValidationError([Problem(file=str(source), field="records",
                                               message="no records left after dedupe/sampling", fix="add data")])
        labels = sel.labels = scanned.scan.labels
        sel.n_distinct = int(np.count_nonzero(label_hist)) if labels is not None else None
        sel.label_like = bool(
            labels is not None and scanned.rules.ctype == CustomizationType.FINE_TUNING
            and sel.n_distinct is not None and 2 <= sel.n_distinct <= max(2, LABEL_MAX_SHARE * n_kept)
        )
        stratify = sp.stratify == "yes" or (sp.stratify == "auto" and sel.label_like)
        if stratify and labels is None:
            scanned.warnings.append("stratify=yes but completions are not label-like (too many or too long): "
                                    "split is not stratified")
            stratify = False
        sel.stratify = stratify
        n_strata = max(1, len(labels or {}))
        groups.split(stratify, n_strata, (sp.train, sp.validation, sp.test), sp.seed)
    finally:
        groups.close()
    return n_strata


def _cap(config: PipelineConfig, store: keys.KeyStore, sel: _Selection, n_strata: int, warnings: list[str]) -> None:
    """The preset's cap on training records (e.g. "quick": 1,000), a seeded sample of the train split,
    per label when stratified; validation/test keep their size. Then the splits' counts."""
    cap = PRESETS[config.preset].max_train_records if config.preset in PRESETS else None
    sel.capped = keys.cap_train(store, sel.assign, cap, sel.stratify, n_strata, config.data.split.seed)
    sel.stats = keys.split_stats(store, sel.assign, with_labels=sel.label_like)
    sel.counts = dict(zip(SPLITS, sel.stats.counts, strict=True))
    if sel.capped:
        warnings.append(f"preset {config.preset!r} caps training at {cap:,} records: {sel.capped:,} sampled out "
                        "of the train split (validation/test unchanged)")


@dataclass
class _AugmentPlan:
    prefixes: list[str]
    copies: int
    seed: int
    n_planned: int                 # augmented train copies planned (0: no augmentation)


def _plan_augmentation(config: PipelineConfig, rules: Rules, sel: _Selection, warnings: list[str]) -> _AugmentPlan:
    aug = config.data.augment
    prefixes = [p for p in aug.prefixes if p] if aug.enabled else []
    n_planned = sel.counts["train"] * aug.copies if prefixes and rules.fmt is not DataFormat.CPT_INPUT else 0
    if aug.enabled and not prefixes:
        warnings.append("augment.enabled but every prefix is empty: nothing to add")
    return _AugmentPlan(prefixes=prefixes, copies=aug.copies, seed=aug.seed, n_planned=n_planned)


# ---------------------------------------------------------------------------------------------
# phase 3: write (pass 2 over the source)
# ---------------------------------------------------------------------------------------------
class _SplitWriter:
    """The three split files, written under temporary names (sha256 and sizes kept while writing),
    renamed into place by ``commit`` or removed by ``discard``."""

    def __init__(self, out: Path) -> None:
        self.tmp: dict[str, IO[bytes]] = {
            name: tempfile.NamedTemporaryFile("wb", dir=out, prefix=f".{name}.", suffix=".tmp", delete=False)
            for name in SPLITS}
        self.hashes = {name: hashlib.sha256() for name in SPLITS}
        self.sizes = dict.fromkeys(SPLITS, 0)
        self.written = dict.fromkeys(SPLITS, 0)
        self.last = -1                    # index of the last record read by the pass (-1: none)
        self.train_chars = 0              # characters of the augmented copies (added to the train split's)
        self.augmented = 0
        self.skipped_aug = 0

    def emit(self, name: str, rec: dict | bytes, records: int = 1) -> None:
        b = rec if isinstance(rec, bytes) else (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        self.tmp[name].write(b)
        self.hashes[name].update(b)
        self.sizes[name] += len(b)
        self.written[name] += records

    def commit(self, work: Path, out: Path) -> dict[str, SplitFile | None]:
        """Rename the split files to their names in the work folder (an empty validation/test split has
        none); the paths recorded are those they will have in ``out`` once the work folder is published."""
        files: dict[str, SplitFile | None] = {}
        try:
            for name in SPLITS:
                if self.written[name] == 0 and name != "train":
                    os.unlink(self.tmp[name].name)
                    files[name] = None
                    continue
                os.replace(self.tmp[name].name, work / f"{name}.jsonl")
                files[name] = SplitFile(path=str(out / f"{name}.jsonl"), records=self.written[name],
                                        sha256=self.hashes[name].hexdigest(), bytes=self.sizes[name])
        finally:
            self.discard()
        return files

    def close(self) -> None:
        for f in self.tmp.values():
            if not f.closed:
                f.close()

    def discard(self) -> None:
        """Close and remove whatever temporary file is left."""
        self.close()
        for f in self.tmp.values():
            if os.path.exists(f.name):
                os.unlink(f.name)


def _write(config: PipelineConfig, source: str, out: Path, scanned: _Scanned, store: keys.KeyStore,
           assign: np.ndarray, plan: _AugmentPlan) -> _SplitWriter:
    """Pass 2: each record to its split file; augmented copies for train records. The files stay under
    their temporary names (the caller checks the source did not change, then commits)."""
    w = _SplitWriter(out)
    try:
        if scanned.formatted and not plan.n_planned:
            # formatted source, no augmentation: its lines go to the split files as they are, a chunk at a time
            w.last = _copy_lines(source, assign, lambda k, buf, m: w.emit(SPLITS[k], buf, m)) - 1
        else:
            _write_records(config, source, scanned, store, assign, plan, w)
        w.close()
    except BaseException:
        w.discard()
        raise
    return w


def _rows(config: PipelineConfig, source: str, formatted: bool) -> Iterator[tuple[int, bytes | None, Any]]:
    """(index, line bytes | None, Item | None). A formatted source passed every rule: its lines are
    copied as they are (no re-parse); raw sources are converted again (trusted, no re-check)."""
    if formatted:
        with _reopen(source) as fh:
            i = 0
            for _lineno, raw, _size in readers.iter_raw_lines(fh):
                if raw is None or not raw.strip():
                    continue
                yield i, raw.rstrip(b"\r\n") + b"\n", None
                i += 1
    else:
        for i, item in enumerate(_scanner(config, source, None, trusted=True)):
            yield i, None, item


def _write_records(config: PipelineConfig, source: str, scanned: _Scanned, store: keys.KeyStore,
                   assign: np.ndarray, plan: _AugmentPlan, w: _SplitWriter) -> None:
    """Record by record: raw sources (converted again), or a formatted source with augmentation."""
    n = scanned.n
    eval_near = keys.eval_keys(store, assign) if plan.n_planned else None
    rng_aug = np.random.default_rng(plan.seed)
    for i, line, item in _rows(config, source, scanned.formatted):
        w.last = i
        k = int(assign[i]) if i < n else -1
        if k < 0:
            continue
        w.emit(SPLITS[k], line if line is not None else item.record)
        if k == 0 and plan.n_planned:
            ex = item.example if item is not None else from_record(scanned.rules.fmt, json.loads(line))
            for _ in range(plan.copies):
                _augment(ex, scanned.rules, plan, rng_aug, eval_near, w)


def _augment(ex: Example, rules: Rules, plan: _AugmentPlan, rng: np.random.Generator,
             eval_near: np.ndarray | None, w: _SplitWriter) -> None:
    """One augmented copy of a train record (a seeded prefix), unless it breaks a rule or its near /
    prompt key is in the validation or test split (a leak)."""
    prefix = plan.prefixes[int(rng.integers(len(plan.prefixes)))]
    new = Example(ex.system, prefix + ex.prompt, ex.completion)
    rec = to_record(rules.fmt, new)
    texts = record_texts(rules.fmt, rec)
    _, nh, ph, _ = fingerprints(new, texts)
    bad: list[str] = []
    check_record(rec, rules, lambda f, m, x: bad.append(m))
    if bad or any(_contains(eval_near, h) for h in (nh, ph)):
        w.skipped_aug += 1
        return
    w.emit("train", rec)
    w.augmented += 1
    w.train_chars += sum(len(t) for t in texts)


def _copy_lines(source: str, assign: np.ndarray, write: Callable[[int, bytes, int], None]) -> int:
    """Pass 2 of a formatted source: line ``i`` (blank lines skipped, ``\\r`` endings dropped) goes as it
    is to split ``assign[i]`` (none when < 0), a chunk of the file at a time: ``write(split, bytes,
    number of lines)``. Returns the number of lines read (the caller compares it with pass 1's count)."""
    n = len(assign)
    seen = 0
    rest = b""
    with _reopen(source) as fh:
        while True:
            chunk = fh.read(COPY_CHUNK)
            if chunk:
                data = rest + chunk if rest else chunk
                lines = data.split(b"\n")
                rest = lines.pop()
            else:
                data, lines, rest = rest, ([rest] if rest else []), b""
            if b"\r" in data:
                lines = [ln.rstrip(b"\r\n") for ln in lines]
            if not all(ln.strip() for ln in lines):
                lines = [ln for ln in lines if ln.strip()]
            m = len(lines)
            a = assign[seen:min(seen + m, n)]
            seen += m
            for k in range(3):
                idx = np.flatnonzero(a == k).tolist()
                if idx:
                    write(k, b"\n".join([lines[j] for j in idx]) + b"\n", len(idx))
            if not chunk:
                return seen


def _reopen(source: str) -> IO[bytes]:
    """The source again for pass 2, with the same pre-flight (it may have been replaced since pass 1)."""
    try:
        return sources.open_regular(source)
    except sources.SourceProblem as e:
        raise DataValidationError([Problem(file=str(source), field="file", message=f"{e.message} (it changed while "
                                           "it was being prepared)", fix=e.fix)]) from None


def _contains(sorted_arr: np.ndarray | None, h: int) -> bool:
    pos = int(np.searchsorted(sorted_arr, h))
    return pos < len(sorted_arr) and int(sorted_arr[pos]) == h


def _split_count_problems(source: str, rules: Rules, n_train: int, n_val: int) -> list[Problem]:
    lim = rules.limits
    who = f"{rules.model_id} {rules.ctype.value}"
    out: list[Problem] = []

    def add(field: str, message: str, fix: str) -> None:
        out.append(Problem(file=str(source), field=field, message=message, fix=fix))

    if lim.min_train_records is not None and n_train < lim.min_train_records:
        add("split.train", f"the train split would have {n_train} record(s); {who} needs at least "
            f"{lim.min_train_records}", "add data or raise data.split.train")
    if lim.max_train_records is not None and n_train > lim.max_train_records:
        add("split.train", f"the train split would have {n_train:,} records; {who} accepts at most "
            f"{lim.max_train_records:,}",
            f"set data.max_records (e.g. {int(lim.max_train_records * 0.8):,}) or lower data.split.train")
    if n_val:
        if lim.min_validation_records is not None and n_val < lim.min_validation_records:
            add("split.validation", f"the validation split would have {n_val} record(s); {who} needs at least "
                f"{lim.min_validation_records}", "raise data.split.validation, or set it to 0 for no validation set")
        if lim.max_validation_records is not None and n_val > lim.max_validation_records:
            add("split.validation", f"the validation split would have {n_val:,} records; {who} accepts at most "
                f"{lim.max_validation_records:,}", "lower data.split.validation")
    if lim.max_total_records is not None and n_train + n_val > lim.max_total_records:
        add("split", f"train + validation would be {n_train + n_val:,} records; {who} accepts at most "
            f"{lim.max_total_records:,} in total", "set data.max_records or move more into the test split")
    if lim.min_total_records is not None and n_train + n_val < lim.min_total_records:
        short = lim.min_total_records - (n_train + n_val)
        add("split", f"train + validation would be {n_train + n_val:,} record(s); {who} needs at least "
            f"{lim.min_total_records:,} in total (the sum of training and validation records)",
            f"add data (at least {short:,} more record(s) in train + validation), or lower data.split.test "
            "to move records from the test split into train + validation")
    return out


def _empty_test_problems(config: PipelineConfig, source: str, sel: _Selection) -> list[Problem]:
    """A test split asked for (``data.split.test`` > 0, evaluation on) that came out empty: no evaluation would run
    and no gate would judge the model, and the run would still succeed. A stratified split rounds each label's
    share on its own (tasks/data/keys.py ``_split_ranks``), so many labels with a record or two each give none."""
    sp = config.data.split
    if not (sp.test > 0 and config.evaluation.enabled) or sel.counts.get("test", 0) > 0:
        return []
    kept = sum(sel.counts.get(k, 0) for k in ("train", "validation", "test"))
    why = (f", stratified by {sel.n_distinct} labels (each label's share of {sp.test:g} rounds to 0 records)"
           if sel.stratify and sel.n_distinct else "")
    return [Problem(file=str(source), field="split.test",
                    message=f"the test split would be empty: {kept} record(s){why}; no evaluation would run and no "
                            "quality gate would judge the model",
                    fix="add data, set data.split.stratify: no (a split by prompt only), or set data.split.test: 0 "
                        "and evaluation.enabled: false to train without evaluating")]


# ---------------------------------------------------------------------------------------------
# phase 4: report
# ---------------------------------------------------------------------------------------------
def _label_counts(sel: _Selection) -> dict[str, dict[str, int]]:
    """Per split, labels in order of first appearance (the order records are written in)."""
    label_counts: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    if sel.label_like:
        assert sel.stats is not None
        inv_labels = {v: k for k, v in (sel.labels or {}).items()}
        for k, name in enumerate(SPLITS):
            label_counts[name] = {inv_labels.get(lab, ""): c for lab, c in sel.stats.labels[k].items()}
    return label_counts


def _report(config: PipelineConfig, work: Path, out: Path, scanned: _Scanned, sel: _Selection, plan: _AugmentPlan,
            w: _SplitWriter, files: dict[str, SplitFile | None]) -> PreparedData:
    """report.json (counts, duplicates, quality, tokens, labels, warnings, files) and the PreparedData."""
    rules, report, stats, scan, sp = scanned.rules, scanned.report, sel.stats, scanned.scan, config.data.split
    assert stats is not None
    est_tokens = rules.tokens(stats.train_chars + w.train_chars)
    label_counts = _label_counts(sel)
    rep: dict[str, Any] = {
        "source": config.data.source,
        "base_model": config.base_model,
        "customization_type": rules.ctype.value,
        "format": rules.fmt.value,
        "input_mode": report.stats.get("mode"),
        "seed": sp.seed,
        "split": {"train": sp.train, "validation": sp.validation, "test": sp.test, "stratified": sel.stratify},
        "counts": {
            "raw_records": report.records, "valid_records": scanned.n, "sampled": sel.n_sel,
            "exact_duplicates": sel.exact_dups, "near_duplicates": sel.near_only_dups,
            "dropped_duplicates": sel.dropped, "conflicting_prompts": sel.conflicts,
            "train": w.written["train"], "validation": w.written["validation"], "test": w.written["test"],
            "augmented_train_copies": w.augmented, "augmentation_skipped": w.skipped_aug,
            "train_capped_by_preset": sel.capped,
        },
        "duplicate_examples": sel.dup_examples,
        "quality": {
            "short_prompts": scan.short_prompts, "short_completions": scan.short_completions,
            "near_token_limit": scan.near_limit, "too_long_or_empty": 0,   # those are validation errors
            "chars_per_record": {"min": stats.chars_min, "mean": round(stats.chars_sum / stats.kept, 1),
                                 "max": stats.chars_max},
        },
        "tokens": {
            "chars_per_token": rules.limits.chars_per_token,
            "estimated_train_tokens": est_tokens,
            "max_tokens_per_record": rules.tokens(stats.chars_max),
            "limit_per_record": rules.limits.max_tokens_per_record,
            "method": "characters / chars_per_token (docs/bedrock-facts.md §5: about 6 characters per token; Haiku 3)",
        },
        "label_like": sel.label_like,
        "labels": ({"distinct": sel.n_distinct, "balance": _balance(label_counts), "per_split": label_counts}
                   if sel.label_like else {"distinct": sel.n_distinct}),
        "warnings": scanned.warnings,
        "files": {k: (v.model_dump() if v else None) for k, v in files.items()},
    }
    media = list(report.stats.get("media") or [])
    if media:     # what the service role will be allowed to read (tasks/data/media.py)
        rep["media"] = {"references": report.stats.get("media_references", 0), "granted": media}
    (work / "report.json").write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report_path = out / "report.json"
    train = files["train"]
    assert train is not None
    return PreparedData(format=rules.fmt.value, train=train, validation=files["validation"], test=files["test"],
                        report_path=str(report_path), label_like=sel.label_like,
                        estimated_train_tokens=est_tokens, media=media)


def _balance(per_split: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Label balance over all splits: the rarest and the most common label and their ratio."""
    total: Counter[str] = Counter()
    for counts in per_split.values():
        total.update(counts)
    if not total:
        return {}
    (top, n_top), (low, n_low) = total.most_common(1)[0], min(total.items(), key=lambda kv: (kv[1], kv[0]))
    return {"most_common": {top: n_top}, "rarest": {low: n_low}, "ratio": round(n_top / n_low, 2)}
