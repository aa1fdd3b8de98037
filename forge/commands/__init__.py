"""The CLI verbs, one module each (see forge/cli.py)."""

from __future__ import annotations

import sys
from typing import Any


def load_config_or_report(path: str) -> Any | None:
    """The PipelineConfig at ``path``; on a config problem, print each located line to stderr and
    return None (the verb then exits 2)."""
    from tasks.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.problems:
            print(line, file=sys.stderr)
        return None
