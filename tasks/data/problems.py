"""What data validation reports: ``Problem`` (one located problem, ``FILE:LINE: field: message (fix)``),
``Collector`` (the problems of one file, capped), ``ValidationReport`` (one file's result) and
``DataValidationError`` (bad input, raised by prepare with every problem found).

``Problem`` itself is defined in ``tasks.config.problems`` (config checks report it too) and re-exported here.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from tasks.config.problems import Problem

__all__ = ["MAX_PROBLEMS_KEPT", "MAX_PROBLEMS_SHOWN", "Collector", "DataValidationError", "Problem",
           "ValidationReport", "env_max_problems"]

MAX_PROBLEMS_KEPT = 1000          # problems stored in a report (the count goes on)
MAX_PROBLEMS_SHOWN = 200          # lines printed before "... and N more"


def _capped_lines(problems: list[Problem], total: int, limit: int | None = MAX_PROBLEMS_SHOWN) -> list[str]:
    shown = problems if limit is None else problems[:limit]
    out = [str(p) for p in shown]
    if total > len(shown):
        out.append(f"... and {total - len(shown)} more problem(s)")
    return out


class DataValidationError(ValueError):
    """Bad input: every problem found, each printable as ``FILE:LINE: field: message (fix)``."""

    def __init__(self, problems: list[Problem], total: int | None = None):
        self.problems = list(problems)
        self.total = max(total or 0, len(self.problems))
        super().__init__(f"{self.total} data problem(s):\n" + "\n".join(self.lines(20)))

    def lines(self, limit: int | None = MAX_PROBLEMS_SHOWN) -> list[str]:
        return _capped_lines(self.problems, self.total, limit)

    def __reduce__(self):   # pickles whole (Prefect persists a failed task's exception)
        return (DataValidationError, (self.problems, self.total))


class ValidationReport(BaseModel):
    source: str
    records: int = 0
    problems: list[Problem] = Field(default_factory=list)
    total_problems: int = 0                  # can exceed len(problems) (only the first 1000 are kept)
    stats: dict = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.total_problems == 0 and not self.problems

    def lines(self, limit: int | None = MAX_PROBLEMS_SHOWN) -> list[str]:
        return _capped_lines(self.problems, max(self.total_problems, len(self.problems)), limit)

    def summary(self) -> str:
        n = max(self.total_problems, len(self.problems))
        if n == 0:
            return f"{self.source}: OK, {self.records} record(s)"
        return f"{self.source}: {n} problem(s) in {self.records} record(s)"


class Collector:
    """Collects problems for one file; keeps the first ``MAX_PROBLEMS_KEPT``, counts all."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []
        self.total = 0

    def add(self, line: int | None, fld: str, message: str, fix: str = "") -> None:
        self.total += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(Problem(file=self.file, line=line, field=fld, message=message, fix=fix))



def env_max_problems() -> int:
    """How many problems to print: ``FORGE_MAX_PROBLEMS``, else ``MAX_PROBLEMS_SHOWN``."""
    try:
        return int(os.environ.get("FORGE_MAX_PROBLEMS", MAX_PROBLEMS_SHOWN))
    except ValueError:
        return MAX_PROBLEMS_SHOWN
