"""What data imports (knowledge base, clinic schedules) share: a problem found in a file, and
the error that rejects an import whole with every problem named by file, row and field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Problems listed in an error message (all of them stay on the exception).
MAX_PROBLEMS_SHOWN = 50


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an import: where (file, row, field) and what."""

    file: str
    row: int | None
    field: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f": row {self.row}"
            if self.line is not None:
                where += f" (line {self.line})"
        if self.field:
            where += f": field {self.field}"
        return f"{where}: {self.message}"


class ImportRejected(Exception):
    """An import was rejected whole; ``problems`` lists every problem found."""

    #: the first line of the message (what was rejected)
    headline = "import rejected, nothing was changed:"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - MAX_PROBLEMS_SHOWN
        if more > 0:
            shown += f"\n  ... and {more} more"
        super().__init__(f"{self.headline}\n{shown}")
