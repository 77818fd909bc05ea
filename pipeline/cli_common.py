"""What every command shares: errors to stderr with their exit codes, strict JSON on stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from pipeline.errors import EXIT_INTERNAL, ElectrodeQCError

__all__ = ["emit_json", "err", "guard"]


def err(msg: str) -> None:
    typer.echo(msg, err=True)


def guard(fn: Callable[[], int]) -> None:
    """Run a command body; map our errors to their exit codes and anything else to 70."""
    try:
        code = fn()
    except ElectrodeQCError as exc:
        err(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:  # the contract: an internal error is exit 70, with a message
        err(f"internal error: {type(exc).__name__}: {exc}")
        raise typer.Exit(EXIT_INTERNAL) from None
    raise typer.Exit(code)


def emit_json(obj: Any) -> None:
    """Strict JSON on stdout: numpy scalars as numbers, NaN and infinities as null."""
    from pipeline.report_text import to_json

    sys.stdout.write(to_json(obj, indent=2) + "\n")
