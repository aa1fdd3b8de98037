"""The emulator's model-side pieces: data checks, metric files, invoke bodies, stand-in models.

No HTTP here: these are the plain functions the emulator server calls.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emulator import datacheck, metricfiles, standin
from tests.support import shared_dir

NOVA = "amazon.nova-micro-v1:0:128k"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
TITAN = "amazon.titan-text-express-v1:0:8k"
LLAMA31 = "meta.llama3-1-8b-instruct-v1:0:128k"
LLAMA32 = "meta.llama3-2-1b-instruct-v1:0:128k"
COHERE = "cohere.command-light-text-v14:7:4k"
BANKING = str((shared_dir() or Path("/nonexistent")) / "datasets/banking77")


def jsonl(records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def pc(i=0):
    return {"prompt": f"question {i}?", "completion": f"answer {i}"}


def claude(i=0, **kw):
    rec = {"system": "You are a bank assistant.",
           "messages": [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"answer {i}"}]}
    rec.update(kw)
    return rec


def conv(i=0, user=None, **kw):
    rec = {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Classify the query."}],
           "messages": [{"role": "user", "content": [{"text": user or f"question {i}?"}]},
                        {"role": "assistant", "content": [{"text": f"answer {i}"}]}]}
    rec.update(kw)
    return rec


# --------------------------------------------------------------------------------------------
# CreateModelCustomizationJob checks


@pytest.mark.parametrize("model,ctype,hp", [
    (NOVA, "FINE_TUNING", {"epochCount": "2", "learningRate": "0.00001", "learningRateWarmupSteps": "10"}),
    (HAIKU, "FINE_TUNING", {"epochCount": "10", "batchSize": "4", "learningRateMultiplier": "0.1"}),
    (TITAN, "CONTINUED_PRE_TRAINING", {"epochCount": "1", "batchSize": "64"}),
    (LLAMA31, "FINE_TUNING", {"epochCount": "5.0", "learningRate": "1e-4"}),
    ("arn:aws:bedrock:us-east-1::foundation-model/" + NOVA, "FINE_TUNING", {}),
    (NOVA, "DISTILLATION", {}),
])
def test_create_request_accepts_valid_requests(model, ctype, hp):
    assert datacheck.check_create_request(model, ctype, hp) is None


@pytest.mark.parametrize("model,ctype,hp,expected", [
    ("amazon.nova-mikro-v1:0:128k", "FINE_TUNING", {}, ["model identifier is invalid", "amazon.nova-mikro"]),
    ("amazon.nova-micro-v1:0", "FINE_TUNING", {}, ["not customizable", NOVA]),
    (HAIKU, "CONTINUED_PRE_TRAINING", {}, ["does not support customization type CONTINUED_PRE_TRAINING",
                                           "FINE_TUNING"]),
    (NOVA, "FINETUNE", {}, ["Value 'FINETUNE' at 'customizationType'", "FINE_TUNING"]),
    (NOVA, "FINE_TUNING", {"epochs": "2"}, ["Unknown hyperparameter 'epochs'", "epochCount"]),
    (HAIKU, "FINE_TUNING", {"learningRate": "0.0001"}, ["Unknown hyperparameter 'learningRate'",
                                                        "learningRateMultiplier"]),
    (NOVA, "FINE_TUNING", {"epochCount": "two"}, ["'two'", "epochCount", "must be an integer"]),
    (NOVA, "FINE_TUNING", {"epochCount": "2.5"}, ["'2.5'", "must be an integer"]),
    (NOVA, "FINE_TUNING", {"learningRate": "fast"}, ["'fast'", "learningRate", "must be a number"]),
    (NOVA, "FINE_TUNING", {"epochCount": "6"}, ["epochCount=6 is out of range", "[1, 5]"]),
    (HAIKU, "FINE_TUNING", {"batchSize": "2"}, ["batchSize=2 is out of range", "[4, 256]"]),
    (NOVA, "FINE_TUNING", {"learningRate": "0.001"}, ["learningRate=0.001 is out of range", "[1e-06, 0.0001]"]),
])
def test_create_request_rejects_with_bedrock_like_message(model, ctype, hp, expected):
    msg = datacheck.check_create_request(model, ctype, hp)
    assert msg is not None
    for fragment in expected:
        assert fragment in msg


def test_create_request_reports_every_bad_hyperparameter():
    msg = datacheck.check_create_request(NOVA, "FINE_TUNING", {"epochCount": "0", "learningRate": "1"})
    assert msg.startswith("2 validation errors detected")
    assert "epochCount=0" in msg and "learningRate=1" in msg


# --------------------------------------------------------------------------------------------
# job data checks


@pytest.mark.parametrize("model,ctype,train,validation", [
    (TITAN, "FINE_TUNING", [pc(i) for i in range(5)], [pc(9)]),
    (TITAN, "CONTINUED_PRE_TRAINING", [{"input": "Some domain text."}] * 3, None),
    (COHERE, "FINE_TUNING", [pc(i) for i in range(10)], None),
    (LLAMA31, "FINE_TUNING", [pc(i) for i in range(90)], [pc(i) for i in range(10)]),   # 100 in total
    (HAIKU, "FINE_TUNING", [claude(i) for i in range(32)], [claude(i) for i in range(32)]),
    (NOVA, "FINE_TUNING", [conv(i) for i in range(8)], [conv(1)]),
    (LLAMA32, "FINE_TUNING", [conv(i) for i in range(100)], None),
    (NOVA, "DISTILLATION", [{"schemaVersion": "bedrock-conversation-2024",
                             "messages": [{"role": "user", "content": [{"text": f"q{i}"}]}]}
                            for i in range(100)], None),
    ("amazon.nova-2-lite-v1:0:256k", "REINFORCEMENT_FINE_TUNING",
     [{"messages": [{"role": "user", "content": f"2+{i}?"}], "reference_answer": str(2 + i)}
      for i in range(100)], None),
])
def test_job_data_accepts_well_formed_data(model, ctype, train, validation):
    v = jsonl(validation) if validation is not None else None
    assert datacheck.check_job_data(model, ctype, jsonl(train), v) is None


def _catalog_pairs():
    from tasks.catalog import load_catalog

    return [(fam.model_ids[0], ct.value, spec) for fam in load_catalog().families.values()
            for ct, spec in fam.customizations.items()]


@pytest.mark.parametrize("model,ctype,spec", _catalog_pairs(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("system", [None, "You are a bank assistant."])
def test_records_written_by_the_pipeline_pass_and_teach_the_stand_in(model, ctype, spec, system):
    """tasks/data/formats.py writes the JSONL the pipeline uploads: the emulator must accept it for every
    catalog model/type and read back the (prompt, completion) pairs its stand-in learns from."""
    from tasks.data.formats import Example, to_record

    cpt = spec.format.value == "cpt-input"
    n = max(spec.limits.min_train_records or 1, spec.limits.min_validation_records or 1,
            spec.limits.min_total_records or 1, 8)
    examples = [Example(system, f"where is my card {i}?", "" if cpt else f"label_{i}") for i in range(n)]
    data = jsonl([to_record(spec.format, ex) for ex in examples])
    assert datacheck.check_job_data(model, ctype, data, data if spec.limits.min_validation_records else None) is None
    learned = standin.parse_training_jsonl(data)
    assert len(learned) == n
    for (_, prompt, completion), ex in zip(learned, examples, strict=True):
        assert prompt.endswith(ex.prompt) and completion == (prompt if cpt else ex.completion)


def _bad_claude_order():
    r = claude(1)
    r["messages"] = list(reversed(r["messages"]))
    return r


def _nova_string_content():
    r = conv(2)
    r["messages"][0]["content"] = "question?"
    return r


def _nova_no_assistant():
    r = conv(2)
    r["messages"] = r["messages"][:1]
    return r


BAD_CASES = [
    # (id, model, records (line 1 is always good), expected line, fragments)
    ("invalid-json", TITAN, [pc(), pc(), '{"prompt": "a" "completion": "b"}'], 3, ["invalid JSON"]),
    ("not-an-object", TITAN, [pc(), '["prompt", "completion"]'], 2, ["must be one JSON object"]),
    ("missing-completion", TITAN, [pc(), {"prompt": "q"}], 2, ['missing required key "completion"']),
    ("completion-not-string", COHERE, [pc(), {"prompt": "q", "completion": 7}], 2, ['"completion" must be a string']),
    ("empty-line", TITAN, [pc(), "", pc()], 2, ["empty line"]),
    ("claude-role-order", HAIKU, [claude()] * 4 + [_bad_claude_order()] + [claude()] * 30, 5,
     ['"messages[0].role" is "assistant"', "alternate"]),
    ("claude-content-blocks", HAIKU, [claude()] * 2 + [claude(messages=[
        {"role": "user", "content": [{"type": "text", "text": "q"}]}, {"role": "assistant", "content": "a"}])]
     + [claude()] * 30, 3, ["must be a string for Claude 3 Haiku"]),
    ("claude-extra-key", HAIKU, [claude(label="x")] + [claude()] * 40, 1, ['unexpected key "label"']),
    ("nova-string-content", NOVA, [conv()] * 6 + [_nova_string_content()] + [conv()] * 3, 7,
     ["must be an array of content blocks"]),
    ("nova-reserved-string", NOVA, [conv()] * 8 + [conv(user="User: where is my card?")], 9, ['"User:"']),
    ("nova-no-assistant", NOVA, [conv()] * 9 + [_nova_no_assistant()], 10, ['last message must have role "assistant"']),
    ("nova-no-schema", NOVA, [conv()] * 3 + [{"messages": conv()["messages"]}] + [conv()] * 5, 4,
     ['"schemaVersion"']),
    ("claude-too-many-tokens", HAIKU, [claude()] * 10 + [claude(system="x" * 96_010)] + [claude()] * 30, 11,
     ["about 32,", "3 characters per token", "at most 32,000 tokens"]),
    ("too-few-records", NOVA, [conv(i) for i in range(5)], 5, ["too few records", "at least 8"]),
    ("too-many-records", LLAMA31, [pc(i) for i in range(10_001)], 10_001, ["too many records", "at most 10,000"]),
    # model-customization-prepare: Llama "Sum of training and validation records" minimum 100
    ("too-few-llama-records", LLAMA31, [pc(i) for i in range(99)], 99,
     ["too few records", "99 training + 0 validation", "100 in total"]),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_job_data_failure_names_file_and_line(case):
    _, model, records, line, fragments = case
    msg = datacheck.check_job_data(model, "FINE_TUNING", jsonl(records), None)
    assert msg is not None
    assert msg.startswith("Validation failed for training data: ")
    assert f"Line {line}: " in msg
    for fragment in fragments:
        assert fragment in msg


def test_llama_total_counts_training_and_validation_records_together():
    """Llama 3.1/3.2/3.3: the sum of the two files is at least 100 (model-customization-prepare)."""
    assert datacheck.check_job_data(LLAMA31, "FINE_TUNING", jsonl([pc(i) for i in range(60)]),
                                    jsonl([pc(i) for i in range(40)])) is None
    msg = datacheck.check_job_data(LLAMA31, "FINE_TUNING", jsonl([pc(i) for i in range(60)]),
                                   jsonl([pc(i) for i in range(39)]))
    assert msg.startswith("Validation failed for training data: Line 60: too few records: ")
    assert "60 training + 39 validation" in msg and "100 in total" in msg


def test_job_data_names_the_validation_file():
    val = jsonl([conv(), conv(), {"schemaVersion": "bedrock-conversation-2024", "messages": "hi"}])
    msg = datacheck.check_job_data(NOVA, "FINE_TUNING", jsonl([conv(i) for i in range(8)]), val)
    assert msg.startswith("Validation failed for validation data: Line 3: ")


def test_job_data_invalid_utf8_names_the_line():
    data = jsonl([pc(), pc()]) + b'{"prompt": "caf\xe9", "completion": "x"}\n'
    msg = datacheck.check_job_data(TITAN, "FINE_TUNING", data, None)
    assert "Line 3: " in msg and "UTF-8" in msg


def test_job_data_counts_problems_beyond_the_first_few():
    msg = datacheck.check_job_data(TITAN, "FINE_TUNING", jsonl([{"prompt": "q"}] * 5), None)
    assert "Line 1: " in msg and "Line 3: " in msg and "Line 4: " not in msg
    assert "(and 2 more problems)" in msg


# --------------------------------------------------------------------------------------------
# metric files (docs/bedrock-facts.md §6)


def _frames(n_train=1000, n_val=100, hp=None, seed=7):
    hp = hp or {"epochCount": "3", "batchSize": "8", "learningRate": "0.00001"}
    t, v = metricfiles.metric_csvs(n_train, n_val, hp, seed)
    return pd.read_csv(io.StringIO(t)), (pd.read_csv(io.StringIO(v)) if v is not None else None)


def test_metric_csvs_have_the_documented_columns_and_steps():
    train, val = _frames()
    assert list(train.columns) == ["step_number", "epoch_number", "training_loss", "perplexity"]
    assert list(val.columns) == ["step_number", "epoch_number", "validation_loss", "perplexity"]
    assert train.step_number.iloc[0] == 0 and train.step_number.is_monotonic_increasing
    assert len(train) == 3 * 125                      # 3 epochs x ceil(1000 / 8) steps
    assert sorted(train.epoch_number.unique()) == [0, 1, 2]
    assert np.allclose(train.perplexity, np.exp(train.training_loss), rtol=1e-5)
    assert np.allclose(val.perplexity, np.exp(val.validation_loss), rtol=1e-5)


def test_metric_losses_trend_down_with_noise():
    train, val = _frames()
    k = len(train) // 10
    first, last = train.training_loss.iloc[:k].mean(), train.training_loss.iloc[-k:].mean()
    assert last < 0.5 * first
    assert (np.diff(train.training_loss) > 0).any()    # noisy, not a smooth curve
    assert val.validation_loss.iloc[-1] < val.validation_loss.iloc[0]


def test_metrics_depend_on_learning_rate_and_show_overfitting_on_tiny_data():
    slow, _ = _frames(hp={"epochCount": "2", "batchSize": "8", "learningRate": "0.000001"})
    fast, _ = _frames(hp={"epochCount": "2", "batchSize": "8", "learningRate": "0.0001"})
    mid = len(slow) // 4
    assert fast.training_loss.iloc[:mid].mean() < slow.training_loss.iloc[:mid].mean()
    _, val = _frames(n_train=40, n_val=10, hp={"epochCount": "10", "batchSize": "1"})
    assert val.validation_loss.iloc[-1] > val.validation_loss.min() * 1.05


def test_metric_csvs_are_seeded_and_skip_validation_without_data():
    hp = {"epochCount": "2", "batchSize": "4"}
    assert metricfiles.metric_csvs(300, 30, hp, 1) == metricfiles.metric_csvs(300, 30, hp, 1)
    assert metricfiles.metric_csvs(300, 30, hp, 1) != metricfiles.metric_csvs(300, 30, hp, 2)
    assert metricfiles.metric_csvs(300, 0, hp, 1)[1] is None


def test_metric_csvs_cap_rows_on_large_jobs_and_keep_the_last_step():
    train, _ = _frames(n_train=20_000, n_val=0, hp={"epochCount": "5"})
    assert len(train) <= metricfiles.MAX_TRAINING_ROWS + 1
    assert train.step_number.iloc[-1] == 5 * 20_000 - 1 and train.epoch_number.iloc[-1] == 4


# --------------------------------------------------------------------------------------------
# invoke bodies per family (docs/bedrock-facts.md §3)


@pytest.mark.parametrize("model_id,shape", [
    ("us.amazon.nova-micro-v1:0", "nova"), (NOVA, "nova"), ("amazon.nova-lite-v1:0", "nova"),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0", "nova"),
    ("anthropic.claude-3-haiku-20240307-v1:0", "claude"), (HAIKU, "claude"),
    ("us.meta.llama3-2-1b-instruct-v1:0", "llama"), (LLAMA31, "llama"),
    ("amazon.titan-text-express-v1", "titan"), (TITAN, "titan"), ("cohere.command-text-v14", "cohere"),
])
def test_invoke_shape_of_accepts_base_customizable_and_profile_ids(model_id, shape):
    assert standin.invoke_shape_of(model_id) == shape


def test_invoke_shape_of_rejects_unknown_ids():
    with pytest.raises(ValueError, match="model identifier is invalid"):
        standin.invoke_shape_of("acme.unknown-model-v1")


REQUESTS = {
    "nova": {"schemaVersion": "messages-v1", "system": [{"text": "Be brief."}],
             "messages": [{"role": "user", "content": [{"text": "Where is my card?"}]}],
             "inferenceConfig": {"maxTokens": 64, "temperature": 0.0}},
    "claude": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "system": "Be brief.",
               "messages": [{"role": "user", "content": "Where is my card?"}]},
    "llama": {"prompt": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nWhere is my card?<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n", "max_gen_len": 64},
    "titan": {"inputText": "User: Where is my card?\nBot:", "textGenerationConfig": {"maxTokenCount": 64}},
    "cohere": {"prompt": "Where is my card?", "max_tokens": 64},
}
SYSTEMS = {"nova": "Be brief.", "claude": "Be brief.", "llama": "Be brief.", "titan": None, "cohere": None}


def _response_text(shape, body):
    return {"nova": lambda b: b["output"]["message"]["content"][0]["text"],
            "claude": lambda b: b["content"][0]["text"],
            "llama": lambda b: b["generation"],
            "titan": lambda b: b["results"][0]["outputText"],
            "cohere": lambda b: b["generations"][0]["text"]}[shape](body)


@pytest.mark.parametrize("shape", sorted(REQUESTS))
def test_parse_and_format_round_trip_per_family(shape):
    system, prompt, max_tokens = standin.parse_invoke_body(shape, json.loads(json.dumps(REQUESTS[shape])))
    assert (system, prompt, max_tokens) == (SYSTEMS[shape], "Where is my card?", 64)
    body = json.loads(json.dumps(standin.format_invoke_response(shape, "card_arrival", 7, 3)))
    assert _response_text(shape, body) == "card_arrival"
    usage = {"nova": lambda b: (b["usage"]["inputTokens"], b["usage"]["outputTokens"]),
             "claude": lambda b: (b["usage"]["input_tokens"], b["usage"]["output_tokens"]),
             "llama": lambda b: (b["prompt_token_count"], b["generation_token_count"]),
             "titan": lambda b: (b["inputTextTokenCount"], b["results"][0]["tokenCount"]),
             "cohere": lambda b: (7, 3)}[shape](body)
    assert usage == (7, 3)


@pytest.mark.parametrize("shape,body,fragment", [
    ("nova", REQUESTS["claude"], "extraneous key [anthropic_version]"),
    ("claude", REQUESTS["nova"], "required key [anthropic_version] not found"),
    ("claude", {k: v for k, v in REQUESTS["claude"].items() if k != "max_tokens"}, "required key [max_tokens]"),
    ("nova", {"messages": [{"role": "user", "content": "Where is my card?"}]},
     "expected type: JSONArray, found: String"),
    ("llama", REQUESTS["titan"], "required key [prompt] not found"),
    ("titan", REQUESTS["llama"], "required key [inputText] not found"),
    ("cohere", {"prompt": "q", "max_gen_len": 5}, "extraneous key [max_gen_len]"),
    ("claude", {**REQUESTS["claude"], "max_tokens": 0}, "max_tokens"),
    ("nova", {"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}, "must start with a user message"),
])
def test_parse_rejects_bodies_of_the_wrong_shape(shape, body, fragment):
    with pytest.raises(ValueError) as err:
        standin.parse_invoke_body(shape, body)
    # the server puts MALFORMED_PREFIX in front, giving Bedrock's "Malformed input request: #: ..."
    assert str(err.value).startswith("#")
    assert str(err.value).endswith("please reformat your input and try again.")
    assert fragment in str(err.value)


def test_stop_reason_follows_truncation():
    assert standin.format_invoke_response("nova", "x", 1, 1, truncated=True)["stopReason"] == "max_tokens"
    assert standin.format_invoke_response("llama", "x", 1, 1)["stop_reason"] == "stop"


# --------------------------------------------------------------------------------------------
# stand-in models on BANKING77


@pytest.fixture(scope="module")
def banking():
    if shared_dir() is None:
        pytest.skip("shared/datasets/banking77 is not beside the repo")
    train = pd.read_csv(f"{BANKING}/train.csv").sample(1000, random_state=0)
    test = pd.read_csv(f"{BANKING}/test.csv").sample(100, random_state=0)
    records = [conv(user=t) | {"messages": [{"role": "user", "content": [{"text": t}]},
                                            {"role": "assistant", "content": [{"text": c}]}]}
               for t, c in zip(train.text, train.category, strict=True)]
    return jsonl(records), list(test.text), list(test.category)


@pytest.fixture(scope="module")
def trained(banking, tmp_path_factory):
    state = tmp_path_factory.mktemp("standin-state")
    with pytest.MonkeyPatch.context() as mp:
        # a private embedding cache: this module really encodes, whatever ~/.cache holds
        mp.setenv("FORGE_STANDIN_CACHE_DIR", str(tmp_path_factory.mktemp("standin-cache")))
        standin._EMB_CACHE.clear()
        reg = standin.StandInRegistry(state)
        arn = "arn:aws:bedrock:us-east-1:000000000000:custom-model/amazon.nova-micro-v1:0:128k/abc123def456"
        reg.register_custom(arn, NOVA, banking[0])
        yield reg, arn, state


def test_custom_stand_in_beats_base_on_held_out_queries(trained, banking):
    reg, arn, _ = trained
    _, queries, labels = banking
    with ThreadPoolExecutor(16) as pool:            # evaluation calls the registry concurrently
        custom = list(pool.map(lambda q: reg.answer("custom", arn, "Classify the query.", q, 64)[0], queries))
    base = [reg.answer("base", "us.amazon.nova-micro-v1:0", "Classify the query.", q, 64)[0] for q in queries]
    acc_custom = np.mean([a == y for a, y in zip(custom, labels, strict=True)])
    acc_base = np.mean([a == y for a, y in zip(base, labels, strict=True)])
    assert acc_custom >= 0.7          # measured 0.83 (1-NN over MiniLM embeddings)
    assert acc_base <= 0.05           # measured 0.0: the base stand-in never saw the labels
    # concurrency does not change answers
    assert custom[:20] == [reg.answer("custom", arn, "Classify the query.", q, 64)[0] for q in queries[:20]]


def test_custom_stand_in_ignores_a_system_text_folded_into_every_prompt(trained, banking):
    """prompt-completion data carries the system text inside each prompt (tasks/data/formats.py); the
    Llama body sends it the same way. The stand-in must still match on the customer query."""
    reg, arn, _ = trained
    system = "You are a support assistant for an online bank. Reply with the intent name only."
    records = [{"prompt": f"{system}\n\n{m['messages'][0]['content'][0]['text']}",
                "completion": m["messages"][1]["content"][0]["text"]}
               for m in map(json.loads, banking[0].decode().splitlines())]
    llama_arn = arn.replace("amazon.nova-micro-v1:0:128k", LLAMA31)
    reg.register_custom(llama_arn, LLAMA31, jsonl(records))
    queries = banking[1][:30]
    via_llama = []
    for q in queries:
        sys_, prompt, max_tokens = standin.parse_invoke_body("llama", {"prompt": f"{system}\n\n{q}", "max_gen_len": 64})
        via_llama.append(reg.answer("custom", llama_arn, sys_, prompt, max_tokens)[0])
    assert via_llama == [reg.answer("custom", arn, system, q, 64)[0] for q in queries]


def test_base_stand_in_is_generic_and_deterministic(trained):
    reg, _, _ = trained
    a = reg.answer("base", NOVA, None, "I am still waiting on my card?", 200)
    assert a == reg.answer("base", NOVA, None, "I am still waiting on my card?", 200)
    assert "waiting on my card" in a[0] and "_" not in a[0]
    assert a[1] == standin.approx_tokens("I am still waiting on my card?")
    assert a[2] == standin.approx_tokens(a[0])


def test_answers_are_truncated_to_max_tokens(trained):
    reg, _, _ = trained
    full = reg.answer("base", NOVA, None, "How do I top up by bank transfer from abroad?", 500)
    short = reg.answer_full("base", NOVA, None, "How do I top up by bank transfer from abroad?", 5)
    assert short.truncated and short.output_tokens == 5 < full[2]
    assert full[0].startswith(short.text) and len(short.text) == 5 * standin.CHARS_PER_TOKEN
    assert not reg.answer_full("base", NOVA, None, "How do I top up?", 500).truncated


def test_registry_state_survives_a_restart(trained, banking):
    reg, arn, state = trained
    queries = banking[1][:15]
    before = [reg.answer("custom", arn, None, q, 64) for q in queries]
    standin._EMB_CACHE.clear()                     # a new process has no in-memory embeddings
    reborn = standin.StandInRegistry(state)
    assert [reborn.answer("custom", arn, None, q, 64) for q in queries] == before
    with pytest.raises(KeyError):
        reborn.answer("custom", arn + "-unknown", None, "q", 64)


def test_another_emulator_on_the_same_data_reuses_the_embeddings(trained, banking, tmp_path, monkeypatch):
    reg, arn, _ = trained
    reg.warm(arn)
    standin._EMB_CACHE.clear()
    calls = []
    monkeypatch.setattr(standin, "_encode_batch", lambda texts: calls.append(len(texts)) or np.zeros((len(texts), 384)))
    other = standin.StandInRegistry(tmp_path)             # different state dir, same training data
    other.register_custom("arn:aws:bedrock:us-east-1:000000000000:custom-model/x/other", NOVA, banking[0])
    other.warm("arn:aws:bedrock:us-east-1:000000000000:custom-model/x/other")
    assert calls == []                                    # nothing re-encoded
