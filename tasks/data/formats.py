"""Training-record formats Bedrock accepts, one converter pair per catalog ``DataFormat``.

Shapes are those of docs/bedrock-facts.md §5 (docs/bedrock-facts.md §5, from the Bedrock
"prepare your dataset" docs and AWS samples):

- ``prompt-completion``         ``{"prompt", "completion"}`` (Titan Text, Cohere Command, Llama 3.1)
- ``claude-messages``           ``{"system"?, "messages": [{"role": "user", "content": str},
                                {"role": "assistant", "content": str}]}`` (Claude 3 Haiku)
- ``bedrock-conversation-2024`` ``{"schemaVersion": "bedrock-conversation-2024", "system": [{"text"}]?,
                                "messages": [{"role", "content": [{"text"}]}]}`` (Nova, Llama 3.2,
                                distillation; the assistant turn is optional for distillation)
- ``cpt-input``                 ``{"input"}`` (continued pre-training)
- ``rft-messages``              ``{"messages": [{"role": "user", "content": str}], "reference_answer"?}``

Round trip: ``from_record(fmt, to_record(fmt, ex)) == ex`` for every ``Example`` the format can hold:
- formats without a system field (prompt-completion, cpt-input) fold a system text into the prompt
  (``system + "\\n\\n" + prompt``), so they round-trip only examples with ``system=None``;
- ``cpt-input`` holds one text: it round-trips examples with ``completion == ""``;
- an empty completion in the conversation schema means "no assistant turn" (distillation prompts).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from tasks.catalog import DataFormat

# docs/bedrock-facts.md §5: always write this value (distillation insists on it)
SCHEMA_VERSION = "bedrock-conversation-2024"


class Example(NamedTuple):
    system: str | None
    prompt: str
    completion: str


class RecordShapeError(ValueError):
    """A record that is not in the format asked for (``from_record``); the message names the field."""


def as_format(fmt: DataFormat | str) -> DataFormat:
    try:
        return fmt if isinstance(fmt, DataFormat) else DataFormat(str(fmt))
    except ValueError:
        raise ValueError(f"unknown data format {fmt!r}; valid: {', '.join(f.value for f in DataFormat)}") from None


def _fold_system(ex: Example) -> str:
    return f"{ex.system}\n\n{ex.prompt}" if ex.system else ex.prompt


def to_record(fmt: DataFormat | str, ex: Example) -> dict:
    """One JSONL record for ``ex`` in format ``fmt`` (docs/bedrock-facts.md §5)."""
    f = as_format(fmt)
    if f is DataFormat.PROMPT_COMPLETION:
        return {"prompt": _fold_system(ex), "completion": ex.completion}
    if f is DataFormat.CLAUDE_MESSAGES:
        rec: dict[str, Any] = {}
        if ex.system is not None:
            rec["system"] = ex.system
        rec["messages"] = [{"role": "user", "content": ex.prompt},
                           {"role": "assistant", "content": ex.completion}]
        return rec
    if f is DataFormat.CONVERSATION:
        rec = {"schemaVersion": SCHEMA_VERSION}
        if ex.system is not None:
            rec["system"] = [{"text": ex.system}]
        msgs = [{"role": "user", "content": [{"text": ex.prompt}]}]
        if ex.completion != "":
            msgs.append({"role": "assistant", "content": [{"text": ex.completion}]})
        rec["messages"] = msgs
        return rec
    if f is DataFormat.CPT_INPUT:
        text = _fold_system(ex)
        if ex.completion:
            text = f"{text}\n{ex.completion}"
        return {"input": text}
    if f is DataFormat.RFT_MESSAGES:
        msgs = []
        if ex.system is not None:
            msgs.append({"role": "system", "content": ex.system})
        msgs.append({"role": "user", "content": ex.prompt})
        return {"messages": msgs, "reference_answer": ex.completion}
    raise ValueError(f"no converter for {f.value}")  # pragma: no cover - every DataFormat is handled


def _need(record: Any, key: str, typ: type | tuple[type, ...], where: str = "") -> Any:
    if not isinstance(record, dict):
        raise RecordShapeError(f"{where or 'record'}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise RecordShapeError(f"{where + '.' if where else ''}{key}: missing")
    v = record[key]
    if not isinstance(v, typ):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise RecordShapeError(f"{where + '.' if where else ''}{key}: expected {names}, got {type(v).__name__}")
    return v


def _blocks_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RecordShapeError(f"{where}: expected a list of content blocks")
    texts = [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return "\n".join(texts)


def _split_turns(messages: list, blocks: bool) -> tuple[str, str]:
    """(prompt, completion) of a message list: the last user turn before the final assistant turn."""
    prompt, completion = None, ""
    for i, m in enumerate(messages):
        role = _need(m, "role", str, f"messages[{i}]")
        if blocks:
            text = _blocks_text(m.get("content"), f"messages[{i}].content")
        else:
            text = _need(m, "content", str, f"messages[{i}]")
        if role == "user":
            prompt, completion = text, ""
        elif role == "assistant":
            completion = text
    if prompt is None:
        raise RecordShapeError("messages: no user turn")
    return prompt, completion


def from_record(fmt: DataFormat | str, record: dict) -> Example:
    """The Example a record holds (inverse of ``to_record``). Raises ``RecordShapeError`` (a
    ValueError naming the field) when the record is not in ``fmt``."""
    f = as_format(fmt)
    if not isinstance(record, dict):
        raise RecordShapeError(f"record: expected a JSON object, got {type(record).__name__}")
    if f is DataFormat.PROMPT_COMPLETION:
        return Example(None, _need(record, "prompt", str), _need(record, "completion", str))
    if f is DataFormat.CLAUDE_MESSAGES:
        system = record.get("system")
        if system is not None and not isinstance(system, str):
            raise RecordShapeError("system: expected str")
        prompt, completion = _split_turns(_need(record, "messages", list), blocks=False)
        return Example(system, prompt, completion)
    if f is DataFormat.CONVERSATION:
        sys_blocks = record.get("system")
        system = None
        if sys_blocks:
            system = _blocks_text(sys_blocks, "system")
        prompt, completion = _split_turns(_need(record, "messages", list), blocks=True)
        return Example(system, prompt, completion)
    if f is DataFormat.CPT_INPUT:
        return Example(None, _need(record, "input", str), "")
    if f is DataFormat.RFT_MESSAGES:
        msgs = _need(record, "messages", list)
        system = None
        prompt = None
        for i, m in enumerate(msgs):
            role = _need(m, "role", str, f"messages[{i}]")
            content = _need(m, "content", str, f"messages[{i}]")
            if role == "system":
                system = content
            elif role == "user":
                prompt = content
        if prompt is None:
            raise RecordShapeError("messages: no user turn")
        ref = record.get("reference_answer", "")
        completion = ref if isinstance(ref, str) else json.dumps(ref, ensure_ascii=False, sort_keys=True)
        return Example(system, prompt, completion)
    raise ValueError(f"no converter for {f.value}")  # pragma: no cover


def record_texts(fmt: DataFormat | str, record: dict) -> list[str]:
    """Every text string in a (well-formed) record: what token estimates and string rules look at."""
    f = as_format(fmt)
    out: list[Any] = []
    if not isinstance(record, dict):
        return []

    def blocks(v: Any) -> list[Any]:
        return [b.get("text") for b in v if isinstance(b, dict)] if isinstance(v, list) else []

    if f is DataFormat.PROMPT_COMPLETION:
        out = [record.get("prompt"), record.get("completion")]
    elif f is DataFormat.CPT_INPUT:
        out = [record.get("input")]
    else:
        sysv = record.get("system")
        out += [sysv] if isinstance(sysv, str) else blocks(sysv)
        msgs = record.get("messages")
        for m in msgs if isinstance(msgs, list) else []:
            if isinstance(m, dict):
                c = m.get("content")
                out += [c] if isinstance(c, str) else blocks(c)
        if f is DataFormat.RFT_MESSAGES:
            out.append(record.get("reference_answer"))
    return [t for t in out if isinstance(t, str)]
