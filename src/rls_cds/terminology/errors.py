"""The one error the loader raises: it names the file and line of the first problem and keeps all of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class TerminologyError(Exception):
    """A terminology table is invalid. ``file``/``line``/``message`` describe the first problem;
    ``problems`` lists every problem found in the same load (the `check` command prints them all)."""

    def __init__(self, file: str, line: int, message: str, problems: list[Problem] | None = None):
        self.file = file
        self.line = line
        self.message = message
        self.problems = problems or [Problem(file, line, message)]
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
        super().__init__(f"{file}:{line}: {message}{suffix}")

    @classmethod
    def from_problems(cls, problems: list[Problem]) -> TerminologyError:
        first = problems[0]
        return cls(first.file, first.line, first.message, problems)
