"""The emulated bedrock-runtime: InvokeModel, InvokeModelWithResponseStream, Converse, ConverseStream and
CountTokens, answered by the stand-in models (emulator/standin.py) through a target the Region's control plane
holds: a Provisioned Throughput (metered by its capacity, emulator/capacity.py), a custom model deployment, or a base
model on demand (its id or inference profile). A backend of its own, as moto keeps one per service, reading the
Region's :class:`~emulator.bedrock.backend.BedrockBackend`."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from emulator.bedrock.backend import GEO_PREFIXES, BedrockBackend, _fm_id, _standin
from emulator.bedrock.exceptions import ResourceNotFoundException, ThrottlingException, validation


class BedrockRuntimeBackend:
    """bedrock-runtime in one account and Region."""

    def __init__(self, control: BedrockBackend):
        self.control = control

    def invoke_target(self, model_id: str, admit: bool = True) -> tuple[str, str, str, Any]:
        """-> (kind "base"|"custom", id for the stand-in, base model id for the body shape, the PT's token bucket
        or None). A PT whose bucket is empty answers ThrottlingException (emulator/capacity.py)."""
        b = self.control
        with b.lock:
            b.advance_all()
            if ":provisioned-model/" in model_id or b.find_pt(model_id) is not None:
                p = b.find_pt(model_id)
                if p is None:
                    raise ResourceNotFoundException(f"The provisioned model {model_id} was not found.")
                if p.status not in ("InService", "Updating"):
                    raise validation(f"The provisioned model {p.provisionedModelName} is {p.status}, not "
                                     "InService. Wait until it is InService before invoking it.")
                kind = "custom" if ":custom-model/" in p.modelArn else "base"
                cap = b.parent.capacity
                meter = cap.bucket(p.provisionedModelArn, p.modelUnits)
                if admit and meter is not None and not meter.admit():
                    # AWS wording for a PT over its capacity (prov-throughput.html: capacity is tokens per minute)
                    raise ThrottlingException(
                        "Too many tokens, please wait before trying again. "
                        f"The provisioned model {p.provisionedModelName} serves "
                        f"{cap.tokens_per_minute * p.modelUnits:g} tokens per minute "
                        f"({p.modelUnits} model unit(s)); retry in {meter.retry_after_s():.2f} s.")
                return kind, p.modelArn if kind == "custom" else p.baseModelId, p.baseModelId, meter
            if ":custom-model-deployment/" in model_id:
                d = b.find_deployment(model_id)
                if d is None:
                    raise ResourceNotFoundException(f"The custom model deployment {model_id} was not found.")
                if d.status != "Active":
                    raise validation(f"The custom model deployment {d.modelDeploymentName} is {d.status}, not "
                                     "Active. Wait until it is Active before invoking it.")
                return "custom", d.modelArn, d.baseModelId, None
            if ":custom-model/" in model_id or b.find_model(model_id) is not None:
                # docs/bedrock-facts.md §3: the custom model ARN itself is not an on-demand target
                raise validation("Invocation of a custom model by its model ARN isn't supported. Invoke it through a "
                                 "Provisioned Throughput ARN (CreateProvisionedModelThroughput) or a custom model "
                                 "deployment ARN (CreateCustomModelDeployment).")
        mid = _fm_id(model_id)
        if ":inference-profile/" in mid:
            mid = mid.split(":inference-profile/", 1)[1]
        idx = self.control.fm_index()
        profile = None
        for geo in GEO_PREFIXES:
            if mid.startswith(geo):
                profile, mid = mid, mid[len(geo):]
                break
        info = idx.get(mid)
        if info is None:
            raise validation(f"The provided model identifier is invalid: {model_id}.")
        if profile is None and info.get("profile"):
            # Nova-style models are served on demand only through an inference profile (AWS wording)
            raise validation(f"Invocation of model ID {mid} with on-demand throughput isn't supported. Retry your "
                             f"request with the ID or ARN of an inference profile that contains this model "
                             f"(e.g. {info['profile']}).")
        if info["customizable"]:
            raise validation(f"The model {mid} is a customization variant; invoke it through Provisioned Throughput.")
        from emulator.datacheck import lifecycle_status

        if lifecycle_status(mid, self.control.region)[0] == "EOL":
            # AWS's answer for a model past its end of life (the model cards, e.g. Claude 3 Haiku's; docs/emulator.md)
            raise ResourceNotFoundException("This model version has reached the end of its life. Please refer to "
                                            "the AWS documentation for more details.")
        return "base", profile or mid, _base_for_plain(idx, mid), None

    def invoke(self, model_id: str, raw_body: bytes) -> dict:
        """InvokeModel's (and InvokeModelWithResponseStream's) answer: kind, shape, text, tokens, truncation."""
        t0 = time.time()
        kind, target, base_id, meter = self.invoke_target(model_id)
        st = _standin()
        shape = st.invoke_shape_of(base_id)
        try:
            body = json.loads(raw_body or b"{}")
        except json.JSONDecodeError as e:
            raise validation("Malformed input request: the body is not valid JSON "
                             f"({e.msg} at char {e.pos}).") from None
        if not isinstance(body, dict):
            raise validation("Malformed input request: the body must be a JSON object.")
        try:
            system, prompt, max_tokens = st.parse_invoke_body(shape, body)
        except ValueError as e:
            raise validation(f"Malformed input request: {e}") from None
        a = self.control.standins().answer_full(kind, target, system, prompt, max_tokens)
        if meter is not None:
            meter.charge(a.input_tokens + a.output_tokens)
        if self.control.invoke_latency_ms > 0:
            time.sleep(self.control.invoke_latency_ms / 1000.0)
        return {"kind": kind, "shape": shape, "text": a.text, "tin": a.input_tokens, "tout": a.output_tokens,
                "truncated": a.truncated, "ms": int((time.time() - t0) * 1000)}

    def converse(self, model_id: str, *, system: str | None, prompt: str, max_tokens: int) -> dict:
        """Converse's (and ConverseStream's) answer."""
        t0 = time.time()
        kind, target, _base, meter = self.invoke_target(model_id)
        text, tin, tout = self.control.standins().answer(kind, target, system, prompt, max_tokens)
        if meter is not None:
            meter.charge(tin + tout)
        if self.control.invoke_latency_ms > 0:
            time.sleep(self.control.invoke_latency_ms / 1000.0)
        return {"kind": kind, "text": text, "tin": tin, "tout": tout,
                "stop": "max_tokens" if tout >= max_tokens else "end_turn", "ms": int((time.time() - t0) * 1000)}

    def count_tokens(self, model_id: str, inp: dict) -> int:
        """Input tokens an InvokeModel body or a Converse request would use (the stand-in's estimate:
        characters / CHARS_PER_TOKEN of the prompt and system text). Not metered by a PT's capacity."""
        _kind, _target, base_id, _meter = self.invoke_target(model_id, admit=False)
        st = _standin()
        if inp.get("invokeModel") is not None:
            raw = (inp["invokeModel"] or {}).get("body")
            try:
                body = json.loads(base64.b64decode(raw)) if isinstance(raw, str) else None
            except (ValueError, json.JSONDecodeError):
                body = None
            if not isinstance(body, dict):
                raise validation("input.invokeModel.body must be a JSON object (base64 on the wire).")
            try:
                system, prompt, _max = st.parse_invoke_body(st.invoke_shape_of(base_id), body)
            except ValueError as e:
                raise validation(f"Malformed input request: {e}") from None
        else:
            conv = inp["converse"] or {}
            msgs = conv.get("messages") or []
            if not msgs:
                raise validation("input.converse.messages must not be empty.")
            prompt = "\n".join(c.get("text", "") for m in msgs for c in m.get("content", []) if isinstance(c, dict))
            system = "\n".join(x.get("text", "") for x in (conv.get("system") or []) if isinstance(x, dict))
        n = st.approx_tokens(prompt) + (st.approx_tokens(system) if system else 0)
        return max(1, n)


def _base_for_plain(idx: dict, mid: str) -> str:
    """The customizable variant of a base id (emulator/facts/models.yaml ``customizable_variant``), else the id."""
    info = idx.get(mid)
    return (info["model"].customizable_variant if info else None) or mid
