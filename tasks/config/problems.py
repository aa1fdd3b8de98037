"""``Problem``: one located problem, printed as ``FILE:LINE: field: message (fix)``.

The one shape every check reports in: the config checks (``tasks.config.checks``) and the data checks
(``tasks.data``, which adds the error and report types around it in ``tasks.data.problems``). It lives
here because tasks.data imports tasks.config, never the other way round.
"""

from __future__ import annotations

from pydantic import BaseModel


class Problem(BaseModel):
    file: str
    line: int | None = None
    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" + (f" ({self.fix})" if self.fix else "")
