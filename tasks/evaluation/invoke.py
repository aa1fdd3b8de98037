"""Invoke a model once through ``bedrock-runtime`` ``invoke_model``, per family request/response shape.

Shapes (docs/bedrock-facts.md §3): ``nova`` (messages-v1), ``claude`` (anthropic_version bedrock-2023-05-31), ``llama``
(prompt/max_gen_len → generation), ``titan`` (inputText/textGenerationConfig → results[0].outputText),
``cohere`` ({prompt, max_tokens} → generations[0].text; not in REF — catalog marks it unconfirmed).
``target`` is what to call: a base model id or inference profile (``catalog.inference_id``), a provisioned
model ARN, or a custom model deployment ARN (docs/bedrock-facts.md §3 "Which modelId to call").

Llama and Titan get the raw prompt (system text first, when given): that is the shape their
prompt/completion fine-tuning data has (docs/bedrock-facts.md §5), so the custom model sees what it was trained on.
Errors are not caught: a botocore ``ClientError`` reaches the caller (evaluation classifies and retries).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tasks.run.types import InvokeResult


def _plain(prompt: str, system: str | None) -> str:
    return f"{system}\n\n{prompt}" if system else prompt


def build_body(invoke_shape: str, *, prompt: str, system: str | None, max_tokens: int, temperature: float) -> dict:
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
        return {"prompt": _plain(prompt, system), "max_gen_len": max_tokens, "temperature": temperature}
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


def invoke_text(runtime_client: Any, target: str, invoke_shape: str, *, prompt: str, system: str | None = None,
                max_tokens: int = 256, temperature: float = 0.0) -> InvokeResult:
    body = build_body(invoke_shape, prompt=prompt, system=system, max_tokens=max_tokens, temperature=temperature)
    t0 = time.perf_counter()
    resp = runtime_client.invoke_model(modelId=target, body=json.dumps(body).encode(),
                                       contentType="application/json", accept="application/json")
    raw = resp["body"].read()
    latency_ms = (time.perf_counter() - t0) * 1000.0
    text, tin, tout = parse_body(invoke_shape, json.loads(raw))
    headers = (resp.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    if tin is None:   # the runtime also reports token counts in response headers
        tin = _int(headers.get("x-amzn-bedrock-input-token-count"))
    if tout is None:
        tout = _int(headers.get("x-amzn-bedrock-output-token-count"))
    return InvokeResult(text=text, input_tokens=tin, output_tokens=tout, latency_ms=latency_ms)
