"""Run logging: the Prefect run logger when there is one, and account-id redaction on the loggers a run
writes through.

Nothing happens at import: ``install_log_redaction`` is called explicitly, by the flow modules
(flows/customize.py, flows/evaluate.py, flows/sweep.py, when they are imported), which every CLI verb that
talks to AWS goes through. It is idempotent.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.aws.redact import redact


class RedactAccountIds(logging.Filter):
    """Account ids inside ARNs become ``<account>`` in log records, exception text included, as in the
    manifest (tasks/run/manifest.py): run logs end up in the Prefect UI, CI output and bug reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# the loggers a run writes through: get_run_logger() and log_prints (flow/task runs), Prefect's engines
# (state messages carry exception text), and this package's fallback logger
REDACTED_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine",
                    "bedrock_forge")


def install_log_redaction() -> None:
    for name in REDACTED_LOGGERS:
        lg = logging.getLogger(name)
        if not any(isinstance(f, RedactAccountIds) for f in lg.filters):
            lg.addFilter(RedactAccountIds())


def get_logger() -> logging.Logger | Any:
    """The Prefect run logger inside a run, else the module logger (plain calls, tests)."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError outside a run
        return logging.getLogger("bedrock_forge")
