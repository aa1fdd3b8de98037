"""What the emulated Bedrock checks before and during a customization job.

Written independently of the pipeline's own validator (tasks/data/validate.py) on purpose: the
emulator is there to catch what the pipeline's validation missed, so it re-derives every rule
from the emulator's own facts (emulator/facts/customization.yaml via emulator/facts.py: data format,
hyperparameter ranges, record limits per rule set; nothing from tasks/).

- :func:`check_create_request` — CreateModelCustomizationJob-time checks (ValidationException):
  base model id, model/customization-type pair, hyperparameter names, numeric values, ranges (docs/bedrock-facts.md §4).
- :func:`check_job_data` — the job's data checks (docs/bedrock-facts.md §5): UTF-8 JSON Lines, one object per line,
  the required keys and types of the family's format, role order of messages formats, forbidden
  strings, media rules, tokens per record (characters / chars_per_token), record counts and file
  sizes. Returns the job's ``failureMessage``, always naming the file (training/validation data)
  and the line, e.g. ``Validation failed for training data: Line 3: ...``.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime
from typing import Any

from emulator.facts import CTYPES, GEO_PREFIX, DataFormat, Rule, RuleSet, load_facts

MAX_REPORTED = 3   # problems spelled out in one failureMessage; the rest are counted

_ARN_ID = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*:[^:]*:foundation-model/(.+)$")
_CTYPES = list(CTYPES)
_DISTILLATION = "DISTILLATION"


def _model_id(base_model_id: str) -> str:
    m = _ARN_ID.match(base_model_id.strip())
    return m.group(1) if m else base_model_id.strip()


def _family(model_id: str) -> RuleSet | None:
    """The rule set of a customizable model id (``...:128k``); None for plain ids and unknown ids."""
    m = load_facts().model(model_id)
    if m is None or not m.customizable:
        return None
    return load_facts().rules[m.rules]


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


# --------------------------------------------------------------------------------------------
# CreateModelCustomizationJob


def check_create_request(base_model_id: str, customization_type: str,
                         hyperparameters: dict[str, str]) -> str | None:
    """Message for a ValidationException at create time, or None when the request is acceptable."""
    mid = _model_id(base_model_id or "")
    ctype = (customization_type or "FINE_TUNING").strip()   # the API default is FINE_TUNING
    if ctype not in _CTYPES:
        return (f"1 validation error detected: Value '{ctype}' at 'customizationType' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(_CTYPES)}]")
    fam = _family(mid)
    if fam is None:
        facts = load_facts()
        known = facts.model(mid) or facts.model(GEO_PREFIX.sub("", mid))
        variant = known.customizable_variant if known is not None else None
        if variant:
            return (f"The provided model identifier is invalid: {mid} is not customizable. Use the "
                    f"customizable variant with its context-length suffix: {variant}.")
        return (f"The provided model identifier is invalid: {mid}. Customizable base models: "
                f"{', '.join(facts.customizable_ids())}.")
    if ctype not in fam.customizations:
        supported = ", ".join(fam.customizations)
        return (f"The base model {mid} does not support customization type {ctype}. "
                f"Supported customization types for this model: {supported}.")
    spec = fam.customizations[ctype]
    ct = ctype
    errors: list[str] = []
    for key, raw in (hyperparameters or {}).items():
        hp = spec.hyperparameters.get(key)
        if hp is None:
            valid = ", ".join(spec.hyperparameters) or "none"
            errors.append(f"Unknown hyperparameter '{key}' for {mid} ({ct}); keys are case-sensitive. "
                          f"Supported hyperparameters: {valid}")
            continue
        value = str(raw).strip()
        if hp.type == "str":
            if hp.choices and value not in hp.choices:
                errors.append(f"Invalid value '{raw}' for hyperparameter {key}: must be one of {', '.join(hp.choices)}")
            continue
        try:
            f = float(value)
            if math.isnan(f) or math.isinf(f):
                raise ValueError
        except ValueError:
            errors.append(f"Invalid value '{raw}' for hyperparameter {key}: must be "
                          f"{'an integer' if hp.type == 'int' else 'a number'}")
            continue
        if hp.type == "int" and not f.is_integer():
            errors.append(f"Invalid value '{raw}' for hyperparameter {key}: must be an integer")
            continue
        if (hp.min is not None and f < hp.min) or (hp.max is not None and f > hp.max):
            errors.append(f"Hyperparameter {key}={raw} is out of range for {mid}: "
                          f"valid range is [{_num(hp.min)}, {_num(hp.max)}]")
    if not errors:
        return None
    if len(errors) == 1:
        return errors[0]
    return f"{len(errors)} validation errors detected: " + "; ".join(errors)


# --------------------------------------------------------------------------------------------
# CreateModelCustomizationJob / CreateProvisionedModelThroughput / CreateCustomModelDeployment: the model's
# Region, lifecycle and distillation pair, from the emulator's own facts (emulator/facts/*.yaml)

# Lifecycle (as of 2026-12-01): "New customers can't use Legacy models"
# (https://docs.aws.amazon.com/bedrock/latest/userguide/model-lifecycle.html); in the Legacy period "creating new
# provisioned throughput by model units becomes unavailable, and model customization capabilities might face
# restrictions" (https://aws.amazon.com/blogs/machine-learning/understanding-amazon-bedrock-model-lifecycle/);
# an EOL model is no longer available in any way. So: EOL refuses jobs, PTs and deployments; LEGACY refuses a new
# PT; a job on a LEGACY model is accepted (restrictions "might" apply: not a documented refusal) and so is a
# deployment (unconfirmed).


def _strip_model_arn(ident: str) -> str:
    """foundation-model / inference-profile ARN -> the id it names; other identifiers unchanged."""
    ident = (ident or "").strip()
    for marker in ("foundation-model/", "inference-profile/"):
        if marker in ident and ident.startswith("arn:"):
            return ident.split(marker, 1)[1]
    return ident


def lifecycle_status(model_id: str, region: str, today: date | None = None) -> tuple[str, str | None]:
    """(ACTIVE | LEGACY | EOL, end-of-life date or None) of a model in ``region`` on ``today`` (UTC wall clock).

    A Region listed in ``lifecycle_by_region`` has that status whatever the date (Claude 3 Haiku stays ACTIVE in
    ca-central-1); elsewhere an ``endOfLifeTime`` before today is EOL even if the status was not updated."""
    facts = load_facts()
    m = facts.model(model_id) or facts.model(GEO_PREFIX.sub("", model_id))
    if m is None:
        lc = facts.teacher_lifecycle.get(model_id) or facts.teacher_lifecycle.get(GEO_PREFIX.sub("", model_id))
        return (lc.status, lc.endOfLifeTime) if lc is not None else ("ACTIVE", None)
    eol = m.modelLifecycle.endOfLifeTime
    if region in m.lifecycle_by_region:
        return m.lifecycle_by_region[region], eol
    status = m.modelLifecycle.status
    today = today or datetime.now(UTC).date()
    if eol and status != "EOL":
        try:
            if date.fromisoformat(eol[:10]) < today:
                status = "EOL"
        except ValueError:
            pass
    return status, eol


def _active_in(facts, ctype: str, exclude: str) -> list[str]:
    return [mid for mid, m in facts.models.items()
            if m.customizable and mid != exclude and ctype in m.customizationsSupported
            and m.modelLifecycle.status == "ACTIVE" and not m.modelLifecycle.endOfLifeTime]


def check_model_facts(base_model_id: str, customization_type: str, region: str,
                      customization_config: dict | None = None, today: date | None = None) -> str | None:
    """Region, lifecycle and distillation-pair checks of CreateModelCustomizationJob (after
    :func:`check_create_request` accepted the model and type): a ValidationException message naming the fix, or None.
    """
    facts = load_facts()
    mid = _model_id(base_model_id or "")
    ctype = (customization_type or "FINE_TUNING").strip()
    m = facts.model(mid)
    rule = facts.rule(mid, ctype)
    if m is None or rule is None:
        return None                      # check_create_request answers unknown ids and types
    status, eol = lifecycle_status(mid, region, today)
    if rule.regions is not None and region not in rule.regions:
        where = [r for r in rule.regions if lifecycle_status(mid, r, today)[0] != "EOL"]
        if where:
            return (f"Model customization ({ctype}) of {mid} is not supported in {region}. It is supported in "
                    f"{', '.join(where)}: create the job there (set the client's Region to {where[0]}).")
        gone = (f"has reached the end of its life in {', '.join(rule.regions)}, the only Region"
                f"{'s' if len(rule.regions) > 1 else ''} where it was customizable") if rule.regions \
            else "is no longer customizable in any Region"
        return (f"Model customization ({ctype}) of {mid} is not supported in {region}: the model {gone}. Choose "
                f"another base model: {', '.join(_active_in(facts, ctype, mid)) or 'none'}.")
    if status == "EOL":
        return (f"This model version has reached the end of its life: {mid} "
                f"(end of life {eol or 'passed'} in {region}) can no longer be customized. Choose an ACTIVE base "
                f"model: {', '.join(_active_in(facts, ctype, mid)) or 'none'}.")
    if ctype == _DISTILLATION:
        dc = (customization_config or {}).get("distillationConfig") or {}
        teacher_raw = ((dc.get("teacherModelConfig") or {}).get("teacherModelIdentifier") or "").strip()
        if not teacher_raw:
            return ("customizationConfig.distillationConfig.teacherModelConfig.teacherModelIdentifier is required "
                    "for DISTILLATION jobs.")
        teacher = _strip_model_arn(teacher_raw)
        t_status, t_eol = lifecycle_status(teacher, region, today)
        pairs = [p for p in facts.distillation_pairs if region in p.regions or not p.regions]
        if t_status == "EOL":
            live = sorted({p.teacher for p in pairs if lifecycle_status(p.teacher, region, today)[0] != "EOL"
                           and mid in p.students})
            return (f"The teacher model {teacher} has reached the end of its life"
                    f"{f' ({t_eol})' if t_eol else ''}. Choose a supported teacher for {mid} in {region}: "
                    f"{', '.join(live) or 'none'}.")
        for_teacher = [p for p in pairs if p.teacher == teacher]
        if not for_teacher:
            live = sorted({p.teacher for p in pairs if mid in p.students
                           and lifecycle_status(p.teacher, region, today)[0] != "EOL"})
            premier = ""
            if "nova-premier" in teacher:
                p_status, p_eol = lifecycle_status("us.amazon.nova-premier-v1:0", region, today)
                premier = (" (Nova Premier is a teacher only through its inference profile, us.amazon.nova-premier-v1:0"
                           + (f", which has reached the end of its life{f' ({p_eol})' if p_eol else ''}"
                              if p_status == "EOL" else "") + ")")
            return (f"The teacher model {teacher} is not supported for distillation in {region}. Supported teachers "
                    f"for the student {mid}: {', '.join(live) or 'none'}{premier}.")
        students = sorted({s for p in for_teacher for s in p.students})
        if mid not in students:
            return (f"The teacher model {teacher} does not support the student model {mid}. Supported students of "
                    f"{teacher}: {', '.join(students)}.")
    return None


def check_serving_lifecycle(base_model_id: str, region: str, what: str, today: date | None = None) -> str | None:
    """A new Provisioned Throughput (``what="pt"``) or custom model deployment (``"deployment"``) of a model
    customized from (or being) ``base_model_id``: a ValidationException message, or None. EOL refuses both; LEGACY
    refuses a new PT (see the lifecycle note above)."""
    mid = _model_id(base_model_id or "")
    status, eol = lifecycle_status(mid, region, today)
    if status == "EOL":
        return (f"This model version has reached the end of its life: {mid} (end of life {eol or 'passed'} in "
                f"{region}). A model customized from it can no longer be served; customize an ACTIVE base model "
                "again and serve that.")
    if status == "LEGACY" and what == "pt":
        return (f"{mid} is in the Legacy state in {region}: new Provisioned Throughput cannot be created for it "
                "(or for models customized from it). Keep an existing Provisioned Throughput, or customize an "
                "ACTIVE base model and provision that.")
    return None


# --------------------------------------------------------------------------------------------
# record checks, per format (docs/bedrock-facts.md §5)

# docs/bedrock-facts.md §5 (docs)
_NOVA_FORBIDDEN = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
# docs/bedrock-facts.md §5 (sample)
_CLAUDE_FORBIDDEN = ("\nHuman:", "\nAssistant:")
_IMAGE_FORMATS = {"jpeg", "png", "gif", "webp"}
_VIDEO_FORMATS = {"mov", "mkv", "mp4", "webm"}
_MEDIA_NAME = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]*/[A-Za-z0-9_\-/.]+$")


class _Bad(Exception):
    pass


def _tname(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _need_str(rec: dict, key: str, where: str = "") -> str:
    if key not in rec:
        raise _Bad(f"missing required key \"{where}{key}\"")
    v = rec[key]
    if not isinstance(v, str):
        raise _Bad(f"\"{where}{key}\" must be a string, got {_tname(v)}")
    if not v.strip():
        raise _Bad(f"\"{where}{key}\" must not be empty")
    return v


def _turn_role(m: dict, i: int, where: str) -> str:
    """The role of message ``i``: "user" or "assistant", user first and then alternating."""
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise _Bad(f"\"{where}.role\" must be \"user\" or \"assistant\", got {json.dumps(role)}")
    expected = "user" if i % 2 == 0 else "assistant"
    if role != expected:
        raise _Bad(f"\"{where}.role\" is \"{role}\" but \"{expected}\" was expected: messages must start "
                   "with user and alternate user/assistant")
    return role


def _check_prompt_completion(rec: dict) -> list[str]:
    return [_need_str(rec, "prompt"), _need_str(rec, "completion")]


def _check_cpt(rec: dict) -> list[str]:
    return [_need_str(rec, "input")]


def _check_claude(rec: dict) -> list[str]:
    extra = sorted(set(rec) - {"system", "messages"})
    if extra:
        raise _Bad(f"unexpected key \"{extra[0]}\"; "
                   "a Claude 3 Haiku record has only \"system\" (optional) and \"messages\"")
    texts: list[str] = []
    if "system" in rec:
        if not isinstance(rec["system"], str):
            raise _Bad(f"\"system\" must be a string, got {_tname(rec['system'])}")
        texts.append(rec["system"])
    msgs = rec.get("messages")
    if msgs is None:
        raise _Bad("missing required key \"messages\"")
    if not isinstance(msgs, list):
        raise _Bad(f"\"messages\" must be an array, got {_tname(msgs)}")
    if len(msgs) < 2:
        raise _Bad(f"\"messages\" must contain at least 2 messages (user, then assistant), got {len(msgs)}")
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _Bad(f"\"{where}\" must be an object, got {_tname(m)}")
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            raise _Bad(f"unexpected key \"{where}.{extra[0]}\"; a message has only \"role\" and \"content\"")
        _turn_role(m, i, where)
        if isinstance(m.get("content"), list):
            raise _Bad(f"\"{where}.content\" must be a string for Claude 3 Haiku, got an array of content blocks")
        texts.append(_need_str(m, "content", f"{where}."))
    if msgs[-1].get("role") != "assistant":
        raise _Bad("the last message must have role \"assistant\"")
    for t in texts:
        for bad in _CLAUDE_FORBIDDEN:
            if bad in t:
                raise _Bad(f"text contains the reserved sequence {json.dumps(bad)}")
    return texts


def _check_conversation(rec: dict, *, model_id: str, distillation: bool) -> list[str]:
    extra = sorted(set(rec) - {"schemaVersion", "system", "messages"})
    if extra:
        raise _Bad(f"unexpected key \"{extra[0]}\"; a bedrock-conversation-2024 record has \"schemaVersion\", "
                   "\"system\" and \"messages\"")
    sv = rec.get("schemaVersion")
    if sv is None:
        raise _Bad("missing required key \"schemaVersion\" (use \"bedrock-conversation-2024\")")
    if not isinstance(sv, str):
        raise _Bad(f"\"schemaVersion\" must be a string, got {_tname(sv)}")
    if distillation and sv != "bedrock-conversation-2024":
        raise _Bad(f"\"schemaVersion\" must be \"bedrock-conversation-2024\", got {json.dumps(sv)}")
    prompts: list[str] = []
    texts: list[str] = []
    if "system" in rec:
        sys_ = rec["system"]
        if not isinstance(sys_, list):
            raise _Bad(f"\"system\" must be an array of {{\"text\": ...}} blocks, got {_tname(sys_)}")
        for j, b in enumerate(sys_):
            if not isinstance(b, dict) or not isinstance(b.get("text"), str):
                raise _Bad(f"\"system[{j}]\" must be an object with a string \"text\"")
            prompts.append(b["text"])
    msgs = rec.get("messages")
    if msgs is None:
        raise _Bad("missing required key \"messages\"")
    if not isinstance(msgs, list) or not msgs:
        raise _Bad("\"messages\" must be a non-empty array")
    images = videos = 0
    text_only = "nova-micro" in model_id     # Nova Micro is text only (docs/bedrock-facts.md §5, sample)
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _Bad(f"\"{where}\" must be an object, got {_tname(m)}")
        role = _turn_role(m, i, where)
        content = m.get("content")
        if content is None:
            raise _Bad(f"missing required key \"{where}.content\"")
        if isinstance(content, str):
            raise _Bad(f"\"{where}.content\" must be an array of content blocks like [{{\"text\": \"...\"}}], "
                       "got a string")
        if not isinstance(content, list) or not content:
            raise _Bad(f"\"{where}.content\" must be a non-empty array of content blocks")
        for j, b in enumerate(content):
            bw = f"{where}.content[{j}]"
            if not isinstance(b, dict):
                raise _Bad(f"\"{bw}\" must be an object, got {_tname(b)}")
            if "text" in b:
                if not isinstance(b["text"], str):
                    raise _Bad(f"\"{bw}.text\" must be a string, got {_tname(b['text'])}")
                texts.append(b["text"])
                if role == "user":
                    prompts.append(b["text"])
            elif "image" in b or "video" in b:
                kind = "image" if "image" in b else "video"
                if role != "user":
                    raise _Bad(f"\"{bw}\": {kind}s are allowed only in user messages")
                if text_only:
                    raise _Bad(f"\"{bw}\": {model_id} accepts text only")
                media = b[kind]
                fmt = media.get("format") if isinstance(media, dict) else None
                allowed = _IMAGE_FORMATS if kind == "image" else _VIDEO_FORMATS
                if fmt not in allowed:
                    raise _Bad(f"\"{bw}.{kind}.format\" must be one of {', '.join(sorted(allowed))}, "
                               f"got {json.dumps(fmt)}")
                uri = (((media.get("source") or {}).get("s3Location") or {}).get("uri")
                       if isinstance(media, dict) else None)
                if not isinstance(uri, str) or not _MEDIA_NAME.match(uri):
                    raise _Bad(f"\"{bw}.{kind}.source.s3Location.uri\" must be an s3:// URI whose key uses only "
                               "letters, digits, _, -, / and .")
                images += kind == "image"
                videos += kind == "video"
            else:
                raise _Bad(f"\"{bw}\" must have \"text\", \"image\" or \"video\"")
    if msgs[-1].get("role") != "assistant" and not distillation:
        raise _Bad("the last message must have role \"assistant\"")
    if images and videos:
        raise _Bad("a record may contain images or a video, not both")
    if videos > 1:
        raise _Bad(f"at most 1 video per record, got {videos}")
    if images > 10:
        raise _Bad(f"at most 10 images per record, got {images}")
    for t in prompts:
        for bad in _NOVA_FORBIDDEN:
            if bad in t:
                raise _Bad(f"prompt text contains the reserved string {json.dumps(bad)}; remove it")
    return texts + [t for t in prompts if t not in texts]


def _check_rft(rec: dict) -> list[str]:
    msgs = rec.get("messages")
    if msgs is None:
        raise _Bad("missing required key \"messages\"")
    if not isinstance(msgs, list) or not msgs:
        raise _Bad("\"messages\" must be a non-empty array")
    texts = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _Bad(f"\"{where}\" must be an object, got {_tname(m)}")
        if m.get("role") not in ("system", "user", "assistant"):
            raise _Bad(f"\"{where}.role\" must be \"system\", \"user\" or \"assistant\", "
                       f"got {json.dumps(m.get('role'))}")
        texts.append(_need_str(m, "content", f"{where}."))
    if not any(m.get("role") == "user" for m in msgs):
        raise _Bad("\"messages\" must contain a user message")
    return texts


def _record_texts(fmt: DataFormat, rec: dict, *, model_id: str, ctype: str) -> list[str]:
    if fmt == DataFormat.PROMPT_COMPLETION:
        return _check_prompt_completion(rec)
    if fmt == DataFormat.CPT_INPUT:
        return _check_cpt(rec)
    if fmt == DataFormat.CLAUDE_MESSAGES:
        return _check_claude(rec)
    if fmt == DataFormat.CONVERSATION:
        return _check_conversation(rec, model_id=model_id, distillation=ctype == _DISTILLATION)
    if fmt == DataFormat.RFT_MESSAGES:
        return _check_rft(rec)
    raise _Bad(f"format {fmt} is not checked by the emulator")


_FORMAT_HINT = {
    DataFormat.PROMPT_COMPLETION: '{"prompt": "...", "completion": "..."}',
    DataFormat.CPT_INPUT: '{"input": "..."}',
    DataFormat.CLAUDE_MESSAGES: '{"system": "...", "messages": [{"role": "user", "content": "..."}, '
                                '{"role": "assistant", "content": "..."}]}',
    DataFormat.CONVERSATION: '{"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "..."}], '
                             '"messages": [{"role": "user", "content": [{"text": "..."}]}, '
                             '{"role": "assistant", "content": [{"text": "..."}]}]}',
    DataFormat.RFT_MESSAGES: '{"messages": [{"role": "user", "content": "..."}], "reference_answer": "..."}',
}


def _check_file(data: bytes, *, label: str, role: str, spec: Rule, model_id: str,
                ctype: str, display: str) -> tuple[list[str], int]:
    """(problems as 'Line N: ...', record count) for one JSONL file."""
    problems: list[str] = []
    lim = spec.limits
    max_bytes = lim.max_train_file_bytes if role == "train" else lim.max_validation_file_bytes
    if max_bytes is not None and len(data) > max_bytes:
        problems.append(f"the file is {len(data):,} bytes; the limit for {display} is {max_bytes:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [f"Line {line}: the file is not valid UTF-8 (byte offset {exc.start})"], 0
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()                      # the newline that ends the last record
    records = 0
    format_problem = False
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            problems.append(f"Line {n}: empty line; JSON Lines needs one JSON object per line")
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"Line {n}: invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        records += 1
        if not isinstance(rec, dict):
            problems.append(f"Line {n}: each line must be one JSON object, got {_tname(rec)}")
            continue
        try:
            texts = _record_texts(spec.format, rec, model_id=model_id, ctype=ctype)
        except _Bad as exc:
            problems.append(f"Line {n}: {exc}")
            format_problem = True
            continue
        if lim.max_tokens_per_record:
            chars = sum(len(t) for t in texts)
            tokens = math.ceil(chars / lim.chars_per_token)
            if tokens > lim.max_tokens_per_record:
                problems.append(
                    f"Line {n}: the record has about {tokens:,} tokens ({chars:,} characters at "
                    f"{_num(lim.chars_per_token)} characters per token); {display} accepts at most "
                    f"{lim.max_tokens_per_record:,} tokens per record. Shorten or split it")
    if records == 0 and not problems:
        problems.append("Line 1: the file contains no records")
    lo = lim.min_train_records if role == "train" else lim.min_validation_records
    hi = lim.max_train_records if role == "train" else lim.max_validation_records
    if hi is not None and records > hi:
        problems.append(f"Line {_line_of_record(lines, hi + 1)}: too many records: the file has {records:,} "
                        f"records; {display} accepts at most {hi:,} {label} records")
    if lo is not None and 0 < records < lo:
        problems.append(f"Line {len(lines)}: too few records: the file ends after {records:,} records; "
                        f"{display} needs at least {lo:,} {label} records")
    if format_problem:
        problems.append(f"Expected {spec.format.value} records for {display}: {_FORMAT_HINT[spec.format]}")
    return problems, records


def _line_of_record(lines: list[str], k: int) -> int:
    """Line number of the k-th non-blank line."""
    seen = 0
    for n, raw in enumerate(lines, start=1):
        if raw.strip():
            seen += 1
            if seen == k:
                return n
    return len(lines)


def _message(label: str, problems: list[str]) -> str:
    hint = [p for p in problems if p.startswith("Expected ")]
    problems = [p for p in problems if not p.startswith("Expected ")]
    shown = "; ".join(problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    return (f"Validation failed for {label}: {shown}" + (f" (and {more} more problems)" if more > 0 else "")
            + (f". {hint[0]}" if hint else ""))


def check_job_data(base_model_id: str, customization_type: str, train: bytes,
                   validation: bytes | None) -> str | None:
    """The job's ``failureMessage`` when its data breaks a Bedrock rule for the model, else None."""
    bad_request = check_create_request(base_model_id, customization_type, {})
    if bad_request:
        return bad_request
    mid = _model_id(base_model_id)
    ctype = (customization_type or "FINE_TUNING").strip()
    fam = _family(mid)
    assert fam is not None
    spec = fam.customizations[ctype]
    display = f"{mid} ({ctype})"
    problems, n_train = _check_file(train, label="training", role="train", spec=spec, model_id=mid,
                                    ctype=ctype, display=display)
    if problems:
        return _message("training data", problems)
    n_val = 0
    if validation is not None:
        problems, n_val = _check_file(validation, label="validation", role="validation", spec=spec, model_id=mid,
                                      ctype=ctype, display=display)
        if problems:
            return _message("validation data", problems)
    total = spec.limits.max_total_records
    if total is not None and n_train + n_val > total:
        return (f"Validation failed for training data: Line {min(n_train, total + 1)}: too many records: "
                f"{n_train:,} training + {n_val:,} validation records exceed the total of {total:,} "
                f"that {display} accepts")
    least = spec.limits.min_total_records
    if least is not None and n_train + n_val < least:
        return (f"Validation failed for training data: Line {max(n_train, 1)}: too few records: "
                f"{n_train:,} training + {n_val:,} validation records are fewer than the {least:,} in total "
                f"that {display} needs")
    return None
