"""Where a key sits in a YAML file, so config problems can say ``FILE:LINE``."""

from __future__ import annotations

from pathlib import Path


def yaml_line(path: str | Path, dotted: str) -> int | None:
    """1-based line of ``a.b.c`` in a YAML mapping file (None when absent or unreadable)."""
    try:
        import yaml

        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a line number is a nicety
        return None
    line = None
    for part in dotted.split("."):
        if node is None or not hasattr(node, "value") or not isinstance(node.value, list):
            return line
        nxt = None
        for item in node.value:
            if isinstance(item, tuple) and getattr(item[0], "value", None) == part:
                line = item[0].start_mark.line + 1
                nxt = item[1]
                break
        if nxt is None:
            return line
        node = nxt
    return line
