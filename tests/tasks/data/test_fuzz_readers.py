"""Hypothesis fuzz of the JSONL and CSV readers (issue 16): random bytes and near-valid records never raise
anything but the project's own located problem (``validate_source`` returns a report, ``prepare`` raises
only ``DataValidationError``), every problem is located inside the file, and a file the reader accepts
holds no duplicate key and no NaN/Infinity on any line (whatever path, fast or slow, read it)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import PipelineConfig
from tasks.data.preparation import prepare
from tasks.data.problems import DataValidationError
from tasks.data.validate import validate_source

TITAN = "amazon.titan-text-express-v1:0:8k"
NOVA = "amazon.nova-micro-v1:0:128k"
MODELS = [(TITAN, "fine-tuning"), (NOVA, "fine-tuning"), ("anthropic.claude-3-haiku-20240307-v1:0:200k",
                                                          "fine-tuning"),
          ("amazon.titan-text-lite-v1:0:4k", "continued-pretraining"), ("amazon.nova-2-lite-v1:0:256k",
                                                                         "reinforcement")]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _checked(data: bytes, suffix: str, model: str = TITAN, ctype: str = "fine-tuning", columns=None):
    """validate_source on the bytes: must return; every problem is located within the file."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        path.write_bytes(data)
        report = validate_source(path, model, ctype, columns=columns)
        n_lines = data.count(b"\n") + 1
        for p in report.problems:
            assert p.file == str(path)
            assert p.field and p.message
            assert p.line is None or 1 <= p.line <= n_lines, (p, n_lines)
            assert "Traceback" not in str(p)
        return report


def _prepared_or_refused(data: bytes, suffix: str, columns: dict | None = None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"f{suffix}"
        path.write_bytes(data)
        src: dict = {"source": str(path)}
        if columns:
            src["columns"] = columns
        cfg = PipelineConfig.model_validate({"name": "fz", "base_model": TITAN, "data": src})
        try:
            prepare(cfg, Path(d) / "out")
        except DataValidationError as e:
            assert e.problems and all(p.message for p in e.problems)
        leftovers = [p.name for p in Path(d).iterdir() if ".prepare-" in p.name]
        assert leftovers == []


CHECKED = {"lines": 0}


class _Dup(Exception):
    pass


def _strict(line: str):
    def pairs(ps):
        d = dict(ps)
        if len(d) != len(ps):
            raise _Dup
        return d

    def const(name):
        raise _Dup

    return json.loads(line, object_pairs_hook=pairs, parse_constant=const)


def _accepted_lines_are_strict(data: bytes, report) -> int:
    """Every line the reader accepted (no problem located on it) is one object with unique keys and no
    NaN / Infinity; returns how many lines were checked. Skipped when the file was refused as a whole
    (pre-flight sniff, a JSON array, another model's format: the lines after it are only counted)."""
    from tasks.data import sources

    if sources.sniff(data[:sources.SNIFF_BYTES], "jsonl") is not None:
        return 0
    if any(p.field == "format" or p.message.startswith("is a JSON array") for p in report.problems):
        return 0
    located = {p.line for p in report.problems}
    checked = 0
    for i, raw in enumerate(data.split(b"\n"), 1):
        if i not in located and raw.strip():
            _strict(raw.decode("utf-8"))
            checked += 1
    return checked


# ---------------------------------------------------------------------------------------------
# random bytes
# ---------------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400), st.sampled_from([".jsonl", ".csv", ".tsv", ".json"]), st.sampled_from(MODELS))
def test_random_bytes_never_raise(data, suffix, model):
    _checked(data, suffix, *model)


@FUZZ
@given(st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b",", b":", b"\n", b"\r", b" ", b"NaN",
                                 b"Infinity", b"1e999", b"9" * 30, b"\x00", b"\xff\xfe", b"\xef\xbb\xbf",
                                 b'"prompt"', b'"completion"', b"\\ud800", b"\\u0000", b"\xe9", b"\x1f\x8b",
                                 b"PK\x03\x04", b"BZh91AY&SY"]), max_size=60),
       st.sampled_from([".jsonl", ".csv"]))
def test_json_and_csv_tokens_in_any_order_never_raise(tokens, suffix):
    _checked(b"".join(tokens), suffix)


# ---------------------------------------------------------------------------------------------
# near-valid JSONL
# ---------------------------------------------------------------------------------------------
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ['say "hi"', "C:\\", "\\", '"', "\\ud83d\\ude00", "Bot:", "\nHuman:", " ", ""])
KEYS = ["prompt", "completion", "text", "input", "messages", "system", "x"]


@st.composite
def jsonl_files(draw):
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):          # a valid prompt/completion record, so the mutations hit accepted lines
            rec = {"prompt": "q " + draw(texts), "completion": "a " + draw(texts)}
        else:
            rec = {k: draw(texts) for k in draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))}
        sep = draw(st.sampled_from([(", ", ": "), (",", ":"), (" , ", " : ")]))
        line = json.dumps(rec, separators=sep, ensure_ascii=draw(st.booleans()))
        mutation = draw(st.sampled_from(["none"] * 6 + ["dup", "nan", "inf", "deep", "bigint", "surrogate",
                                                         "truncate", "cr", "bom", "nul", "latin1", "blank"]))
        if mutation == "dup":
            k = draw(st.sampled_from(list(rec)))
            line = line[:-1] + f'{sep[0]}"{k}"{sep[1]}{json.dumps(draw(texts))}' + "}"
        elif mutation in ("nan", "inf"):
            line = line[:-1] + f'{sep[0]}"n"{sep[1]}' + ("NaN" if mutation == "nan" else "-Infinity") + "}"
        elif mutation == "deep":
            k = draw(st.sampled_from([3, 1500, 5000]))
            line = line[:-1] + f'{sep[0]}"d"{sep[1]}' + "[" * k + "]" * k + "}"
        elif mutation == "bigint":
            line = line[:-1] + f'{sep[0]}"n"{sep[1]}' + "9" * draw(st.sampled_from([20, 4301, 6000])) + "}"
        elif mutation == "surrogate":
            line = line[:-1] + f'{sep[0]}"s"{sep[1]}"\\udc{draw(st.sampled_from(["00", "ff"]))}"' + "}"
        elif mutation == "truncate":
            line = line[: draw(st.integers(0, max(0, len(line) - 1)))]
        elif mutation == "blank":
            line = draw(st.sampled_from(["", " ", "\t"]))
        b = line.encode("utf-8", "surrogatepass")
        if mutation == "cr":
            b += b"\r"
        elif mutation == "bom":
            b = b"\xef\xbb\xbf" + b
        elif mutation == "nul":
            b = b.replace(b'"', b'"\x00', 1)
        elif mutation == "latin1":
            b += b"\xe9"
        lines.append(b)
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))


@FUZZ
@given(jsonl_files(), st.sampled_from([MODELS[0], MODELS[0], *MODELS]))
def test_near_valid_jsonl_never_raises_and_what_passes_is_strict_json(data, model):
    report = _checked(data, ".jsonl", *model)
    CHECKED["lines"] += _accepted_lines_are_strict(data, report)


def test_the_strictness_property_was_exercised():
    """Runs after the test above (file order): the property checked real accepted lines, not none."""
    assert CHECKED["lines"] > 20, CHECKED


@FUZZ
@given(jsonl_files())
def test_near_valid_jsonl_prepares_or_is_refused_with_located_problems(data):
    _prepared_or_refused(data, ".jsonl")


@FUZZ
@given(st.dictionaries(st.sampled_from(["prompt", "completion", "a", "b"]), texts, min_size=1, max_size=4),
       st.data(), texts, st.booleans(), st.sampled_from([(", ", ": "), (",", ":")]))
def test_a_duplicate_key_is_always_found(rec, data, value, ascii_only, sep):
    """Whatever the strings hold (quotes, backslashes, escapes), a line with a key twice is refused: the
    4-quotes-per-key rule of the orjson path never lets one through."""
    key = data.draw(st.sampled_from(sorted(rec)))
    line = json.dumps(rec, ensure_ascii=ascii_only, separators=sep)
    line = line[:-1] + f'{sep[0]}{json.dumps(key)}{sep[1]}{json.dumps(value, ensure_ascii=ascii_only)}' + "}"
    report = _checked((line + "\n").encode("utf-8"), ".jsonl")
    assert any("duplicate key" in p.message for p in report.problems), (line, [str(p) for p in report.problems])


# ---------------------------------------------------------------------------------------------
# near-valid CSV
# ---------------------------------------------------------------------------------------------
cells = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t\\é') + ["x"]), max_size=8)


@st.composite
def csv_files(draw):
    header = draw(st.sampled_from(["prompt,completion", "text,category", "prompt,completion,prompt", "   ",
                                   "", "prompt", "root:x:0:0:/bin/bash", '"prompt","completion"']))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(cells) for _ in range(draw(st.integers(0, 3)))]
        quoted = draw(st.booleans())
        rows.append(",".join(('"' + c.replace('"', '""') + '"') if quoted else c for c in row))
    nl = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return (nl.join([header, *rows]) + draw(st.sampled_from([nl, ""]))).encode("utf-8")


@FUZZ
@given(csv_files(), st.sampled_from([None, "prompt=text,completion=category"]))
def test_near_valid_csv_never_raises(data, columns):
    from forge.commands.data import parse_columns

    report = _checked(data, ".csv", columns=parse_columns(columns))
    for p in report.problems:
        assert "root:x" not in p.message + p.fix and "/bin/bash" not in p.message + p.fix


@FUZZ
@given(csv_files())
def test_near_valid_csv_prepares_or_is_refused_with_located_problems(data):
    _prepared_or_refused(data, ".csv", {"prompt": "text", "completion": "category"})
