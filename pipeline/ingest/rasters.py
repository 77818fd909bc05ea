"""Whether the readers build a light `pipeline.ingest.dataarray.Raster` instead of an
`xarray.DataArray` (`as_rasters`). It imports nothing heavy, so that the reader registry, and
the commands that only look at a file, start without numpy."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["as_rasters", "rasters_wanted"]

_WANTED = contextvars.ContextVar("electrode_qc_rasters", default=False)


@contextlib.contextmanager
def as_rasters() -> Iterator[None]:
    """Within this block (this thread or task), `sem_dataarray` and `height_dataarray`
    return a `Raster` rather than an `xarray.DataArray`."""
    token = _WANTED.set(True)
    try:
        yield
    finally:
        _WANTED.reset(token)


def rasters_wanted() -> bool:
    """True inside `as_rasters`."""
    return _WANTED.get()
