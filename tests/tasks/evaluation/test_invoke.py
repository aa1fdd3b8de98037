"""tasks/evaluation/invoke.py: request bodies and response parsing per family, through a stubbed bedrock-runtime
client."""

from __future__ import annotations

import io
import json
import threading
import time

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
    from datetime import UTC, datetime

    import boto3

    from tasks.catalog import load_catalog
    from tasks.evaluation.invoke import invoke_text

    cat = load_catalog()
    runtime = boto3.client("bedrock-runtime")
    today = datetime.now(UTC).date().isoformat()
    failures, past_eol = {}, []
    for fam in cat.families.values():
        for mid in fam.model_ids:
            target = cat.inference_id(mid)
            lc = cat.lifecycle_of(mid)
            if lc is not None and (lc.status_in("us-east-1") == "EOL" or (lc.eol_date or "9999") < today):
                past_eol.append(mid)      # refused by AWS (and the pre-flight): not something evaluation calls
                continue
            try:
                res = invoke_text(runtime, target, fam.invoke_shape, prompt="Where is my card?", system=None,
                                  max_tokens=12, temperature=0.0)
                assert res.text and res.output_tokens
            except Exception as err:  # noqa: BLE001 - collected, reported together
                failures[target] = str(err)
    assert failures == {}
    assert len(past_eol) < sum(len(f.model_ids) for f in cat.families.values()), "most models are still served"


# ---------------------------------------------------------------------------------------------
# AIMD concurrency (issue 17): the limiter step by step, a fake-clock simulation, and the real loop


from tasks.evaluation.invoke import AimdLimiter, limited_call, limiter_for  # noqa: E402


def _throttle(op: str = "InvokeModel", retries: int = 0) -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "Too many tokens"},
                        "ResponseMetadata": {"HTTPStatusCode": 429, "RetryAttempts": retries}}, op)


def _fill(lim: AimdLimiter, n: int) -> list[int]:
    return [t for t in (lim.try_acquire() for _ in range(n)) if t is not None]


def test_limiter_starts_at_the_configured_concurrency_and_blocks_beyond_it():
    lim = AimdLimiter(8)
    assert len(_fill(lim, 20)) == 8 and lim.in_flight == 8 and lim.try_acquire() is None
    with pytest.raises(TimeoutError):
        lim.acquire(timeout=0)
    with pytest.raises(ValueError):
        AimdLimiter(0)
    with pytest.raises(ValueError):
        AimdLimiter(4, start=5)


def test_a_throttle_halves_once_per_episode_with_floor_one():
    lim = AimdLimiter(8)
    tickets = _fill(lim, 8)
    for t in tickets:               # all 8 in-flight calls of the same episode are throttled
        lim.release(t, "throttled")
    assert lim.limit == 4 and lim.decreases == 1 and lim.throttles == 8
    for expected in (2, 1, 1):      # each new episode halves again, never below 1
        t = _fill(lim, 8)
        assert len(t) == lim.limit
        for x in t:
            lim.release(x, "throttled")
        assert lim.limit == expected
    assert lim.lowest == 1


def test_a_throttle_halves_the_concurrency_in_flight_not_an_unused_limit():
    lim = AimdLimiter(256)          # the shared default limiter: the caller's pool bounds the calls
    t = _fill(lim, 10)
    lim.release(t[0], "throttled")
    assert lim.limit == 5


def test_successes_add_one_per_window_only_while_the_limit_is_reached_up_to_the_maximum():
    lim = AimdLimiter(6, start=2, window=2)
    for _ in range(10):
        for t in _fill(lim, lim.limit):
            lim.release(t, "ok")
    assert lim.limit == 6 and lim.increases == 4
    idle = AimdLimiter(6, start=2, window=2)
    for _ in range(10):             # one call at a time: the limit of 2 is never reached, so it does not grow
        lim_t = idle.acquire()
        idle.release(lim_t, "ok")
    assert idle.limit == 2
    other = AimdLimiter(4, start=2)
    for _ in range(5):              # a non-capacity error neither decreases nor counts as a success
        other.release(other.acquire(), "error")
    assert other.stats() == {"limit": 2, "maximum": 4, "lowest": 2, "throttles": 0, "decreases": 0, "increases": 0}
    with pytest.raises(RuntimeError):
        other.release(0, "ok")


def _simulate(lim: AimdLimiter, n: int, capacity, retries: int = 20):
    """Fake clock: one call lasts one tick; the fake model serves at most ``capacity(tick)`` concurrent calls
    and throttles the rest; a throttled example waits one tick (backoff) and is retried."""
    pending = list(range(n))
    answered: dict[int, int] = {}
    errors: dict[int, str] = {}
    attempts = dict.fromkeys(pending, 0)
    trace = []
    tick = 0
    while pending:
        tick += 1
        started = []
        while pending and (t := lim.try_acquire()) is not None:
            started.append((pending.pop(0), t))
        retry = []
        for k, (ex, t) in enumerate(started):
            attempts[ex] += 1
            if k < capacity(tick):
                lim.release(t, "ok")
                answered[ex] = tick
            else:
                lim.release(t, "throttled")
                (retry if attempts[ex] <= retries else []).append(ex)
                if attempts[ex] > retries:
                    errors[ex] = "retries exhausted"
        pending = retry + pending
        trace.append((tick, len(started), min(len(started), capacity(tick)), lim.limit))
    return answered, errors, trace


def test_aimd_converges_near_the_capacity_and_loses_no_example():
    K = 10
    lim = AimdLimiter(64, start=64)
    answered, errors, trace = _simulate(lim, 3000, lambda tick: K)
    assert errors == {} and sorted(answered) == list(range(3000))   # every example answered, once
    steady = trace[20:-5]
    assert all(K // 2 <= limit <= K + 1 for _, _, _, limit in steady)
    served = sum(s for _, _, s, _ in steady) / len(steady)
    assert served >= 0.7 * K          # AIMD's saw-tooth between K/2 and K: about 3/4 of K on average
    throttled = sum(st - s for _, st, s, _ in steady)
    assert throttled <= len(steady) / 2   # at most one over-limit probe per couple of rounds, not a storm


def test_aimd_recovers_to_the_maximum_after_throttling_stops():
    lim = AimdLimiter(32, start=32)
    answered, errors, trace = _simulate(lim, 4000, lambda tick: 3 if tick < 40 else 10_000)
    assert errors == {} and len(answered) == 4000
    assert min(limit for tick, _, _, limit in trace if 10 <= tick < 40) <= 3
    assert trace[-1][3] == 32 and lim.increases >= 29


class _CapacityRuntime:
    """A bedrock-runtime stand-in that serves at most ``k`` concurrent calls and throttles the rest."""

    def __init__(self, k: int, hold_s: float = 0.002):
        self.k, self.hold, self.now, self.peak, self.calls, self.throttled = k, hold_s, 0, 0, 0, 0
        self.lock = threading.Lock()

    def invoke_model(self, modelId, body, contentType, accept):  # noqa: N803 - boto3's keyword names
        with self.lock:
            self.calls += 1
            self.now += 1
            self.peak = max(self.peak, self.now)
            over = self.now > self.k
            if over:
                self.now -= 1
                self.throttled += 1
        if over:
            raise _throttle()
        try:
            time.sleep(self.hold)
            prompt = json.loads(body)["messages"][0]["content"][0]["text"]
            return {"body": _stream({"output": {"message": {"content": [{"text": f"re: {prompt}"}]}},
                                     "usage": {"inputTokens": 3, "outputTokens": 2}}),
                    "ResponseMetadata": {"RetryAttempts": 0, "HTTPHeaders": {}}}
        finally:
            with self.lock:
                self.now -= 1


@pytest.mark.timeout(120)
def test_the_evaluation_loop_adapts_to_capacity_and_answers_every_example():
    from tasks.data.formats import Example
    from tasks.evaluate import default_is_retryable, run_comparison

    base, custom = _CapacityRuntime(k=3), _CapacityRuntime(k=3)
    examples = [Example(system=None, prompt=f"q{i}", completion="a") for i in range(150)]
    limiters = {"base": AimdLimiter(16), "custom": AimdLimiter(16)}

    def make(name, rt):
        return lambda ex: invoke_text(rt, "arn:pt/" + name, "nova", prompt=ex.prompt, max_tokens=8,
                                      limiter=limiters[name])

    df = run_comparison(examples, make("base", base), make("custom", custom), concurrency=16,
                        requests_per_second=None, retries=8, is_retryable=default_is_retryable,
                        backoff_base=0.001, backoff_cap=0.01)
    assert df["base_error"].isna().all() and df["custom_error"].isna().all()        # no example lost
    assert df["base_output"].tolist() == [f"re: q{i}" for i in range(150)] == df["custom_output"].tolist()
    for name, rt in (("base", base), ("custom", custom)):
        lim = limiters[name]
        assert lim.decreases >= 1 and lim.lowest <= 3 and lim.in_flight == 0
        # a fixed pool of 16 would offer 16 concurrent calls; AIMD keeps throttles to a fraction of the calls
        assert rt.throttled < rt.calls / 2


def test_calls_to_one_target_share_a_limiter_and_other_targets_do_not():
    rt = _CapacityRuntime(k=100)
    a, b = limiter_for(rt, "arn:pt/a"), limiter_for(rt, "arn:pt/b")
    assert a is limiter_for(rt, "arn:pt/a") and a is not b and a is not limiter_for(_CapacityRuntime(1), "arn:pt/a")
    assert a.maximum == 256
    invoke_text(rt, "arn:pt/a", "nova", prompt="p", max_tokens=4)
    assert a.in_flight == 0 and a.stats()["throttles"] == 0


def test_a_success_botocore_had_to_retry_counts_as_throttling_and_errors_pass_through():
    lim = AimdLimiter(8)
    held = _fill(lim, 3)
    assert limited_call(lim, lambda: {"ResponseMetadata": {"RetryAttempts": 2}}) == \
        {"ResponseMetadata": {"RetryAttempts": 2}}
    assert lim.limit == 2 and lim.in_flight == 3    # halved from the 4 calls in flight; its slot given back
    for t in held:
        lim.release(t, "error")
    with pytest.raises(ClientError):                # a new episode: a throttle raised by the call halves again
        limited_call(lim, lambda: (_ for _ in ()).throw(_throttle()))
    assert lim.limit == 1 and lim.decreases == 2 and lim.in_flight == 0
    validation = ClientError({"Error": {"Code": "ValidationException", "Message": "bad"}}, "InvokeModel")
    before = lim.stats()
    with pytest.raises(ClientError):
        limited_call(lim, lambda: (_ for _ in ()).throw(validation))
    assert lim.stats() == before and lim.in_flight == 0


def test_llama_chat_template_wraps_system_and_user_and_leaves_other_shapes_alone():
    body = build_body("llama", prompt="Where is my card?", system="Classify.", max_tokens=8, temperature=0.0,
                      template="chat")
    assert body["prompt"] == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nClassify.<|eot_id|>"
                              "<|start_header_id|>user<|end_header_id|>\n\nWhere is my card?<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    no_system = build_body("llama", prompt="p", system=None, max_tokens=8, temperature=0.0, template="chat")
    assert no_system["prompt"].startswith("<|begin_of_text|><|start_header_id|>user") and "system" not in \
        no_system["prompt"]
    for shape in ("nova", "claude", "titan", "cohere"):
        assert build_body(shape, prompt="p", system="s", max_tokens=8, temperature=0.0, template="chat") == \
            build_body(shape, prompt="p", system="s", max_tokens=8, temperature=0.0)
    with pytest.raises(ValueError, match="unknown prompt template 'jinja'"):
        build_body("llama", prompt="p", system=None, max_tokens=8, temperature=0.0, template="jinja")


def test_base_and_custom_get_the_same_templated_body():
    seen = []

    class Rt:
        def invoke_model(self, modelId, body, contentType, accept):  # noqa: N803
            seen.append((modelId, json.loads(body)))
            return {"body": _stream({"generation": "x", "prompt_token_count": 1, "generation_token_count": 1}),
                    "ResponseMetadata": {}}

    rt = Rt()
    for target in ("us.meta.llama3-2-1b-instruct-v1:0", "arn:aws:bedrock:us-west-2:123456789012:provisioned-model/x"):
        invoke_text(rt, target, "llama", prompt="q", system="s", max_tokens=4, template="chat")
    assert seen[0][1] == seen[1][1] and seen[0][1]["prompt"].startswith("<|begin_of_text|>")
