"""What every command shares: errors to stderr with their exit codes, strict JSON on stdout.

Like every module of the command line, it imports the layers below it only inside the
function that needs them: `import pipeline.cli` (and so `--help`) loads neither numpy nor
the readers."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from pipeline.errors import (
    EXIT_INTERNAL,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    ElectrodeQCError,
    WrongKind,
    one_line,
)
from pipeline.jsonio import to_json

__all__ = ["emit_json", "err", "error_text", "guard"]


def err(msg: str) -> None:
    typer.echo(msg, err=True)


def error_text(exc: ElectrodeQCError) -> str:
    """One line for one of our errors; a file of the other kind also names the commands
    that take it ("...is an SEM image (FEI), not a height map; use particles, ...")."""
    text = one_line(exc)
    if isinstance(exc, WrongKind):
        from pipeline.ingest.registry import commands_for  # the readers: when it is needed

        advice = commands_for(exc.found_kind)
        text += f"; {advice}" if advice else ""
    return text


def guard(fn: Callable[[], int]) -> None:
    """Run a command body; map our errors to their exit codes, running out of memory to 4,
    a file system that refuses a write (full, read-only, too large) to 2, and anything else
    to 70; one line each, no traceback."""
    try:
        code = fn()
    except ElectrodeQCError as exc:
        err(f"error: {error_text(exc)}")
        raise typer.Exit(exc.exit_code) from None
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except MemoryError:
        err("error: out of memory; lower --jobs or --max-memory, or measure the largest files "
            "alone")
        raise typer.Exit(EXIT_UNREADABLE) from None
    except OSError as exc:  # the machine's limits, not a bug: the disk, a quota, permissions
        where = f"{exc.filename}: " if exc.filename else ""
        err(f"error: {where}{exc.strerror or one_line(exc)}")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:  # the contract: an internal error is exit 70, with a message
        err(f"internal error: {type(exc).__name__}: {one_line(exc)}")
        raise typer.Exit(EXIT_INTERNAL) from None
    raise typer.Exit(code)


def emit_json(obj: Any) -> None:
    """Strict JSON on stdout: numpy scalars as numbers, NaN and infinities as null."""
    sys.stdout.write(to_json(obj, indent=2) + "\n")
