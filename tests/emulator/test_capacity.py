"""A Provisioned Throughput has capacity (issue 17): tokens per minute per model unit, ThrottlingException beyond.

The bucket arithmetic is tested on a fake clock (no timed unit test); the wire behaviour on a PT whose
capacity is so small that one call puts it into debt for many seconds.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from emulator.capacity import Capacity, TokenBucket
from emulator.facts import load_facts
from emulator.testing import boto3_clients, running_emulator, start_subprocess
from tests.support.emulator import SPEED, code_of, wait

BASE = "amazon.nova-micro-v1:0:128k"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_admits_until_empty_then_refills_at_the_rate():
    clk = FakeClock()
    b = TokenBucket(tokens_per_minute=600, burst_seconds=2, clock=clk)   # 10 tokens/s, holds 20
    assert b.admit()
    b.charge(50)                       # one big call: admitted while the bucket held tokens, now 30 in debt
    assert not b.admit()
    assert b.retry_after_s() == pytest.approx(3.0)
    clk.t += 2.9
    assert not b.admit()
    clk.t += 0.2
    assert b.admit()
    clk.t += 1000                      # refill stops at the burst size
    b.charge(20)
    assert not b.admit()


def test_served_tokens_never_exceed_capacity_over_a_window():
    """Over T seconds a PT serves at most burst + rate*T (+ the last admitted call)."""
    clk = FakeClock()
    b = TokenBucket(tokens_per_minute=6000, burst_seconds=1, clock=clk)   # 100 tokens/s
    served = 0
    for _ in range(1000):              # a greedy client every 10 ms, 40-token calls, 10 s
        if b.admit():
            b.charge(40)
            served += 40
        clk.t += 0.01
    assert 100 * 10 <= served <= 100 + 100 * 10 + 40


def test_capacity_scales_with_model_units_and_zero_is_unlimited():
    c = Capacity(600, 1)
    assert c.bucket("a", 2).rate == pytest.approx(20.0)
    assert c.bucket("a", 2) is c.bucket("a", 2)
    assert Capacity(0, 1).bucket("a", 1) is None


def test_the_default_comes_from_the_facts_with_its_source(private_emu):
    cap = load_facts().pt_capacity
    assert cap.tokens_per_minute_per_model_unit > 0 and "emulator default" in cap.source
    h = private_emu.health()
    assert h["pt_tokens_per_minute"] == cap.tokens_per_minute_per_model_unit
    assert h["pt_burst_seconds"] == cap.burst_seconds


def _pt(c) -> str:
    pt = c.bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="cap",
                                                       modelId=BASE)["provisionedModelArn"]
    wait(lambda: c.bedrock.get_provisioned_model_throughput(provisionedModelId=pt), {"InService"})
    return pt


def _body(words: int = 400) -> str:
    return json.dumps({"messages": [{"role": "user", "content": [{"text": "word " * words}]}]})


def test_a_pt_over_capacity_answers_throttling_429_and_the_ledger_records_it(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path, pt_tokens_per_minute=60, pt_burst_seconds=1) as h:
        c = boto3_clients(h.url, max_attempts=1)
        pt = _pt(c)
        c.runtime.invoke_model(modelId=pt, body=_body())            # ~hundreds of tokens at 1 token/s: deep debt
        for call in (lambda: c.runtime.invoke_model(modelId=pt, body=_body(1)),
                     lambda: c.runtime.converse(modelId=pt, messages=[{"role": "user", "content": [{"text": "x"}]}])):
            with pytest.raises(ClientError) as e:
                call()
            assert code_of(e) == ("ThrottlingException", 429)
            assert "tokens per minute" in e.value.response["Error"]["Message"]
        throttled = [x for x in h.ledger()["calls"] if x["error"] == "ThrottlingException"]
        assert [x["operation"] for x in throttled] == ["InvokeModel", "Converse"]
        # base models on demand are not metered by the PT's bucket
        c.runtime.invoke_model(modelId="amazon.nova-micro-v1:0", body=_body(1))


def test_unlimited_capacity_serves_every_call(tmp_path):
    with running_emulator(speed=SPEED, state_dir=tmp_path, pt_tokens_per_minute=0) as h:
        c = boto3_clients(h.url, max_attempts=1)
        pt = _pt(c)
        for _ in range(5):
            c.runtime.invoke_model(modelId=pt, body=_body())


def test_subprocess_passes_the_capacity_knob(tmp_path):
    h = start_subprocess(speed=SPEED, state_dir=tmp_path, pt_tokens_per_minute=1234, pt_burst_seconds=3)
    try:
        assert (h.health()["pt_tokens_per_minute"], h.health()["pt_burst_seconds"]) == (1234, 3)
    finally:
        h.terminate()
