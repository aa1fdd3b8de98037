"""Reading a source file: the chunked raw line reader, UTF-8 decoding with located errors, the file kind.

``iter_raw_lines`` streams a file in binary, ``READ_CHUNK`` bytes at a time split into lines, with a size
cap per line (``MAX_LINE_BYTES``): memory stays flat in the file size, and one enormous line is measured
and skipped rather than loaded. The JSONL / CSV / Parquet record readers are ``tasks.data.scanner``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tasks.data.problems import Collector

MAX_LINE_BYTES = 8 * 1024 * 1024  # our reader's cap (not a Bedrock figure): longer lines are measured, skipped
READ_CHUNK = 1 << 16               # bytes read at a time by iter_raw_lines


def iter_raw_lines(fh) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, bytes or None when longer than MAX_LINE_BYTES, size). Memory: one chunk + one line, capped.

    Reads ``READ_CHUNK`` bytes at a time and splits them (a ``readline`` call per line costs more than
    the checks on the line). The same lines as ``readline(MAX_LINE_BYTES + 1)`` would give: each keeps
    its newline (the last one may have none); a line longer than the cap is measured and skipped,
    never held. Reads ahead of the line it yields: iterate the one generator to the end, never the file.
    """
    cap = MAX_LINE_BYTES
    lineno = 0
    rest = b""
    skipping = -1                      # >= 0: bytes so far of an overlong line being skipped
    while True:
        chunk = fh.read(READ_CHUNK)
        if not chunk:
            break
        if skipping >= 0:
            nl = chunk.find(b"\n")
            if nl < 0:
                skipping += len(chunk)
                continue
            lineno += 1
            yield lineno, None, skipping + nl + 1
            skipping = -1
            chunk = chunk[nl + 1:]
        data = rest + chunk if rest else chunk
        parts = data.split(b"\n")
        rest = parts.pop()
        for ln in parts:
            lineno += 1
            size = len(ln) + 1
            yield (lineno, None, size) if size > cap + 1 else (lineno, ln + b"\n", size)
        if len(rest) > cap:            # no newline within the cap: an overlong line
            skipping, rest = len(rest), b""
    if skipping >= 0:
        yield lineno + 1, None, skipping
    elif rest:
        yield lineno + 1, rest, len(rest)


def decode(raw: bytes, lineno: int, c: Collector, strict: bool, warn: list[str]) -> str:
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        if strict:
            c.add(1, "file", "starts with a UTF-8 byte-order mark (BOM)", "save the file as UTF-8 without BOM")
        else:
            warn.append(f"{c.file}:1: byte-order mark (BOM) ignored")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        c.add(lineno, "encoding", f"byte 0x{raw[e.start]:02x} at column {e.start + 1} is not valid UTF-8",
              "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8")
        return raw.decode("utf-8", errors="replace")


def format_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def file_kind(path: Path) -> str:
    """``csv``, ``parquet`` or ``jsonl`` (by extension, else the Parquet magic bytes); never blocks on a FIFO
    or a device (``tasks.data.sources.open_regular``): an unreadable path is ``jsonl`` and reported by the reader."""
    from tasks.data import sources

    try:
        with sources.open_regular(path) as fh:
            head = fh.read(4)
    except (sources.SourceProblem, OSError):
        head = b""
    return sources.kind_of(path, head)
