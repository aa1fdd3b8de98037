"""prepare: raw data -> the base model's training format, quality report, seeded train/validation/test split.

``prepare(config, out_dir)`` writes ``train.jsonl``, ``validation.jsonl`` (when non-empty),
``test.jsonl`` (when non-empty) and ``report.json`` into ``out_dir`` and returns ``PreparedData``.
Bad input raises ``DataValidationError`` with every located problem before anything is written.

Memory does not grow with the file: the text is never held, and the per-record keys go to files on
disk (``tasks/keys.py``); the one in-memory array as long as the file is the split byte of each
record. The source is streamed twice:

1. **scan**: ``tasks.validate.SourceScanner`` reads in 64 KiB chunks (CSV rows, Parquet batches),
   checks every rule and keeps, per good record, fixed-size numbers (``_Scan``): three 64-bit hashes
   (exact texts, normalized record, normalized prompt), the normalized answer's low 32 bits, a
   16-bit label id, a 32-bit character count and the line, appended to ``keys.KeyStore`` column
   files every ``keys.CHUNK`` records. Label ids are tracked while completions look like labels
   (<= ``LABEL_MAX_DISTINCT`` short distinct values), then dropped. Formatted prompt/completion
   JSONL (the commonest input) is recognised inline by the scanner and handed to ``_Scan.add_pc``
   with no per-record object.
2. the seeded ``max_records`` sample, dedupe, conflict count, grouped (stratified) split and the
   preset's train cap read those files back a chunk at a time or hash-partitioned into buckets of
   bounded size (``tasks/keys.py``): duplicates are grouped by normalized text, records of one
   normalized prompt form a group, and a group never straddles two splits. The result is the
   ``assign`` byte per record.
3. **write**: the source is streamed again and each record goes straight to its split file (sha256
   computed while writing, into temporary names renamed at the end). A source already in the model's
   format is copied as it is, 256 KiB of lines at a time (``_copy_lines``; it passed every rule in
   pass 1); raw sources are converted again. Augmented copies are made on the fly for train records
   only; with augmentation on, the validation/test near and prompt keys are held in memory for the
   leak check (16 bytes per validation/test record), the one exception to the bound above.

Measured with bench/prepare.py (bench/results-prepare.md): 0.63-0.88x the time of a bare per-line
``json.loads`` loop that checks two keys and shuffles (and validates nothing else), for every
Bedrock rule, duplicate detection and the stratified split; peak RSS above imports 4 / 5 / 7 MiB at
50k / 200k / 1M records, against 26 / 117 / 603 MiB for that loop, which holds every record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from array import array
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from prefect import Task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from tasks import keys
from tasks.catalog import PRESETS, CustomizationType, DataFormat
from tasks.config import PipelineConfig
from tasks.formats import Example, from_record, record_texts, to_record
from tasks.types import PreparedData, SplitFile
from tasks.validate import (
    DataValidationError,
    Problem,
    Rules,
    SourceScanner,
    _iter_raw_lines,
    check_record,
    validate_config,
)

LABEL_MAX_DISTINCT = 200       # completions look like labels: at most this many distinct values ...
LABEL_MAX_CHARS = 64           # ... each at most this long ...
LABEL_MAX_SHARE = 0.5          # ... and distinct values at most half the records
SHORT_CHARS = 3
SPLITS = ("train", "validation", "test")

_WORD = re.compile(r"\w+")
# ASCII text: the same words as _WORD.findall(text.lower()) with one table lookup per byte (no regex):
# word characters ([A-Za-z0-9_]) lower-cased, every other byte a space, then split on the spaces.
_ASCII_WORDS = bytes((c if chr(c).isalnum() or c == 95 else 32) if c < 128 else 32 for c in range(256)).lower()


def normalize_text(text: str) -> str:
    """Near-duplicate key: NFKC, case-folded, words only (punctuation and spacing ignored)."""
    if text.isascii():
        return " ".join(text.encode("ascii").translate(_ASCII_WORDS).decode("ascii").split())
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def _norm_key(text: str) -> bytes:
    """``normalize_text(text)`` as UTF-8 bytes, without the round trip through str for ASCII text
    (the bytes are equal exactly when the normalized texts are)."""
    if text.isascii():
        key = text.encode("ascii").translate(_ASCII_WORDS)
        while b"  " in key:                 # runs of spaces -> one (cheaper than split + join)
            key = key.replace(b"  ", b" ")
        return key.strip(b" ")
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold())).encode("utf-8")


class _AnswerKeys(dict):
    """``_norm_key`` of short answers, remembered: label-like completions repeat a few values."""

    def __missing__(self, text: str) -> bytes:
        if len(self) >= 4096:
            self.clear()
        key = self[text] = _norm_key(text)
        return key


def fingerprints(ex: Example, texts: list[str]) -> tuple[int, int, int, int]:
    """(exact, near, prompt, answer) 64-bit keys of one record.

    Python's own ``hash`` (SipHash, 64-bit): only equality within one run matters — group ids are
    renumbered by first occurrence before anything seeded uses them, so the split does not depend on
    the per-process hash seed. Near-duplicate keys hash ``normalize_text`` (as UTF-8 bytes)."""
    n_prompt = _norm_key(ex.prompt)
    n_answer = _norm_key(ex.completion)
    n_system = _norm_key(ex.system) if ex.system else b""
    if len(texts) <= 3:       # single exchange: the Example holds every text
        near = hash((n_system, n_prompt, n_answer))
    else:                     # multi-turn formatted record: every turn counts
        near = hash(tuple(_norm_key(t) for t in texts))
    return hash(tuple(texts)), near, hash((n_system, n_prompt)), hash(n_answer)


def _teacher(config: PipelineConfig) -> str | None:
    return config.distillation.teacher_model if config.distillation else None


def _scanner(config: PipelineConfig, source: str, progress: Callable[[int], None] | None,
             trusted: bool = False) -> SourceScanner:
    d = config.data
    return SourceScanner(source, config.base_model, config.customization_type, columns=d.columns, fmt="auto",
                         role="source", system_prompt=d.system_prompt, prompt_template=d.prompt_template,
                         teacher=_teacher(config), kind=d.format if d.format != "auto" else "auto", progress=progress,
                         trusted=trusted)


def _local_source(config: PipelineConfig, out_dir: Path) -> str:
    """The data source as a local path (an s3:// source is downloaded once into out_dir/.source)."""
    src = config.data.source
    if not src.startswith("s3://"):
        return src
    import boto3

    bucket, _, key = src[5:].partition("/")
    dest = out_dir / ".source" / Path(key).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    s3 = boto3.client("s3", region_name=config.aws.region, endpoint_url=config.aws.endpoint_url)
    s3.download_file(bucket, key, str(dest))
    return str(dest)


def _config_problems(config: PipelineConfig) -> list[Problem]:
    """Training-data settings problems: hyperparameters, system prompt, template, augmentation prefixes.
    (AWS names and region are checked by ``validate_config`` for ``forge validate CONFIG``, not here.)"""
    keep = ("hyperparameters", "rft.", "preset", "data.", "base_model")
    return [p for p in validate_config(config, "config") if p.field.startswith(keep)]


class _Scan:
    """What pass 1 keeps per good record: fixed-size numbers (``tasks.keys.COLUMNS``), gathered in
    ``array`` buffers and appended to the on-disk ``KeyStore`` every ``keys.CHUNK`` records.

    ``exact``/``near``/``prompt``: 64-bit keys (``fingerprints``); ``answer``: the answer key's low 32
    bits (it only tells answers apart within one prompt's records, for the conflict count); ``label``:
    a small label id (-1: none); ``chars``: characters of the record's texts; ``line``: its line."""

    def __init__(self, rules: Rules, store: keys.KeyStore) -> None:
        self.store = store
        self._new_buffers()
        self.labels: dict[str, int] | None = {}
        self._answers = _AnswerKeys()
        self.short_prompts = 0
        self.short_completions = 0
        self.near_limit = 0
        lim = rules.limits.max_tokens_per_record
        self._near_chars: int | None = None        # more characters than this: > 90 % of the token limit
        if lim is not None:
            c = max(0, int(0.9 * lim * (rules.limits.chars_per_token or 6.0)) - 2)
            while rules.tokens(c + 1) <= 0.9 * lim:
                c += 1
            while c > 0 and rules.tokens(c) > 0.9 * lim:
                c -= 1
            self._near_chars = c

    def _new_buffers(self) -> None:
        self.exact = array("q")
        self.near = array("q")
        self.prompt = array("q")
        self.answer = array("I")
        self.label = array("h")
        self.chars = array("i")
        self.line = array("q")

    def flush(self) -> None:
        if len(self.exact):
            self.store.append({c: getattr(self, c) for c in keys.COLUMNS})
            self._new_buffers()

    def add(self, item) -> None:
        ex, texts = item.example, item.texts
        prompt, completion, system = ex.prompt, ex.completion, ex.system
        n_prompt = _norm_key(prompt)
        n_answer = self._answers[completion] if len(completion) <= LABEL_MAX_CHARS else _norm_key(completion)
        n_system = _norm_key(system) if system else b""
        if len(texts) <= 3:       # as fingerprints()
            near = hash((n_system, n_prompt, n_answer))
        else:
            near = hash(tuple(_norm_key(t) for t in texts))
        self.exact.append(hash(tuple(texts)))
        self.near.append(near)
        self.prompt.append(hash((n_system, n_prompt)))
        self.answer.append(hash(n_answer) & 0xFFFFFFFF)
        chars = sum(map(len, texts))
        self.chars.append(min(chars, 2**31 - 1))
        self.line.append(item.line)
        if len(prompt.strip()) < SHORT_CHARS:
            self.short_prompts += 1
        c = completion.strip()
        if completion and len(c) < SHORT_CHARS:
            self.short_completions += 1
        if self._near_chars is not None and chars > self._near_chars:
            self.near_limit += 1
        lid = -1
        labels = self.labels
        if labels is not None:
            if not c or len(c) > LABEL_MAX_CHARS:
                self.labels = None
            else:
                lid = labels.get(c, -1)
                if lid < 0:
                    if len(labels) >= LABEL_MAX_DISTINCT:
                        self.labels = None
                        lid = -1
                    else:
                        lid = labels[c] = len(labels)
        self.label.append(lid)
        if len(self.exact) >= keys.CHUNK:
            self.flush()

    def add_pc(self, line: int, prompt: str, completion: str, chars: int) -> None:
        """``add`` for a record with no system text and the texts [prompt, completion] (the scanner's
        sink for formatted prompt/completion JSONL): the same keys and counts, no Item built."""
        n_prompt = _norm_key(prompt)
        n_answer = self._answers[completion] if len(completion) <= LABEL_MAX_CHARS else _norm_key(completion)
        self.exact.append(hash((prompt, completion)))
        self.near.append(hash((b"", n_prompt, n_answer)))
        self.prompt.append(hash((b"", n_prompt)))
        self.answer.append(hash(n_answer) & 0xFFFFFFFF)
        self.chars.append(min(chars, 2**31 - 1))
        self.line.append(line)
        if len(prompt.strip()) < SHORT_CHARS:
            self.short_prompts += 1
        c = completion.strip()
        if len(c) < SHORT_CHARS:
            self.short_completions += 1
        if self._near_chars is not None and chars > self._near_chars:
            self.near_limit += 1
        lid = -1
        labels = self.labels
        if labels is not None:
            if len(c) > LABEL_MAX_CHARS:
                self.labels = None
            else:
                lid = labels.get(c, -1)
                if lid < 0:
                    if len(labels) >= LABEL_MAX_DISTINCT:
                        self.labels = None
                        lid = -1
                    else:
                        lid = labels[c] = len(labels)
        self.label.append(lid)
        if len(self.exact) >= keys.CHUNK:
            self.flush()


def prepare(config: PipelineConfig, out_dir: str | Path, *, progress: Callable[[int], None] | None = None) -> PreparedData:
    """Read, check, convert, dedupe, split, augment (train only) and write the splits + report.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = _local_source(config, out)
    stamp = _stamp(source)
    store = keys.KeyStore(out)
    try:
        return _prepare(config, out, source, stamp, store, progress)
    finally:
        store.close()


def _prepare(config: PipelineConfig, out: Path, source: str, stamp: tuple[int, int] | None, store: keys.KeyStore,
             progress: Callable[[int], None] | None) -> PreparedData:
    d = config.data
    sp = d.split

    # -- pass 1: validate + per-record keys (to disk) ---------------------------------------
    scanner = _scanner(config, source, progress)
    rules = scanner.rules
    scan = _Scan(rules, store) if rules is not None else None
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
    n = store.n
    warnings: list[str] = list(report.stats.get("warnings") or [])
    if report.stats.get("mode") == "formatted" and (d.system_prompt or d.prompt_template != "{prompt}"):
        warnings.append("the input is already in the model's format: data.system_prompt / data.prompt_template "
                        "were not applied")

    # -- selection: seeded sample, duplicates (tasks/keys.py: bounded memory) ----------------
    assign = keys.sample(n, d.max_records, sp.seed)          # the split byte of every record
    dups = keys.find_duplicates(store, assign, drop=d.dedupe)
    n_sel = dups.selected
    dup_examples = [{"line": store.at("line", i), "duplicate_of_line": store.at("line", f),
                     "kind": "exact" if same else "near"} for i, f, same in dups.examples]
    exact_dups = n_sel - dups.distinct_exact
    near_only_dups = dups.distinct_exact - dups.distinct_near
    dropped = n_sel - dups.distinct_near if d.dedupe else 0

    # -- groups of one normalized prompt, label-like, stratified split ----------------------
    groups = keys.PromptGroups(store, assign)
    try:
        conflicts, label_hist = groups.scan()             # label_hist[id + 1]: kept records per label id
        n_kept = int(label_hist.sum())
        if n_kept == 0:
            raise DataValidationError([Problem(file=str(source), field="records", message="no records left after dedupe/sampling",
                                               fix="add data")])
        labels = scan.labels
        n_distinct = int(np.count_nonzero(label_hist)) if labels is not None else None
        label_like = bool(
            labels is not None and rules.ctype == CustomizationType.FINE_TUNING
            and n_distinct is not None and 2 <= n_distinct <= max(2, LABEL_MAX_SHARE * n_kept)
        )
        stratify = sp.stratify == "yes" or (sp.stratify == "auto" and label_like)
        if stratify and labels is None:
            warnings.append("stratify=yes but completions are not label-like (too many or too long): split is not stratified")
            stratify = False
        n_strata = max(1, len(labels or {}))
        groups.split(stratify, n_strata, (sp.train, sp.validation, sp.test), sp.seed)
    finally:
        groups.close()
    # the preset's cap on training records (e.g. "quick": 1,000), a seeded sample of the train split,
    # per label when stratified; validation/test keep their size
    cap = PRESETS[config.preset].max_train_records if config.preset in PRESETS else None
    capped = keys.cap_train(store, assign, cap, stratify, n_strata, sp.seed)
    stats = keys.split_stats(store, assign, with_labels=label_like)
    counts = dict(zip(SPLITS, stats.counts, strict=True))
    if capped:
        warnings.append(f"preset {config.preset!r} caps training at {cap:,} records: {capped:,} sampled out of the "
                        "train split (validation/test unchanged)")

    # -- augmentation plan (train only) ----------------------------------------------------
    aug = d.augment
    prefixes = [p for p in aug.prefixes if p] if aug.enabled else []
    n_aug_planned = counts["train"] * aug.copies if prefixes and rules.fmt is not DataFormat.CPT_INPUT else 0
    if aug.enabled and not prefixes:
        warnings.append("augment.enabled but every prefix is empty: nothing to add")

    # -- record-count rules on the splits (before writing anything) ------------------------
    split_problems = _split_count_problems(str(source), rules, counts["train"] + n_aug_planned, counts["validation"])
    if split_problems:
        raise DataValidationError(split_problems)

    # -- pass 2: write --------------------------------------------------------------------
    tmp = {name: tempfile.NamedTemporaryFile("wb", dir=out, prefix=f".{name}.", suffix=".tmp", delete=False) for name in SPLITS}
    hashes = {name: hashlib.sha256() for name in SPLITS}
    sizes = dict.fromkeys(SPLITS, 0)
    written = dict.fromkeys(SPLITS, 0)
    train_chars = stats.train_chars              # augmented copies add theirs below
    augmented = skipped_aug = 0
    label_counts: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    if label_like:      # per split, labels in order of first appearance (the order records are written in)
        inv_labels = {v: k for k, v in (labels or {}).items()}
        for k, name in enumerate(SPLITS):
            label_counts[name] = {inv_labels.get(lab, ""): c for lab, c in stats.labels[k].items()}

    def emit(name: str, rec: dict | bytes, records: int = 1) -> None:
        b = rec if isinstance(rec, bytes) else (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
        tmp[name].write(b)
        hashes[name].update(b)
        sizes[name] += len(b)
        written[name] += records

    def rows():
        """(index, line bytes | None, Item | None). A formatted source passed every rule: its lines are
        copied as they are (no re-parse); raw sources are converted again (trusted, no re-check)."""
        if report.stats.get("mode") == "formatted":
            with open(source, "rb") as fh:
                i = 0
                for _lineno, raw, _size in _iter_raw_lines(fh):
                    if raw is None or not raw.strip():
                        continue
                    yield i, raw.rstrip(b"\r\n") + b"\n", None
                    i += 1
        else:
            for i, item in enumerate(_scanner(config, source, None, trusted=True)):
                yield i, None, item

    i = -1
    try:
        if report.stats.get("mode") == "formatted" and not n_aug_planned:
            # formatted source, no augmentation: its lines go to the split files as they are, a chunk at a time
            i = _copy_lines(source, assign, lambda k, buf, m: emit(SPLITS[k], buf, m)) - 1
        else:
            eval_near = keys.eval_keys(store, assign) if n_aug_planned else None
            rng_aug = np.random.default_rng(aug.seed)
            for i, line, item in rows():
                k = int(assign[i]) if i < n else -1
                if k < 0:
                    continue
                name = SPLITS[k]
                emit(name, line if line is not None else item.record)
                if k == 0:
                    for _ in range(n_aug_planned and aug.copies):
                        prefix = prefixes[int(rng_aug.integers(len(prefixes)))]
                        ex = item.example if item is not None else from_record(rules.fmt, json.loads(line))
                        new = Example(ex.system, prefix + ex.prompt, ex.completion)
                        rec = to_record(rules.fmt, new)
                        texts = record_texts(rules.fmt, rec)
                        _, nh, ph, _ = fingerprints(new, texts)
                        bad: list[str] = []
                        check_record(rec, rules, lambda f, m, x: bad.append(m))  # noqa: B023
                        if bad or any(_contains(eval_near, h) for h in (nh, ph)):
                            skipped_aug += 1
                            continue
                        emit("train", rec)
                        augmented += 1
                        train_chars += sum(len(t) for t in texts)
        for f in tmp.values():
            f.close()
        if _stamp(source) != stamp or (n and i != n - 1):
            raise DataValidationError([Problem(file=str(source), field="file", message="changed while it was being prepared",
                                               fix="run prepare again once the file is complete")])
        files: dict[str, SplitFile | None] = {}
        for name in SPLITS:
            final = out / f"{name}.jsonl"
            if written[name] == 0 and name != "train":
                os.unlink(tmp[name].name)
                if final.exists():
                    final.unlink()
                files[name] = None
                continue
            os.replace(tmp[name].name, final)
            files[name] = SplitFile(path=str(final.resolve()), records=written[name],
                                    sha256=hashes[name].hexdigest(), bytes=sizes[name])
    finally:
        for f in tmp.values():
            if not f.closed:
                f.close()
            if os.path.exists(f.name):
                os.unlink(f.name)

    est_tokens = rules.tokens(train_chars)
    rep: dict[str, Any] = {
        "source": config.data.source,
        "base_model": config.base_model,
        "customization_type": rules.ctype.value,
        "format": rules.fmt.value,
        "input_mode": report.stats.get("mode"),
        "seed": sp.seed,
        "split": {"train": sp.train, "validation": sp.validation, "test": sp.test, "stratified": stratify},
        "counts": {
            "raw_records": report.records, "valid_records": n, "sampled": n_sel,
            "exact_duplicates": exact_dups, "near_duplicates": near_only_dups, "dropped_duplicates": dropped,
            "conflicting_prompts": conflicts,
            "train": written["train"], "validation": written["validation"], "test": written["test"],
            "augmented_train_copies": augmented, "augmentation_skipped": skipped_aug,
            "train_capped_by_preset": capped,
        },
        "duplicate_examples": dup_examples,
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
            "method": "characters / chars_per_token (REF §5: about 6 characters per token; Haiku 3)",
        },
        "label_like": label_like,
        "labels": ({"distinct": n_distinct, "balance": _balance(label_counts), "per_split": label_counts}
                   if label_like else {"distinct": n_distinct}),
        "warnings": warnings,
        "files": {k: (v.model_dump() if v else None) for k, v in files.items()},
    }
    report_path = out / "report.json"
    report_path.write_text(json.dumps(rep, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    train = files["train"]
    assert train is not None
    return PreparedData(format=rules.fmt.value, train=train, validation=files["validation"], test=files["test"],
                        report_path=str(report_path.resolve()), label_like=label_like, estimated_train_tokens=est_tokens)


COPY_CHUNK = 1 << 18


def _copy_lines(source: str, assign: np.ndarray, write: Callable[[int, bytes, int], None]) -> int:
    """Pass 2 of a formatted source: line ``i`` (blank lines skipped, ``\\r`` endings dropped) goes as it
    is to split ``assign[i]`` (none when < 0), a chunk of the file at a time: ``write(split, bytes,
    number of lines)``. Returns the number of lines read (the caller compares it with pass 1's count)."""
    n = len(assign)
    seen = 0
    rest = b""
    with open(source, "rb") as fh:
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


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None


def _balance(per_split: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Label balance over all splits: the rarest and the most common label and their ratio."""
    total: Counter[str] = Counter()
    for counts in per_split.values():
        total.update(counts)
    if not total:
        return {}
    (top, n_top), (low, n_low) = total.most_common(1)[0], min(total.items(), key=lambda kv: (kv[1], kv[0]))
    return {"most_common": {top: n_top}, "rarest": {low: n_low}, "ratio": round(n_top / n_low, 2)}


def _contains(sorted_arr: np.ndarray, h: int) -> bool:
    pos = int(np.searchsorted(sorted_arr, h))
    return pos < len(sorted_arr) and int(sorted_arr[pos]) == h


def _split_count_problems(source: str, rules: Rules, n_train: int, n_val: int) -> list[Problem]:
    lim = rules.limits
    who = f"{rules.model_id} {rules.ctype.value}"
    out: list[Problem] = []

    def add(field: str, message: str, fix: str) -> None:
        out.append(Problem(file=source, field=field, message=message, fix=fix))

    if lim.min_train_records is not None and n_train < lim.min_train_records:
        add("split.train", f"the train split would have {n_train} record(s); {who} needs at least {lim.min_train_records}",
            "add data or raise data.split.train")
    if lim.max_train_records is not None and n_train > lim.max_train_records:
        add("split.train", f"the train split would have {n_train:,} records; {who} accepts at most {lim.max_train_records:,}",
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
    return out


# ---------------------------------------------------------------------------------------------
# Prefect task (thin)
# ---------------------------------------------------------------------------------------------
CACHE_DIR = Path(os.environ.get("FORGE_CACHE_DIR", ".forge-cache"))


def _source_fingerprint(config: PipelineConfig) -> str:
    """Changes when the source file changes (path, size, mtime): part of the cache key."""
    src = config.data.source
    if src.startswith("s3://"):
        try:   # the object's ETag + size: a replaced object is not served from the cache
            import boto3

            bucket, _, key = src[5:].partition("/")
            s3 = boto3.client("s3", region_name=config.aws.region, endpoint_url=config.aws.endpoint_url)
            head = s3.head_object(Bucket=bucket, Key=key)
            return f"{src}:{head.get('ETag')}:{head.get('ContentLength')}"
        except Exception:  # noqa: BLE001 - no access here: prepare itself will report it
            return src
    try:
        st = Path(src).stat()
        return f"{Path(src).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return f"{src}:missing"


def _code_version() -> str:
    """Hash of the modules prepare's output depends on: TASK_SOURCE only sees the thin task body."""
    h = hashlib.sha256()
    for mod in ("prepare.py", "keys.py", "validate.py", "formats.py", "catalog.yaml"):
        try:
            h.update((Path(__file__).parent / mod).read_bytes())
        except OSError:
            h.update(mod.encode())
    return h.hexdigest()[:16]


class _SourceFile(CachePolicy):
    """Cache-key part that changes when the source file or the preparing code changes."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        cfg = inputs.get("config")
        if isinstance(cfg, dict):
            cfg = PipelineConfig.model_validate(cfg)
        return f"{_source_fingerprint(cfg)}|{_code_version()}" if isinstance(cfg, PipelineConfig) else None


class _PrepareTask(Task):
    """``refresh=True`` re-runs and overwrites the cache entry (``refresh_cache``, prefect-patterns §2);
    a cached result whose files are gone is redone the same way."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        refresh = kwargs.get("refresh", args[2] if len(args) > 2 else False)
        if refresh and not self.refresh_cache:
            return self.with_options(refresh_cache=True)(*args, **kwargs)
        result = super().__call__(*args, **kwargs)
        if isinstance(result, PreparedData) and not self.refresh_cache and not _files_intact(result):
            return self.with_options(refresh_cache=True)(*args, **kwargs)
        return result


def _files_intact(p: PreparedData) -> bool:
    files = [f for f in (p.train, p.validation, p.test) if f is not None]
    return all(Path(f.path).is_file() and Path(f.path).stat().st_size == f.bytes for f in files)


def _prepare_fn(config: PipelineConfig, out_dir: str, refresh: bool = False) -> PreparedData:
    return prepare(config, out_dir)


# The "prepare" task: cached on inputs (not ``refresh``) + task source + the source file's size/mtime,
# persisted under FORGE_CACHE_DIR so a rerun in a new process skips it (prefect-patterns §2).
prepare_task = _PrepareTask(
    fn=_prepare_fn, name="prepare",
    cache_policy=(INPUTS - "refresh") + TASK_SOURCE + _SourceFile(),
    persist_result=True, result_storage=CACHE_DIR, cache_expiration=timedelta(days=7),
)
