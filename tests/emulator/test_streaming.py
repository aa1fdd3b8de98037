"""InvokeModelWithResponseStream and ConverseStream (issue 17): AWS event-stream framing that botocore's own
parser decodes, each chunk in its model family's streamed JSON shape, the same answer as the non-streaming call,
through a PT, a deployment and base models; errors before the stream are the operation's modelled errors.

The AWS CLI v1 (awscli 1.46, tests/emulator/test_aws_cli.py) has no invoke-model-with-response-stream or
converse-stream command (it omits event-stream operations), so there is no CLI row for them.
"""

from __future__ import annotations

import base64
import json

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError

from emulator import eventstream
from emulator.testing import boto3_clients, running_emulator
from tests.support.emulator import PROFILE, SPEED, code_of, job_request, prepare, wait

NOVA_BODY = {"messages": [{"role": "user", "content": [{"text": "question number 5 about topic 1"}]}],
             "system": [{"text": "Answer with the label."}], "inferenceConfig": {"maxTokens": 64}}
PROMPT = "Write one short sentence about the sea and the wind and the boats that sail there."


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with running_emulator(speed=SPEED, state_dir=tmp_path_factory.mktemp("stream")) as h:
        c = boto3_clients(h.url, max_attempts=1)
        inp = prepare(c)
        job = c.bedrock.create_model_customization_job(**job_request(inp))["jobArn"]
        model = wait(lambda: c.bedrock.get_model_customization_job(jobIdentifier=job), {"Completed"})["outputModelArn"]
        pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="stream",
                                                           modelId=model)["provisionedModelArn"]
        dep = c.bedrock.create_custom_model_deployment(modelDeploymentName="stream",
                                                       modelArn=model)["customModelDeploymentArn"]
        wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
        wait(lambda: c.bedrock.get_custom_model_deployment(customModelDeploymentIdentifier=dep), {"Active"})
        yield {"h": h, "c": c, "pt": pt, "dep": dep}


def _chunks(resp) -> list[dict]:
    assert resp["contentType"] == "application/json"
    out = []
    for ev in resp["body"]:
        assert set(ev) == {"chunk"}, ev
        out.append(json.loads(ev["chunk"]["bytes"]))
    return out


def test_a_pt_streams_the_custom_models_answer_in_novas_chunk_shape(world):
    c = world["c"]
    whole = json.loads(c.runtime.invoke_model(modelId=world["pt"], body=json.dumps(NOVA_BODY))["body"].read())
    chunks = _chunks(c.runtime.invoke_model_with_response_stream(modelId=world["pt"], body=json.dumps(NOVA_BODY)))
    kinds = [next(iter(k for k in ch if k != "amazon-bedrock-invocationMetrics")) for ch in chunks]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(kinds[1:-3]) == {"contentBlockDelta"}
    text = "".join(ch["contentBlockDelta"]["delta"]["text"] for ch in chunks[1:-3])
    assert text == whole["output"]["message"]["content"][0]["text"] and text.strip() == "label-1"
    assert chunks[-1]["metadata"]["usage"] == {k: whole["usage"][k] for k in ("inputTokens", "outputTokens")}
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == whole["usage"]["outputTokens"]


# model id -> (how to read a chunk's text, body); base models on demand, Llama through its profile
FAMILIES = {
    PROFILE: (lambda ch: ch.get("contentBlockDelta", {}).get("delta", {}).get("text", ""),
              {"messages": [{"role": "user", "content": [{"text": PROMPT}]}]}),
    "us.meta.llama3-1-8b-instruct-v1:0": (lambda ch: ch["generation"], {"prompt": PROMPT, "max_gen_len": 100}),
    "amazon.titan-text-express-v1": (lambda ch: ch["outputText"], {"inputText": PROMPT}),
    "cohere.command-text-v14": (lambda ch: ch.get("text", ""), {"prompt": PROMPT}),
}


@pytest.mark.parametrize("model_id", list(FAMILIES))
def test_base_models_stream_their_familys_chunks_and_the_same_text(world, model_id):
    c = world["c"]
    read, body = FAMILIES[model_id]
    whole = c.runtime.invoke_model(modelId=model_id, body=json.dumps(body))
    tin = int(whole["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"])
    tout = int(whole["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"])
    whole = json.loads(whole["body"].read())
    chunks = _chunks(c.runtime.invoke_model_with_response_stream(modelId=model_id, body=json.dumps(body)))
    assert len(chunks) >= 3
    streamed = "".join(read(ch) for ch in chunks)
    assert streamed and streamed == eventstream_text(model_id, whole)
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == (tin, tout)
    assert all("amazon-bedrock-invocationMetrics" not in ch for ch in chunks[:-1])
    if "llama" in model_id:
        assert chunks[0]["prompt_token_count"] == tin and chunks[-1]["stop_reason"] in ("stop", "length")
        assert chunks[-1]["generation_token_count"] == tout
    if "titan" in model_id:
        assert chunks[-1]["completionReason"] in ("FINISH", "LENGTH")
        assert chunks[-1]["totalOutputTextTokenCount"] == tout


def eventstream_text(model_id: str, whole: dict) -> str:
    """The text of the non-streaming InvokeModel answer, per family."""
    if "nova" in model_id:
        return whole["output"]["message"]["content"][0]["text"]
    if "llama" in model_id:
        return whole["generation"]
    if "titan" in model_id:
        return whole["results"][0]["outputText"]
    return whole["generations"][0]["text"]


@pytest.mark.parametrize("target", ["dep", "pt", "base"])
def test_converse_stream_events_in_order_with_the_converse_answer(world, target):
    c = world["c"]
    model_id = PROFILE if target == "base" else world[target]
    kw = {"modelId": model_id, "messages": NOVA_BODY["messages"], "system": NOVA_BODY["system"],
          "inferenceConfig": {"maxTokens": 64}}
    whole = c.runtime.converse(**kw)
    events = list(c.runtime.converse_stream(**kw)["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"], kinds
    assert set(kinds[1:-3]) == {"contentBlockDelta"} and len(kinds) >= 5
    assert events[0]["messageStart"] == {"role": "assistant"}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:-3])
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert all(e["contentBlockDelta"]["contentBlockIndex"] == 0 for e in events[1:-3])
    assert events[-2]["messageStop"]["stopReason"] == whole["stopReason"]
    assert events[-1]["metadata"]["usage"] == whole["usage"]
    assert isinstance(events[-1]["metadata"]["metrics"]["latencyMs"], int)


def test_errors_before_the_stream_are_the_operations_modelled_errors(world):
    c = world["c"]
    with pytest.raises(ClientError) as e:
        c.runtime.invoke_model_with_response_stream(modelId="vendor.no-such-model-v1:0", body=json.dumps(NOVA_BODY))
    assert code_of(e) == ("ValidationException", 400) and "model identifier is invalid" in str(e.value)
    missing = world["pt"][:-12] + "zzzzzzzzzzzz"
    with pytest.raises(ClientError) as e:
        c.runtime.converse_stream(modelId=missing, messages=NOVA_BODY["messages"])
    assert code_of(e) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        c.runtime.invoke_model_with_response_stream(modelId=world["pt"], body=b"{not json")
    assert code_of(e)[0] == "ValidationException"
    with pytest.raises(ClientError) as e:
        c.runtime.converse_stream(modelId=world["dep"], messages=[{"role": "assistant", "content": [{"text": "x"}]}])
    assert code_of(e)[0] == "ValidationException"


def test_a_pt_over_its_capacity_throttles_a_stream(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path / "s", pt_tokens_per_minute=60, pt_burst_seconds=1) as h:
        c = boto3_clients(h.url, max_attempts=1)
        pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="tiny",
                                                           modelId="amazon.nova-micro-v1:0:128k")["provisionedModelArn"]
        wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": PROMPT}]}]})
        list(c.runtime.invoke_model_with_response_stream(modelId=pt, body=body)["body"])   # drains the bucket
        with pytest.raises(ClientError) as e:
            list(c.runtime.invoke_model_with_response_stream(modelId=pt, body=body)["body"])
        assert code_of(e) == ("ThrottlingException", 429)


def test_the_framing_is_checked_by_botocores_own_parser():
    """Both CRCs are real: botocore decodes the emulator's messages, and refuses one with a flipped byte."""
    data = eventstream.invoke_stream("llama", "one two three four", 3, 4, truncated=False, latency_ms=7)
    buf = EventStreamBuffer()
    buf.add_data(data)
    msgs = list(buf)
    assert [m.headers[":event-type"] for m in msgs] == ["chunk", "chunk"]
    assert {m.headers[":message-type"] for m in msgs} == {"event"}
    assert {m.headers[":content-type"] for m in msgs} == {"application/json"}
    first = json.loads(base64.b64decode(json.loads(msgs[0].payload)["bytes"]))
    assert first == {"generation": "one two three ", "prompt_token_count": 3, "generation_token_count": 2,
                     "stop_reason": None}
    assert [h for h, _p in eventstream.decode_messages(data)] == [m.headers for m in msgs]
    for at in (5, 20, len(data) // 2):       # the prelude CRC, a header, the payload
        bad = bytearray(data)
        bad[at] ^= 0x01
        buf = EventStreamBuffer()
        buf.add_data(bytes(bad))
        with pytest.raises(Exception) as e:
            list(buf)
        assert isinstance(e.value, (ChecksumMismatch, ValueError)) or "Checksum" in type(e.value).__name__


def test_an_exception_event_is_decoded_by_boto3_as_the_modelled_error():
    """The exception framing (used for errors inside a stream) parses to the stream member's error."""
    import botocore.session
    from botocore.eventstream import EventStream
    from botocore.parsers import EventStreamJSONParser
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("ConverseStream").output_shape.members["stream"]

    class Raw:
        def __init__(self, data: bytes):
            self.data = data

        def stream(self):
            yield self.data

    data = eventstream.event("messageStart", {"role": "assistant"}) + \
        eventstream.exception("throttlingException", "Too many tokens")
    it = iter(EventStream(Raw(data), shape, EventStreamJSONParser(), "ConverseStream"))
    assert next(it) == {"messageStart": {"role": "assistant"}}
    with pytest.raises(Exception) as e:
        next(it)
    assert "throttlingException" in str(e.value) and "Too many tokens" in str(e.value)


def test_a_stream_is_written_event_by_event_so_the_first_arrives_before_the_last(tmp_path):
    """Not one body written at the end: with a 200 ms invoke latency the events after the first come 40 ms apart
    (emulator/server.py STREAM_PACE), chunked, so boto3 yields the first event well before the last is written —
    what a client that shows tokens as they come relies on."""
    import time

    with running_emulator(speed=SPEED, state_dir=tmp_path / "s", invoke_latency_ms=200) as h:
        c = boto3_clients(h.url, max_attempts=1)
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": PROMPT}]}],
                           "inferenceConfig": {"maxTokens": 200}})
        for call in (lambda: c.runtime.invoke_model_with_response_stream(modelId=PROFILE, body=body)["body"],
                     lambda: c.runtime.converse_stream(modelId=PROFILE, messages=json.loads(body)["messages"])[
                         "stream"]):
            arrived = []
            for _ in call():
                arrived.append(time.perf_counter())
            assert len(arrived) >= 5, len(arrived)
            spread = arrived[-1] - arrived[0]
            # n events, (n - 1) pauses of 40 ms: at least most of them between the first and the last arrival
            assert spread >= 0.75 * 0.04 * (len(arrived) - 1), (len(arrived), spread)
