"""Request parsing and response serialization, apart from behaviour (emulator/bedrock/backend.py), as moto's
``responses.py``: each operation reads its path, query and JSON body, checks what botocore does not (lengths,
patterns and enums read from botocore's model, emulator/bedrock/limits.py; S3 URIs; tag characters), calls the
Region's backend and writes the answer in the operation's output shape (the resources' ``to_wire()``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulator.bedrock.backend import MAX_TAGS_PER_RESOURCE, BedrockBackend
from emulator.bedrock.exceptions import TooManyTagsException, validation
from emulator.bedrock.limits import check, check_len, limit, parse_s3_uri
from emulator.bedrock.runtime import BedrockRuntimeBackend
from emulator.bedrock.urls import RUNTIME_OPS


@dataclass
class Request:
    """What the server hands to an operation."""
    operation: str
    region: str
    path_params: dict[str, str]
    query: dict[str, str]
    body: dict
    raw_body: bytes = b""
    headers: dict[str, str] | None = None


@dataclass
class Response:
    status: int = 200
    body: Any = None            # dict -> JSON; bytes -> raw
    headers: dict[str, str] | None = None
    frames: list[bytes] | None = None   # an event stream: written one frame at a time (chunked), not as ``body``


# -- parsing helpers -----------------------------------------------------------------------------------
def parse_tags(op: str, field: str, tags: Any) -> dict[str, str]:
    """A ``[{key, value}]`` tag list -> dict, each key/value checked against botocore's Tag limits."""
    if tags is None:
        return {}
    if not isinstance(tags, list):
        raise validation(f"{field} must be a list of {{key, value}}")
    out: dict[str, str] = {}
    for i, t in enumerate(tags):
        k, v = t.get("key"), t.get("value")
        if not isinstance(k, str) or not isinstance(v, str):
            raise validation(f"{field}[{i}] needs string 'key' and 'value' (lowercase member names)")
        check(op, f"{field}.key", k, field=f"{field}.{i + 1}.member.key")
        check(op, f"{field}.value", v, field=f"{field}.{i + 1}.member.value")
        out[k] = v
    if len(out) > MAX_TAGS_PER_RESOURCE:
        raise TooManyTagsException(f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags")
    return out


def parse_ts(field: str, v: str | None) -> float | None:
    if v is None:
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise validation(f"{field}: {v!r} is not an ISO-8601 timestamp") from None


def paginate(op: str, items: list[tuple[float, dict]], q: dict, key: str) -> dict:
    """Sorted (``sortBy``/``sortOrder``) and paged (``maxResults``/``nextToken``) list answer."""
    check(op, "sortBy", q.get("sortBy"))
    check(op, "sortOrder", q.get("sortOrder"))
    items = sorted(items, key=lambda x: x[0], reverse=q.get("sortOrder", "Descending") == "Descending")
    lim = limit(op, "maxResults")
    max_results = int(q.get("maxResults") or 100)
    if not (lim.min or 1) <= max_results <= (lim.max or 1000):
        raise validation(f"maxResults must be between {lim.min or 1} and {lim.max or 1000}")
    start = 0
    if q.get("nextToken"):
        try:
            start = int(base64.b64decode(q["nextToken"]).decode())
        except Exception:  # noqa: BLE001
            raise validation("Invalid nextToken") from None
    page = items[start:start + max_results]
    out: dict = {key: [it for _t, it in page]}
    if start + max_results < len(items):
        out["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
    return out


def _check_token(op: str, p: dict) -> None:
    if p.get("clientRequestToken"):
        check(op, "clientRequestToken", p["clientRequestToken"])


def _eventstream():
    from emulator import eventstream
    return eventstream


def _stand_in(kind: str) -> str:
    return f"{kind} stand-in model (bedrock-forge emulator)"


# -- the operations --------------------------------------------------------------------------------------
class BedrockResponses:
    """One method per operation served (the route table is emulator/bedrock/urls.py)."""

    MUTATING = {"CreateModelCustomizationJob", "StopModelCustomizationJob", "DeleteCustomModel",
                "CreateProvisionedModelThroughput", "UpdateProvisionedModelThroughput",
                "DeleteProvisionedModelThroughput", "CreateCustomModelDeployment", "DeleteCustomModelDeployment",
                "TagResource", "UntagResource", "PutModelInvocationLoggingConfiguration",
                "DeleteModelInvocationLoggingConfiguration"}

    def __init__(self, backend: BedrockBackend):
        self.backend = backend
        self.runtime = BedrockRuntimeBackend(backend)

    def dispatch(self, r: Request) -> Response:
        service = "bedrock-runtime" if r.operation in RUNTIME_OPS else "bedrock"
        for name, value in r.path_params.items():   # an over-long identifier is refused, not looked up
            lim = limit(r.operation, name, service)
            if lim.min is not None or lim.max is not None:
                check_len(name, value, lim.min, lim.max)
        return getattr(self, r.operation)(r)

    # -- foundation models -----------------------------------------------------------------------
    def ListFoundationModels(self, r: Request) -> Response:
        q, op = r.query, r.operation
        for k in ("byCustomizationType", "byOutputModality", "byInferenceType"):
            check(op, k, q.get(k))
        return Response(200, {"modelSummaries": self.backend.list_foundation_models(
            by_customization_type=q.get("byCustomizationType"), by_provider=q.get("byProvider"),
            by_output_modality=q.get("byOutputModality"), by_inference_type=q.get("byInferenceType"))})

    def GetFoundationModel(self, r: Request) -> Response:
        return Response(200, {"modelDetails": self.backend.get_foundation_model(r.path_params["modelIdentifier"])})

    # -- jobs --------------------------------------------------------------------------------------
    def CreateModelCustomizationJob(self, r: Request) -> Response:
        p, op = r.body, r.operation
        _check_token(op, p)
        for k in ("jobName", "customModelName", "roleArn"):
            hint = {"jobName": "letters, digits, '-', '+', '.'; no underscore",
                    "customModelName": "alphanumerics with single '_' or '-' between; no dot"}.get(k, "")
            check(op, k, p.get(k, ""), hint=hint)
        check(op, "customizationType", p.get("customizationType") or "FINE_TUNING")
        train_uri = (p.get("trainingDataConfig") or {}).get("s3Uri")
        if not train_uri:
            raise validation("trainingDataConfig.s3Uri is required (invocation-log sources are not emulated).")
        parse_s3_uri("trainingDataConfig.s3Uri", train_uri)
        validators = ((p.get("validationDataConfig") or {}).get("validators")) or []
        most = limit(op, "validationDataConfig.validators").max or 10
        if len(validators) > most:
            raise validation(f"validationDataConfig.validators: at most {most} validators")  # bedrock-facts §2.2
        for i, v in enumerate(validators):
            parse_s3_uri(f"validationDataConfig.validators.{i + 1}.s3Uri", v.get("s3Uri"))
        parse_s3_uri("outputDataConfig.s3Uri", (p.get("outputDataConfig") or {}).get("s3Uri"))
        tags = parse_tags(op, "jobTags", p.get("jobTags"))
        parse_tags(op, "customModelTags", p.get("customModelTags"))
        return Response(201, {"jobArn": self.backend.create_model_customization_job(p, tags)})

    def GetModelCustomizationJob(self, r: Request) -> Response:
        b = self.backend
        with b.lock:
            j = b.get_job(r.path_params["jobIdentifier"])
            return Response(200, j.to_wire(b.now(), b.iso))

    def ListModelCustomizationJobs(self, r: Request) -> Response:
        q, op, b = r.query, r.operation, self.backend
        check(op, "statusEquals", q.get("statusEquals"))
        jobs = b.list_jobs(status=q.get("statusEquals"), name_contains=q.get("nameContains"),
                           after=parse_ts("creationTimeAfter", q.get("creationTimeAfter")),
                           before=parse_ts("creationTimeBefore", q.get("creationTimeBefore")))
        now = b.now()
        return Response(200, paginate(op, [(j.created, j.to_summary(now, b.iso)) for j in jobs], q,
                                      "modelCustomizationJobSummaries"))

    def StopModelCustomizationJob(self, r: Request) -> Response:
        self.backend.stop_job(r.path_params["jobIdentifier"])
        return Response(200, {})

    # -- custom models -----------------------------------------------------------------------------
    def GetCustomModel(self, r: Request) -> Response:
        return Response(200, self.backend.get_model(r.path_params["modelIdentifier"]).to_wire(self.backend.iso))

    def ListCustomModels(self, r: Request) -> Response:
        q, op, b = r.query, r.operation, self.backend
        check(op, "modelStatus", q.get("modelStatus"))
        models = b.list_models(name_contains=q.get("nameContains"), base_model_arn=q.get("baseModelArnEquals"),
                               foundation_model_arn=q.get("foundationModelArnEquals"), status=q.get("modelStatus"),
                               is_owned=q.get("isOwned"),
                               after=parse_ts("creationTimeAfter", q.get("creationTimeAfter")),
                               before=parse_ts("creationTimeBefore", q.get("creationTimeBefore")))
        return Response(200, paginate(op, [(m.created, m.to_summary(b.iso, b.account_id)) for m in models], q,
                                      "modelSummaries"))

    def DeleteCustomModel(self, r: Request) -> Response:
        self.backend.delete_model(r.path_params["modelIdentifier"])
        return Response(200, {})

    # -- provisioned throughput --------------------------------------------------------------------
    def CreateProvisionedModelThroughput(self, r: Request) -> Response:
        p, op = r.body, r.operation
        _check_token(op, p)
        check(op, "provisionedModelName", p.get("provisionedModelName", ""))
        check(op, "commitmentDuration", p.get("commitmentDuration"))
        if int(p.get("modelUnits", 0)) < 1:
            raise validation("modelUnits must be at least 1")
        tags = parse_tags(op, "tags", p.get("tags"))
        return Response(201, {"provisionedModelArn": self.backend.create_pt(p, tags)})

    def GetProvisionedModelThroughput(self, r: Request) -> Response:
        return Response(200, self.backend.get_pt(r.path_params["provisionedModelId"]).to_wire(self.backend.iso))

    def ListProvisionedModelThroughputs(self, r: Request) -> Response:
        q, op, b = r.query, r.operation, self.backend
        check(op, "statusEquals", q.get("statusEquals"))
        pts = b.list_pts(status=q.get("statusEquals"), model_arn=q.get("modelArnEquals"),
                         name_contains=q.get("nameContains"),
                         after=parse_ts("creationTimeAfter", q.get("creationTimeAfter")),
                         before=parse_ts("creationTimeBefore", q.get("creationTimeBefore")))
        return Response(200, paginate(op, [(p.created, p.to_wire(b.iso, summary=True)) for p in pts], q,
                                      "provisionedModelSummaries"))

    def UpdateProvisionedModelThroughput(self, r: Request) -> Response:
        b, op = r.body, r.operation
        if b.get("desiredProvisionedModelName"):
            check(op, "desiredProvisionedModelName", b["desiredProvisionedModelName"])
        self.backend.update_pt(r.path_params["provisionedModelId"],
                               desired_name=b.get("desiredProvisionedModelName"),
                               desired_model_id=b.get("desiredModelId"))
        return Response(200, {})

    def DeleteProvisionedModelThroughput(self, r: Request) -> Response:
        self.backend.delete_pt(r.path_params["provisionedModelId"])
        return Response(200, {})

    # -- custom model deployments ------------------------------------------------------------------
    def CreateCustomModelDeployment(self, r: Request) -> Response:
        p, op = r.body, r.operation
        _check_token(op, p)
        check(op, "modelDeploymentName", p.get("modelDeploymentName", ""))
        if p.get("description") is not None:
            lim = limit(op, "description")
            check_len("description", p["description"], lim.min, lim.max)
        tags = parse_tags(op, "tags", p.get("tags"))
        return Response(202, {"customModelDeploymentArn": self.backend.create_deployment(p, tags)})

    def GetCustomModelDeployment(self, r: Request) -> Response:
        d = self.backend.get_deployment(r.path_params["customModelDeploymentIdentifier"])
        return Response(200, d.to_wire(self.backend.iso))

    def ListCustomModelDeployments(self, r: Request) -> Response:
        q, op, b = r.query, r.operation, self.backend
        check(op, "statusEquals", q.get("statusEquals"))
        deps = b.list_deployments(status=q.get("statusEquals"), model_arn=q.get("modelArnEquals"),
                                  name_contains=q.get("nameContains"),
                                  after=parse_ts("createdAfter", q.get("createdAfter")),
                                  before=parse_ts("createdBefore", q.get("createdBefore")))
        return Response(200, paginate(op, [(d.created, d.to_summary(b.iso)) for d in deps], q,
                                      "modelDeploymentSummaries"))

    def DeleteCustomModelDeployment(self, r: Request) -> Response:
        self.backend.delete_deployment(r.path_params["customModelDeploymentIdentifier"])
        return Response(200, {})

    # -- tags ----------------------------------------------------------------------------------------
    def _arn(self, r: Request) -> str:
        arn = r.body.get("resourceARN")
        if not isinstance(arn, str) or not arn:
            raise validation("resourceARN is required")
        lim = limit(r.operation, "resourceARN")
        check_len("resourceARN", arn, lim.min, lim.max)
        return arn

    def TagResource(self, r: Request) -> Response:
        arn = self._arn(r)
        self.backend.tag_resource(arn, parse_tags(r.operation, "tags", r.body.get("tags")))
        return Response(200, {})

    def UntagResource(self, r: Request) -> Response:
        self.backend.untag_resource(self._arn(r), r.body.get("tagKeys") or [])
        return Response(200, {})

    def ListTagsForResource(self, r: Request) -> Response:
        tags = self.backend.list_tags(self._arn(r))
        return Response(200, {"tags": [{"key": k, "value": v} for k, v in tags.items()]})

    # -- runtime ---------------------------------------------------------------------------------------
    def InvokeModel(self, r: Request) -> Response:
        a = self.runtime.invoke(r.path_params["modelId"], r.raw_body)
        from emulator import standin
        out = standin.format_invoke_response(a["shape"], a["text"], a["tin"], a["tout"])
        return Response(200, json.dumps(out).encode(), {
            "Content-Type": "application/json", "X-Amzn-Bedrock-Input-Token-Count": str(a["tin"]),
            "X-Amzn-Bedrock-Output-Token-Count": str(a["tout"]),
            "X-Emulator-Stand-In": f"{_stand_in(a['kind'])}, not a real model"})

    def InvokeModelWithResponseStream(self, r: Request) -> Response:
        """The InvokeModel answer as an event stream of ``chunk`` events, each ``{"bytes": <the family's streamed
        JSON>}`` (emulator/eventstream.py). Errors before the first byte (an unknown model, a bad body, a PT over
        its capacity) are ordinary error responses, as for InvokeModel."""
        a = self.runtime.invoke(r.path_params["modelId"], r.raw_body)
        es = _eventstream()
        frames = es.invoke_frames(a["shape"], a["text"], a["tin"], a["tout"], truncated=a["truncated"],
                                  latency_ms=a["ms"])
        return Response(200, None, {"Content-Type": es.CONTENT_TYPE, "X-Amzn-Bedrock-Content-Type": "application/json",
                                    "X-Emulator-Stand-In": f"{_stand_in(a['kind'])}, not a real model"},
                        frames=frames)

    def _converse(self, r: Request) -> dict:
        b = r.body
        msgs = b.get("messages") or []
        if not msgs:
            raise validation("A conversation must start with a user message (messages is empty).")
        if msgs[-1].get("role") != "user":
            raise validation("A conversation must end with a user message.")
        if msgs[0].get("role") != "user":
            raise validation("A conversation must start with a user message.")
        prompt = "\n".join(c.get("text", "") for c in msgs[-1].get("content", []) if isinstance(c, dict))
        system = "\n".join(s.get("text", "") for s in (b.get("system") or [])
                           if isinstance(s, dict) and s.get("text")) or None
        ic = b.get("inferenceConfig") or {}
        for k in ("temperature", "topP"):
            if k in ic and not 0 <= float(ic[k]) <= 1:
                raise validation(f"inferenceConfig.{k} must be between 0 and 1")
        return self.runtime.converse(r.path_params["modelId"], system=system, prompt=prompt,
                                     max_tokens=int(ic.get("maxTokens") or 512))

    def Converse(self, r: Request) -> Response:
        a = self._converse(r)
        return Response(200, {
            "output": {"message": {"role": "assistant", "content": [{"text": a["text"]}]}},
            "stopReason": a["stop"],
            "usage": {"inputTokens": a["tin"], "outputTokens": a["tout"], "totalTokens": a["tin"] + a["tout"]},
            "metrics": {"latencyMs": a["ms"]},
            "additionalModelResponseFields": {"standIn": _stand_in(a["kind"])},
        })

    def ConverseStream(self, r: Request) -> Response:
        """The Converse answer as an event stream: messageStart, contentBlockDelta..., contentBlockStop,
        messageStop, metadata (emulator/eventstream.py)."""
        a = self._converse(r)
        es = _eventstream()
        frames = es.converse_frames(a["text"], a["tin"], a["tout"], stop_reason=a["stop"], latency_ms=a["ms"],
                                    additional={"standIn": _stand_in(a["kind"])})
        return Response(200, None, {"Content-Type": es.CONTENT_TYPE}, frames=frames)

    def CountTokens(self, r: Request) -> Response:
        inp = r.body.get("input")
        if not isinstance(inp, dict) or len([k for k in inp if inp.get(k) is not None]) != 1:
            raise validation("input must set exactly one of invokeModel, converse")
        return Response(200, {"inputTokens": self.runtime.count_tokens(r.path_params["modelId"], inp)})

    # -- model invocation logging ------------------------------------------------------------------
    def PutModelInvocationLoggingConfiguration(self, r: Request) -> Response:
        cfg, op = r.body.get("loggingConfig"), r.operation
        if not isinstance(cfg, dict):
            raise validation("loggingConfig is required")
        s3, cw = cfg.get("s3Config"), cfg.get("cloudWatchConfig")
        if not s3 and not cw:
            raise validation("loggingConfig needs a destination: s3Config and/or cloudWatchConfig.")
        if s3:
            check(op, "loggingConfig.s3Config.bucketName", s3.get("bucketName") or "")
            check(op, "loggingConfig.s3Config.keyPrefix", s3.get("keyPrefix") or "")
        if cw:
            check(op, "loggingConfig.cloudWatchConfig.logGroupName", cw.get("logGroupName") or "")
            check(op, "loggingConfig.cloudWatchConfig.roleArn", cw.get("roleArn") or "")
        self.backend.put_logging_config(cfg)
        return Response(200, {})

    def GetModelInvocationLoggingConfiguration(self, r: Request) -> Response:
        cfg = self.backend.get_logging_config()
        return Response(200, {"loggingConfig": cfg} if cfg else {})

    def DeleteModelInvocationLoggingConfiguration(self, r: Request) -> Response:
        self.backend.delete_logging_config()
        return Response(200, {})



