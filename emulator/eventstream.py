"""AWS event-stream framing (``application/vnd.amazon.eventstream``) and the streamed bodies of
InvokeModelWithResponseStream / ConverseStream.

A message is: a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes; big-endian), the headers
(1-byte name length, name, 1-byte value type 7 = string, 2-byte value length, value), the payload, and a CRC32 of
everything before it (https://docs.aws.amazon.com/AmazonS3/latest/API/RESTSelectObjectAppendix.html, the framing
Bedrock's runtime streams use; botocore.eventstream decodes it). Events carry ``:event-type``, ``:content-type``
and ``:message-type: event``; errors ``:exception-type`` and ``:message-type: exception``.

Chunk bodies per model family (each chunk of InvokeModelWithResponseStream is ``{"bytes": base64(JSON)}``):
- nova: messageStart, contentBlockDelta..., contentBlockStop, messageStop, metadata
  (https://docs.aws.amazon.com/nova/latest/nova2-userguide/streaming-responses.html)
- claude: message_start, content_block_start, content_block_delta..., content_block_stop, message_delta,
  message_stop (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-anthropic-claude-messages.html)
- llama: ``{"generation", "prompt_token_count", "generation_token_count", "stop_reason"}``
  (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-meta.html)
- titan: ``{"outputText", "index", "totalOutputTextTokenCount", "completionReason", "inputTextTokenCount"}``
  (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-text.html)
- cohere: ``{"text", "is_finished"}`` then ``{"is_finished": true, "finish_reason"}`` (unconfirmed)
The last chunk carries ``amazon-bedrock-invocationMetrics`` (inputTokenCount, outputTokenCount, invocationLatency,
firstByteLatency), as Bedrock adds it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from typing import Any

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7


def _crc(data: bytes, start: int = 0) -> int:
    return binascii.crc32(data, start) & 0xFFFFFFFF


def encode_headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        n, v = name.encode("utf-8"), value.encode("utf-8")
        out += struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    h = encode_headers(headers)
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", _crc(prelude))
    body = prelude + h + payload
    return body + struct.pack(">I", _crc(body))


def event(event_type: str, payload: dict) -> bytes:
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"}, json.dumps(payload).encode())


def exception(exception_type: str, message: str) -> bytes:
    """An error inside the stream (``:exception-type`` names the stream member, e.g. throttlingException)."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


def decode_messages(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The messages of a stream (for tests and readers without botocore); checks both CRCs."""
    out, i = [], 0
    while i < len(data):
        total, hlen, pcrc = struct.unpack(">III", data[i:i + 12])
        if _crc(data[i:i + 8]) != pcrc:
            raise ValueError(f"prelude CRC mismatch at byte {i}")
        msg = data[i:i + total]
        if _crc(msg[:-4]) != struct.unpack(">I", msg[-4:])[0]:
            raise ValueError(f"message CRC mismatch at byte {i}")
        headers, j = {}, 12
        while j < 12 + hlen:
            nlen = msg[j]
            name = msg[j + 1:j + 1 + nlen].decode()
            j += 1 + nlen
            vtype, vlen = struct.unpack(">BH", msg[j:j + 3])
            if vtype != _STRING:
                raise ValueError(f"header {name}: only string values are written here, got type {vtype}")
            headers[name] = msg[j + 3:j + 3 + vlen].decode()
            j += 3 + vlen
        out.append((headers, msg[12 + hlen:-4]))
        i += total
    return out


def pieces(text: str, words_per_piece: int = 3) -> list[str]:
    """``text`` cut into the deltas a model would stream; they join back to ``text`` exactly."""
    toks = re.split(r"(?<=\s)(?=\S)", text)
    return ["".join(toks[i:i + words_per_piece]) for i in range(0, len(toks), words_per_piece)] or [""]


def _metrics(tin: int, tout: int, latency_ms: int) -> dict:
    return {"inputTokenCount": tin, "outputTokenCount": tout, "invocationLatency": latency_ms,
            "firstByteLatency": max(1, latency_ms // 2)}


def invoke_chunks(shape: str, text: str, tin: int, tout: int, *, truncated: bool, latency_ms: int,
                  message_id: str = "msg_bdrk_emulator") -> list[dict]:
    """The JSON bodies of an InvokeModelWithResponseStream, in order, for the family ``shape``."""
    deltas = pieces(text)
    metrics = {"amazon-bedrock-invocationMetrics": _metrics(tin, tout, latency_ms)}
    n = len(deltas)
    counts = [max(0, round(tout * (i + 1) / n) - round(tout * i / n)) for i in range(n)]
    if shape == "nova":
        return ([{"messageStart": {"role": "assistant"}}]
                + [{"contentBlockDelta": {"delta": {"text": d}, "contentBlockIndex": 0}} for d in deltas]
                + [{"contentBlockStop": {"contentBlockIndex": 0}},
                   {"messageStop": {"stopReason": "max_tokens" if truncated else "end_turn"}},
                   {"metadata": {"usage": {"inputTokens": tin, "outputTokens": tout}, "metrics": {}, "trace": {}},
                    **metrics}])
    if shape == "claude":
        return ([{"type": "message_start", "message": {
                    "id": message_id, "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": tin, "output_tokens": 1}}},
                 {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
                + [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}}
                   for d in deltas]
                + [{"type": "content_block_stop", "index": 0},
                   {"type": "message_delta", "delta": {"stop_reason": "max_tokens" if truncated else "end_turn",
                                                       "stop_sequence": None}, "usage": {"output_tokens": tout}},
                   {"type": "message_stop", **metrics}])
    if shape == "llama":
        out: list[dict[str, Any]] = [{"generation": d, "prompt_token_count": tin if i == 0 else None,
                                      "generation_token_count": sum(counts[:i + 1]), "stop_reason": None}
                                     for i, d in enumerate(deltas)]
        out[-1]["stop_reason"] = "length" if truncated else "stop"
        out[-1].update(metrics)
        return out
    if shape == "titan":
        out = [{"outputText": d, "index": 0, "totalOutputTextTokenCount": sum(counts[:i + 1]),
                "completionReason": None, "inputTextTokenCount": tin if i == 0 else 0}
               for i, d in enumerate(deltas)]
        out[-1]["completionReason"] = "LENGTH" if truncated else "FINISH"
        out[-1].update(metrics)
        return out
    if shape == "cohere":
        return ([{"text": d, "is_finished": False} for d in deltas]
                + [{"is_finished": True, "finish_reason": "MAX_TOKENS" if truncated else "COMPLETE", **metrics}])
    raise ValueError(f"unknown invoke shape {shape!r}")


def invoke_frames(shape: str, text: str, tin: int, tout: int, *, truncated: bool, latency_ms: int) -> list[bytes]:
    """InvokeModelWithResponseStream's events, one encoded message each: one ``chunk`` event per JSON body (the
    server writes them one at a time, emulator/server.py)."""
    return [event("chunk", {"bytes": base64.b64encode(json.dumps(c).encode()).decode()})
            for c in invoke_chunks(shape, text, tin, tout, truncated=truncated, latency_ms=latency_ms)]


def invoke_stream(shape: str, text: str, tin: int, tout: int, *, truncated: bool, latency_ms: int) -> bytes:
    """The whole InvokeModelWithResponseStream body (its frames joined)."""
    return b"".join(invoke_frames(shape, text, tin, tout, truncated=truncated, latency_ms=latency_ms))


def converse_frames(text: str, tin: int, tout: int, *, stop_reason: str, latency_ms: int,
                    additional: dict | None = None) -> list[bytes]:
    """ConverseStream's events: messageStart, contentBlockDelta..., contentBlockStop, messageStop, metadata."""
    stop: dict[str, Any] = {"stopReason": stop_reason}
    if additional:
        stop["additionalModelResponseFields"] = additional
    return ([event("messageStart", {"role": "assistant"})]
            + [event("contentBlockDelta", {"delta": {"text": d}, "contentBlockIndex": 0}) for d in pieces(text)]
            + [event("contentBlockStop", {"contentBlockIndex": 0}), event("messageStop", stop),
               event("metadata", {"usage": {"inputTokens": tin, "outputTokens": tout, "totalTokens": tin + tout},
                                  "metrics": {"latencyMs": latency_ms}})])


def converse_stream(text: str, tin: int, tout: int, *, stop_reason: str, latency_ms: int,
                    additional: dict | None = None) -> bytes:
    """The whole ConverseStream body (its frames joined)."""
    return b"".join(converse_frames(text, tin, tout, stop_reason=stop_reason, latency_ms=latency_ms,
                                    additional=additional))
