"""The prepare stage: the Prefect side of ``tasks.data.preparation.prepare`` (raw data -> the base model's
training format, quality report, seeded train/validation/test split).

``prepare_task`` is cached on its inputs, the task source, the source file (size/mtime, or the S3 object's
ETag) and the code prepare's output depends on (``_code_version``), persisted under ``FORGE_CACHE_DIR``
so a rerun in a new process skips it (prefect-patterns §2). The work itself, with no Prefect import, is
``tasks/data/preparation.py`` (``forge prepare`` calls it directly); ``prepare`` is re-exported here.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from prefect import Task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from tasks.config import PipelineConfig
from tasks.data.preparation import prepare
from tasks.run.types import PreparedData

__all__ = ["CACHE_DIR", "prepare", "prepare_task"]

CACHE_DIR = Path(os.environ.get("FORGE_CACHE_DIR", ".forge-cache"))

_TASKS = Path(__file__).resolve().parent


def _source_fingerprint(config: PipelineConfig) -> str:
    """Changes when the source file changes (path, size, mtime): part of the cache key."""
    src = config.data.source
    if src.startswith("s3://"):
        try:   # the object's ETag + size: a replaced object is not served from the cache
            from tasks.aws.clients import make_clients
            from tasks.aws.s3uri import split_s3_uri

            bucket, key = split_s3_uri(src)
            head = make_clients(config.aws).s3.head_object(Bucket=bucket, Key=key)
            return f"{src}:{head.get('ETag')}:{head.get('ContentLength')}"
        except Exception:  # noqa: BLE001 - no access here: prepare itself will report it
            return src
    try:
        st = Path(src).stat()
        return f"{Path(src).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return f"{src}:missing"


def _code_files() -> list[Path]:
    """The files prepare's output depends on: this module, every tasks/data and tasks/config module (the
    config checks feed prepare's problems) and the catalog's data (limits, formats)."""
    return [_TASKS / "prepare.py", *sorted((_TASKS / "data").glob("*.py")), *sorted((_TASKS / "config").glob("*.py")),
            _TASKS / "catalog" / "__init__.py", _TASKS / "catalog" / "catalog.yaml"]


def _code_version() -> str:
    """Hash of the modules prepare's output depends on: TASK_SOURCE only sees the thin task body."""
    h = hashlib.sha256()
    for path in _code_files():
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(str(path.relative_to(_TASKS)).encode())
    return h.hexdigest()[:16]


class _SourceFile(CachePolicy):
    """Cache-key part that changes when the source file or the preparing code changes."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        cfg = inputs.get("config")
        if isinstance(cfg, dict):
            cfg = PipelineConfig.model_validate(cfg)
        return f"{_source_fingerprint(cfg)}|{_code_version()}" if isinstance(cfg, PipelineConfig) else None


class _PrepareTask(Task):
    """``refresh=True`` re-runs and overwrites the cache entry (``refresh_cache``, prefect-patterns §2);
    a cached result whose files are gone is redone the same way."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        refresh = kwargs.get("refresh", args[2] if len(args) > 2 else False)
        if refresh and not self.refresh_cache:
            return self.with_options(refresh_cache=True)(*args, **kwargs)
        result = super().__call__(*args, **kwargs)
        if isinstance(result, PreparedData) and not self.refresh_cache and not _files_intact(result):
            return self.with_options(refresh_cache=True)(*args, **kwargs)
        return result


def _files_intact(p: PreparedData) -> bool:
    files = [f for f in (p.train, p.validation, p.test) if f is not None]
    return all(Path(f.path).is_file() and Path(f.path).stat().st_size == f.bytes for f in files)


def _prepare_fn(config: PipelineConfig, out_dir: str, refresh: bool = False) -> PreparedData:
    return prepare(config, out_dir)


# The "prepare" task: cached on inputs (not ``refresh``) + task source + the source file's size/mtime,
# persisted under FORGE_CACHE_DIR so a rerun in a new process skips it (prefect-patterns §2).
prepare_task = _PrepareTask(
    fn=_prepare_fn, name="prepare",
    cache_policy=(INPUTS - "refresh") + TASK_SOURCE + _SourceFile(),
    persist_result=True, result_storage=CACHE_DIR, cache_expiration=timedelta(days=7),
)
