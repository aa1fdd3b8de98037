"""Strict, bounded YAML for configs: what a reviewer reads is what runs.

``read_yaml(path)`` returns the document (a dict) or raises ``YamlProblem`` with ``FILE:LINE: message``:

- only a regular file, at most ``MAX_BYTES``, UTF-8 (``/dev/zero``, a FIFO or a directory would block or lie);
- **duplicate keys** anywhere are an error naming both lines (PyYAML silently keeps the last one, so a
  second ``serving:`` block could set a commitment under a reviewed first block);
- nesting at most ``MAX_DEPTH`` deep, counted on the parser's events (iterative: a 20k-deep file is refused
  before PyYAML's recursive composer could overflow the stack);
- aliases bounded: at most ``MAX_ALIASES`` and an expanded size of at most ``MAX_NODES`` nodes (billion laughs,
  refused at the line of the innermost value whose aliases cross the bound);
- integers of at most ``MAX_INT_DIGITS`` digits (Python refuses to convert more than 4300 and a config
  never needs more than a few), scalars of at most ``MAX_SCALAR`` characters;
- mapping keys are strings.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_NODES = 20_000
MAX_INT_DIGITS = 30
MAX_SCALAR = 100_000

_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"


class YamlProblem(ValueError):
    """A located problem with the YAML text itself (``str()`` is the whole ``FILE[:LINE]: message`` line)."""


def _read_text(p: Path) -> str:
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise YamlProblem(f"{p}: file not found") from None
    except PermissionError:
        raise YamlProblem(f"{p}: permission denied: cannot read the config (check its mode and owner)") from None
    except OSError as err:
        raise YamlProblem(f"{p}: cannot open the config: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (device, FIFO or socket)"
            raise YamlProblem(f"{p}: is {kind}: give a YAML config file")
        if st.st_size > MAX_BYTES:
            raise YamlProblem(f"{p}: is {st.st_size:,} bytes; a config is at most {MAX_BYTES:,} bytes")
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            raw = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise YamlProblem(f"{p}: cannot read the config: {err.strerror or err}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(raw) > MAX_BYTES:
        raise YamlProblem(f"{p}: is larger than {MAX_BYTES:,} bytes; a config is at most that")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise YamlProblem(f"{p}:{line}: not UTF-8 (byte 0x{raw[err.start]:02x}): save the config as UTF-8") from None


def _scan_events(text: str, where: str) -> None:
    """Depth, alias count and scalar sizes, from the event stream (no recursion)."""
    depth = aliases = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        line = ev.start_mark.line + 1 if ev.start_mark else None
        at = f"{where}:{line}" if line else where
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlProblem(f"{at}: nesting is deeper than {MAX_DEPTH} levels; a config is a few levels deep")
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlProblem(f"{at}: more than {MAX_ALIASES} aliases (*name); write the values out")
        elif isinstance(ev, yaml.ScalarEvent) and len(ev.value) > MAX_SCALAR:
            raise YamlProblem(f"{at}: a value of {len(ev.value):,} characters; at most {MAX_SCALAR:,}")


def _check_tree(node: yaml.Node, where: str) -> None:
    """Duplicate and non-string keys, long integers, and the expanded size (aliases counted each time)."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:          # depth is bounded by _scan_events, so recursion is safe here
        key = id(n)
        if key in sizes:
            return sizes[key]
        sizes[key] = MAX_NODES + 1         # a cycle (not possible in YAML 1.1 safe load) counts as too big
        total = 1
        if isinstance(n, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in n.value:
                _check_key(k, seen, where)
                total += size(k) + size(v)
        elif isinstance(n, yaml.SequenceNode):
            total += sum(size(v) for v in n.value)
        elif isinstance(n, yaml.ScalarNode) and n.tag == _INT_TAG:
            digits = sum(ch.isdigit() for ch in n.value)
            if digits > MAX_INT_DIGITS:
                raise YamlProblem(f"{where}:{n.start_mark.line + 1}: an integer of {digits:,} digits; "
                                  f"at most {MAX_INT_DIGITS}")
        if total > MAX_NODES:
            # the innermost value that crosses the bound: the line of the anchor/aliases that blow it up
            raise YamlProblem(f"{where}:{n.start_mark.line + 1}: expands to more than {MAX_NODES:,} values "
                              f"({_aliases_on(n)}repeat their anchor's content); write the config out without "
                              "nested aliases")
        sizes[key] = total
        return total

    size(node)


def _aliases_on(n: yaml.Node) -> str:
    """``"the aliases *a, *b here "`` (the aliases on the value's line) or ``"the aliases under &x "`` (its anchor):
    names read from the source line, as composed nodes do not keep them; else ``"aliases "``."""
    buffer = getattr(n.start_mark, "buffer", None)
    lines = buffer.splitlines() if isinstance(buffer, str) else []
    line = lines[n.start_mark.line] if n.start_mark.line < len(lines) else ""
    names = sorted(set(re.findall(r"\*([A-Za-z0-9_\-]{1,40})", line)))[:3]
    if names:
        return f"the aliases {', '.join('*' + a for a in names)} here "
    anchor = re.search(r"&([A-Za-z0-9_\-]{1,40})", line)
    return f"the aliases under &{anchor.group(1)} " if anchor else "aliases "


def _check_key(k: yaml.Node, seen: dict[Any, int], where: str) -> None:
    line = k.start_mark.line + 1
    if k.tag == "tag:yaml.org,2002:merge":
        raise YamlProblem(f"{where}:{line}: merge keys ('<<') are not allowed in a config: write the keys out")
    if not isinstance(k, yaml.ScalarNode) or k.tag != _STR_TAG:
        shown = k.value if isinstance(k, yaml.ScalarNode) else "a collection"
        raise YamlProblem(f"{where}:{line}: key {shown!r} is not a string; config keys are names")
    if k.value in seen:
        raise YamlProblem(f"{where}:{line}: {k.value}: duplicate key (first at line {seen[k.value]}); "
                          "YAML keeps only one of them: delete one")
    seen[k.value] = line


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document in ``text`` after the checks above (``where`` names it in messages)."""
    try:
        _scan_events(text, where)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_tree(node, where)
        return yaml.SafeLoader(text).get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise YamlProblem(f"{where}{line}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    except (ValueError, OverflowError) as err:   # a scalar PyYAML cannot convert (e.g. a date out of range)
        if isinstance(err, YamlProblem):
            raise
        raise YamlProblem(f"{where}: a value cannot be read: {err}") from None


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    return parse_yaml(_read_text(p), str(p))
