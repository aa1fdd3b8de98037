"""The rules Bedrock applies to one formatted record, for a base model + customization type.

``rules_for(model, type)`` gives the ``Rules`` (format, limits, forbidden strings, turn rules);
``check_record(rec, rules, add)`` reports every problem of one record through ``add(field, message, fix)``;
``check_text`` (empty texts, forbidden strings) and ``check_tokens`` (tokens per record) are the pieces the
raw-row path (``tasks.data.scanner``) and the config's data settings (``tasks.data.validate``) reuse.

Sources: docs/bedrock-facts.md §5 for the formats and the forbidden strings, ``tasks/catalog/catalog.yaml``
``limits`` (each with its source) for tokens per record.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.catalog import CustomizationType, DataFormat, Limits, ModelFamily, load_catalog
from tasks.data.formats import SCHEMA_VERSION, record_texts
from tasks.data.media import MEDIA_NAME_RE, MediaRefs, media_uri_problem

# docs/bedrock-facts.md §5 (Nova, docs): these strings anywhere in a prompt fail the job.
NOVA_FORBIDDEN = ("User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]")
# docs/bedrock-facts.md §5 (Claude 3 Haiku, sample validator): texts must not contain these turn markers.
CLAUDE_FORBIDDEN = ("\nHuman:", "\nAssistant:")
IMAGE_FORMATS = ("jpeg", "png", "gif", "webp")        # docs/bedrock-facts.md §5
VIDEO_FORMATS = ("mov", "mkv", "mp4", "webm")         # docs/bedrock-facts.md §5 (sample)
MAX_IMAGES_PER_RECORD = 10                            # docs/bedrock-facts.md §5 (sample)


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
        # distillation: assistant optional (docs/bedrock-facts.md §5); CPT: one text; RFT: reference_answer is optional
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
        # docs/bedrock-facts.md §5: Anthropic and Llama teachers accept a single user turn only; Nova allows multi-turn.
        single = any(k in teacher for k in ("anthropic.", "meta.", "llama"))
    return Rules(model_id=base_model, family=fam, ctype=ct, fmt=spec.format, limits=spec.limits,
                 forbidden=forbidden, forbidden_prompt_only=fam.key.startswith("nova"),
                 assistant_required=ct != CustomizationType.DISTILLATION,
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
    # None = extra keys allowed (docs/bedrock-facts.md §5: "<extra fields>")
    DataFormat.RFT_MESSAGES: ({"messages"}, None),
}


def type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def check_text(text: str, fld: str, rules: Rules, add: Add, *, required: bool = True, what: str = "text",
                answer: bool = False) -> None:
    """Empty text; forbidden strings (Nova: prompt side only — system and user turns, docs/bedrock-facts.md §5 "anywhere
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
                f"remove or reword {shown!r}; docs/bedrock-facts.md §5: it fails the training job")
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
        add(fld, f"must be a string, got {type_name(v)}", "write the text as a JSON string")
        return False
    return True


def _check_roles(roles: list[str], rules: Rules, add: Add, skip_missing_assistant: bool = False) -> None:
    """Order rules shared by the message formats (docs/bedrock-facts.md §5)."""
    if not roles:
        return
    if roles[0] != "user":
        add("messages[0].role", f"first turn is {roles[0]!r}, must be 'user'",
            "start every conversation with the user turn")
    for i in range(1, len(roles)):
        if roles[i] == roles[i - 1] and roles[i] in ("user", "assistant"):
            add(f"messages[{i}].role", f"two {roles[i]!r} turns in a row (messages[{i - 1}] and messages[{i}])",
                "turns must alternate user, assistant, user, ...; merge or drop one")
    if rules.assistant_required:
        if "assistant" not in roles:
            if skip_missing_assistant:
                return
            add("messages", "no assistant turn",
                "add the expected answer as an assistant turn; fine-tuning requires it")
        elif roles[-1] != "assistant":
            add(f"messages[{len(roles) - 1}].role", f"last turn is {roles[-1]!r}, must be 'assistant'",
                "end every conversation with the assistant's answer")
    if rules.single_user_turn and roles.count("user") > 1:
        add("messages", f"{roles.count('user')} user turns; this teacher accepts a single user turn",
            "keep one user turn per record; docs/bedrock-facts.md §5: Anthropic and Llama teachers")


def check_record(rec: Any, rules: Rules, add: Add, state: dict | None = None, texts: list[str] | None = None) -> None:
    """Every rule for one formatted record (docs/bedrock-facts.md §5). ``state`` carries dataset-wide facts
    (media kinds; ``media_bucket``, the run's bucket when known; the media references, ``media_refs``)."""
    fmt = rules.fmt
    if not isinstance(rec, dict):
        add("record", f"expected a JSON object, got {type_name(rec)}", "each line must be one JSON object {...}")
        return
    _check_keys(rec, fmt, add)
    if fmt is DataFormat.PROMPT_COMPLETION:
        if "prompt" in rec and _is_str(rec["prompt"], "prompt", add):
            check_text(rec["prompt"], "prompt", rules, add, what="prompt")
        if "completion" in rec and _is_str(rec["completion"], "completion", add):
            check_text(rec["completion"], "completion", rules, add, what="completion", answer=True)
    elif fmt is DataFormat.CPT_INPUT:
        if "input" in rec and _is_str(rec["input"], "input", add):
            check_text(rec["input"], "input", rules, add, what="input text")
    elif fmt is DataFormat.CLAUDE_MESSAGES:
        _check_claude(rec, rules, add)
    elif fmt is DataFormat.CONVERSATION:
        _check_conversation(rec, rules, add, state if state is not None else {})
    elif fmt is DataFormat.RFT_MESSAGES:
        _check_rft(rec, rules, add)
    check_tokens(sum(len(t) for t in (texts if texts is not None else record_texts(fmt, rec))), rules, add)


def check_tokens(chars: int, rules: Rules, add: Add) -> None:
    lim = rules.limits.max_tokens_per_record
    if lim is not None and rules.tokens(chars) > lim:
        add("record",
            f"about {rules.tokens(chars):,} tokens ({chars:,} characters / "
            f"{rules.limits.chars_per_token:g} per token), "
            f"limit {lim:,} per record", "shorten the texts or split the record")


def _messages(rec: dict, add: Add) -> list | None:
    msgs = rec.get("messages")
    if msgs is None:
        return None
    if not isinstance(msgs, list):
        add("messages", f"must be an array of turns, got {type_name(msgs)}",
            'write "messages": [{"role": "user", ...}, ...]')
        return None
    if not msgs:
        add("messages", "is empty", "add a user turn and the assistant's answer")
        return None
    return msgs


def _turn_shape(m: Any, p: str, add: Callable, roles: list[str], shape: str, system_fix: str) -> bool:
    """Checks every messages format shares for one turn (an object; only role and content; role user or
    assistant); records its role in ``roles``. False when the turn is not an object (nothing else to check)."""
    if not isinstance(m, dict):
        add(p, f"must be an object, got {type_name(m)}", shape)
        roles.append("?")
        return False
    for k in sorted(m.keys() - {"role", "content"}):
        add(f"{p}.{_key(k)}", "unknown key", "turns have only role and content")
    role = m.get("role")
    if role not in ("user", "assistant"):
        add(f"{p}.role", f"invalid role {role!r}", system_fix if role == "system" else "use 'user' or 'assistant'")
    roles.append(role if isinstance(role, str) else "?")
    return True


def _each_turn(rec: dict, add: Add, check: Callable[[int, str, Any, list[str]], None]) -> list[str] | None:
    """``check(i, "messages[i]", turn, roles)`` for every turn; the roles they recorded. None when
    ``messages`` is missing, not an array or empty (a problem was added, or it is missing): the caller
    returns at once, with no record-level turn checks (no "too few turns", no "no user turn")."""
    msgs = _messages(rec, add)
    if msgs is None:
        return None
    roles: list[str] = []
    for i, m in enumerate(msgs):
        check(i, f"messages[{i}]", m, roles)
    return roles


def _check_claude(rec: dict, rules: Rules, add: Add) -> None:
    if "system" in rec and _is_str(rec["system"], "system", add):
        check_text(rec["system"], "system", rules, add, required=False)
    roles = _each_turn(rec, add, lambda i, p, m, roles: _claude_turn(p, m, rules, add, roles))
    if roles is None:
        return
    too_short = len(roles) < 2 and rules.assistant_required        # one role per turn (_turn_shape)
    if too_short:
        add("messages", f"{len(roles)} turn(s); at least 2 (user, assistant) are required",
            "add the assistant's answer")
    _check_roles(roles, rules, add, skip_missing_assistant=too_short)


def _claude_turn(p: str, m: Any, rules: Rules, add: Add, roles: list[str]) -> None:
    if not _turn_shape(m, p, add, roles, '{"role": "user"|"assistant", "content": "..."}',
                       "put the system prompt in the top-level \"system\" string"):
        return
    if "content" not in m:
        add(f"{p}.content", "missing", "add the turn's text as a string")
    elif isinstance(m["content"], list):
        add(f"{p}.content", "must be a string for Claude 3 Haiku, got an array of blocks",
            'write "content": "..."; docs/bedrock-facts.md §8: Haiku takes string content')
    elif _is_str(m["content"], f"{p}.content", add):
        check_text(m["content"], f"{p}.content", rules, add)


def _check_block(b: Any, p: str, role: Any, rules: Rules, add: Add, counts: dict, state: dict) -> None:
    if not isinstance(b, dict):
        add(p, f"must be an object, got {type_name(b)}", 'write {"text": "..."}')
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
            check_text(b["text"], f"{p}.text", rules, add, answer=role != "user")
        return
    counts[kind] = counts.get(kind, 0) + 1
    if role != "user":
        add(f"{p}.{kind}", f"{kind} in a {role!r} turn",
            "media are allowed only in user turns; docs/bedrock-facts.md §5")
    if rules.text_only:
        add(f"{p}.{kind}", f"{rules.model_id} takes text only",
            "remove media or pick Nova Lite/Pro; docs/bedrock-facts.md §5: Micro is text only")
    media = b[kind]
    formats = IMAGE_FORMATS if kind == "image" else VIDEO_FORMATS
    if not isinstance(media, dict):
        add(f"{p}.{kind}", f"must be an object, got {type_name(media)}",
            '{"format": ..., "source": {"s3Location": {"uri": "s3://..."}}}')
        return
    if media.get("format") not in formats:
        add(f"{p}.{kind}.format", f"{media.get('format')!r} is not supported", f"use one of {', '.join(formats)}")
    uri = ((media.get("source") or {}).get("s3Location") or {}).get("uri") if isinstance(media.get("source"),
                                                                                         dict) else None
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        add(f"{p}.{kind}.source.s3Location.uri", "missing or not an s3:// URI",
            "media must sit in S3, in the same bucket as the dataset; docs/bedrock-facts.md §5")
    elif not MEDIA_NAME_RE.fullmatch(uri[5:]):
        add(f"{p}.{kind}.source.s3Location.uri", "file name has characters Bedrock rejects",
            "use only letters, digits, _, -, /, . in media names; docs/bedrock-facts.md §5")
    else:
        _media_ref(uri, f"{p}.{kind}.source.s3Location.uri", state, add)


def _media_ref(uri: str, fld: str, state: dict, add: Add) -> None:
    """One media reference: an object URI, in the run's bucket (``state["media_bucket"]``, the config's
    ``aws.bucket`` when known) or at least in the one bucket of this dataset's other media; collected into
    ``state["media_refs"]`` for the service role's policy (``tasks.data.media``). docs/bedrock-facts.md §5: Bedrock
    reads media only from the dataset's bucket, so media anywhere else would fail the job after it was paid for."""
    path = uri[5:]
    bucket, _, key = path.partition("/")
    if bucket != state.get("media_ok_bucket") or not key or key[-1] == "/" or "//" in path:  # else: bucket known
        problem = media_uri_problem(uri)
        if problem is not None:
            add(fld, problem, "media are objects in the dataset's bucket: s3://BUCKET/folder/name.png")
            return
        want = state.get("media_bucket")
        if want and bucket != want:
            add(fld, f"is in bucket {bucket!r}, not in the run's bucket {want!r} (aws.bucket)",
                f"Bedrock reads media only from the dataset's own bucket (docs/bedrock-facts.md §5): copy the media "
                f"into s3://{want}/ and point the records there, or set aws.bucket to {bucket!r}")
            return
        first = state.setdefault("media_first_bucket", bucket)
        if bucket != first:
            add(fld, f"is in bucket {bucket!r}, this dataset's earlier media are in {first!r}",
                "all media of a dataset sit in the one bucket the dataset is uploaded to (docs/bedrock-facts.md §5): "
                "move them into one bucket and set aws.bucket to it")
            return
        state["media_ok_bucket"] = bucket
        state["media_refs"] = state.get("media_refs") or MediaRefs()
    state["media_refs"].add(uri)


def _check_conversation(rec: dict, rules: Rules, add: Add, state: dict) -> None:
    sv = rec.get("schemaVersion")
    if "schemaVersion" in rec and _is_str(sv, "schemaVersion", add) and sv != SCHEMA_VERSION:
        if rules.ctype == CustomizationType.DISTILLATION:
            add("schemaVersion", f"{sv!r}; distillation requires {SCHEMA_VERSION!r}",
                f'write "schemaVersion": "{SCHEMA_VERSION}"')
    if "system" in rec:
        s = rec["system"]
        if isinstance(s, str):
            add("system", "must be an array of text blocks, got a string", 'write "system": [{"text": "..."}]')
        elif not isinstance(s, list):
            add("system", f"must be an array of text blocks, got {type_name(s)}", 'write "system": [{"text": "..."}]')
        else:
            for j, b in enumerate(s):
                if not isinstance(b, dict) or set(b) != {"text"}:
                    add(f"system[{j}]", "must be {\"text\": \"...\"}", "system blocks hold text only")
                elif _is_str(b["text"], f"system[{j}].text", add):
                    check_text(b["text"], f"system[{j}].text", rules, add, required=False)
    counts: dict[str, int] = {}
    roles = _each_turn(rec, add, lambda i, p, m, roles: _conversation_turn(p, m, rules, add, roles, counts, state))
    if roles is None:
        return
    if counts.get("image", 0) > MAX_IMAGES_PER_RECORD:
        add("messages", f"{counts['image']} images; at most {MAX_IMAGES_PER_RECORD} per record",
            "split the record; docs/bedrock-facts.md §5")
    if counts.get("video", 0) > 1:
        add("messages", f"{counts['video']} videos; at most 1 per record", "split the record; docs/bedrock-facts.md §5")
    for kind in ("image", "video"):
        if counts.get(kind):
            state.setdefault("media", set()).add(kind)
    if "user" not in roles:
        add("messages", "no user turn", "every record needs a user turn")
    _check_roles(roles, rules, add)


def _conversation_turn(p: str, m: Any, rules: Rules, add: Add, roles: list[str], counts: dict[str, int],
                       state: dict) -> None:
    if not _turn_shape(m, p, add, roles, '{"role": "user", "content": [{"text": "..."}]}',
                       'put the system prompt in the top-level "system": [{"text": ...}]'):
        return
    role = m.get("role")
    c = m.get("content")
    if "content" not in m:
        add(f"{p}.content", "missing", 'add "content": [{"text": "..."}]')
    elif isinstance(c, str):
        add(f"{p}.content", "must be an array of content blocks, got a string",
            'write "content": [{"text": "..."}]; docs/bedrock-facts.md §8: Nova/Llama 3.2 take block lists')
    elif not isinstance(c, list):
        add(f"{p}.content", f"must be an array of content blocks, got {type_name(c)}",
            'write "content": [{"text": "..."}]')
    elif not c:
        add(f"{p}.content", "is empty", 'add at least one {"text": "..."} block')
    else:
        for j, b in enumerate(c):
            _check_block(b, f"{p}.content[{j}]", role, rules, add, counts, state)


def _check_rft(rec: dict, rules: Rules, add: Add) -> None:
    roles = _each_turn(rec, add, lambda i, p, m, roles: _rft_turn(i, p, m, rules, add, roles))
    if roles is None:
        return
    if "user" not in roles:
        add("messages", "no user turn", "RFT records need the prompt as a user turn")
    elif roles and roles[-1] != "user":
        add(f"messages[{len(roles) - 1}].role", f"last turn is {roles[-1]!r}, must be 'user'",
            "RFT records end with the prompt; put the expected answer in reference_answer")


def _rft_turn(i: int, p: str, m: Any, rules: Rules, add: Add, roles: list[str]) -> None:
    if not isinstance(m, dict):
        add(p, f"must be an object, got {type_name(m)}", '{"role": "user", "content": "..."}')
        return
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
        check_text(m["content"], f"{p}.content", rules, add, required=role != "system")


def max_record_chars(rules: Rules) -> int | None:
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
