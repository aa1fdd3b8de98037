"""The pre-flight of a data source (tasks/data/sources.py) and the JSON guards of the JSONL reader
(tasks/data/scanner.py): hostile files get a located problem at once, never a hang or a traceback, and
valid files that look like the hostile ones are still accepted."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import threading
import zipfile
from pathlib import Path

import pytest

import tasks.data.sources as sources
from tasks.data.validate import validate_source

TITAN = "amazon.titan-text-express-v1:0:8k"
NOVA = "amazon.nova-micro-v1:0:128k"
PC = b'{"prompt": "a question here", "completion": "an answer"}\n'


def check(path, model=TITAN, **kw):
    """validate_source in a thread that must finish (a hang is a failure, not a stuck suite)."""
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", validate_source(path, model, "fine-tuning", **kw)),
                         daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), f"validate_source({path}) did not return"
    return out["r"]


def only(report):
    assert len(report.problems) == 1, [str(p) for p in report.problems]
    return report.problems[0]


@pytest.mark.parametrize("dev, what", [("/dev/zero", "character device"), ("/dev/urandom", "character device"),
                                       ("/dev/null", "character device")])
def test_devices_are_refused_at_once(dev, what):
    p = only(check(dev))
    assert (p.field, p.line) == ("file", None) and what in p.message


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    p = only(check(fifo))
    assert "named pipe (FIFO)" in p.message
    assert str(p).startswith(f"{fifo}: file: ")


def test_symlink_to_a_device_is_refused(tmp_path):
    link = tmp_path / "data.jsonl"
    link.symlink_to("/dev/zero")
    assert "character device" in only(check(link)).message


def test_directory_and_missing_file(tmp_path):
    assert only(check(tmp_path)).message == "is a directory"
    assert only(check(tmp_path / "nope.jsonl")).message == "not found"


def test_unreadable_file_is_named_as_a_permission_error(tmp_path, monkeypatch):
    f = tmp_path / "secret.jsonl"
    f.write_bytes(PC)
    real = os.open

    def deny(path, *a, **kw):
        if str(path) == str(f):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(sources.os, "open", deny)
    p = only(check(f))
    assert p.field == "file" and p.message.startswith("permission denied")


def _zip(data: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("train.jsonl", data)
    return buf.getvalue()


@pytest.mark.parametrize("name, blob, what, hint", [
    ("gzip", gzip.compress(PC * 5, mtime=0), "gzip-compressed", "gunzip"),
    ("bzip2", bz2.compress(PC * 5), "bzip2-compressed", "bunzip2"),
    ("bzip2-empty", bz2.compress(b""), "bzip2-compressed", "bunzip2"),
    ("xz", lzma.compress(PC * 5), "xz-compressed", "unxz"),
    ("zip", _zip(PC * 5), "a zip archive", "unzip"),
    ("zstd", b"\x28\xb5\x2f\xfd\x00\x58\x51\x00\x00" + PC, "zstd-compressed", "unzstd"),
])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_compressed_files_are_named_with_the_tool_that_opens_them(tmp_path, name, blob, what, hint, suffix):
    f = tmp_path / f"{name}{suffix}"
    f.write_bytes(blob)
    p = only(check(f))
    assert p.field == "file" and what in p.message and hint in p.fix


@pytest.mark.parametrize("codec, name, iconv", [
    ("utf-16", "UTF-16 LE", "iconv -f UTF-16 "), ("utf-16-le", "UTF-16 LE", "iconv -f UTF-16LE "),
    ("utf-16-be", "UTF-16 BE", "iconv -f UTF-16BE "), ("utf-32", "UTF-32 LE", "iconv -f UTF-32 "),
    ("utf-32-le", "UTF-32 LE", "iconv -f UTF-32LE "), ("utf-32-be", "UTF-32 BE", "iconv -f UTF-32BE "),
])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_utf16_and_utf32_are_detected_with_an_iconv_hint(tmp_path, codec, name, iconv, suffix):
    text = PC.decode() if suffix == ".jsonl" else "prompt,completion\na question,an answer\n"
    f = tmp_path / f"d{suffix}"
    f.write_bytes(text.encode(codec))
    p = only(check(f))
    assert (p.line, p.field) == (1, "encoding") and name in p.message
    assert iconv in p.fix and "latin1" not in p.fix


def test_binary_and_cr_only_files(tmp_path):
    b = tmp_path / "b.jsonl"
    b.write_bytes(b'{"prompt": "a"}\n\x00\x01\x02')
    assert "binary" in only(check(b)).message
    cr = tmp_path / "cr.jsonl"
    cr.write_bytes(PC.rstrip(b"\n") + b"\r" + PC.rstrip(b"\n") + b"\r")
    p = only(check(cr))
    assert (p.line, p.field) == (1, "line") and "CR-only" in p.message and "tr '\\r' '\\n'" in p.fix


def test_crlf_and_a_single_trailing_cr_are_not_cr_only(tmp_path):
    rows = [json.dumps({"prompt": f"question {i}", "completion": "yes"}) for i in range(40)]
    f = tmp_path / "crlf.jsonl"
    f.write_bytes(("\r\n".join(rows) + "\r\n").encode())
    assert check(f).ok
    one = tmp_path / "one.jsonl"
    one.write_bytes(PC.rstrip(b"\n") + b"\r")
    assert not any("CR-only" in p.message for p in check(one).problems)


# ---------------------------------------------------------------------------------------------
# JSON guards
# ---------------------------------------------------------------------------------------------
def _pc_file(tmp_path, bad_line: str, n: int = 40) -> Path:
    rows = [json.dumps({"prompt": f"question number {i}", "completion": "an answer"}) for i in range(n)]
    rows[n // 2] = bad_line
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return f


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "a", "completion": "b", "prompt": "c"}', 'duplicate key "prompt"'),
    ('{"prompt":"a","prompt":"c","completion":"b"}', 'duplicate key "prompt"'),
    ('{"prompt": "a", "completion": "b", "completion": 7}', 'duplicate key "completion"'),
    ('{"prompt": "a", "completion": NaN}', "NaN is not valid JSON"),
    ('{"prompt": "a", "completion": Infinity}', "Infinity is not valid JSON"),
    ('{"prompt": "a", "completion": -Infinity}', "-Infinity is not valid JSON"),
    ('{"prompt": "a", "completion": 1e999}', "out of range"),
    ('{"prompt": "a", "completion": ' + "9" * 5000 + "}", "too long to read"),
    ('{"prompt": "a", "completion": "b", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"prompt": "\\ud800 lone", "completion": "b"}', "unpaired surrogate"),
])
def test_json_that_parses_but_must_not_be_trained_on_is_located(tmp_path, line, message):
    p = only(check(_pc_file(tmp_path, line)))
    assert (p.line, p.field) == (21, "json") and message in p.message, str(p)


def test_duplicate_keys_in_nested_objects_are_found(tmp_path):
    rec = '{"schemaVersion": "bedrock-conversation-2024", "messages": [{"role": "user", "role": "assistant", ' \
          '"content": [{"text": "hi"}]}, {"role": "assistant", "content": [{"text": "ok"}]}]}'
    f = tmp_path / "n.jsonl"
    f.write_text(rec + "\n", encoding="utf-8")
    assert any('duplicate key "role"' in p.message for p in check(f, NOVA).problems)


def test_duplicate_key_that_is_not_a_name_is_not_echoed(tmp_path):
    p = only(check(_pc_file(tmp_path, '{"prompt": "a", "completion": "b", "root:x:0:0": 1, "root:x:0:0": 2}')))
    assert "root:x" not in p.message + p.fix and "duplicate key" in p.message


@pytest.mark.parametrize("line", [
    '{"prompt": "say \\"hi\\" please", "completion": "ok"}',       # escaped quotes: the slow path, still valid
    '{"prompt": "a path C:\\\\", "completion": "b \\\\"}',         # strings ending in a backslash
    '{"prompt": "an emoji \\ud83d\\ude00 pair", "completion": "b"}',  # a complete surrogate pair
    '{"prompt": "the number 1e999 in text", "completion": "NaN"}',  # the words, as strings
])
def test_lines_that_look_like_the_guarded_ones_are_valid(tmp_path, line):
    assert check(_pc_file(tmp_path, line)).ok


def test_a_duplicate_key_is_never_prepared(tmp_path):
    from tasks.config import PipelineConfig
    from tasks.data.preparation import prepare
    from tasks.data.problems import DataValidationError

    f = _pc_file(tmp_path, '{"prompt": "first", "completion": "b", "prompt": "Bot: second"}')
    cfg = PipelineConfig.model_validate({"name": "t", "base_model": TITAN, "data": {"source": str(f)}})
    with pytest.raises(DataValidationError, match="duplicate key"):
        prepare(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "train.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------
def test_whitespace_only_csv_says_so(tmp_path):
    f = tmp_path / "w.csv"
    f.write_text("   \n\t\n  ,  \n", encoding="utf-8")
    p = only(check(f))
    assert p.field == "file" and "no header row" in p.message and "blank or whitespace" in p.message


def test_a_csv_header_error_never_echoes_a_line_that_is_not_column_names(tmp_path):
    f = tmp_path / "passwd.csv"
    f.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
                 encoding="utf-8")
    r = check(f)
    assert r.problems and all("root" not in p.message + p.fix and "bash" not in p.message + p.fix
                                for p in r.problems)
    assert "do not read as column names" in r.problems[0].message


def test_a_mapped_column_named_twice_is_an_error(tmp_path):
    f = tmp_path / "dup.csv"
    f.write_text("prompt,completion,prompt\na,b,c\n", encoding="utf-8")
    p = only(check(f))
    assert (p.line, p.field) == (1, "prompt") and "2 times" in p.message


def test_parquet_nan_text_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": [1.5, float("nan")], "completion": ["a", "b"]}), f)
    p = only(check(f))
    assert (p.line, p.field) == (2, "prompt") and "not a finite number" in p.message


# ---------------------------------------------------------------------------------------------
# s3://
# ---------------------------------------------------------------------------------------------
class _Body:
    def __init__(self, data: bytes):
        self.data, self.pos, self.closed = data, 0, False

    def read(self, n: int = -1) -> bytes:
        n = len(self.data) - self.pos if n < 0 else n
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def close(self) -> None:
        self.closed = True


def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


class _S3:
    def __init__(self, data: bytes | None = None, error=None):
        self.data, self.error, self.bodies = data, error, []

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        if self.error is not None:
            raise self.error
        self.bodies.append(_Body(self.data or b""))
        return {"Body": self.bodies[-1]}


@pytest.mark.parametrize("code, status, message", [
    ("NoSuchKey", 404, "object not found"), ("404", 404, "object not found"),
    ("NoSuchBucket", 404, "bucket 'b' not found"), ("AccessDenied", 403, "access denied"),
])
def test_s3_errors_are_clear_messages(tmp_path, code, status, message):
    with pytest.raises(sources.SourceProblem) as info:
        sources.fetch_s3(_S3(error=_client_error(code, status)), "s3://b/k/train.jsonl", tmp_path / "x")
    assert message in info.value.message
    assert "ClientError" not in info.value.message


def test_s3_object_is_sniffed_before_it_is_written(tmp_path):
    big = gzip.compress(os.urandom(1 << 21))
    s3 = _S3(big)
    with pytest.raises(sources.SourceProblem, match="gzip-compressed"):
        sources.fetch_s3(s3, "s3://b/train.jsonl", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert s3.bodies[0].pos <= sources.SNIFF_BYTES and s3.bodies[0].closed   # the rest is never read


def test_s3_object_is_streamed_whole(tmp_path):
    data = PC * 50_000                     # several S3_CHUNKs
    sources.fetch_s3(_S3(data), "s3://b/d/train.jsonl", tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == data


def test_s3_prefix_is_not_an_object(tmp_path):
    with pytest.raises(sources.SourceProblem, match="folder"):
        sources.fetch_s3(_S3(PC), "s3://b/data/", tmp_path / "x")
