"""Invoke a model once through ``bedrock-runtime`` ``invoke_model``, per family request/response shape.

Shapes (docs/bedrock-facts.md §3): ``nova`` (messages-v1), ``claude`` (anthropic_version bedrock-2023-05-31), ``llama``
(prompt/max_gen_len → generation), ``titan`` (inputText/textGenerationConfig → results[0].outputText),
``cohere`` ({prompt, max_tokens} → generations[0].text; not in REF — catalog marks it unconfirmed).
``target`` is what to call: a base model id or inference profile (``catalog.inference_id``), a provisioned
model ARN, or a custom model deployment ARN (docs/bedrock-facts.md §3 "Which modelId to call").

Llama and Titan get the raw prompt (system text first, when given): that is the shape their
prompt/completion fine-tuning data has (docs/bedrock-facts.md §5), so the custom model sees what it was trained on.
Errors are not caught: a botocore ``ClientError`` reaches the caller (evaluation classifies and retries).

Concurrency adapts to capacity (AIMD, ``AimdLimiter``): every call to one target passes through that target's
limiter, which holds the in-flight limit. A throttled call (``ThrottlingException``, or a success botocore only got
after retrying) halves the limit, once per congestion episode, floor 1; each window of successes while the limit was
reached adds 1, up to the maximum. The throttled call's error still reaches the caller, whose retry loop
(``tasks.evaluate.run_comparison``: bounded retries, full-jitter backoff) retries that example outside the
limiter, so no example is lost. A provisioned throughput's capacity is tokens per minute per model unit
(https://docs.aws.amazon.com/bedrock/latest/userguide/prov-throughput.html); a call beyond a quota is refused with
ThrottlingException, HTTP 429
(https://docs.aws.amazon.com/botocore/latest/reference/services/bedrock-runtime/client/exceptions/ThrottlingException.html).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from typing import Any, Literal

from tasks.run.types import InvokeResult


def _plain(prompt: str, system: str | None) -> str:
    return f"{system}\n\n{prompt}" if system else prompt


def llama_chat_prompt(prompt: str, system: str | None) -> str:
    """The Llama 3.x instruct chat template that AWS's Llama page asks ``prompt`` to be formatted with "for best
    results" (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-meta.html): header blocks for
    system and user, then an open assistant header the model completes."""
    head = "<|begin_of_text|>"
    if system:
        head += f"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
    return head + (f"<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")


Template = Literal["raw", "chat"]


def build_body(invoke_shape: str, *, prompt: str, system: str | None, max_tokens: int, temperature: float,
               template: Template = "raw") -> dict:
    """``template="chat"``: Llama gets its chat template (Nova and Claude bodies are chat-shaped already; Titan and
    Cohere have no template); ``"raw"``: the prompt as the fine-tuning data holds it. Base and custom calls of one
    evaluation go through the same ``invoke_text`` arguments, so both are prompted the same way."""
    if template not in ("raw", "chat"):
        raise ValueError(f"unknown prompt template {template!r}; expected 'raw' or 'chat'")
    if invoke_shape == "nova":
        body: dict[str, Any] = {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system:
            body["system"] = [{"text": system}]
        return body
    if invoke_shape == "claude":
        body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "temperature": temperature,
                "messages": [{"role": "user", "content": prompt}]}
        if system:
            body["system"] = system
        return body
    if invoke_shape == "llama":
        text = llama_chat_prompt(prompt, system) if template == "chat" else _plain(prompt, system)
        return {"prompt": text, "max_gen_len": max_tokens, "temperature": temperature}
    if invoke_shape == "titan":
        return {"inputText": _plain(prompt, system),
                "textGenerationConfig": {"maxTokenCount": max_tokens, "temperature": temperature}}
    if invoke_shape == "cohere":
        return {"prompt": _plain(prompt, system), "max_tokens": max_tokens, "temperature": temperature}
    raise ValueError(f"unknown invoke shape {invoke_shape!r}; expected one of nova, claude, llama, titan, cohere "
                     "(catalog.yaml invoke_shape)")


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def parse_body(invoke_shape: str, data: dict) -> tuple[str, int | None, int | None]:
    """(text, input tokens, output tokens) from a response body."""
    if invoke_shape == "nova":
        content = ((data.get("output") or {}).get("message") or {}).get("content") or []
        text = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        usage = data.get("usage") or {}
        return text, _int(usage.get("inputTokens")), _int(usage.get("outputTokens"))
    if invoke_shape == "claude":
        text = "".join(c.get("text", "") for c in data.get("content") or [] if c.get("type", "text") == "text")
        usage = data.get("usage") or {}
        return text, _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    if invoke_shape == "llama":
        return (data.get("generation", ""), _int(data.get("prompt_token_count")),
                _int(data.get("generation_token_count")))
    if invoke_shape == "titan":
        res = (data.get("results") or [{}])[0]
        return res.get("outputText", ""), _int(data.get("inputTextTokenCount")), _int(res.get("tokenCount"))
    if invoke_shape == "cohere":
        gens = data.get("generations") or [{}]
        return gens[0].get("text", ""), None, None
    raise ValueError(f"unknown invoke shape {invoke_shape!r}")


# ---------------------------------------------------------------------------------------------
# AIMD concurrency per target

Outcome = Literal["ok", "throttled", "error"]
THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "ThrottledException"})
DEFAULT_MAXIMUM = 256   # evaluation.concurrency's upper bound (tasks/config EvaluationConfig)


class AimdLimiter:
    """In-flight limit for one target that follows its capacity: additive increase, multiplicative decrease.

    ``acquire`` blocks while ``in_flight >= limit`` and returns a ticket; ``release(ticket, outcome)`` ends the
    call. A ``"throttled"`` outcome sets ``limit = max(1, min(limit, peak concurrency) // 2)`` — once per
    congestion episode: calls admitted before the last decrease do not decrease again (their throttles answer the
    old, higher concurrency). Each ``window`` successes (default: the current limit, about one round of calls) add
    1 up to ``maximum``, but only when the limit was reached meanwhile, so a limit the callers never use does not
    grow (RFC 7661's rule for an application-limited window). ``"error"`` (not a capacity signal) changes nothing.
    No clock: time enters only through the callers' calls, so the logic is tested step by step.
    """

    def __init__(self, maximum: int, *, start: int | None = None, window: int | None = None):
        if maximum < 1 or (start is not None and not 1 <= start <= maximum) or (window is not None and window < 1):
            raise ValueError(f"AimdLimiter needs 1 <= start <= maximum and window >= 1 (got maximum={maximum}, "
                             f"start={start}, window={window})")
        self.maximum, self.window = int(maximum), window
        self.limit = int(start if start is not None else maximum)
        self.in_flight = 0
        self.throttles = self.decreases = self.increases = 0
        self.lowest = self.limit
        self._epoch = self._ok = 0
        self._peak = 0
        self._cond = threading.Condition()

    def try_acquire(self) -> int | None:
        """A ticket when a slot is free now, else None."""
        with self._cond:
            return self._admit() if self.in_flight < self.limit else None

    def acquire(self, timeout: float | None = None) -> int:
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_flight < self.limit, timeout):
                raise TimeoutError(f"no call slot within {timeout} s (limit {self.limit}, in flight {self.in_flight})")
            return self._admit()

    def _admit(self) -> int:
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)
        return self._epoch

    def release(self, ticket: int, outcome: Outcome) -> None:
        with self._cond:
            if self.in_flight < 1:
                raise RuntimeError("AimdLimiter.release without a matching acquire")
            self.in_flight -= 1
            if outcome == "throttled":
                self.throttles += 1
                if ticket == self._epoch:   # halve the concurrency reached since the last change (>= in flight)
                    self.limit = max(1, min(self.limit, self._peak) // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self.decreases += 1
                    self._epoch += 1
                    self._ok, self._peak = 0, self.in_flight
            elif outcome == "ok":
                self._ok += 1
                if self._ok >= (self.window or self.limit):
                    if self._peak >= self.limit and self.limit < self.maximum:
                        self.limit += 1
                        self.increases += 1
                    self._ok, self._peak = 0, self.in_flight
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"limit": self.limit, "maximum": self.maximum, "lowest": self.lowest, "throttles": self.throttles,
                    "decreases": self.decreases, "increases": self.increases}


_LIMITERS: weakref.WeakKeyDictionary[Any, dict[str, AimdLimiter]] = weakref.WeakKeyDictionary()
_LIMITERS_LOCK = threading.Lock()


def limiter_for(runtime_client: Any, target: str, maximum: int | None = None) -> AimdLimiter:
    """The one limiter of (client, target), made on first use: every caller of one target shares its capacity.

    ``maximum`` (``evaluation.concurrency``) applies when the limiter is made; without it the limit starts at
    ``DEFAULT_MAXIMUM`` and the caller's own pool bounds the calls, so the first decrease halves the concurrency
    actually in flight."""
    with _LIMITERS_LOCK:
        per_target = _LIMITERS.setdefault(runtime_client, {})
        if target not in per_target:
            per_target[target] = AimdLimiter(maximum or DEFAULT_MAXIMUM)
        return per_target[target]


def is_throttling(exc: BaseException) -> bool:
    resp = getattr(exc, "response", None)
    code = str(((resp or {}).get("Error") or {}).get("Code", "")) if isinstance(resp, dict) else ""
    return code in THROTTLE_CODES


def _retried(resp: Any) -> bool:
    """botocore retried before this answer (its retry modes retry throttles): capacity was short."""
    meta = resp.get("ResponseMetadata") if isinstance(resp, dict) else None
    return bool(_int((meta or {}).get("RetryAttempts")))


def limited_call(limiter: AimdLimiter, call: Any) -> Any:
    """``call()`` inside one of the limiter's slots; the outcome feeds AIMD; errors propagate unchanged."""
    ticket = limiter.acquire()
    outcome: Outcome = "error"
    try:
        resp = call()
        outcome = "throttled" if _retried(resp) else "ok"
        return resp
    except Exception as exc:
        outcome = "throttled" if is_throttling(exc) or _retried(getattr(exc, "response", None)) else "error"
        raise
    finally:
        limiter.release(ticket, outcome)


def invoke_text(runtime_client: Any, target: str, invoke_shape: str, *, prompt: str, system: str | None = None,
                max_tokens: int = 256, temperature: float = 0.0, limiter: AimdLimiter | None = None,
                template: Template = "raw") -> InvokeResult:
    """One call through ``limiter`` (default: ``limiter_for(runtime_client, target)``, shared per target);
    ``template``: see ``build_body``."""
    body = build_body(invoke_shape, prompt=prompt, system=system, max_tokens=max_tokens, temperature=temperature,
                      template=template)
    payload = json.dumps(body).encode()
    gate = limiter if limiter is not None else limiter_for(runtime_client, target)

    def call() -> Any:   # latency is the model's: the wait for a slot is not in it
        t0 = time.perf_counter()
        resp = runtime_client.invoke_model(modelId=target, body=payload, contentType="application/json",
                                           accept="application/json")
        raw = resp["body"].read()
        return dict(resp, body=raw, latency_ms=(time.perf_counter() - t0) * 1000.0)

    resp = limited_call(gate, call)
    raw, latency_ms = resp["body"], resp["latency_ms"]
    text, tin, tout = parse_body(invoke_shape, json.loads(raw))
    headers = (resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    if tin is None:   # the runtime also reports token counts in response headers
        tin = _int(headers.get("x-amzn-bedrock-input-token-count"))
    if tout is None:
        tout = _int(headers.get("x-amzn-bedrock-output-token-count"))
    return InvokeResult(text=text, input_tokens=tin, output_tokens=tout, latency_ms=latency_ms)
