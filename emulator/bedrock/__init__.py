"""The emulated Bedrock control plane + runtime, laid out like a moto service:

- ``models.py``     the resources (CustomizationJob, CustomModel, ProvisionedThroughput, CustomModelDeployment):
                    ``to_wire()``, time-driven state, the state file's form
- ``backend.py``    the control plane's behaviour, one ``BedrockBackend`` per account + Region (``BedrockBackends``)
- ``runtime.py``    bedrock-runtime's behaviour (``BedrockRuntimeBackend``, over the Region's control plane)
- ``responses.py``  request parsing and response serialization (``BedrockResponses``, ``Request``, ``Response``)
- ``urls.py``       the route table
- ``exceptions.py`` typed errors with the service model's HTTP statuses
- ``limits.py``     length/pattern/enum limits read from botocore's service model

Wire shapes follow botocore's service models ``bedrock`` 2023-04-20 and ``bedrock-runtime`` 2023-09-30
(docs/bedrock-facts.md). Lifecycles are evaluated lazily against the virtual clock (emulator/clock.py).
"""

from emulator.bedrock.backend import (
    GEO_PREFIXES,
    VALIDATION_METRICS_KEYS,
    BedrockBackend,
    BedrockBackends,
)
from emulator.bedrock.exceptions import STATUS, ApiError, validation
from emulator.bedrock.models import CustomizationJob, CustomModel, CustomModelDeployment, ProvisionedThroughput
from emulator.bedrock.responses import BedrockResponses, Request, Response
from emulator.bedrock.runtime import BedrockRuntimeBackend
from emulator.bedrock.urls import ROUTES, RUNTIME_OPS, match_bedrock

BedrockService = BedrockBackend     # the name before the moto-style layout

__all__ = ["GEO_PREFIXES", "ROUTES", "RUNTIME_OPS", "STATUS", "VALIDATION_METRICS_KEYS", "ApiError",
           "BedrockBackend", "BedrockBackends", "BedrockResponses", "BedrockRuntimeBackend", "BedrockService",
           "CustomModel", "CustomModelDeployment", "CustomizationJob", "ProvisionedThroughput", "Request",
           "Response", "match_bedrock", "validation"]
