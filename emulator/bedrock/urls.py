"""The route table: HTTP method + path template -> operation name, from botocore's service models
(``bedrock`` 2023-04-20 for the control plane, ``bedrock-runtime`` 2023-09-30 for the runtime; docs/bedrock-facts.md
§2.1, §3). Path parameters arrive percent-decoded."""

from __future__ import annotations

import re
from urllib.parse import unquote

_SEG = r"(?P<{}>[^/]+)"


def _route(method: str, template: str, op: str) -> tuple[str, re.Pattern, str]:
    pattern = re.sub(r"\{(\w+)\}", lambda m: _SEG.format(m.group(1)), template)
    return method, re.compile("^" + pattern + "$"), op


def _runtime(suffix: str, op: str) -> tuple[str, re.Pattern, str]:
    # a model id may hold '/' (ARNs are percent-encoded by botocore, but not by every client)
    return "POST", re.compile(rf"^/model/(?P<modelId>.+)/{suffix}$"), op


ROUTES: list[tuple[str, re.Pattern, str]] = [
    _route("POST", "/model-customization-jobs", "CreateModelCustomizationJob"),
    _route("GET", "/model-customization-jobs", "ListModelCustomizationJobs"),
    _route("GET", "/model-customization-jobs/{jobIdentifier}", "GetModelCustomizationJob"),
    _route("POST", "/model-customization-jobs/{jobIdentifier}/stop", "StopModelCustomizationJob"),
    _route("GET", "/custom-models", "ListCustomModels"),
    _route("GET", "/custom-models/{modelIdentifier}", "GetCustomModel"),
    _route("DELETE", "/custom-models/{modelIdentifier}", "DeleteCustomModel"),
    _route("POST", "/provisioned-model-throughput", "CreateProvisionedModelThroughput"),
    _route("GET", "/provisioned-model-throughputs", "ListProvisionedModelThroughputs"),
    _route("GET", "/provisioned-model-throughput/{provisionedModelId}", "GetProvisionedModelThroughput"),
    _route("PATCH", "/provisioned-model-throughput/{provisionedModelId}", "UpdateProvisionedModelThroughput"),
    _route("DELETE", "/provisioned-model-throughput/{provisionedModelId}", "DeleteProvisionedModelThroughput"),
    _route("POST", "/model-customization/custom-model-deployments", "CreateCustomModelDeployment"),
    _route("GET", "/model-customization/custom-model-deployments", "ListCustomModelDeployments"),
    _route("GET", "/model-customization/custom-model-deployments/{customModelDeploymentIdentifier}",
           "GetCustomModelDeployment"),
    _route("DELETE", "/model-customization/custom-model-deployments/{customModelDeploymentIdentifier}",
           "DeleteCustomModelDeployment"),
    _route("GET", "/foundation-models", "ListFoundationModels"),
    _route("GET", "/foundation-models/{modelIdentifier}", "GetFoundationModel"),
    _route("POST", "/tagResource", "TagResource"),
    _route("POST", "/untagResource", "UntagResource"),
    _route("POST", "/listTagsForResource", "ListTagsForResource"),
    _route("PUT", "/logging/modelinvocations", "PutModelInvocationLoggingConfiguration"),
    _route("GET", "/logging/modelinvocations", "GetModelInvocationLoggingConfiguration"),
    _route("DELETE", "/logging/modelinvocations", "DeleteModelInvocationLoggingConfiguration"),
    _runtime("invoke", "InvokeModel"),
    _runtime("invoke-with-response-stream", "InvokeModelWithResponseStream"),
    _runtime("converse", "Converse"),
    _runtime("converse-stream", "ConverseStream"),
    _runtime("count-tokens", "CountTokens"),
]
RUNTIME_OPS = {"InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream", "CountTokens"}
RAW_BODY_OPS = {"InvokeModel", "InvokeModelWithResponseStream"}    # the body is the model's, not JSON we parse


def match_bedrock(method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
    for m, rx, op in ROUTES:
        if m != method:
            continue
        hit = rx.match(raw_path)
        if hit:
            return op, {k: unquote(v) for k, v in hit.groupdict().items()}
    return None
