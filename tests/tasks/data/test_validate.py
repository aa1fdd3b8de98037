"""tasks.data.validate: each rule gives an exact located problem; all problems are collected; no exceptions."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from tasks.catalog import Limits
from tasks.config import Columns
from tasks.config.checks import validate_hyperparameters
from tasks.data.problems import DataValidationError, Problem, ValidationReport
from tasks.data.validate import validate_source

TITAN = "amazon.titan-text-express-v1:0:8k"
NOVA = "amazon.nova-micro-v1:0:128k"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0:200k"
LLAMA31 = "meta.llama3-1-8b-instruct-v1:0:128k"
INTENTS = Columns(prompt="text", completion="category")


def write(tmp_path: Path, name: str, lines: list) -> Path:
    p = tmp_path / name
    p.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines), encoding="utf-8")
    return p


def nova(user="hi", answer="hello", **extra) -> dict:
    msgs = [{"role": "user", "content": [{"text": user}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"text": answer}]})
    return {"schemaVersion": "bedrock-conversation-2024", "messages": msgs, **extra}


def lines_of(report: ValidationReport) -> list[str]:
    return [str(p) for p in report.problems]


# --- the Problem / error / report types --------------------------------------------------------
def test_problem_str_with_and_without_line():
    assert str(Problem(file="a.jsonl", line=3, field="messages[1].role", message="bad", fix="do x")) == \
        "a.jsonl:3: messages[1].role: bad (do x)"
    assert str(Problem(file="a.jsonl", field="records", message="too few", fix="")) == "a.jsonl: records: too few"


def test_data_validation_error_lines_are_capped_with_a_count():
    probs = [Problem(file="f", line=i, field="x", message="m", fix="f") for i in range(1, 251)]
    err = DataValidationError(probs)
    lines = err.lines()
    assert len(lines) == 201 and lines[-1] == "... and 50 more problem(s)"
    assert isinstance(err, ValueError) and err.problems == probs


# --- every problem is collected, each located -----------------------------------------------------
def test_all_problems_collected_in_one_report(tmp_path):
    p = write(tmp_path, "d.jsonl", [
        {"prompt": "a", "completion": "b"},
        '{"prompt": "a", "completion": "b"',
        [1, 2],
        {"prompt": "", "completion": "b"},
        {"prompt": "a", "completion": 3.5, "x": 1},
    ])
    r = validate_source(p, TITAN, "fine-tuning", fmt="formatted")
    assert not r.ok and r.records == 5
    out = lines_of(r)
    assert out[0].startswith(f"{p}:2: json: not valid JSON: Expecting ',' delimiter")
    assert out[1] == f"{p}:3: record: expected a JSON object, got array (each line must be one JSON object {{...}})"
    assert out[2].startswith(f"{p}:4: prompt: is empty")
    assert any(s.startswith(f"{p}:5: x: unknown key") for s in out)
    assert any(s.startswith(f"{p}:5: completion: must be a string, got number") for s in out)


def test_valid_formatted_file_is_ok_with_stats(tmp_path):
    p = write(tmp_path, "ok.jsonl", [nova(f"q{i}", f"a{i}") for i in range(8)])
    r = validate_source(p, NOVA, "fine-tuning")
    assert r.ok, lines_of(r)
    assert r.stats["mode"] == "formatted" and r.stats["format"] == "bedrock-conversation-2024"
    assert r.records == 8 and r.stats["estimated_tokens"] > 0


# --- conversation-schema rules --------------------------------------------------------------------
@pytest.mark.parametrize("record,expected", [
    (nova(answer=None), "messages: no assistant turn"),
    ({"schemaVersion": "bedrock-conversation-2024", "messages": [
        {"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]},
        {"role": "user", "content": [{"text": "c"}]}]}, "messages[2].role: last turn is 'user', must be 'assistant'"),
    ({"schemaVersion": "bedrock-conversation-2024", "messages": [
        {"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}]}]}, "messages[1].role: two 'user' turns in a row"),
    ({"schemaVersion": "bedrock-conversation-2024", "messages": [
        {"role": "system", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}]}]}, "messages[0].role: invalid role 'system'"),
    (nova(user="Bot: hi"), "messages[0].content[0].text: contains the string 'Bot:', which Nova rejects"),
    (nova(user="see <image>"), "messages[0].content[0].text: contains the string '<image>'"),
    (nova(user="  "), "messages[0].content[0].text: is empty"),
    (nova(system=[{"text": "x", "extra": 1}]), "system[0]: must be {\"text\": \"...\"}"),
    ({"messages": nova()["messages"]}, "schemaVersion: missing"),
    ({**nova(), "messages": "hi"}, "messages: must be an array of turns, got string"),
    ({**nova(), "messages": []}, "messages: is empty"),
    ({**nova(), "messages": [{"role": "user", "content": [{"text": "a", "image": {}}]},
                             {"role": "assistant", "content": [{"text": "b"}]}]},
     "messages[0].content[0]: must hold exactly one of text, image, video"),
])
def test_conversation_rules(tmp_path, record, expected):
    p = write(tmp_path, "c.jsonl", [nova(f"q{i}", f"a{i}") for i in range(8)] + [record])
    r = validate_source(p, NOVA, "fine-tuning", fmt="formatted")
    assert any(s.startswith(f"{p}:9: {expected}") for s in lines_of(r)), lines_of(r)


def test_distillation_assistant_optional_and_single_turn_teacher(tmp_path):
    recs = [nova(f"prompt {i}", None) for i in range(100)]
    p = write(tmp_path, "d.jsonl", recs)
    assert validate_source(p, NOVA, "distillation").ok
    multi = {"schemaVersion": "bedrock-conversation-2024", "messages": [
        {"role": "user", "content": [{"text": "a"}]}, {"role": "assistant", "content": [{"text": "b"}]},
        {"role": "user", "content": [{"text": "c"}]}]}
    p = write(tmp_path, "d2.jsonl", recs + [multi])
    assert validate_source(p, NOVA, "distillation", teacher="us.amazon.nova-pro-v1:0").ok   # Nova teachers: multi-turn
    r = validate_source(p, NOVA, "distillation", teacher="anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert lines_of(r) == [f"{p}:101: messages: 2 user turns; this teacher accepts a single user turn "
                           "(keep one user turn per record; docs/bedrock-facts.md §5: Anthropic and Llama teachers)"]


# --- Claude rules -----------------------------------------------------------------------------------
def test_claude_forbidden_turn_markers(tmp_path):
    base = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant",
                                                                 "content": f"a{i}"}]} for i in range(32)]
    bad = {"system": "x\nAssistant: y", "messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                                                                                        "content": "a"}]}
    p = write(tmp_path, "h.jsonl", base + [bad])
    r = validate_source(p, HAIKU, "fine-tuning")
    assert lines_of(r) == [f"{p}:33: system: contains the string '\\\\nAssistant:', which Anthropic Claude 3 Haiku "
                           "rejects "
                           "(remove or reword '\\\\nAssistant:'; docs/bedrock-facts.md §5: it fails the training job)"]


def test_claude_record_counts_train_and_validation(tmp_path):
    recs = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant",
                                                                 "content": f"a{i}"}]} for i in range(31)]
    p = write(tmp_path, "h.jsonl", recs)
    r = validate_source(p, HAIKU, "fine-tuning", role="validation")
    assert (f"{p}: records: 31 validation record(s); {HAIKU} FINE_TUNING needs at least 32 "
            "(add at least 1 more record(s))") in lines_of(r)
    assert validate_source(p, HAIKU, "fine-tuning", role="test").ok   # the test split is never uploaded


def test_tokens_per_record_uses_the_family_chars_per_token(tmp_path):
    # Haiku counts 3 characters per token (docs/bedrock-facts.md §5), limit 32,000 tokens
    recs = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant",
                                                                 "content": "a"}]} for i in range(32)]
    recs.append({"messages": [{"role": "user", "content": "w" * 96_000}, {"role": "assistant", "content": "abc"}]})
    p = write(tmp_path, "h.jsonl", recs)
    assert lines_of(validate_source(p, HAIKU, "fine-tuning")) == [
        f"{p}:33: record: about 32,001 tokens (96,003 characters / 3 per token), limit 32,000 per record "
        "(shorten the texts or split the record)"]


def test_file_size_limit(tmp_path):
    p = write(tmp_path, "big.jsonl", [{"prompt": f"q{i}", "completion": "a"} for i in range(100)])
    r = validate_source(p, TITAN, "fine-tuning", limits=Limits(max_train_file_bytes=1000))
    assert any(s.startswith(f"{p}: file: ") and "(training file); the limit is 1.0 KB" in s for s in lines_of(r))


# --- raw data -----------------------------------------------------------------------------------------
def test_raw_csv_with_quoted_newline_reports_the_row_start_line(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text('text,category\n"two\nlines",a\n"",b\nok,c\n', encoding="utf-8")
    r = validate_source(p, TITAN, "fine-tuning", columns=INTENTS)
    assert lines_of(r) == [f"{p}:4: text: is empty (every record needs a non-empty prompt; fill it in or drop the "
                           "record)"]
    assert r.records == 3


def test_raw_csv_bom_is_only_a_warning(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbftext,category\nhello,greet\n")
    r = validate_source(p, TITAN, "fine-tuning", columns=INTENTS)
    assert r.ok and any("BOM" in w for w in r.stats["warnings"])


def test_raw_jsonl_numbers_become_text_and_template_is_checked(tmp_path):
    p = write(tmp_path, "raw.jsonl", [{"q": "where is my card", "label": 3} for _ in range(8)])
    cols = Columns(prompt="q", completion="label")
    assert validate_source(p, NOVA, "fine-tuning", columns=cols).ok
    r = validate_source(p, NOVA, "fine-tuning", columns=cols, prompt_template="User: {prompt}")
    assert lines_of(r) == [f"{p}: prompt_template: contains the string 'User:', which Nova rejects "
                           # once, not per line
                           "(remove or reword 'User:'; docs/bedrock-facts.md §5: it fails the training job)"]
    r = validate_source(p, NOVA, "fine-tuning", columns=cols, prompt_template="{prompt} [EOS]")
    assert len(r.problems) == 1 and r.problems[0].field == "prompt_template"


def test_raw_parquet(tmp_path):
    import pandas as pd

    p = tmp_path / "d.parquet"
    pd.DataFrame({"text": ["a b", "", "c d"], "category": ["x", "y", None]}).to_parquet(p)
    r = validate_source(p, TITAN, "fine-tuning", columns=INTENTS)
    assert lines_of(r) == [
        f"{p}:2: text: is empty (every record needs a non-empty prompt; fill it in or drop the record)",
        f"{p}:3: category: is empty (every record needs a non-empty completion; fill it in or drop the record)",
    ]


def test_cpt_raw_text_column(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"text": "domain text one"}, {"text": "two"}])
    assert validate_source(p, TITAN, "continued-pretraining", columns=Columns(text="text")).ok


def test_rft_reference_answer_any_json(tmp_path):
    p = write(tmp_path, "r.jsonl", [{"messages": [{"role": "user", "content": f"q{i}"}], "reference_answer": {"a": i},
                                     "id": i}
                                   for i in range(100)])
    assert validate_source(p, "amazon.nova-2-lite-v1:0:256k", "reinforcement").ok


def test_never_raises_on_garbage_bytes(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_bytes(b"\x00\xff\xfe{\n\x80\x81\n{}\n\r\n")
    r = validate_source(p, NOVA, "fine-tuning")
    assert not r.ok and all(str(x).startswith(str(p)) for x in r.problems)


# --- memory stays flat in the file size -----------------------------------------------------------------
def _peak(path: Path) -> int:
    tracemalloc.start()
    validate_source(path, LLAMA31, "fine-tuning", fmt="formatted")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_validation_memory_does_not_grow_with_file_size(tmp_path):
    small = write(tmp_path, "s.jsonl", [{"prompt": f"question {i} " * 5,
                                         "completion": f"answer {i}"} for i in range(1_000)])
    big = write(tmp_path, "b.jsonl", [{"prompt": f"question {i} " * 5,
                                       "completion": f"answer {i}"} for i in range(8_000)])
    assert big.stat().st_size > 8 * small.stat().st_size * 0.9
    assert _peak(big) < 2 * _peak(small) + 200_000


# --- hyperparameters -------------------------------------------------------------------------------------
def test_hyperparameter_problems_name_key_and_range():
    probs = validate_hyperparameters(NOVA, "fine-tuning", "balanced", {"epochCount": 9, "batchSize": 8},
                                     source="cfg.yaml")
    text = [str(p) for p in probs]
    assert text[0] == "cfg.yaml: hyperparameters.epochCount: epochCount=9 is out of range 1..5 (set it within 1..5)"
    assert text[1].startswith("cfg.yaml: hyperparameters.batchSize: hyperparameter 'batchSize' is not accepted for "
                              "this model")
    assert validate_hyperparameters(HAIKU, "fine-tuning", "quick", {"learningRateMultiplier": 0.5}) == []


def test_rft_hyperparameters_are_typed_numbers():
    probs = validate_hyperparameters("amazon.nova-2-lite-v1:0:256k", "reinforcement", None, {},
                                     rft={"epochCount": "2", "batchSize": 8, "reasoningEffort": "max",
                                          "rlAlgorithm": "ppo"})
    fields = [p.field for p in probs]
    assert fields == ["rft.hyperparameters.epochCount", "rft.hyperparameters.batchSize",
                      "rft.hyperparameters.reasoningEffort", "rft.hyperparameters.rlAlgorithm"]


def test_nova_strings_are_checked_on_the_prompt_side_only(tmp_path):
    # docs/bedrock-facts.md §5: the strings fail the job "anywhere in a prompt"; an answer may quote them
    recs = [nova(f"q{i}", f"a{i}") for i in range(8)] + [nova("what does the bot say?", "Assistant: hello")]
    assert validate_source(write(tmp_path, "n.jsonl", recs), NOVA, "fine-tuning").ok
    recs[-1] = nova("Assistant: hello", "ok")
    r = validate_source(write(tmp_path, "n2.jsonl", recs), NOVA, "fine-tuning")
    assert [p.field for p in r.problems] == ["messages[0].content[0].text"]


def test_long_csv_field_reports_tokens_not_a_parser_limit(tmp_path):
    p = tmp_path / "long.csv"
    p.write_text("text,category\n" + "w" * 200_000 + ",a\nok,b\n", encoding="utf-8")
    r = validate_source(p, TITAN, "fine-tuning", columns=INTENTS)
    assert [str(x) for x in r.problems] == [f"{p}:2: record: about 33,334 tokens (200,001 characters / 6 per token), "
                                            "limit 4,096 per record (shorten the texts or split the record)"]


def test_data_validation_error_survives_pickling():
    import pickle

    err = DataValidationError([Problem(file="a.jsonl", line=2, field="json", message="bad", fix="fix")], total=5)
    back = pickle.loads(pickle.dumps(err))
    assert back.lines() == ["a.jsonl:2: json: bad (fix)", "... and 4 more problem(s)"]


@pytest.mark.parametrize("model, ctype, rec, expected", [
    ("anthropic.claude-3-haiku-20240307-v1:0:200k", "fine-tuning", {"system": "s"}, [("messages", "missing")]),
    ("amazon.nova-2-lite-v1:0:256k", "reinforcement", {"reference_answer": "x"}, [("messages", "missing")]),
    ("amazon.nova-micro-v1:0:128k", "fine-tuning", {"schemaVersion": "bedrock-conversation-2024"},
     [("messages", "missing")]),
    ("anthropic.claude-3-haiku-20240307-v1:0:200k", "fine-tuning", {"messages": []}, [("messages", "is empty")]),
    ("amazon.nova-2-lite-v1:0:256k", "reinforcement", {"messages": "x"},
     [("messages", "must be an array of turns, got string")]),
])
def test_no_turns_means_no_turn_level_record_checks(model, ctype, rec, expected):
    """The early return of the messages formats (rules._each_turn gives None): a record without usable
    turns gets its one messages problem, never also "0 turn(s)", "no user turn" or a role problem."""
    from tasks.data.rules import check_record, rules_for

    out: list[tuple[str, str]] = []
    check_record(rec, rules_for(model, ctype), lambda f, m, x: out.append((f, m)))
    assert out == expected
