"""One error type for bad input, so callers can catch it and users read where."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data; the message names the file, column and row."""

    def __init__(self, source: str, problem: str, column: str | None = None, row: int | None = None):
        where = [str(source)]
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {problem}")
        self.source, self.column, self.row, self.problem = source, column, row, problem
