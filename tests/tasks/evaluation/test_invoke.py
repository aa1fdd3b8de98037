"""tasks/evaluation/invoke.py: request bodies and response parsing per family, through a stubbed bedrock-runtime
client."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from tasks.evaluation.invoke import build_body, invoke_text

RESPONSES = {
    "nova": ({"output": {"message": {"role": "assistant", "content": [{"text": "refund"}]}},
              "usage": {"inputTokens": 11, "outputTokens": 2}}, (11, 2)),
    "claude": ({"content": [{"type": "text", "text": "refund"}],
                "usage": {"input_tokens": 12, "output_tokens": 3}}, (12, 3)),
    "llama": ({"generation": "refund", "prompt_token_count": 13, "generation_token_count": 4}, (13, 4)),
    "titan": ({"inputTextTokenCount": 14, "results": [{"outputText": "refund", "tokenCount": 5}]}, (14, 5)),
    "cohere": ({"generations": [{"text": "refund"}]}, (None, None)),
}


def _runtime():
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _stream(obj: dict) -> StreamingBody:
    raw = json.dumps(obj).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.mark.parametrize("shape", list(RESPONSES))
def test_each_family_round_trips_through_invoke_model(shape):
    client = _runtime()
    body, tokens = RESPONSES[shape]
    expected_body = build_body(shape, prompt="I want my money back", system="Classify.", max_tokens=16, temperature=0.0)
    with Stubber(client) as stub:
        stub.add_response("invoke_model", {"body": _stream(body), "contentType": "application/json"},
                          {"modelId": "arn:aws:bedrock:us-east-1:000000000000:provisioned-model/abcdefabcdef",
                           "body": json.dumps(expected_body).encode(), "contentType": "application/json",
                           "accept": "application/json"})
        res = invoke_text(client, "arn:aws:bedrock:us-east-1:000000000000:provisioned-model/abcdefabcdef", shape,
                          prompt="I want my money back", system="Classify.", max_tokens=16, temperature=0.0)
        stub.assert_no_pending_responses()
    assert res.text == "refund" and (res.input_tokens, res.output_tokens) == tokens and res.latency_ms >= 0


def test_request_bodies_follow_each_family_schema():
    nova = build_body("nova", prompt="p", system="s", max_tokens=8, temperature=0.2)
    assert nova == {"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "p"}]}],
                    "inferenceConfig": {"maxTokens": 8, "temperature": 0.2}, "system": [{"text": "s"}]}
    claude = build_body("claude", prompt="p", system=None, max_tokens=8, temperature=0.0)
    assert (claude["anthropic_version"] == "bedrock-2023-05-31"
            and claude["messages"] == [{"role": "user", "content": "p"}])
    assert "system" not in claude
    assert build_body("llama", prompt="p", system="s", max_tokens=8, temperature=0.0) == \
        {"prompt": "s\n\np", "max_gen_len": 8, "temperature": 0.0}
    assert build_body("titan", prompt="p", system=None, max_tokens=8, temperature=0.0)["textGenerationConfig"] == \
        {"maxTokenCount": 8, "temperature": 0.0}
    with pytest.raises(ValueError, match="unknown invoke shape 'gpt'"):
        build_body("gpt", prompt="p", system=None, max_tokens=8, temperature=0.0)


def test_service_errors_reach_the_caller_as_client_errors():
    client = _runtime()
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
        with pytest.raises(ClientError) as exc:
            invoke_text(client, "us.amazon.nova-micro-v1:0", "nova", prompt="p", system=None, max_tokens=8,
                        temperature=0)
    assert exc.value.response["Error"]["Code"] == "ThrottlingException"


def test_every_catalog_base_model_answers_through_its_inference_id(aws_env):
    """Evaluation calls the base model by tasks.catalog.inference_id: each one must be invocable with its
    family's body shape (a Titan / Cohere / Claude id the emulator did not know broke evaluation)."""
    import boto3

    from tasks.catalog import load_catalog
    from tasks.evaluation.invoke import invoke_text

    cat = load_catalog()
    runtime = boto3.client("bedrock-runtime")
    failures = {}
    for fam in cat.families.values():
        for mid in fam.model_ids:
            target = cat.inference_id(mid)
            try:
                res = invoke_text(runtime, target, fam.invoke_shape, prompt="Where is my card?", system=None,
                                  max_tokens=12, temperature=0.0)
                assert res.text and res.output_tokens
            except Exception as err:  # noqa: BLE001 - collected, reported together
                failures[target] = str(err)
    assert failures == {}
