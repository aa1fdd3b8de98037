"""The fast read paths of tasks.data.readers / tasks.data.preparation (chunked line reader, orjson, the inline
prompt/completion shortcut, the chunked copy of formatted sources) give what the plain paths give:
the same line numbers in messages, the same values, the same split files."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

import tasks.data.preparation as tp
import tasks.data.readers as tv
from tasks.config import PipelineConfig
from tasks.data.validate import validate_source

TITAN = "amazon.titan-text-express-v1:0:8k"
NOVA = "amazon.nova-micro-v1:0:128k"


def readline_lines(data: bytes, cap: int) -> list[tuple[int, bytes | None, int]]:
    """What a ``readline(cap + 1)`` loop yields (the reader's contract, written the plain way)."""
    fh, out, lineno = io.BytesIO(data), [], 0
    while raw := fh.readline(cap + 1):
        lineno += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            size = len(raw)
            while (chunk := fh.readline(1 << 20)):
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
            out.append((lineno, None, size))
        else:
            out.append((lineno, raw, len(raw)))
    return out


def test_chunked_reader_gives_the_lines_readline_gives(monkeypatch):
    monkeypatch.setattr(tv, "MAX_LINE_BYTES", 40)
    rng = random.Random(3)
    for chunk in (7, 16, 64):
        monkeypatch.setattr(tv, "READ_CHUNK", chunk)
        for _ in range(60):
            lengths = [rng.choice([0, 1, 5, 39, 40, 41, 42, 90, 200]) for _ in range(rng.randint(0, 12))]
            data = b"".join(b"x" * n + b"\n" for n in lengths)
            if rng.random() < 0.5:
                data += b"y" * rng.choice([1, 40, 41, 100])           # last line without a newline
            assert list(tv.iter_raw_lines(io.BytesIO(data))) == readline_lines(data, 40), (chunk, data)


def test_overlong_line_is_located_and_later_lines_keep_their_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tv, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(tv, "READ_CHUNK", 256)
    lines = [json.dumps({"prompt": f"q{i}", "completion": "a"}) for i in range(40)]
    lines[10] = json.dumps({"prompt": "x" * 5000, "completion": "a"})
    lines[30] = json.dumps({"prompt": "", "completion": "a"})
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = validate_source(p, TITAN, "fine-tuning")
    assert [(x.line, x.field) for x in r.problems] == [(11, "record"), (31, "prompt")]
    assert "line is 5.0 KB long" in r.problems[0].message
    assert r.records == 40


def test_numbers_json_reads_exactly_are_kept_exactly(tmp_path):
    """orjson turns an integer past 64 bits into a float: such records take json, which keeps them exactly.
    (This test used to expect a NaN row to become the training text "nan"; issue 16 makes NaN a located
    problem, asserted in test_nan_is_a_located_problem_not_the_text_nan below.)"""
    p = tmp_path / "raw.jsonl"
    rows = [{"text": f"order number {i} status", "category": 123456789012345678901234567890 + i} for i in range(30)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = PipelineConfig.model_validate({"name": "t", "base_model": NOVA, "data": {
        "source": str(p), "columns": {"prompt": "text", "completion": "category"}}})
    prepared = tp.prepare(cfg, tmp_path / "o")
    answers = set()
    for f in (prepared.train, prepared.validation, prepared.test):
        for ln in Path(f.path).read_text(encoding="utf-8").splitlines() if f else []:
            answers.add(json.loads(ln)["messages"][1]["content"][0]["text"])
    assert "123456789012345678901234567890" in answers and len(answers) == 30


def test_nan_is_a_located_problem_not_the_text_nan(tmp_path):
    p = tmp_path / "raw.jsonl"
    rows = [{"text": f"order number {i} status", "category": f"c{i % 3}"} for i in range(30)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"text": "nan row", "category": NaN}\n',
                 encoding="utf-8")
    cfg = PipelineConfig.model_validate({"name": "t", "base_model": NOVA, "data": {
        "source": str(p), "columns": {"prompt": "text", "completion": "category"}}})
    with pytest.raises(tp.DataValidationError) as info:
        tp.prepare(cfg, tmp_path / "o")
    assert [(x.line, x.field) for x in info.value.problems] == [(31, "json")]
    assert "NaN is not valid JSON" in info.value.problems[0].message


def line_by_line_copy(source, assign, write) -> int:
    """The plain pass 2 of a formatted source: one line at a time (what _copy_lines does in chunks)."""
    i = 0
    with open(source, "rb") as fh:
        for _lineno, raw, _size in tv.iter_raw_lines(fh):
            if raw is None or not raw.strip():
                continue
            k = int(assign[i]) if i < len(assign) else -1
            if k >= 0:
                write(k, raw.rstrip(b"\r\n") + b"\n", 1)
            i += 1
    return i


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_formatted_source_is_copied_as_the_line_by_line_path_copies_it(tmp_path, monkeypatch, newline):
    rng = random.Random(5)
    lines = [json.dumps({"prompt": f"Question {rng.randint(0, 400)} é?", "completion": rng.choice("abc")},
                        ensure_ascii=rng.random() < 0.5) for _ in range(1500)]
    p = tmp_path / "f.jsonl"
    p.write_bytes(newline.join(lines).encode("utf-8"))         # no newline after the last record
    cfg = PipelineConfig.model_validate({"name": "t", "base_model": TITAN, "data": {"source": str(p)}})
    monkeypatch.setattr(tp, "COPY_CHUNK", 1000)                # many chunk boundaries
    fast = tp.prepare(cfg, tmp_path / "fast")
    monkeypatch.setattr(tp, "_copy_lines", line_by_line_copy)
    plain = tp.prepare(cfg, tmp_path / "plain")
    for name in ("train", "validation", "test"):
        a, b = getattr(fast, name), getattr(plain, name)
        assert (a.sha256, a.records, a.bytes) == (b.sha256, b.records, b.bytes)
        assert b"\r" not in Path(a.path).read_bytes()
    assert fast.train.records + fast.validation.records + fast.test.records > 300


def test_unmapped_csv_with_a_quoting_error_reports_the_columns_not_a_traceback(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('text,category\nhello,greet\n"never closed,greet\n', encoding="utf-8")
    r = validate_source(p, TITAN, "fine-tuning")          # default columns prompt/completion: not in the header
    assert [(x.line, x.field) for x in r.problems] == [(1, "prompt"), (1, "completion")]
    assert "no such column; the header has: text, category" in r.problems[0].message
