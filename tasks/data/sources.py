"""Opening a data source before any record is read: the pre-flight every reader goes through.

- **Only regular files** are read (``open_regular``): the file is opened with ``O_NONBLOCK`` (a FIFO with no
  writer does not block the open) and checked with ``fstat`` on the open descriptor (no race between a check
  and the open), so ``/dev/zero``, ``/dev/urandom``, FIFOs, sockets and directories are refused at once with
  a located problem; a missing or unreadable file is named as such.
- **Sniffed** (``sniff``) from its first ``SNIFF_BYTES``: compression from the magic bytes (gzip, bzip2, xz,
  zip, zstd), text encodings from the byte-order mark or the NUL pattern of JSON/CSV text (UTF-16/32 LE/BE;
  the pattern of RFC 8259's predecessor RFC 4627 §3), other binary content (NUL bytes), and CR-only line
  endings, each with the command that fixes it.
- **S3 objects** (``fetch_s3``) get the same sniff on the first bytes of one streamed ``GetObject`` before the
  rest is written to disk, and "object not found" / "bucket not found" / "access denied" instead of a raw
  ``ClientError``.

Every refusal is a ``SourceProblem`` (field, message, fix); the readers turn it into a located ``Problem``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

SNIFF_BYTES = 1 << 16          # one read of the reader's chunk size (tasks.data.readers.READ_CHUNK)
S3_CHUNK = 1 << 20             # bytes written at a time when an S3 object is streamed to disk

_NOT_REGULAR = (
    (stat.S_ISDIR, "is a directory", "pass a JSONL, CSV or Parquet file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not a regular file",
     "write the data to a file first; forge reads regular files only"),
    (stat.S_ISCHR, "is a character device (like /dev/zero), not a regular file",
     "pass a JSONL, CSV or Parquet file; forge reads regular files only"),
    (stat.S_ISBLK, "is a block device, not a regular file", "pass a JSONL, CSV or Parquet file"),
    (stat.S_ISSOCK, "is a socket, not a regular file", "pass a JSONL, CSV or Parquet file"),
)

# magic bytes of compressed files (each format's own specification: RFC 1952 gzip, the bzip2 "BZh" + level
# header, the xz file format, PKWARE APPNOTE local/end headers, RFC 8878 zstd frames)
_COMPRESSED = (
    (b"\x1f\x8b", "gzip-compressed", "gunzip -k FILE"),
    (b"\xfd7zXZ\x00", "xz-compressed", "unxz -k FILE"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "unzstd FILE"),
    (b"PK\x03\x04", "a zip archive", "unzip FILE"),
    (b"PK\x05\x06", "an empty zip archive", "unzip FILE"),
)

# byte-order marks, longest first (a UTF-32 LE BOM starts with the UTF-16 LE one)
_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32 BE", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32 LE", "UTF-32"),
    (b"\xfe\xff", "UTF-16 BE", "UTF-16"),
    (b"\xff\xfe", "UTF-16 LE", "UTF-16"),
)


class SourceProblem(Exception):
    """Why a source cannot be read as data: ``field: message (fix)``; ``line`` when it is about a line."""

    def __init__(self, message: str, fix: str, field: str = "file", line: int | None = None):
        super().__init__(message)
        self.message, self.fix, self.field, self.line = message, fix, field, line


def open_regular(path: str | Path) -> IO[bytes]:
    """The file opened for binary reading, or ``SourceProblem`` when it is missing, unreadable or not a
    regular file. Never blocks: ``O_NONBLOCK`` on the open, the type read from the open descriptor."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SourceProblem("not found", "check the path") from None
    except PermissionError:
        raise SourceProblem("permission denied: this user cannot read it",
                            "check its permissions (ls -l) or run forge as a user who can read it") from None
    except IsADirectoryError:     # pragma: no cover - Linux opens a directory read-only; other systems may not
        raise SourceProblem("is a directory", "pass a JSONL, CSV or Parquet file") from None
    except OSError as e:
        raise SourceProblem(f"cannot be opened: {e.strerror or e}", "check the path and the file") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:          # pragma: no cover - fstat on an open descriptor
        os.close(fd)
        raise SourceProblem(f"cannot be read: {e.strerror or e}", "check the file") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        for test, message, fix in _NOT_REGULAR:
            if test(mode):
                raise SourceProblem(message, fix)
        raise SourceProblem("is not a regular file", "pass a JSONL, CSV or Parquet file")   # pragma: no cover
    return os.fdopen(fd, "rb")


def read_head(fh: IO[bytes]) -> bytes:
    """The first ``SNIFF_BYTES`` of an open file, which is rewound; a read error is a ``SourceProblem``."""
    try:
        head = fh.read(SNIFF_BYTES)
        fh.seek(0)
    except PermissionError:
        raise SourceProblem("permission denied while reading it", "check its permissions (ls -l)") from None
    except OSError as e:
        raise SourceProblem(f"cannot be read: {e.strerror or e}", "check the file (disk, network share)") from None
    return head


def sniff(head: bytes, kind: str) -> SourceProblem | None:
    """What in the first bytes of a ``jsonl`` / ``csv`` source says it is not UTF-8 text with ``\\n`` line
    endings (None: nothing). A Parquet source is binary by design and is not sniffed."""
    if kind == "parquet" or not head:
        return None
    for magic, what, cmd in _COMPRESSED:
        if head.startswith(magic):
            return SourceProblem(f"is {what}, not plain text", f"decompress it first, e.g. {cmd}; forge reads "
                                 "plain JSONL, CSV or Parquet")
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return SourceProblem("is bzip2-compressed, not plain text",
                             "decompress it first, e.g. bunzip2 -k FILE; forge reads plain JSONL, CSV or Parquet")
    enc = _utf16_or_32(head)
    if enc is not None:
        name, iconv_name = enc
        return SourceProblem(f"is {name} text, not UTF-8", f"convert it, e.g. iconv -f {iconv_name} -t UTF-8 FILE "
                             "> FILE.utf8", field="encoding", line=1)
    nul = head.find(b"\x00")
    if nul >= 0:
        return SourceProblem(f"is binary, not text (a NUL byte at offset {nul})",
                             "pass a JSONL, CSV or Parquet file", field="encoding")
    if b"\n" not in head and b"\r" in head.rstrip(b"\r"):
        return SourceProblem("has CR-only line endings (classic Mac): records are separated by \\r, not \\n",
                             "convert the line endings, e.g. tr '\\r' '\\n' < FILE > FILE.unix", field="line", line=1)
    return None


def _utf16_or_32(head: bytes) -> tuple[str, str] | None:
    """(name, iconv name) when the first bytes are a UTF-16/32 byte-order mark or the NUL pattern of
    UTF-16/32 text whose first characters are ASCII (``{``, ``[``, a header letter): RFC 4627 §3."""
    for bom, name, iconv_name in _BOMS:
        if head.startswith(bom):
            return name, iconv_name
    if len(head) < 4:
        return None
    b = head[:4]
    z = [x == 0 for x in b]
    if z == [True, True, True, False]:
        return "UTF-32 BE", "UTF-32BE"
    if z == [False, True, True, True]:
        return "UTF-32 LE", "UTF-32LE"
    if z == [True, False, True, False]:
        return "UTF-16 BE", "UTF-16BE"
    if z == [False, True, False, True]:
        return "UTF-16 LE", "UTF-16LE"
    return None


def kind_of(path: str | Path, head: bytes) -> str:
    """``csv`` (.csv / .tsv), ``parquet`` (.parquet / .pq or the ``PAR1`` magic) or ``jsonl``."""
    suf = Path(path).suffix.lower()
    if suf in (".csv", ".tsv"):
        return "csv"
    if suf in (".parquet", ".pq") or head.startswith(b"PAR1"):
        return "parquet"
    return "jsonl"


def open_source(path: str | Path, kind: str = "auto") -> tuple[IO[bytes], str]:
    """The pre-flight of a local source: (open file at offset 0, kind) or ``SourceProblem``."""
    fh = open_regular(path)
    try:
        head = read_head(fh)
        if kind not in ("jsonl", "csv", "parquet"):
            kind = kind_of(path, head)
        problem = sniff(head, kind)
    except BaseException:
        fh.close()
        raise
    if problem is not None:
        fh.close()
        raise problem
    return fh, kind


# ---------------------------------------------------------------------------------------------
# s3:// sources
# ---------------------------------------------------------------------------------------------
def s3_problem(exc: BaseException, uri: str) -> SourceProblem | None:
    """A clear message for a failed S3 read (None: not a "this object cannot be read" error)."""
    from tasks.aws.errors import error_code

    code = error_code(exc)
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    bucket = uri[len("s3://"):].partition("/")[0]
    if code == "NoSuchBucket":
        return SourceProblem(f"bucket {bucket!r} not found", "check the bucket name and the region (aws.region)")
    if code in ("NoSuchKey", "NotFound", "404") or status == 404:
        return SourceProblem("object not found", f"check the key: aws s3 ls s3://{bucket}/ lists what is there")
    if code in ("AccessDenied", "AccessDeniedException", "Forbidden", "403") or status == 403:
        return SourceProblem("access denied (s3:GetObject)",
                             "grant the caller s3:GetObject on the object (and s3:ListBucket on the bucket, so "
                             "that a missing key reads as not found); check the bucket policy and KMS key access")
    if code in ("InvalidObjectState",):
        return SourceProblem("is archived (Glacier storage class)",
                             "restore the object first (aws s3api restore-object)")
    return None


def fetch_s3(s3: Any, uri: str, dest: Path) -> None:
    """Stream ``uri`` into ``dest`` with one ``GetObject``: the first bytes are sniffed like a local file's
    before anything else is read. ``SourceProblem`` for a missing / forbidden object or a bad sniff."""
    from tasks.aws.s3uri import split_s3_uri

    bucket, key = split_s3_uri(uri)
    if not key or key.endswith("/"):
        raise SourceProblem("names a folder (prefix), not an object", "point data.source at one object")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as e:  # noqa: BLE001 - botocore ClientError; anything else is re-raised below
        problem = s3_problem(e, uri)
        if problem is None:
            raise
        raise problem from None
    try:
        head = _read_up_to(body, SNIFF_BYTES)
        problem = sniff(head, kind_of(key, head))
        if problem is not None:
            raise problem
        with open(dest, "wb") as out:
            out.write(head)
            while chunk := body.read(S3_CHUNK):
                out.write(chunk)
    finally:
        body.close()


def _read_up_to(body: Any, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = body.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
