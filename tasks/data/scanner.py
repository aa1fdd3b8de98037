"""``SourceScanner``: streams one source (JSONL objects, CSV or Parquet), checks every record, yields the good ones.

Two kinds of input:

- **raw** data — JSONL objects, CSV or Parquet — whose columns are mapped with ``tasks.config.Columns``
  (prompt / completion / system / text) and converted with ``tasks.data.formats.to_record``;
- **formatted** JSONL that is already in the model's format (auto-detected: its records carry the
  target format's keys, e.g. ``messages`` / ``schemaVersion`` / ``input``), checked key by key
  (``tasks.data.rules.check_record``).

Every problem is collected (never raised, never a traceback) as ``FILE:LINE: field: message (fix)``
(for Parquet, LINE is the 1-based row number; file-level problems have no LINE).
Lines come from ``tasks.data.readers.iter_raw_lines`` (64 KiB chunks, a size cap per line). JSONL lines are
parsed with orjson; a line it refuses, or an object holding anything but strings, is parsed again with
``json`` (exact integers, the messages below). CSV is read with the stdlib ``csv`` reader over that line
stream (not pandas) because it reports the physical line of every row, keeps going after a quoting error,
and handles quoted newlines; Parquet is read in batches with ``pyarrow.parquet.ParquetFile.iter_batches``
(imported only for a Parquet file).

Record-count and file-size limits come from ``tasks/catalog/catalog.yaml`` ``limits`` (each with its source).
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from tasks.catalog import (
    CustomizationType,
    DataFormat,
    Limits,
    UnknownModelError,
    UnsupportedCustomizationError,
)
from tasks.config import Columns
from tasks.data import readers, sources
from tasks.data.formats import Example, from_record, record_texts, to_record
from tasks.data.problems import Collector, ValidationReport
from tasks.data.readers import decode, format_size
from tasks.data.rules import (
    Rules,
    check_record,
    check_text,
    check_tokens,
    max_record_chars,
    rules_for,
    type_name,
)

_orjson_loads = orjson.loads
_OrjsonError = orjson.JSONDecodeError

PROGRESS_EVERY = 50_000           # progress callback every N records
SHORT_TEXT_CHARS = 3              # quality hint only


class Item(NamedTuple):
    """One record that passed every check: its line, the Example, and the record to write."""

    line: int
    example: Example
    record: dict
    texts: list[str]        # every text of the record (tasks.data.formats.record_texts)


_NO_RECORD = object()
_STOP = object()


# ---------------------------------------------------------------------------------------------
# JSON guards (json.loads hooks): what orjson and json accept but a training record must not hold
# ---------------------------------------------------------------------------------------------
# orjson refuses everything json.loads would flag (and a few things it accepts: NaN, lone surrogates) and
# gives the same strings, but keeps the last of duplicate keys silently and its numbers can differ. So the
# JSONL reader uses its result only for an object whose values are all strings and whose line holds exactly
# 4 quotes per key: every member of the line costs 2 quotes for its key and 2 for a string value, escaped
# quotes only add, so a duplicate key (one more member) would make it at least 4 per key + 2. Anything else
# takes SourceScanner._parse: json with the hooks below (duplicate keys, NaN / Infinity, out-of-range
# numbers) and the located messages.
class _Refused(Exception):
    """A JSON line that parses but is refused: ``message (fix)``."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message, self.fix = message, fix


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook``: an object with a duplicate key is refused (json and orjson keep the last value
    silently, other readers the first: the record would be validated as one and trained on as the other)."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Refused(f"duplicate key {_quoted_name(k)} in one object (readers disagree on which value "
                               "counts)", "write each key once per object")
            seen.add(k)
    return d


def _refuse_constant(name: str) -> float:
    """``parse_constant``: NaN, Infinity and -Infinity are not JSON (RFC 8259 §6), though json accepts them."""
    raise _Refused(f"{name} is not valid JSON (a non-standard number)",
                   f'write a number, null, or the text as a string ("{name}")')


def _finite_float(s: str) -> float:
    """``parse_float``: a number too large for a float (1e999) would read as infinity."""
    v = float(s)
    if not math.isfinite(v):
        raise _Refused(f"the number {s[:24]}{'...' if len(s) > 24 else ''} is out of range (it reads as infinity)",
                       "write a smaller number, or the value as a string")
    return v


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(v: Any) -> bool:
    try:
        json.dumps(v, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:      # nested near the limit: its texts are checked (or ignored) by the rules
        return False
    return False


_NAME_RE = re.compile(r"\w[\w .\-]{0,63}")
MAX_NAMES_SHOWN = 100


def _names_ok(names: list[str]) -> bool:
    return 0 < len(names) <= MAX_NAMES_SHOWN and all(_NAME_RE.fullmatch(n) for n in names)


def shown_names(names: list[str]) -> str:
    """Column or key names for a message, only when each reads as a name (letters, digits, ``_ .-``, at most
    64 characters): a message never echoes a line of an arbitrary file (the first line of /etc/passwd)."""
    if not names:
        return "none"
    if _names_ok(names):
        return ", ".join(names)
    return f"{len(names)} field(s) that do not read as column names (not shown)"


def _quoted_name(k: str) -> str:
    return f'"{k}"' if _NAME_RE.fullmatch(k) else "(a key that does not read as a name; not shown)"


def detect_format(rec: dict, target: DataFormat) -> DataFormat | None:
    """Which formatted shape a JSON object looks like (None = raw columns)."""
    if "schemaVersion" in rec:
        return DataFormat.CONVERSATION
    msgs = rec.get("messages")
    if isinstance(msgs, list):
        first = next((m for m in msgs if isinstance(m, dict)), {})
        if isinstance(first.get("content"), list) or isinstance(rec.get("system"), list):
            return DataFormat.CONVERSATION
        if target in (DataFormat.CLAUDE_MESSAGES, DataFormat.RFT_MESSAGES):
            return target
        return DataFormat.RFT_MESSAGES if "reference_answer" in rec else DataFormat.CLAUDE_MESSAGES
    if "messages" in rec:
        return target if target in (DataFormat.CLAUDE_MESSAGES, DataFormat.CONVERSATION,
                                    DataFormat.RFT_MESSAGES) else None
    if "input" in rec and "prompt" not in rec:
        return DataFormat.CPT_INPUT
    if set(rec) == {"prompt", "completion"}:
        return DataFormat.PROMPT_COMPLETION
    return None


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def apply_template(template: str, prompt: str, row: dict | None = None) -> str:
    """``{prompt}`` (and ``{column}`` for any raw column) filled in; other braces are left alone."""
    if template == "{prompt}":
        return prompt

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name == "prompt":
            return prompt
        if row is not None and name in row and row[name] is not None:
            return str(row[name])
        return m.group(0)

    return _PLACEHOLDER.sub(sub, template)


@dataclass
class SourceScanner:
    """Streams one source, checks every record, yields the good ones as ``Item``s.

    Iterate it (``for item in scanner``), then read ``scanner.report()``. Used by ``validate_source``
    (which only counts) and by ``tasks.prepare`` (which hashes and writes).
    """

    path: str | Path
    base_model: str
    ctype: CustomizationType | str
    columns: Columns | None = None
    fmt: str = "auto"                    # auto | raw | formatted
    role: str = "train"                  # train | validation | test | source (raw input before the split)
    kind: str = "auto"                   # auto (by extension / magic bytes) | jsonl | csv | parquet
    system_prompt: str | None = None
    prompt_template: str = "{prompt}"
    teacher: str | None = None
    check_counts: bool = True
    limits: Limits | None = None         # override the catalog limits (tests, bench)
    progress: Callable[[int], None] | None = None
    progress_every: int = 0              # 0 = PROGRESS_EVERY
    trusted: bool = False                # second read of a source already validated: skip the record rules
    # formatted prompt/completion records that pass every rule go to sink(line, prompt, completion, chars)
    # instead of being yielded as Items (tasks.prepare: no per-record objects)
    sink: Callable[[int, str, str, int], None] | None = None
    shown_as: str | None = None          # the name in messages (an s3:// URI for its downloaded copy)
    media_bucket: str | None = None      # the run's bucket (aws.bucket) when known: media elsewhere are refused
    # role "train": the record count of the validation file submitted with it (forge validate --validation), which
    # AWS counts with the training records in the train + validation totals; None = no validation file known
    companion_records: int | None = None
    records: int = 0
    mode: str = ""
    warnings: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.shown_as or str(self.path)
        self.c = Collector(self.name)
        self.rules: Rules | None = None
        self._state: dict = {"media_bucket": self.media_bucket} if self.media_bucket else {}
        self._chars_total = 0
        self._chars_max = 0
        self._out_bytes = 0
        self._template_flagged = False
        try:
            self.rules = rules_for(self.base_model, self.ctype, self.teacher)
            if self.limits is not None:
                self.rules.limits = self.limits
            # settings that apply to every record are checked once, not on every line
            add = lambda f, m, x: self.c.add(None, f, m, x)  # noqa: E731
            before = self.c.total
            check_text(_PLACEHOLDER.sub("", self.prompt_template), "prompt_template", self.rules, add, required=False)
            self._template_flagged = self.c.total != before
            if self.system_prompt:
                check_text(self.system_prompt, "system_prompt", self.rules, add, required=False)
        except UnknownModelError as e:
            self.c.add(None, "base_model", str(e), "use a customizable model id from tasks/catalog/catalog.yaml")
        except UnsupportedCustomizationError as e:
            self.c.add(None, "customization_type", str(e), "pick a type the model supports, or another base model")
        except ValueError as e:
            self.c.add(None, "customization_type", str(e),
                       "use fine-tuning, continued-pretraining, distillation or reinforcement")

    # -- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Item]:
        if self.rules is None:
            return
        try:       # the pre-flight: a regular file, not compressed, not UTF-16/32 (tasks.data.sources)
            fh, kind = sources.open_source(self.path, self.kind)
        except sources.SourceProblem as e:
            self.c.add(e.line, e.field, e.message, e.fix)
            return
        self.stats["kind"] = kind
        with fh:
            if kind == "csv":
                yield from self._csv(fh)
            elif kind == "parquet":
                yield from self._parquet(fh)
            else:
                yield from self._jsonl(fh)

    def _tick(self) -> None:
        self.records += 1
        if self.progress and self.records % (self.progress_every or PROGRESS_EVERY) == 0:
            self.progress(self.records)

    def _overlong(self, lineno: int, size: int) -> None:
        self.c.add(lineno, "record", f"line is {format_size(size)} long (this reader stops at "
                   f"{format_size(readers.MAX_LINE_BYTES)})", "split or shorten the record; one record per line")

    # -- JSONL ---------------------------------------------------------------------------
    def _jsonl(self, fh: IO[bytes]) -> Iterator[Item]:
        """Formatted prompt/completion lines (two non-empty strings within the token limit) are taken inline,
        their sizes summed in locals (folded into the scanner's at the end); any other line takes ``_slow``."""
        rules = self.rules
        assert rules is not None
        mode = self._start_mode()
        fast = rules.fmt is DataFormat.PROMPT_COMPLETION and not rules.forbidden and not self.trusted
        max_chars = mc if (mc := max_record_chars(rules)) is not None else 1 << 62
        sink = self.sink
        progress, every = self.progress, self.progress_every or PROGRESS_EVERY
        out_bytes = chars_total = chars_max = 0
        lines = readers.iter_raw_lines(fh)
        try:
            for lineno, raw, size in lines:
                if raw is None:
                    self._tick()
                    self._overlong(lineno, size)
                    continue
                # orjson's result is used only when it is safe (see "JSON guards" above)
                rec = _NO_RECORD
                if lineno > 1 or not raw.startswith(b"\xef\xbb\xbf"):
                    try:
                        rec = _orjson_loads(raw)
                    except _OrjsonError:
                        pass
                    else:
                        if fast and mode == "formatted" and type(rec) is dict and len(rec) == 2:
                            prompt = rec.get("prompt")
                            completion = rec.get("completion")
                            if type(prompt) is str and type(completion) is str and raw.count(b'"') == 8:
                                chars = len(prompt) + len(completion)
                                if chars <= max_chars and prompt.strip() and completion.strip():
                                    self.records += 1          # _tick(), inline on the hot path
                                    if progress and self.records % every == 0:
                                        progress(self.records)
                                    out_bytes += len(raw)
                                    chars_total += chars
                                    if chars > chars_max:
                                        chars_max = chars
                                    if sink is not None:
                                        sink(lineno, prompt, completion, chars)
                                    else:
                                        yield Item(lineno, Example(None, prompt, completion), rec, [prompt, completion])
                                    continue
                        if (type(rec) is not dict or not all(type(v) is str for v in rec.values())
                                or raw.count(b'"') != 4 * len(rec)):
                            rec = _NO_RECORD
                mode, item = self._slow(lineno, raw, rec, mode, lines)
                if item is _STOP:
                    return
                if item is not None:
                    yield item
            self.mode = self.mode or mode or "raw"
        finally:
            self._out_bytes += out_bytes
            self._chars_total += chars_total
            self._chars_max = max(self._chars_max, chars_max)

    def _slow(self, lineno: int, raw: bytes, rec: Any, mode: str,
              lines: Iterator[tuple[int, bytes | None, int]]) -> tuple[str, Any]:
        """A line the inline path did not take (``rec``: orjson's object when safe, else ``_NO_RECORD``):
        (the mode, then the Item, None when the line had a problem, or ``_STOP`` to end the file)."""
        if rec is not _NO_RECORD:
            self._tick()
        else:
            rec = self._parse(lineno, raw)
            if rec is _STOP or rec is _NO_RECORD:
                return mode, (_STOP if rec is _STOP else None)
        if not mode:
            mode = self._detect_mode(lineno, rec, lines)
            if not mode:
                return mode, _STOP
        return mode, (self._formatted(lineno, rec, len(raw)) if mode == "formatted" else self._raw(lineno, rec))

    def _start_mode(self) -> str:
        """The mode before the first record: given (``fmt``), ``raw`` when columns are mapped, else "" (detect)."""
        mode = self.fmt if self.fmt in ("raw", "formatted") else ""
        if self.columns is not None and not mode and self.columns != Columns():
            mode = "raw"
        return mode

    def _parse(self, lineno: int, raw: bytes) -> Any:
        """One line with ``json``: the object, or ``_NO_RECORD`` (a located problem was added) or ``_STOP``
        (the file is a JSON array). Duplicate keys, NaN / Infinity, numbers out of range, nesting past the
        interpreter's recursion limit, integers past ``sys.get_int_max_str_digits()`` and unpaired
        surrogates are located problems, never a traceback."""
        text = decode(raw, lineno, self.c, True, self.warnings)
        if not text.strip():
            self.c.add(lineno, "line", "blank line", "remove empty lines; every line must be one JSON object")
            return _NO_RECORD
        self._tick()
        try:
            rec = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant,
                             parse_float=_finite_float)
        except json.JSONDecodeError as e:
            if lineno == 1 and text.lstrip().startswith("["):
                self.c.add(lineno, "file", "is a JSON array, not JSON Lines",
                           "write one JSON object per line, e.g. jq -c '.[]' in.json > out.jsonl")
                return _STOP
            self.c.add(lineno, "json", f"not valid JSON: {e.msg} at column {e.colno}",
                       "each line must be one complete JSON object; check quotes, commas and brackets")
            return _NO_RECORD
        except _Refused as e:
            self.c.add(lineno, "json", e.message, e.fix)
            return _NO_RECORD
        except RecursionError:
            self.c.add(lineno, "json", f"nested too deeply (more than about {sys.getrecursionlimit():,} levels)",
                       "flatten the record; training records nest a few levels at most")
            return _NO_RECORD
        except ValueError as e:        # int("9" * 5000): past sys.get_int_max_str_digits()
            self.c.add(lineno, "json", f"a number is too long to read ({str(e).split(':')[0]})",
                       "write such a value as a string")
            return _NO_RECORD
        if not isinstance(rec, dict):
            self.c.add(lineno, "record", f"expected a JSON object, got {type_name(rec)}",
                       "each line must be one JSON object {...}")
            return _NO_RECORD
        if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(rec):
            self.c.add(lineno, "json", "holds an unpaired surrogate escape (\\ud800-\\udfff): not valid Unicode",
                       "write the character itself, or a complete surrogate pair")
            return _NO_RECORD
        return rec

    def _detect_mode(self, lineno: int, rec: dict, lines: Iterator[tuple[int, bytes | None, int]]) -> str:
        """``formatted`` or ``raw`` from the first object; "" when it is in another model's format (a located
        problem; the rest of the file is only counted)."""
        rules = self.rules
        assert rules is not None
        det = detect_format(rec, rules.fmt)
        if det == rules.fmt:
            mode = "formatted"
        elif det is None or det == DataFormat.PROMPT_COMPLETION:
            mode = "raw"
        else:
            self.c.add(lineno, "format", f"records look like {det.value}, but {rules.model_id} "
                       f"{rules.ctype.value} needs {rules.fmt.value}",
                       "give raw data with prompt/completion columns and let forge prepare convert it, "
                       "or pick the matching --base-model")
            self.mode = "wrong-format"
            self._count_rest(lines)
            return ""
        self.mode = mode
        return mode

    def _count_rest(self, lines: Iterator[tuple[int, bytes | None, int]]) -> None:
        for _lineno, raw, _size in lines:
            if raw is None or raw.strip():
                self._tick()

    def _formatted(self, lineno: int, rec: dict, nbytes: int) -> Item | None:
        rules = self.rules
        assert rules is not None
        before = self.c.total
        texts = record_texts(rules.fmt, rec)
        if not self.trusted:
            check_record(rec, rules, lambda f, m, x: self.c.add(lineno, f, m, x), self._state, texts)
        self._out_bytes += nbytes
        if self.c.total != before:
            return None
        try:
            ex = from_record(rules.fmt, rec)
        except ValueError as e:  # pragma: no cover - check_record covers every shape from_record needs
            self.c.add(lineno, "record", str(e), "fix the record's shape")
            return None
        chars = sum(len(t) for t in texts)
        self._chars_total += chars
        self._chars_max = max(self._chars_max, chars)
        return Item(lineno, ex, rec, texts)

    # -- raw rows (JSONL objects, CSV rows, Parquet rows) ---------------------------------
    def _colnames(self) -> tuple[str | None, str | None, str | None]:
        rules = self.rules
        assert rules is not None
        cols = self.columns or Columns()
        if rules.fmt is DataFormat.CPT_INPUT:
            return (cols.text or cols.prompt), None, None
        return cols.prompt, cols.completion, cols.system

    def _cell(self, row: dict, col: str | None, required: bool, what: str, known_missing: frozenset[str],
              add: Callable[[str, str, str], None]) -> str | None:
        """The text of one mapped column of a raw row (None: absent, or a problem was added)."""
        if col is None:
            return None
        if col not in row:
            if required and col not in known_missing:
                add(col, "missing", f"it is the {what} column; keys here: {shown_names(sorted(map(str, row)))}; "
                    f"map another with --columns {what}=NAME")
            return None
        v = row[col]
        if v is None:
            return ""
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            add(col, f"must be a string, got {type_name(v)}", f"the {what} column must hold plain text")
            return None
        if isinstance(v, float) and not math.isfinite(v):
            add(col, f"is {v} (not a finite number), not a text", f"the {what} column must hold plain text; "
                "a missing value is an empty cell or null")
            return None
        return v if isinstance(v, str) else str(v)

    def _raw(self, lineno: int, row: dict, known_missing: frozenset[str] = frozenset()) -> Item | None:
        rules = self.rules
        assert rules is not None
        pcol, ccol, scol = self._colnames()
        before = self.c.total
        add = lambda f, m, x: self.c.add(lineno, f, m, x)  # noqa: E731
        prompt = self._cell(row, pcol, True, "text" if rules.fmt is DataFormat.CPT_INPUT else "prompt",
                            known_missing, add)
        completion = self._cell(row, ccol, rules.completion_required, "completion", known_missing, add)
        system = self._cell(row, scol, True, "system", known_missing, add) if scol else None
        if self.c.total != before or prompt is None:
            return None
        if self.system_prompt is not None and not system:
            system = self.system_prompt
        completion = completion or ""
        if not self.trusted:
            self._check_raw_texts(prompt, completion, system, add)
            if self.c.total != before:
                return None
        prompt_t = apply_template(self.prompt_template, prompt, row)
        if not self.trusted and prompt_t != prompt and not self._template_flagged:
            check_text(prompt_t, "prompt_template", rules, add)
        ex = Example(system or None, prompt_t, completion)
        rec = to_record(rules.fmt, ex)
        texts = record_texts(rules.fmt, rec)
        if self.trusted:
            return Item(lineno, ex, rec, texts)
        chars = sum(len(t) for t in texts)
        check_tokens(chars, rules, add)
        if self.c.total != before:
            return None
        self._chars_total += chars
        self._chars_max = max(self._chars_max, chars)
        if self._byte_limit() is not None:
            self._out_bytes += len(json.dumps(rec, ensure_ascii=False).encode()) + 1
        return Item(lineno, ex, rec, texts)

    def _check_raw_texts(self, prompt: str, completion: str, system: str | None,
                         add: Callable[[str, str, str], None]) -> None:
        rules = self.rules
        assert rules is not None
        pcol, ccol, scol = self._colnames()
        check_text(prompt, pcol or "prompt", rules, add,
                   what="prompt" if rules.fmt is not DataFormat.CPT_INPUT else "text")
        if ccol and rules.completion_required:
            check_text(completion, ccol, rules, add, what="completion", answer=True)
        elif ccol and completion:
            check_text(completion, ccol, rules, add, required=False, answer=True)
        if system and system is not self.system_prompt:     # a config system prompt is checked once (validate_config)
            check_text(system, scol or "system_prompt", rules, add, required=False)

    def _missing_columns(self, names: list[str]) -> list[tuple[str, str]]:
        rules = self.rules
        assert rules is not None
        pcol, ccol, scol = self._colnames()
        want = [("text" if rules.fmt is DataFormat.CPT_INPUT else "prompt", pcol)]
        if ccol and rules.completion_required:
            want.append(("completion", ccol))
        if scol:
            want.append(("system", scol))
        return [(what, col) for what, col in want if col and col not in names]

    # -- CSV -----------------------------------------------------------------------------
    def _csv(self, fh: IO[bytes]) -> Iterator[Item]:
        self.mode = "raw"
        lines_seen = [0]

        def text_lines() -> Iterator[str]:
            for lineno, raw, size in readers.iter_raw_lines(fh):
                lines_seen[0] = lineno
                if raw is None:
                    self._overlong(lineno, size)
                    yield "\n"
                    continue
                yield decode(raw, lineno, self.c, False, self.warnings)

        csv.field_size_limit(readers.MAX_LINE_BYTES)      # default 128 KB would hide the real (token) problem
        delim = "\t" if Path(self.path).suffix.lower() == ".tsv" else ","
        reader = csv.reader(text_lines(), delimiter=delim, strict=True)
        header: list[str] | None = None
        missing: frozenset[str] = frozenset()
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                if header is not None:
                    self._tick()
                self._csv_error(start, str(e))
                continue
            if header is None:
                if not row or not any(h.strip() for h in row):
                    continue                    # blank lines before the header
                header = [h.strip() for h in row]
                missing = self._csv_header(reader.line_num, header)
                if missing is None:             # count the rest (a quoting error there is not worth a traceback)
                    self._count_csv_rest(reader)
                    return
                continue
            if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
                self.warnings.append(f"{self.name}:{reader.line_num}: blank line skipped")
                continue
            self._tick()
            if len(row) != len(header):
                self.c.add(start, "csv", f"row has {len(row)} field(s), the header has {len(header)}",
                           'quote fields that contain commas: "a, b"')
                continue
            item = self._raw(start, dict(zip(header, row, strict=True)), missing)
            if item is not None:
                yield item
        if header is None and lines_seen[0] and self.c.total == 0:
            self.c.add(None, "file", f"has no header row: its {lines_seen[0]:,} line(s) are blank or whitespace",
                       "the first line names the columns (e.g. prompt,completion), one row per record below it")

    def _csv_error(self, line: int, msg: str) -> None:
        if "unexpected end of data" in msg or "EOF" in msg:
            self.c.add(line, "csv", "quoted field is never closed (runs to the end of the file)",
                       'close the quote; write a quote inside a field as two quotes ""')
        else:
            self.c.add(line, "csv", f"cannot parse the row: {msg}",
                       'quote fields that contain commas or quotes: "a, ""b"""')

    def _csv_header(self, line: int, header: list[str]) -> frozenset[str] | None:
        """The mapped columns the header lacks (None: a required one is missing, or a mapped one appears
        twice; located problems were added). The header is echoed only when it reads as column names."""
        names = shown_names(header)
        found = self._missing_columns(header)
        for what, col in found:
            self.c.add(line, col, f"no such column; the header has: {names}",
                       f"map the {what} column with --columns {what}=<one of: {names}>" if _names_ok(header)
                       else "is this a CSV file? its first line must name the columns, e.g. prompt,completion")
        used = {c for c in self._colnames() if c}
        for col in sorted(used):
            if header.count(col) > 1:
                self.c.add(line, col, f"the header names this column {header.count(col)} times",
                           "give every column its own name; a reader would keep only one of them")
        self.stats["columns"] = header if _names_ok(header) else []
        if found or any(header.count(c) > 1 for c in used):
            return None
        return frozenset()

    def _count_csv_rest(self, reader: Any) -> None:
        while True:
            try:
                next(reader)
            except StopIteration:
                return
            except csv.Error:
                pass
            self._tick()

    # -- Parquet -------------------------------------------------------------------------
    def _parquet(self, fh: IO[bytes]) -> Iterator[Item]:
        self.mode = "raw"
        try:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(fh)
        except Exception as e:  # noqa: BLE001 - any reader error becomes a located problem
            self.c.add(None, "file", f"not a readable Parquet file: {e}", "re-export it (pandas.DataFrame.to_parquet)")
            return
        names = pf.schema_arrow.names
        self.stats["columns"] = names
        pcol, ccol, scol = self._colnames()
        miss = [col for _, col in self._missing_columns(names)]
        for col in miss:
            self.c.add(None, col, f"no such column; the file has: {', '.join(names)}",
                       "map the right one with --columns")
        if miss:
            self.records = pf.metadata.num_rows
            return
        use = [c for c in (pcol, ccol, scol) if c and c in names]
        rowno = 0
        try:
            for batch in pf.iter_batches(batch_size=8192, columns=use):
                cols = {n: batch.column(n).to_pylist() for n in use}
                for i in range(batch.num_rows):
                    rowno += 1
                    self._tick()
                    item = self._raw(rowno, {n: cols[n][i] for n in use})
                    if item is not None:
                        yield item
        except Exception as e:  # noqa: BLE001
            self.c.add(rowno + 1, "file", f"Parquet read error: {e}", "re-export the file")

    # -- file-level rules ------------------------------------------------------------------
    def _byte_limit(self) -> int | None:
        if self.rules is None:
            return None
        lim = self.rules.limits
        return {"validation": lim.max_validation_file_bytes, "train": lim.max_train_file_bytes}.get(self.role)

    def report(self) -> ValidationReport:
        rules = self.rules
        if rules is not None and self.check_counts:
            self._file_rules(rules)
        refs = self._state.get("media_refs")
        if refs is not None:     # what the service role must read (tasks.data.media): exact objects or their folders
            self.stats["media"] = refs.entries() if refs.fits else []
            self.stats["media_references"] = refs.references
        self.stats.update({
            "mode": self.mode, "records": self.records,
            "format": rules.fmt.value if rules else None,
            "chars_total": self._chars_total, "chars_max": self._chars_max,
            "estimated_tokens": rules.tokens(self._chars_total) if rules else 0,
            "warnings": self.warnings[:50]
            + ([f"... and {len(self.warnings) - 50} more"] if len(self.warnings) > 50 else []),
        })
        return ValidationReport(source=self.name, records=self.records, problems=self.c.problems,
                                total_problems=self.c.total, stats=self.stats)

    def _file_rules(self, rules: Rules) -> None:
        p = Path(self.path)
        if not p.is_file():
            return
        if self.records == 0 and self.c.total == 0:
            self.c.add(None, "file", "has no records" + (" (0 bytes)" if p.stat().st_size == 0 else ""),
                       "add rows below the header" if self.stats.get("kind") == "csv"
                       else "add records, one JSON object per line")
            return
        if len(self._state.get("media", ())) > 1:
            self.c.add(None, "messages", "the dataset mixes images and video",
                       "one dataset is text+images or text+video, never both; docs/bedrock-facts.md §5")
        refs = self._state.get("media_refs")
        if refs is not None and not refs.fits:
            self.c.add(None, "messages", f"the records reference media in more folders than the service role's "
                       f"policy can name ({refs.budget:,} characters of IAM's 10,240 per role; tasks/data/media.py)",
                       "keep a dataset's images or videos under a few folders, e.g. s3://BUCKET/images/NAME.png")
        lim = rules.limits
        n = self.records
        kind = "validation" if self.role == "validation" else "training"
        lo = lim.min_validation_records if self.role == "validation" else lim.min_train_records
        hi = lim.max_validation_records if self.role == "validation" else lim.max_train_records
        if self.role in ("test", "source"):
            lo = hi = None
        if lo is not None and n < lo:
            self.c.add(None, "records",
                       f"{n} {kind} record(s); {rules.model_id} {rules.ctype.value} needs at least {lo}",
                       f"add at least {lo - n} more record(s)")
        if hi is not None and n > hi:
            if self.mode == "formatted":
                self.c.add(None, "records",
                           f"{n:,} {kind} records; {rules.model_id} {rules.ctype.value} accepts at most {hi:,}",
                           f"drop {n - hi:,} record(s) or sample with data.max_records")
            else:
                self.warnings.append(f"{self.name}: {n:,} raw records; after the split the training file must stay "
                                     f"<= {hi:,} (forge prepare checks; data.max_records samples)")
        other = self.companion_records if self.role == "train" else None
        total = n + (other or 0)
        both = (f"{n:,} training + {other:,} validation records" if other is not None else f"{n:,} records")
        if self.mode == "formatted" and lim.max_total_records is not None and total > lim.max_total_records:
            self.c.add(None, "records", f"{both}; total (train + validation) is at most {lim.max_total_records:,}",
                       "drop records or sample with data.max_records")
        lo_total = lim.min_total_records
        if lo_total is not None and total < lo_total and self.role in ("train", "source"):
            if self.role == "train":
                # AWS counts the two files together: say which validation file (if any) was counted
                counted = (f"{both}" if other is not None else f"{n:,} training record(s) and no validation file")
                self.c.add(None, "records",
                           f"{counted}; {rules.model_id} {rules.ctype.value} needs at least {lo_total:,} training "
                           "+ validation records in total",
                           f"add at least {lo_total - total:,} more record(s) here or in the validation file"
                           + ("" if other is not None else ", and pass that file with --validation FILE: AWS counts "
                              "both"))
            else:
                # a source before the split: train + validation can only be fewer, unless augmentation adds copies
                self.warnings.append(f"{self.name}: {n:,} records; after the split train + validation must be at "
                                     f"least {lo_total:,} records (forge prepare checks; add data)")
        blim = self._byte_limit()
        size = self._out_bytes if self.mode != "formatted" else p.stat().st_size
        if blim is not None and size > blim:
            self.c.add(None, "file", f"{format_size(size)} ({kind} file); the limit is {format_size(blim)}",
                       "split the data or sample with data.max_records")
        self.stats["bytes"] = size
