"""Validate training data against every rule Bedrock applies for a base model + customization type,
before any AWS call.

Two kinds of input:

- **raw** data — JSONL objects, CSV or Parquet — whose columns are mapped with ``tasks.config.Columns``
  (prompt / completion / system / text) and converted with ``tasks.formats.to_record``;
- **formatted** JSONL that is already in the model's format (auto-detected: its records carry the
  target format's keys, e.g. ``messages`` / ``schemaVersion`` / ``input``), checked key by key.

Every problem is collected (never raised, never a traceback) as ``FILE:LINE: field: message (fix)``
(for Parquet, LINE is the 1-based row number; file-level problems have no LINE).
The file is streamed in binary, 64 KiB at a time split into lines (``_iter_raw_lines``, with a size
cap per line), so memory stays flat in the file size, and one enormous line is measured and skipped
rather than loaded. JSONL lines are parsed with orjson; a line it refuses, or an object holding
anything but strings, is parsed again with ``json`` (exact integers, the messages below). CSV is read with the
stdlib ``csv`` reader over that line stream (not pandas) because it reports the physical line of
every row, keeps going after a quoting error, and handles quoted newlines; Parquet is read in
batches with ``pyarrow.parquet.ParquetFile.iter_batches``.

``validate_config`` adds the settings of a whole PipelineConfig (hyperparameters, region, S3/IAM
names, on-demand availability), located by the key's line in the YAML file.

Sources of the rules: shared/reference/bedrock-customization.md §5 (REF §5) for the formats and
the forbidden strings, ``tasks/catalog.yaml`` ``limits`` (each with its source) for record counts,
tokens per record and file sizes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel, Field

from tasks.catalog import (
    CustomizationType,
    DataFormat,
    Limits,
    ModelFamily,
    UnknownModelError,
    UnsupportedCustomizationError,
    load_catalog,
    resolve_hyperparameters,
)
from tasks.config import Columns
from tasks.formats import SCHEMA_VERSION, Example, from_record, record_texts, to_record

_orjson_loads = orjson.loads
_OrjsonError = orjson.JSONDecodeError

MAX_PROBLEMS_KEPT = 1000          # problems stored in a report (the count goes on)
MAX_PROBLEMS_SHOWN = 200          # lines printed before "... and N more"
PROGRESS_EVERY = 50_000           # progress callback every N records
MAX_LINE_BYTES = 8 * 1024 * 1024  # our reader's cap (not a Bedrock figure): longer lines are measured, skipped
SHORT_TEXT_CHARS = 3              # quality hint only

# REF §5 (Nova, docs): these strings anywhere in a prompt fail the job.
NOVA_FORBIDDEN = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
# REF §5 (Claude 3 Haiku, sample validator): texts must not contain these turn markers.
CLAUDE_FORBIDDEN = ("\nHuman:", "\nAssistant:")
IMAGE_FORMATS = ("jpeg", "png", "gif", "webp")        # REF §5
VIDEO_FORMATS = ("mov", "mkv", "mp4", "webm")         # REF §5 (sample)
MAX_IMAGES_PER_RECORD = 10                            # REF §5 (sample)
MEDIA_NAME_RE = re.compile(r"[A-Za-z0-9_\-/.]+")      # REF §5: letters, digits, _, -, /, .


# ---------------------------------------------------------------------------------------------
# boundary models
# ---------------------------------------------------------------------------------------------
class Problem(BaseModel):
    file: str
    line: int | None = None
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" + (f" ({self.fix})" if self.fix else "")


def _capped_lines(problems: list[Problem], total: int, limit: int | None = MAX_PROBLEMS_SHOWN) -> list[str]:
    shown = problems if limit is None else problems[:limit]
    out = [str(p) for p in shown]
    if total > len(shown):
        out.append(f"... and {total - len(shown)} more problem(s)")
    return out


class DataValidationError(ValueError):
    """Bad input: every problem found, each printable as ``FILE:LINE: field: message (fix)``."""

    def __init__(self, problems: list[Problem], total: int | None = None):
        self.problems = list(problems)
        self.total = max(total or 0, len(self.problems))
        super().__init__(f"{self.total} data problem(s):\n" + "\n".join(self.lines(20)))

    def lines(self, limit: int | None = MAX_PROBLEMS_SHOWN) -> list[str]:
        return _capped_lines(self.problems, self.total, limit)

    def __reduce__(self):   # pickles whole (Prefect persists a failed task's exception)
        return (DataValidationError, (self.problems, self.total))


class ValidationReport(BaseModel):
    source: str
    records: int = 0
    problems: list[Problem] = Field(default_factory=list)
    total_problems: int = 0                  # can exceed len(problems) (only the first 1000 are kept)
    stats: dict = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.total_problems == 0 and not self.problems

    def lines(self, limit: int | None = MAX_PROBLEMS_SHOWN) -> list[str]:
        return _capped_lines(self.problems, max(self.total_problems, len(self.problems)), limit)

    def summary(self) -> str:
        n = max(self.total_problems, len(self.problems))
        if n == 0:
            return f"{self.source}: OK, {self.records} record(s)"
        return f"{self.source}: {n} problem(s) in {self.records} record(s)"


class Collector:
    """Collects problems for one file; keeps the first ``MAX_PROBLEMS_KEPT``, counts all."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self.total = 0

    def add(self, line: int | None, fld: str, message: str, fix: str = "") -> None:
        self.total += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(Problem(file=self.file, line=line, field=fld, message=message, fix=fix))


# ---------------------------------------------------------------------------------------------
# rules for one model + type
# ---------------------------------------------------------------------------------------------
@dataclass
class Rules:
    model_id: str
    family: ModelFamily
    ctype: CustomizationType
    fmt: DataFormat
    limits: Limits
    forbidden: tuple[str, ...] = ()
    forbidden_prompt_only: bool = False
    assistant_required: bool = True
    single_user_turn: bool = False
    text_only: bool = False

    @property
    def completion_required(self) -> bool:
        # distillation: assistant optional (REF §5); CPT: one text; RFT: reference_answer is optional
        return self.ctype == CustomizationType.FINE_TUNING

    def tokens(self, chars: int) -> int:
        return math.ceil(chars / (self.limits.chars_per_token or 6.0))


def rules_for(base_model: str, ctype: CustomizationType | str, teacher: str | None = None) -> Rules:
    """Rules for a model + type; raises UnknownModelError / UnsupportedCustomizationError / ValueError."""
    cat = load_catalog()
    ct = CustomizationType.parse(ctype)
    fam = cat.family_of(base_model)
    spec = cat.spec(base_model, ct)
    forbidden: tuple[str, ...] = ()
    if fam.key.startswith("nova"):
        forbidden = NOVA_FORBIDDEN
    elif spec.format == DataFormat.CLAUDE_MESSAGES:
        forbidden = CLAUDE_FORBIDDEN
    single = False
    if ct == CustomizationType.DISTILLATION and teacher:
        # REF §5: Anthropic and Llama teachers accept a single user turn only; Nova allows multi-turn.
        single = any(k in teacher for k in ("anthropic.", "meta.", "llama"))
    return Rules(model_id=base_model, family=fam, ctype=ct, fmt=spec.format, limits=spec.limits,
                 forbidden=forbidden, forbidden_prompt_only=fam.key.startswith("nova"), assistant_required=ct != CustomizationType.DISTILLATION,
                 single_user_turn=single, text_only="nova-micro" in base_model)


# ---------------------------------------------------------------------------------------------
# checks on one formatted record
# ---------------------------------------------------------------------------------------------
Add = Callable[[str, str, str], None]     # (field, message, fix)

_KEYS = {
    DataFormat.PROMPT_COMPLETION: ({"prompt", "completion"}, set()),
    DataFormat.CLAUDE_MESSAGES: ({"messages"}, {"system"}),
    DataFormat.CONVERSATION: ({"schemaVersion", "messages"}, {"system"}),
    DataFormat.CPT_INPUT: ({"input"}, set()),
    DataFormat.RFT_MESSAGES: ({"messages"}, None),   # None = extra keys allowed (REF §5: "<extra fields>")
}


def _tname(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _text_rules(text: str, fld: str, rules: Rules, add: Add, *, required: bool = True, what: str = "text",
                answer: bool = False) -> None:
    """Empty text; forbidden strings (Nova: prompt side only — system and user turns, REF §5 "anywhere
    in a prompt"; Claude: every text)."""
    if not text.strip():
        if required:
            add(fld, "is empty", f"every record needs a non-empty {what}; fill it in or drop the record")
        return
    if answer and rules.forbidden_prompt_only:
        return
    for s in rules.forbidden:
        if s in text:
            shown = s.replace("\n", "\\n")
            who = "Nova" if rules.family.key.startswith("nova") else rules.family.display
            add(fld, f"contains the string {shown!r}, which {who} rejects",
                f"remove or reword {shown!r}; REF §5: it fails the training job")
            break


_PLAIN_KEY = re.compile(r"[A-Za-z_][\w-]*")


def _key(k: Any) -> str:
    """A user-supplied key as a field name: plain names as is, anything else quoted (``""``, ``"a b"``)."""
    k = str(k)
    return k if _PLAIN_KEY.fullmatch(k) else json.dumps(k, ensure_ascii=False)


def _check_keys(rec: dict, fmt: DataFormat, add: Add) -> bool:
    required, optional = _KEYS[fmt]
    ok = True
    for k in sorted(required - rec.keys()):
        add(k, "missing", f"{fmt.value} records need {', '.join(sorted(required))}")
        ok = False
    if optional is not None:
        for k in sorted(rec.keys() - required - optional):
            allowed = ", ".join(sorted(required | optional))
            add(_key(k), "unknown key", f"remove it; {fmt.value} records allow only {allowed}")
    return ok


def _is_str(v: Any, fld: str, add: Add) -> bool:
    if not isinstance(v, str):
        add(fld, f"must be a string, got {_tname(v)}", "write the text as a JSON string")
        return False
    return True


def _check_roles(roles: list[str], rules: Rules, add: Add, skip_missing_assistant: bool = False) -> None:
    """Order rules shared by the message formats (REF §5)."""
    if not roles:
        return
    if roles[0] != "user":
        add("messages[0].role", f"first turn is {roles[0]!r}, must be 'user'", "start every conversation with the user turn")
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1] and roles[i] in ("user", "assistant"):
            add(f"messages[{i}].role", f"two {roles[i]!r} turns in a row (messages[{i - 1}] and messages[{i}])",
                "turns must alternate user, assistant, user, ...; merge or drop one")
    if rules.assistant_required:
        if "assistant" not in roles:
            if skip_missing_assistant:
                return
            add("messages", "no assistant turn", "add the expected answer as an assistant turn; fine-tuning requires it")
        elif roles[-1] != "assistant":
            add(f"messages[{len(roles) - 1}].role", f"last turn is {roles[-1]!r}, must be 'assistant'",
                "end every conversation with the assistant's answer")
    if rules.single_user_turn and roles.count("user") > 1:
        add("messages", f"{roles.count('user')} user turns; this teacher accepts a single user turn",
            "keep one user turn per record; REF §5: Anthropic and Llama teachers")


def check_record(rec: Any, rules: Rules, add: Add, state: dict | None = None, texts: list[str] | None = None) -> None:
    """Every rule for one formatted record (REF §5). ``state`` carries dataset-wide facts (media kinds)."""
    fmt = rules.fmt
    if not isinstance(rec, dict):
        add("record", f"expected a JSON object, got {_tname(rec)}", "each line must be one JSON object {...}")
        return
    _check_keys(rec, fmt, add)
    if fmt is DataFormat.PROMPT_COMPLETION:
        if "prompt" in rec and _is_str(rec["prompt"], "prompt", add):
            _text_rules(rec["prompt"], "prompt", rules, add, what="prompt")
        if "completion" in rec and _is_str(rec["completion"], "completion", add):
            _text_rules(rec["completion"], "completion", rules, add, what="completion", answer=True)
    elif fmt is DataFormat.CPT_INPUT:
        if "input" in rec and _is_str(rec["input"], "input", add):
            _text_rules(rec["input"], "input", rules, add, what="input text")
    elif fmt is DataFormat.CLAUDE_MESSAGES:
        _check_claude(rec, rules, add)
    elif fmt is DataFormat.CONVERSATION:
        _check_conversation(rec, rules, add, state if state is not None else {})
    elif fmt is DataFormat.RFT_MESSAGES:
        _check_rft(rec, rules, add)
    _check_tokens(sum(len(t) for t in (texts if texts is not None else record_texts(fmt, rec))), rules, add)


def _check_tokens(chars: int, rules: Rules, add: Add) -> None:
    lim = rules.limits.max_tokens_per_record
    if lim is not None and rules.tokens(chars) > lim:
        add("record", f"about {rules.tokens(chars):,} tokens ({chars:,} characters / {rules.limits.chars_per_token:g} per token), "
            f"limit {lim:,} per record", "shorten the texts or split the record")


def _messages(rec: dict, add: Add) -> list | None:
    msgs = rec.get("messages")
    if msgs is None:
        return None
    if not isinstance(msgs, list):
        add("messages", f"must be an array of turns, got {_tname(msgs)}", 'write "messages": [{"role": "user", ...}, ...]')
        return None
    if not msgs:
        add("messages", "is empty", "add a user turn and the assistant's answer")
        return None
    return msgs


def _turn_shape(m: Any, p: str, add: Callable, roles: list[str], shape: str, system_fix: str) -> bool:
    """Checks every messages format shares for one turn (an object; only role and content; role user or
    assistant); records its role in ``roles``. False when the turn is not an object (nothing else to check)."""
    if not isinstance(m, dict):
        add(p, f"must be an object, got {_tname(m)}", shape)
        roles.append("?")
        return False
    for k in sorted(m.keys() - {"role", "content"}):
        add(f"{p}.{_key(k)}", "unknown key", "turns have only role and content")
    role = m.get("role")
    if role not in ("user", "assistant"):
        add(f"{p}.role", f"invalid role {role!r}", system_fix if role == "system" else "use 'user' or 'assistant'")
    roles.append(role if isinstance(role, str) else "?")
    return True


def _check_claude(rec: dict, rules: Rules, add: Add) -> None:
    if "system" in rec and _is_str(rec["system"], "system", add):
        _text_rules(rec["system"], "system", rules, add, required=False)
    msgs = _messages(rec, add)
    if msgs is None:
        return
    roles: list[str] = []
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not _turn_shape(m, p, add, roles, '{"role": "user"|"assistant", "content": "..."}',
                           "put the system prompt in the top-level \"system\" string"):
            continue
        if "content" not in m:
            add(f"{p}.content", "missing", "add the turn's text as a string")
        elif isinstance(m["content"], list):
            add(f"{p}.content", "must be a string for Claude 3 Haiku, got an array of blocks",
                'write "content": "..."; REF §8: Haiku takes string content')
        elif _is_str(m["content"], f"{p}.content", add):
            _text_rules(m["content"], f"{p}.content", rules, add)
    too_short = len(msgs) < 2 and rules.assistant_required
    if too_short:
        add("messages", f"{len(msgs)} turn(s); at least 2 (user, assistant) are required", "add the assistant's answer")
    _check_roles(roles, rules, add, skip_missing_assistant=too_short)


def _check_block(b: Any, p: str, role: Any, rules: Rules, add: Add, counts: dict) -> None:
    if not isinstance(b, dict):
        add(p, f"must be an object, got {_tname(b)}", 'write {"text": "..."}')
        return
    kinds = [k for k in ("text", "image", "video") if k in b]
    extra = sorted(b.keys() - {"text", "image", "video"})
    for k in extra:
        add(f"{p}.{_key(k)}", "unknown content block key", "blocks hold exactly one of text, image, video")
    if len(kinds) != 1:
        if not extra:
            add(p, "must hold exactly one of text, image, video", 'write {"text": "..."}')
        return
    kind = kinds[0]
    if kind == "text":
        if _is_str(b["text"], f"{p}.text", add):
            _text_rules(b["text"], f"{p}.text", rules, add, answer=role != "user")
        return
    counts[kind] = counts.get(kind, 0) + 1
    if role != "user":
        add(f"{p}.{kind}", f"{kind} in a {role!r} turn", "media are allowed only in user turns; REF §5")
    if rules.text_only:
        add(f"{p}.{kind}", f"{rules.model_id} takes text only", "remove media or pick Nova Lite/Pro; REF §5: Micro is text only")
    media = b[kind]
    formats = IMAGE_FORMATS if kind == "image" else VIDEO_FORMATS
    if not isinstance(media, dict):
        add(f"{p}.{kind}", f"must be an object, got {_tname(media)}", '{"format": ..., "source": {"s3Location": {"uri": "s3://..."}}}')
        return
    if media.get("format") not in formats:
        add(f"{p}.{kind}.format", f"{media.get('format')!r} is not supported", f"use one of {', '.join(formats)}")
    uri = ((media.get("source") or {}).get("s3Location") or {}).get("uri") if isinstance(media.get("source"), dict) else None
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        add(f"{p}.{kind}.source.s3Location.uri", "missing or not an s3:// URI",
            "media must sit in S3, in the same bucket as the dataset; REF §5")
    elif not MEDIA_NAME_RE.fullmatch(uri[5:]):
        add(f"{p}.{kind}.source.s3Location.uri", "file name has characters Bedrock rejects",
            "use only letters, digits, _, -, /, . in media names; REF §5")


def _check_conversation(rec: dict, rules: Rules, add: Add, state: dict) -> None:
    sv = rec.get("schemaVersion")
    if "schemaVersion" in rec and _is_str(sv, "schemaVersion", add) and sv != SCHEMA_VERSION:
        if rules.ctype == CustomizationType.DISTILLATION:
            add("schemaVersion", f"{sv!r}; distillation requires {SCHEMA_VERSION!r}", f'write "schemaVersion": "{SCHEMA_VERSION}"')
    if "system" in rec:
        s = rec["system"]
        if isinstance(s, str):
            add("system", "must be an array of text blocks, got a string", 'write "system": [{"text": "..."}]')
        elif not isinstance(s, list):
            add("system", f"must be an array of text blocks, got {_tname(s)}", 'write "system": [{"text": "..."}]')
        else:
            for j, b in enumerate(s):
                if not isinstance(b, dict) or set(b) != {"text"}:
                    add(f"system[{j}]", "must be {\"text\": \"...\"}", "system blocks hold text only")
                elif _is_str(b["text"], f"system[{j}].text", add):
                    _text_rules(b["text"], f"system[{j}].text", rules, add, required=False)
    msgs = _messages(rec, add)
    if msgs is None:
        return
    roles: list[str] = []
    counts: dict[str, int] = {}
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not _turn_shape(m, p, add, roles, '{"role": "user", "content": [{"text": "..."}]}',
                           'put the system prompt in the top-level "system": [{"text": ...}]'):
            continue
        role = m.get("role")
        c = m.get("content")
        if "content" not in m:
            add(f"{p}.content", "missing", 'add "content": [{"text": "..."}]')
        elif isinstance(c, str):
            add(f"{p}.content", "must be an array of content blocks, got a string",
                'write "content": [{"text": "..."}]; REF §8: Nova/Llama 3.2 take block lists')
        elif not isinstance(c, list):
            add(f"{p}.content", f"must be an array of content blocks, got {_tname(c)}", 'write "content": [{"text": "..."}]')
        elif not c:
            add(f"{p}.content", "is empty", 'add at least one {"text": "..."} block')
        else:
            for j, b in enumerate(c):
                _check_block(b, f"{p}.content[{j}]", role, rules, add, counts)
    if counts.get("image", 0) > MAX_IMAGES_PER_RECORD:
        add("messages", f"{counts['image']} images; at most {MAX_IMAGES_PER_RECORD} per record", "split the record; REF §5")
    if counts.get("video", 0) > 1:
        add("messages", f"{counts['video']} videos; at most 1 per record", "split the record; REF §5")
    for kind in ("image", "video"):
        if counts.get(kind):
            state.setdefault("media", set()).add(kind)
    if "user" not in roles:
        add("messages", "no user turn", "every record needs a user turn")
    _check_roles(roles, rules, add)


def _check_rft(rec: dict, rules: Rules, add: Add) -> None:
    msgs = _messages(rec, add)
    if msgs is None:
        return
    roles: list[str] = []
    for i, m in enumerate(msgs):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            add(p, f"must be an object, got {_tname(m)}", '{"role": "user", "content": "..."}')
            continue
        role = m.get("role")
        if role not in ("system", "user", "assistant"):
            add(f"{p}.role", f"invalid role {role!r}", "use 'system', 'user' or 'assistant'")
        elif role == "system" and i != 0:
            add(f"{p}.role", "a system turn must come first", "move the system turn to messages[0]")
        roles.append(role if isinstance(role, str) else "?")
        if "content" not in m:
            add(f"{p}.content", "missing", "add the turn's text as a string")
        elif isinstance(m["content"], list):
            add(f"{p}.content", "must be a string (chat-completion style), got an array", 'write "content": "..."')
        elif _is_str(m["content"], f"{p}.content", add):
            _text_rules(m["content"], f"{p}.content", rules, add, required=role != "system")
    if "user" not in roles:
        add("messages", "no user turn", "RFT records need the prompt as a user turn")
    elif roles and roles[-1] != "user":
        add(f"messages[{len(roles) - 1}].role", f"last turn is {roles[-1]!r}, must be 'user'",
            "RFT records end with the prompt; put the expected answer in reference_answer")


# ---------------------------------------------------------------------------------------------
# reading: lines, JSONL, CSV, Parquet
# ---------------------------------------------------------------------------------------------
class Item(NamedTuple):
    """One record that passed every check: its line, the Example, and the record to write."""

    line: int
    example: Example
    record: dict
    texts: list[str]        # every text of the record (tasks.formats.record_texts)


_NO_RECORD = object()


def _max_chars(rules: Rules) -> int | None:
    """Most characters a record may have within ``max_tokens_per_record`` (``rules.tokens`` exactly)."""
    lim = rules.limits.max_tokens_per_record
    if lim is None:
        return None
    c = max(0, int(lim * (rules.limits.chars_per_token or 6.0)) - 2)
    while rules.tokens(c + 1) <= lim:
        c += 1
    while c > 0 and rules.tokens(c) > lim:
        c -= 1
    return c


READ_CHUNK = 1 << 16               # bytes read at a time by _iter_raw_lines


def _iter_raw_lines(fh) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, bytes or None when longer than MAX_LINE_BYTES, size). Memory: one chunk + one line, capped.

    Reads ``READ_CHUNK`` bytes at a time and splits them (a ``readline`` call per line costs more than
    the checks on the line). The same lines as ``readline(MAX_LINE_BYTES + 1)`` would give: each keeps
    its newline (the last one may have none); a line longer than the cap is measured and skipped,
    never held. Reads ahead of the line it yields: iterate the one generator to the end, never the file.
    """
    cap = MAX_LINE_BYTES
    lineno = 0
    rest = b""
    skipping = -1                      # >= 0: bytes so far of an overlong line being skipped
    while True:
        chunk = fh.read(READ_CHUNK)
        if not chunk:
            break
        if skipping >= 0:
            nl = chunk.find(b"\n")
            if nl < 0:
                skipping += len(chunk)
                continue
            lineno += 1
            yield lineno, None, skipping + nl + 1
            skipping = -1
            chunk = chunk[nl + 1:]
        data = rest + chunk if rest else chunk
        parts = data.split(b"\n")
        rest = parts.pop()
        for ln in parts:
            lineno += 1
            size = len(ln) + 1
            yield (lineno, None, size) if size > cap + 1 else (lineno, ln + b"\n", size)
        if len(rest) > cap:            # no newline within the cap: an overlong line
            skipping, rest = len(rest), b""
    if skipping >= 0:
        yield lineno + 1, None, skipping
    elif rest:
        yield lineno + 1, rest, len(rest)


def _decode(raw: bytes, lineno: int, c: Collector, strict: bool, warn: list[str]) -> str:
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        if strict:
            c.add(1, "file", "starts with a UTF-8 byte-order mark (BOM)", "save the file as UTF-8 without BOM")
        else:
            warn.append(f"{c.file}:1: byte-order mark (BOM) ignored")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        c.add(lineno, "encoding", f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not valid UTF-8",
              "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8")
        return raw.decode("utf-8", errors="replace")


def _fmt_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


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
        return target if target in (DataFormat.CLAUDE_MESSAGES, DataFormat.CONVERSATION, DataFormat.RFT_MESSAGES) else None
    if "input" in rec and "prompt" not in rec:
        return DataFormat.CPT_INPUT
    if set(rec) == {"prompt", "completion"}:
        return DataFormat.PROMPT_COMPLETION
    return None


def file_kind(path: Path) -> str:
    suf = path.suffix.lower()
    if suf in (".csv", ".tsv"):
        return "csv"
    if suf in (".parquet", ".pq"):
        return "parquet"
    try:
        with open(path, "rb") as fh:
            if fh.read(4) == b"PAR1":
                return "parquet"
    except OSError:
        pass
    return "jsonl"


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
    records: int = 0
    mode: str = ""
    warnings: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = str(self.path)
        self.c = Collector(self.name)
        self.rules: Rules | None = None
        self._state: dict = {}
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
            _text_rules(_PLACEHOLDER.sub("", self.prompt_template), "prompt_template", self.rules, add, required=False)
            self._template_flagged = self.c.total != before
            if self.system_prompt:
                _text_rules(self.system_prompt, "system_prompt", self.rules, add, required=False)
        except UnknownModelError as e:
            self.c.add(None, "base_model", str(e), "use a customizable model id from tasks/catalog.yaml")
        except UnsupportedCustomizationError as e:
            self.c.add(None, "customization_type", str(e), "pick a type the model supports, or another base model")
        except ValueError as e:
            self.c.add(None, "customization_type", str(e), "use fine-tuning, continued-pretraining, distillation or reinforcement")

    # -- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Item]:
        if self.rules is None:
            return
        p = Path(self.path)
        if not p.exists():
            self.c.add(None, "file", "not found", "check the path")
            return
        if p.is_dir():
            self.c.add(None, "file", "is a directory", "pass a JSONL, CSV or Parquet file")
            return
        kind = self.kind if self.kind in ("jsonl", "csv", "parquet") else file_kind(p)
        self.stats["kind"] = kind
        if kind == "csv":
            yield from self._csv(p)
        elif kind == "parquet":
            yield from self._parquet(p)
        else:
            yield from self._jsonl(p)

    def _tick(self) -> None:
        self.records += 1
        if self.progress and self.records % (self.progress_every or PROGRESS_EVERY) == 0:
            self.progress(self.records)

    # -- JSONL ---------------------------------------------------------------------------
    def _jsonl(self, p: Path) -> Iterator[Item]:
        rules = self.rules
        assert rules is not None
        mode = self.fmt if self.fmt in ("raw", "formatted") else ""
        if self.columns is not None and not mode and self.columns != Columns():
            mode = "raw"
        # the commonest input, formatted prompt/completion JSONL ({"prompt", "completion"}, two non-empty
        # strings within the token limit), is recognised inline; any other record takes _formatted /
        # _raw, so every problem is still found and worded by check_record
        fast = rules.fmt is DataFormat.PROMPT_COMPLETION and not rules.forbidden and not self.trusted
        max_chars = _max_chars(rules)
        if max_chars is None:
            max_chars = 1 << 62
        sink = self.sink
        with open(p, "rb") as fh:
            lines = _iter_raw_lines(fh)
            for lineno, raw, size in lines:
                if raw is None:
                    self._tick()
                    self.c.add(lineno, "record", f"line is {_fmt_size(size)} long (this reader stops at "
                               f"{_fmt_size(MAX_LINE_BYTES)})", "split or shorten the record; one record per line")
                    continue
                # orjson refuses everything json.loads would flag (and a few things it accepts: NaN,
                # lone surrogates) and gives the same strings; its numbers can differ (an integer past
                # 64 bits becomes a float). So its result is used only for objects whose values are all
                # strings; anything else takes the original path, which also words every message.
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
                            if type(prompt) is str and type(completion) is str:
                                chars = len(prompt) + len(completion)
                                if chars <= max_chars and prompt.strip() and completion.strip():
                                    self._tick()
                                    self._out_bytes += len(raw)
                                    self._chars_total += chars
                                    if chars > self._chars_max:
                                        self._chars_max = chars
                                    if sink is not None:
                                        sink(lineno, prompt, completion, chars)
                                    else:
                                        yield Item(lineno, Example(None, prompt, completion), rec, [prompt, completion])
                                    continue
                        if type(rec) is not dict or not all(type(v) is str for v in rec.values()):
                            rec = _NO_RECORD
                if rec is not _NO_RECORD:
                    self._tick()
                else:
                    text = _decode(raw, lineno, self.c, True, self.warnings)
                    if not text.strip():
                        self.c.add(lineno, "line", "blank line", "remove empty lines; every line must be one JSON object")
                        continue
                    self._tick()
                    try:
                        rec = json.loads(text)
                    except json.JSONDecodeError as e:
                        if lineno == 1 and text.lstrip().startswith("["):
                            self.c.add(lineno, "file", "is a JSON array, not JSON Lines",
                                       "write one JSON object per line, e.g. jq -c '.[]' in.json > out.jsonl")
                            return
                        self.c.add(lineno, "json", f"not valid JSON: {e.msg} at column {e.colno}",
                                   "each line must be one complete JSON object; check quotes, commas and brackets")
                        continue
                if not isinstance(rec, dict):
                    self.c.add(lineno, "record", f"expected a JSON object, got {_tname(rec)}",
                               "each line must be one JSON object {...}")
                    continue
                if not mode:
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
                        return
                    self.mode = mode
                if mode == "formatted":
                    item = self._formatted(lineno, rec, len(raw))
                else:
                    item = self._raw(lineno, rec)
                if item is not None:
                    yield item
        self.mode = self.mode or mode or "raw"

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

    def _raw(self, lineno: int, row: dict, known_missing: frozenset[str] = frozenset()) -> Item | None:
        rules = self.rules
        assert rules is not None
        pcol, ccol, scol = self._colnames()
        before = self.c.total
        add = lambda f, m, x: self.c.add(lineno, f, m, x)  # noqa: E731

        def get(col: str | None, required: bool, what: str) -> str | None:
            if col is None:
                return None
            if col not in row:
                if required and col not in known_missing:
                    have = ", ".join(sorted(map(str, row))) or "none"
                    add(col, "missing", f"it is the {what} column; keys here: {have}; map another with --columns {what}=NAME")
                return None
            v = row[col]
            if v is None:
                return ""
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                add(col, f"must be a string, got {_tname(v)}", f"the {what} column must hold plain text")
                return None
            return v if isinstance(v, str) else str(v)

        prompt = get(pcol, True, "text" if rules.fmt is DataFormat.CPT_INPUT else "prompt")
        completion = get(ccol, rules.completion_required, "completion")
        system = get(scol, scol is not None, "system") if scol else None
        if self.c.total != before or prompt is None:
            return None
        if self.system_prompt is not None and not system:
            system = self.system_prompt
        completion = completion or ""
        if self.trusted:
            prompt_t = apply_template(self.prompt_template, prompt, row)
            ex = Example(system or None, prompt_t, completion)
            rec = to_record(rules.fmt, ex)
            texts = record_texts(rules.fmt, rec)
            return Item(lineno, ex, rec, texts)
        _text_rules(prompt, pcol or "prompt", rules, add, what="prompt" if rules.fmt is not DataFormat.CPT_INPUT else "text")
        if ccol and rules.completion_required:
            _text_rules(completion, ccol, rules, add, what="completion", answer=True)
        elif ccol and completion:
            _text_rules(completion, ccol, rules, add, required=False, answer=True)
        if system and system is not self.system_prompt:     # a config system prompt is checked once (validate_config)
            _text_rules(system, scol or "system_prompt", rules, add, required=False)
        if self.c.total != before:
            return None
        prompt_t = apply_template(self.prompt_template, prompt, row)
        if prompt_t != prompt and not self._template_flagged:
            _text_rules(prompt_t, "prompt_template", rules, add)
        ex = Example(system or None, prompt_t, completion)
        rec = to_record(rules.fmt, ex)
        texts = record_texts(rules.fmt, rec)
        chars = sum(len(t) for t in texts)
        if not self.trusted:
            _check_tokens(chars, rules, add)
        if self.c.total != before:
            return None
        self._chars_total += chars
        self._chars_max = max(self._chars_max, chars)
        if self._byte_limit() is not None:
            self._out_bytes += len(json.dumps(rec, ensure_ascii=False).encode()) + 1
        return Item(lineno, ex, rec, texts)

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
    def _csv(self, p: Path) -> Iterator[Item]:
        self.mode = "raw"
        lines_seen = [0]
        with open(p, "rb") as fh:
            def text_lines() -> Iterator[str]:
                for lineno, raw, size in _iter_raw_lines(fh):
                    lines_seen[0] = lineno
                    if raw is None:
                        self.c.add(lineno, "record", f"line is {_fmt_size(size)} long (this reader stops at "
                                   f"{_fmt_size(MAX_LINE_BYTES)})", "split or shorten the record")
                        yield "\n"
                        continue
                    yield _decode(raw, lineno, self.c, False, self.warnings)

            csv.field_size_limit(MAX_LINE_BYTES)      # default 128 KB would hide the real (token) problem
            delim = "\t" if p.suffix.lower() == ".tsv" else ","
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
                    msg = str(e)
                    if "unexpected end of data" in msg or "EOF" in msg:
                        self.c.add(start, "csv", "quoted field is never closed (runs to the end of the file)",
                                   'close the quote; write a quote inside a field as two quotes ""')
                    else:
                        self.c.add(start, "csv", f"cannot parse the row: {msg}",
                                   'quote fields that contain commas or quotes: "a, ""b"""')
                    continue
                if header is None:
                    if not row:
                        continue
                    header = [h.strip() for h in row]
                    miss = self._missing_columns(header)
                    for what, col in miss:
                        self.c.add(reader.line_num, col, f"no such column; the header has: {', '.join(header)}",
                                   f"map the {what} column with --columns {what}=<one of: {', '.join(header)}>")
                    miss = [col for _, col in miss]
                    missing = frozenset(miss)
                    self.stats["columns"] = header
                    if miss:           # count the rest (a quoting error there is not worth a traceback)
                        while True:
                            try:
                                next(reader)
                            except StopIteration:
                                return
                            except csv.Error:
                                pass
                            self._tick()
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
            if header is None and lines_seen[0] == 0:
                return

    # -- Parquet -------------------------------------------------------------------------
    def _parquet(self, p: Path) -> Iterator[Item]:
        self.mode = "raw"
        try:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(p)
        except Exception as e:  # noqa: BLE001 - any reader error becomes a located problem
            self.c.add(None, "file", f"not a readable Parquet file: {e}", "re-export it (pandas.DataFrame.to_parquet)")
            return
        names = pf.schema_arrow.names
        self.stats["columns"] = names
        pcol, ccol, scol = self._colnames()
        miss = [col for _, col in self._missing_columns(names)]
        for col in miss:
            self.c.add(None, col, f"no such column; the file has: {', '.join(names)}", "map the right one with --columns")
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
        self.stats.update({
            "mode": self.mode, "records": self.records,
            "format": rules.fmt.value if rules else None,
            "chars_total": self._chars_total, "chars_max": self._chars_max,
            "estimated_tokens": rules.tokens(self._chars_total) if rules else 0,
            "warnings": self.warnings[:50] + ([f"... and {len(self.warnings) - 50} more"] if len(self.warnings) > 50 else []),
        })
        return ValidationReport(source=self.name, records=self.records, problems=self.c.problems,
                                total_problems=self.c.total, stats=self.stats)

    def _file_rules(self, rules: Rules) -> None:
        p = Path(self.path)
        if not p.is_file():
            return
        if self.records == 0 and self.c.total == 0:
            self.c.add(None, "file", "has no records" + (" (0 bytes)" if p.stat().st_size == 0 else ""),
                       "add rows below the header" if self.stats.get("kind") == "csv" else "add records, one JSON object per line")
            return
        if len(self._state.get("media", ())) > 1:
            self.c.add(None, "messages", "the dataset mixes images and video",
                       "one dataset is text+images or text+video, never both; REF §5")
        lim = rules.limits
        n = self.records
        kind = "validation" if self.role == "validation" else "training"
        lo = lim.min_validation_records if self.role == "validation" else lim.min_train_records
        hi = lim.max_validation_records if self.role == "validation" else lim.max_train_records
        if self.role in ("test", "source"):
            lo = hi = None
        if lo is not None and n < lo:
            self.c.add(None, "records", f"{n} {kind} record(s); {rules.model_id} {rules.ctype.value} needs at least {lo}",
                       f"add at least {lo - n} more record(s)")
        if hi is not None and n > hi:
            if self.mode == "formatted":
                self.c.add(None, "records", f"{n:,} {kind} records; {rules.model_id} {rules.ctype.value} accepts at most {hi:,}",
                           f"drop {n - hi:,} record(s) or sample with data.max_records")
            else:
                self.warnings.append(f"{self.name}: {n:,} raw records; after the split the training file must stay "
                                     f"<= {hi:,} (forge prepare checks; data.max_records samples)")
        if self.mode == "formatted" and lim.max_total_records is not None and n > lim.max_total_records:
            self.c.add(None, "records", f"{n:,} records; total (train + validation) is at most {lim.max_total_records:,}",
                       "drop records or sample with data.max_records")
        blim = self._byte_limit()
        size = self._out_bytes if self.mode != "formatted" else p.stat().st_size
        if blim is not None and size > blim:
            self.c.add(None, "file", f"{_fmt_size(size)} ({kind} file); the limit is {_fmt_size(blim)}",
                       "split the data or sample with data.max_records")
        self.stats["bytes"] = size


def validate_source(path: str | Path, base_model: str, ctype: CustomizationType | str, *,
                    columns: Columns | None = None, fmt: str = "auto", role: str = "train",
                    system_prompt: str | None = None, prompt_template: str = "{prompt}",
                    teacher: str | None = None, limits: Limits | None = None,
                    progress: Callable[[int], None] | None = None) -> ValidationReport:
    """Check one file against every rule for ``base_model`` + ``ctype``; never raises on bad data.

    ``fmt``: ``auto`` (formatted JSONL when its records carry the target format's keys, else raw),
    ``raw`` or ``formatted``. ``role`` picks the record-count and size limits (train / validation / test).
    """
    if fmt not in ("auto", "raw", "formatted"):
        try:
            fmt = "formatted" if DataFormat(fmt) else fmt
        except ValueError:
            fmt = "auto"
    sc = SourceScanner(path, base_model, ctype, columns=columns, fmt=fmt, role=role, system_prompt=system_prompt,
                       prompt_template=prompt_template, teacher=teacher, limits=limits, progress=progress)
    for _ in sc:
        pass
    return sc.report()


# ---------------------------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------------------------
# REF §2.3 (api): rftConfig.hyperParameters are typed numbers with these ranges.
RFT_HYPERPARAMETERS: dict[str, tuple[type, float | None, float | None]] = {
    "epochCount": (int, 1, 50), "batchSize": (int, 16, 512), "learningRate": (float, 1e-7, 1e-3),
    "trainingSamplePerPrompt": (int, 2, 16), "evalInterval": (int, 1, 100),
    "maxPromptLength": (int, 1, None), "inferenceMaxTokens": (int, 1, None),
}


def validate_hyperparameters(base_model: str, ctype: CustomizationType | str, preset: str | None = None,
                             overrides: dict[str, Any] | None = None, *, source: str = "hyperparameters",
                             rft: dict[str, Any] | None = None) -> list[Problem]:
    """Problems with the hyperparameters for model + type (tasks.catalog.resolve_hyperparameters);
    ``file`` of each problem is ``source`` (the config path, or "hyperparameters")."""
    out: list[Problem] = []
    try:
        spec = load_catalog().spec(base_model, ctype)
    except (UnknownModelError, UnsupportedCustomizationError, ValueError) as e:
        return [Problem(file=source, field="base_model", message=str(e), fix="pick a supported model + type")]
    try:
        resolve_hyperparameters(spec, preset, {})
    except ValueError as e:
        out.append(Problem(file=source, field="preset", message=str(e), fix="use quick, balanced, quality or cpt"))
        preset = None
    for key, value in (overrides or {}).items():
        try:
            resolve_hyperparameters(spec, preset, {key: value})
        except ValueError as e:
            hp = spec.hyperparameters.get(key)
            fix = (f"set it within {hp.min:g}..{hp.max:g}" if hp and hp.min is not None and hp.max is not None
                   else "keys are case-sensitive; REF §4")
            out.append(Problem(file=source, field=f"hyperparameters.{key}", message=str(e), fix=fix))
    for key, value in (rft or {}).items():
        if key == "reasoningEffort":
            if value not in ("low", "medium", "high"):
                out.append(Problem(file=source, field=f"rft.hyperparameters.{key}", message=f"{value!r} is not one of low, medium, high",
                                   fix="REF §2.3"))
            continue
        if key not in RFT_HYPERPARAMETERS:
            out.append(Problem(file=source, field=f"rft.hyperparameters.{key}", message="unknown RFT hyperparameter",
                               fix=f"valid: {', '.join([*RFT_HYPERPARAMETERS, 'reasoningEffort'])}"))
            continue
        typ, lo, hi = RFT_HYPERPARAMETERS[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (typ is float or float(value).is_integer())
        if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
            out.append(Problem(file=source, field=f"rft.hyperparameters.{key}", message=f"{value!r} must be a number in {rng}",
                               fix="REF §2.3: typed numbers, not strings"))
    return out


def env_max_problems() -> int:
    try:
        return int(os.environ.get("FORGE_MAX_PROBLEMS", MAX_PROBLEMS_SHOWN))
    except ValueError:
        return MAX_PROBLEMS_SHOWN


# ---------------------------------------------------------------------------------------------
# a whole pipeline config: hyperparameters, AWS names and region, then its data
# ---------------------------------------------------------------------------------------------
REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
BUCKET_RE = re.compile(r"[a-z0-9][-.a-z0-9]{1,61}[a-z0-9]")          # REF §2.2 (api)
S3_KEY_RE = re.compile(r"[A-Za-z0-9\-!_*'()./]*")                     # REF §2.2: key characters Bedrock accepts
ROLE_NAME_RE = re.compile(r"[\w+=,.@-]{1,64}")                         # IAM role name rules


def yaml_line(path: str | Path, dotted: str) -> int | None:
    """1-based line of ``a.b.c`` in a YAML mapping file (None when absent or unreadable)."""
    try:
        import yaml

        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a line number is a nicety
        return None
    line = None
    for part in dotted.split("."):
        if node is None or not hasattr(node, "value") or not isinstance(node.value, list):
            return line
        nxt = None
        for item in node.value:
            if isinstance(item, tuple) and getattr(item[0], "value", None) == part:
                line = item[0].start_mark.line + 1
                nxt = item[1]
                break
        if nxt is None:
            return line
        node = nxt
    return line


def validate_config(config: Any, path: str | Path = "config") -> list[Problem]:
    """Problems in a PipelineConfig beyond its pydantic model: hyperparameters for the model + type
    (file = the config path, line = the key's line), region, bucket / prefix / role names."""
    src = str(path)
    probs = validate_hyperparameters(config.base_model, config.customization_type, config.preset,
                                     config.hyperparameters, source=src,
                                     rft=config.rft.hyperparameters if config.rft else None)
    aws = config.aws

    def add(fld: str, message: str, fix: str) -> None:
        probs.append(Problem(file=src, field=fld, message=message, fix=fix))

    if not REGION_RE.fullmatch(aws.region):
        add("aws.region", f"{aws.region!r} is not an AWS Region name", "write it like us-east-1")
    try:
        fam = load_catalog().family_of(config.base_model)
    except ValueError:
        fam = None
    if fam is not None and config.serving.mode == "on_demand":
        if not fam.on_demand_deployment:
            add("serving.mode", f"{fam.display} custom models cannot be deployed on demand",
                "use mode: provisioned or auto; REF §2.8")
        elif fam.on_demand_regions and aws.region not in fam.on_demand_regions:
            add("aws.region", f"on-demand deployment of {fam.display} custom models is available in "
                f"{', '.join(fam.on_demand_regions)}, not {aws.region}", "change aws.region or use serving.mode: provisioned; REF §2.8")
    if aws.bucket is not None and (not BUCKET_RE.fullmatch(aws.bucket) or ".." in aws.bucket):
        add("aws.bucket", f"{aws.bucket!r} is not a valid S3 bucket name",
            "3-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit; REF §2.2")
    if not S3_KEY_RE.fullmatch(aws.prefix or ""):
        add("aws.prefix", f"{aws.prefix!r} has characters Bedrock rejects in S3 keys",
            "use letters, digits and -!_*'(). plus /; no spaces, '=', '+', ':'; REF §2.2")
    try:
        rules: Rules | None = rules_for(config.base_model, config.customization_type)
    except ValueError:
        rules = None
    if rules is not None:
        d = config.data      # system_prompt / prompt_template: checked by SourceScanner (once, with the data)
        if "{" not in d.prompt_template:
            add("data.prompt_template", "has no {prompt} placeholder: every record would get the same prompt",
                "write the template around {prompt}, e.g. 'Classify: {prompt}'")
        if d.augment.enabled:
            for i, prefix in enumerate(d.augment.prefixes):
                _text_rules(prefix, f"data.augment.prefixes[{i}]", rules, add, required=False)
    if aws.role_name is not None and not ROLE_NAME_RE.fullmatch(aws.role_name):
        add("aws.role_name", f"{aws.role_name!r} is not a valid IAM role name",
            "1-64 letters, digits and +=,.@_-")
    for p in probs:
        if p.line is None and p.field not in ("base_model",):
            key = p.field
            key = key.split("[", 1)[0]
            p.line = (yaml_line(path, key) or yaml_line(path, key.rsplit(".", 1)[0])) if src != "config" else None
    return probs
