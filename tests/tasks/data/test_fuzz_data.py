"""Property-based fuzzing of the data side (issue 9 item 3): validators never crash, valid output always
validates, conversions round-trip."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tasks.catalog import DataFormat
from tasks.data.formats import Example, RecordShapeError, from_record, to_record
from tasks.data.problems import Problem
from tasks.data.rules import check_record, rules_for
from tasks.data.validate import validate_source

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# one (model, type) per data format / rule set
TARGETS = [
    ("amazon.titan-text-express-v1:0:8k", "fine-tuning"),            # prompt-completion
    ("anthropic.claude-3-haiku-20240307-v1:0:200k", "fine-tuning"),  # claude-messages + "\nHuman:" rule
    ("amazon.nova-micro-v1:0:128k", "fine-tuning"),                  # conversation + Nova strings
    ("amazon.nova-lite-v1:0:300k", "distillation"),                  # conversation, assistant optional
    ("meta.llama3-2-1b-instruct-v1:0:128k", "fine-tuning"),          # conversation, no string rule
    ("amazon.titan-text-lite-v1:0:4k", "continued-pretraining"),     # cpt-input
    ("amazon.nova-2-lite-v1:0:256k", "reinforcement"),               # rft-messages
]
RULES = [rules_for(m, t) for m, t in TARGETS]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
# records that look roughly like the real shapes, so the checks get deep into them
roles = st.sampled_from(["user", "assistant", "system", "bot", 3, None])
blocks = st.lists(st.one_of(st.fixed_dictionaries({"text": st.text(max_size=20) | json_values}),
                            st.fixed_dictionaries({"image": json_values}), json_values), max_size=3)
turns = st.lists(st.fixed_dictionaries({"role": roles, "content": st.text(max_size=20) | blocks | json_values}),
                 max_size=4)
shaped = st.fixed_dictionaries(
    {}, optional={"schemaVersion": json_values, "system": st.text(max_size=10) | blocks | json_values,
                  "messages": turns | json_values, "prompt": json_values, "completion": json_values,
                  "input": json_values, "reference_answer": json_values, "extra": json_values})


def _check(rec, rules) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    check_record(rec, rules, lambda f, m, x: out.append((f, m, x)), {})
    return out


@FUZZ
@given(rules=st.sampled_from(RULES), rec=json_values | shaped)
def test_check_record_never_crashes_on_any_json(rules, rec):
    for f, m, x in _check(rec, rules):
        assert isinstance(f, str) and f and isinstance(m, str) and m
        str(Problem(file="f.jsonl", line=1, field=f, message=m, fix=x))


@FUZZ
@given(data=st.binary(max_size=400), target=st.sampled_from(TARGETS),
       suffix=st.sampled_from([".jsonl", ".csv", ".parquet"]))
def test_validate_source_never_crashes_on_arbitrary_bytes(data, target, suffix):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"in{suffix}"
        p.write_bytes(data)
        r = validate_source(p, *target)
    assert r.records >= 0
    for prob in r.problems:
        assert str(prob).startswith(str(p))
        assert prob.line is None or prob.line >= 1


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=15), min_size=0, max_size=3), max_size=8))
def test_validate_csv_never_crashes_on_any_rows(rows):
    buf = io.StringIO()
    csv.writer(buf).writerows([["prompt", "completion"], *rows])
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "in.csv"
        p.write_text(buf.getvalue(), encoding="utf-8", errors="surrogatepass")
        r = validate_source(p, "amazon.titan-text-express-v1:0:8k", "fine-tuning")
    assert r.records <= len(rows)


# --- valid Examples -> records that always pass -------------------------------------------------------------
def _ok_text(rules, s: str) -> bool:
    return bool(s.strip()) and not any(f in s for f in rules.forbidden)


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=120)


@FUZZ
@given(rules=st.sampled_from(RULES), system=st.none() | texts, prompt=texts, completion=texts | st.just(""))
def test_to_record_of_a_valid_example_always_validates(rules, system, prompt, completion):
    assume(_ok_text(rules, prompt))
    assume(system is None or _ok_text(rules, system) or system == "")
    if rules.completion_required:
        assume(_ok_text(rules, completion))
    else:
        assume(completion == "" or _ok_text(rules, completion))
    if rules.fmt in (DataFormat.PROMPT_COMPLETION, DataFormat.CPT_INPUT) and system:
        assume(_ok_text(rules, f"{system}\n\n{prompt}"))
    if rules.fmt is DataFormat.CPT_INPUT and completion:
        assume(_ok_text(rules, f"{prompt}\n{completion}"))
    rec = to_record(rules.fmt, Example(system, prompt, completion))
    assert _check(rec, rules) == []
    json.loads(json.dumps(rec))        # the record is plain JSON


@FUZZ
@given(fmt=st.sampled_from(list(DataFormat)), system=st.none() | st.text(max_size=40), prompt=st.text(max_size=60),
       completion=st.text(max_size=60))
def test_round_trip(fmt, system, prompt, completion):
    if fmt in (DataFormat.PROMPT_COMPLETION, DataFormat.CPT_INPUT):
        system = None                  # no system field: folded into the prompt (documented)
    if fmt is DataFormat.CPT_INPUT:
        completion = ""                # one text only
    ex = Example(system, prompt, completion)
    rec = to_record(fmt, ex)
    assert from_record(fmt, json.loads(json.dumps(rec))) == ex


@FUZZ
@given(fmt=st.sampled_from(list(DataFormat)), rec=json_values | shaped)
def test_from_record_raises_only_value_errors(fmt, rec):
    try:
        ex = from_record(fmt, rec)
    except RecordShapeError:
        return
    assert isinstance(ex, Example)


# --- prepare's output always passes validation --------------------------------------------------------------
PREP_MODELS = ["amazon.titan-text-express-v1:0:8k", "meta.llama3-2-1b-instruct-v1:0:128k",
               "anthropic.claude-3-haiku-20240307-v1:0:200k", "amazon.nova-lite-v1:0:300k"]
words = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Zs", "Po")), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(PREP_MODELS), rows=st.lists(st.tuples(words, words), min_size=1, max_size=40),
       system=st.none() | words, seed=st.integers(0, 10))
def test_prepare_output_always_validates(model, rows, system, seed):
    from tasks.config import PipelineConfig
    from tasks.data.preparation import prepare
    from tasks.data.problems import DataValidationError

    rules = rules_for(model, "fine-tuning")
    rows = [(p, c) for p, c in rows if _ok_text(rules, p) and _ok_text(rules, c)]
    assume(system is None or _ok_text(rules, system))
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "in.jsonl"
        src.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in rows), encoding="utf-8")
        cfg = PipelineConfig.model_validate({"name": "fz", "base_model": model, "data": {
            "source": str(src), "system_prompt": system,
            "split": {"train": 0.8, "validation": 0.0, "test": 0.2, "seed": seed}}})
        try:
            prepared = prepare(cfg, Path(d) / "out")
        except DataValidationError as err:
            # only record-count rules may refuse valid rows (too few for the model, or none at all)
            counts = ("records", "split", "split.train", "split.test", "file")
            assert all(p.field in counts for p in err.problems), err.lines()
            return
        for role in ("train", "test"):
            f = getattr(prepared, role)
            if f is None:
                continue
            r = validate_source(f.path, model, "fine-tuning", fmt="formatted",
                                role="test" if role == "test" else "source")
            assert r.ok, r.lines()
            assert r.records == f.records
