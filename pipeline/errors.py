"""Typed errors. Each knows the process exit code the command line maps it to.

Exit codes (docs/design.md): 0 conforming / done, 1 non-conforming, 2 usage or config error,
3 indeterminate (guard band, missing calibration, a measurement that found nothing or cannot
be made as asked), 4 unreadable input (the file cannot be read, or its data cannot be real:
constant, blank, corrupt calibration; or it is too large for the memory limit), 70 internal
error: a bug, never bad input, a full disk or a memory limit (an output that cannot be
written is 2).

Which error for a bad file: when the file's data cannot be a real measurement (a constant
height block, a blank SEM image, an absurd pixel size), it is `UnreadableInput` (4); when the
data is plausible but the measurement finds nothing (no particles, no current collector) or
cannot be made as asked (pixel too coarse, everything masked), it is `MeasurementError` (3).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EXIT_INDETERMINATE",
    "EXIT_INTERNAL",
    "EXIT_NONCONFORMING",
    "EXIT_OK",
    "EXIT_UNREADABLE",
    "EXIT_USAGE",
    "ConfigError",
    "ElectrodeQCError",
    "MeasurementError",
    "MemoryLimitExceeded",
    "MissingCalibration",
    "OutputError",
    "UnreadableInput",
    "WrongKind",
    "one_line",
]

EXIT_OK = 0
EXIT_NONCONFORMING = 1
EXIT_USAGE = 2
EXIT_INDETERMINATE = 3
EXIT_UNREADABLE = 4
EXIT_INTERNAL = 70


class ElectrodeQCError(Exception):
    """Base of every error the product raises on purpose."""

    exit_code = EXIT_INTERNAL

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):
        # rebuilt from (path, problem) when it crosses a process boundary (a worker's error
        # returned to the parent); Exception's default would call __init__(message) alone
        return type(self), (self.path, self.problem)


class UnreadableInput(ElectrodeQCError):
    """A file that cannot be read (wrong format, truncated, corrupt, unsafe, empty of data), or
    whose data cannot be a real measurement (a constant height block, a blank image, an absurd
    pixel size)."""

    exit_code = EXIT_UNREADABLE


class WrongKind(UnreadableInput):
    """A readable file of the other kind: an SEM image given where a height map is asked, or
    the reverse (the wrong command for the file).

    Attributes
    ----------
    found_kind : str
        The kind the file is (``"sem"`` or ``"height"``).
    reader : str
        The name of the reader that recognises it.
    """

    def __init__(self, path: str | Path | None, problem: str, found_kind: str = "",
                 reader: str = ""):
        super().__init__(path, problem)
        self.found_kind = found_kind
        self.reader = reader

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.found_kind, self.reader)


class MissingCalibration(ElectrodeQCError):
    """A physical scale (pixel size, z scale) that the file does not give and nothing supplies."""

    exit_code = EXIT_INDETERMINATE


class ConfigError(ElectrodeQCError):
    """A recipe, spec or calibration file, or a command-line option, that is invalid."""

    exit_code = EXIT_USAGE


class MeasurementError(ElectrodeQCError):
    """Data that was read but in which the measurement finds nothing (no particles, no current
    collector) or that cannot be measured as asked (pixel too coarse, everything masked, too
    few valid points): the result is indeterminate (exit 3), not an unreadable input."""

    exit_code = EXIT_INDETERMINATE


class MemoryLimitExceeded(ElectrodeQCError):
    """A measurement whose estimated working memory exceeds the run's limit (``--max-memory``):
    refused before anything is allocated for it (exit 4, as an input this run cannot take)."""

    exit_code = EXIT_UNREADABLE


class OutputError(ElectrodeQCError):
    """An output file or folder that cannot be written: disk full, file too large,
    read-only file system, no permission, quota exceeded (exit 2: the output location given
    cannot take the results)."""

    exit_code = EXIT_USAGE


def one_line(text: object) -> str:
    """`text` (a message, an exception) on one line: runs of white space, newlines
    included, as one space."""
    return " ".join(str(text).split())
