"""The one exception hierarchy of dialbgm.

Every error a user can cause derives from :class:`DialbgmError`; the CLI maps each family to an
exit status, so scripts can tell bad input (2) from a failed run (1).
"""

from __future__ import annotations

from dataclasses import dataclass


class DialbgmError(Exception):
    """Base class of every error raised on purpose by dialbgm."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One defect in an input file, located as precisely as the format allows."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.field}: {self.message}"


class InputError(DialbgmError):
    """Bad input given by the user: a data file, a judge file, a CLI option."""

    exit_code = 2


class DataError(InputError):
    """A data file failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], header: str = "in the data") -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) {header}:\n{shown}{more}")


class ConfigError(InputError):
    """A judge, provider or override is malformed or inconsistent."""


class MissingKeyError(ConfigError):
    """A judge needs an API key whose environment variable is not set."""

    def __init__(self, judge: str, variable: str) -> None:
        self.variable = variable
        super().__init__(
            f"judge {judge!r} needs the environment variable {variable} (its API key); "
            f"set it and run again. Nothing was called."
        )


class JudgeDataError(DataError, ConfigError):
    """Valid data that one judge cannot take (more candidates than its aggregation or orders
    allow, no summary for context = summary, no caption for a judge that reads captions...):
    every problem, by file, line, field and item. A ConfigError too, since the judge's settings
    are half of it."""

    def __init__(self, judge: str, problems: list[Problem]) -> None:
        super().__init__(problems, f"for judge {judge!r}")


class TemplateError(ConfigError):
    """A prompt template failed to load or render."""


class ProviderError(DialbgmError):
    """A provider call failed after every retry (recorded on the unit as transport_error)."""


class ResultsError(InputError):
    """A results folder cannot be written or read as asked."""


class RunStoppedError(DialbgmError):
    """A run stopped before its end (its folder became unwritable, or every call was failing the
    same way); its journal keeps every call finished before, and ``--resume`` finishes it."""
