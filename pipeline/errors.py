"""Typed errors. Each knows the process exit code the command line maps it to.

Exit codes (DESIGN.md): 0 conforming / done, 1 non-conforming, 2 usage or config error,
3 indeterminate (guard band, missing calibration), 4 unreadable input, 70 internal error.
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
    "MissingCalibration",
    "UnreadableInput",
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
    """A file that cannot be read: wrong format, truncated, corrupt, unsafe, or empty of data."""

    exit_code = EXIT_UNREADABLE


class MissingCalibration(ElectrodeQCError):
    """A physical scale (pixel size, z scale) that the file does not give and nothing supplies."""

    exit_code = EXIT_INDETERMINATE


class ConfigError(ElectrodeQCError):
    """A recipe, spec or calibration file, or a command-line option, that is invalid."""

    exit_code = EXIT_USAGE


class MeasurementError(ElectrodeQCError):
    """Data that was read but cannot be measured as asked (for example all points invalid)."""

    exit_code = EXIT_UNREADABLE
