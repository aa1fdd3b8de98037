"""Each DataFormat: the exact record to_record writes (docs/bedrock-facts.md §5 shapes) and from_record reads back."""

from __future__ import annotations

import pytest

from tasks.catalog import DataFormat
from tasks.data.formats import Example, RecordShapeError, from_record, to_record

CASES = [
    # (format, example, record)
    ("prompt-completion", Example(None, "2+2?", "4"), {"prompt": "2+2?", "completion": "4"}),
    ("claude-messages", Example(None, "hi", "hello"),
     {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
    ("claude-messages", Example("Be brief.", "hi", "hello"),
     {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                                              "content": "hello"}]}),
    ("bedrock-conversation-2024", Example(None, "hi", "hello"),
     {"schemaVersion": "bedrock-conversation-2024",
      "messages": [{"role": "user", "content": [{"text": "hi"}]}, {"role": "assistant",
                                                                   "content": [{"text": "hello"}]}]}),
    ("bedrock-conversation-2024", Example("Classify.", "where is my card", "card_arrival"),
     {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": "Classify."}],
      "messages": [{"role": "user", "content": [{"text": "where is my card"}]},
                   {"role": "assistant", "content": [{"text": "card_arrival"}]}]}),
    # distillation prompt: no assistant turn
    ("bedrock-conversation-2024", Example(None, "explain X", ""),
     {"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user",
                                                                  "content": [{"text": "explain X"}]}]}),
    ("cpt-input", Example(None, "some domain text", ""), {"input": "some domain text"}),
    ("rft-messages", Example(None, "1+1?", "2"), {"messages": [{"role": "user", "content": "1+1?"}],
                                                  "reference_answer": "2"}),
    ("rft-messages", Example("Solve.", "1+1?", "2"),
     {"messages": [{"role": "system", "content": "Solve."}, {"role": "user", "content": "1+1?"}],
      "reference_answer": "2"}),
]


@pytest.mark.parametrize("fmt,example,record", CASES)
def test_to_record_writes_the_documented_shape(fmt, example, record):
    assert to_record(fmt, example) == record
    assert to_record(DataFormat(fmt), example) == record


@pytest.mark.parametrize("fmt,example,record", CASES)
def test_from_record_reads_it_back(fmt, example, record):
    assert from_record(fmt, record) == example


def test_formats_without_system_fold_it_into_the_prompt():
    ex = Example("You are terse.", "hi", "yo")
    assert to_record("prompt-completion", ex) == {"prompt": "You are terse.\n\nhi", "completion": "yo"}
    assert to_record("cpt-input", ex) == {"input": "You are terse.\n\nhi\nyo"}


def test_from_record_reads_multi_turn_as_last_exchange():
    rec = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    assert from_record("claude-messages", rec) == Example(None, "c", "d")


def test_rft_reference_answer_may_be_structured():
    rec = {"messages": [{"role": "user", "content": "q"}], "reference_answer": {"answer": 4}}
    assert from_record("rft-messages", rec).completion == '{"answer": 4}'


@pytest.mark.parametrize("fmt,record,field", [
    ("prompt-completion", {"prompt": "a"}, "completion: missing"),
    ("prompt-completion", {"prompt": 1, "completion": "b"}, "prompt: expected str"),
    ("claude-messages", {"messages": "hi"}, "messages: expected list"),
    ("claude-messages", {"messages": [{"role": "assistant", "content": "x"}]}, "no user turn"),
    ("bedrock-conversation-2024", {"schemaVersion": "x"}, "messages: missing"),
    ("cpt-input", {"text": "a"}, "input: missing"),
    ("rft-messages", {"messages": [{"role": "user"}]}, "messages[0].content: missing"),
])
def test_from_record_names_the_bad_field(fmt, record, field):
    with pytest.raises(RecordShapeError, match=field.replace("[", r"\[").replace("]", r"\]")):
        from_record(fmt, record)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data format 'jsonl'"):
        to_record("jsonl", Example(None, "a", "b"))
