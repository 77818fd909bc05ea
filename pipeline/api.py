"""The notebook API: the numbers production gives, one call at a time.

`read` applies the matching instrument profile, as `electrode-qc run` does, so that a
notebook and the production line agree on the same file; `measure` runs one file through
the same per-file measurement as a run (role from the discovery rules, the recipe, the
memory check). The ``eqc`` accessor chains the steps on a DataArray without losing its
coordinates and attributes::

    da = pipeline.read("map.x3p")
    da.eqc.level("plane").eqc.band(2.5, 80).eqc.texture(level="none")["Sa_um"]

Importing this module (any of `pipeline.read`, `pipeline.measure`, ...) registers the
accessor; a DataArray built elsewhere gets it once ``import pipeline.api`` has run.

Every exported function has an example below, run by the tests (`tests/test_api.py`).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import xarray as xr

from pipeline.batch.config import RunConfig, load_run_config
from pipeline.batch.measure import default_max_memory, measure_file
from pipeline.batch.sample import file_context
from pipeline.conformity import evaluate_spec, judge, load_spec
from pipeline.ingest.dataarray import require_pixel_size
from pipeline.ingest.registry import read as read_raw
from pipeline.instruments import Profile, calibrate_image
from pipeline.metrology.filters import band_pass
from pipeline.metrology.form import level as apply_level
from pipeline.metrology.recipe import load_recipe
from pipeline.metrology.texture import surface_texture
from pipeline.segmentation.cross_section import porosity_from_cross_section
from pipeline.segmentation.particles import find_particles
from pipeline.segmentation.protrusions import find_height_protrusions, find_protrusions

__all__ = ["EqcAccessor", "evaluate_spec", "judge", "load_recipe", "load_spec", "measure",
           "read"]


def read(path: str | Path, *, kind: str | None = None, calibrate: bool = True,
         profiles: list[Profile] | None = None, today: _dt.date | None = None,
         sha256: bool | str = True, as_xarray: bool = True):
    """Read an instrument file into a DataArray, with its matching instrument profile applied.

    Parameters
    ----------
    path : str or Path
        The file; its content, not its suffix, decides the reader.
    kind : {"height", "sem"}, optional
        Only a reader of this kind may open it (`pipeline.ingest.registry.read`).
    calibrate : bool, default True
        Apply the instrument profile that matches the file (calibration/instruments/, or
        the site folder's), as `electrode-qc run` does; False gives the file as the
        instrument wrote it.
    profiles : list of Profile, optional
        The profiles to match against (default: `pipeline.instruments.load_profiles()`).
    today : datetime.date, optional
        The date a profile's validity is judged on (default: today).
    sha256 : bool or str
        As for `pipeline.ingest.registry.read`.
    as_xarray : bool, default True
        False gives a `pipeline.ingest.dataarray.Raster` (no xarray import) where no profile
        applies; a profile that applies returns a DataArray.

    Examples
    --------
    >>> da = read("sample_images/embodiment-1/height-01.x3p")
    >>> da.dims, da.attrs["kind"], da.attrs["pixel_size_um"]
    (('y', 'x'), 'height', {'x': 0.14, 'y': 0.14})
    """
    da = read_raw(path, kind=kind, sha256=sha256, as_xarray=as_xarray)
    if not calibrate:
        return da
    return calibrate_image(da, profiles=profiles, today=today)


def measure(path: str | Path, *, config: RunConfig | None = None,
            previews: bool = False) -> dict[str, Any]:
    """One file measured as a run measures it: read, profile, role from the discovery rules,
    the recipe, the memory check (a run's default limit for one job), then the measurement
    of its role. A manifest's per-sample settings (roles, expected particle size) apply only
    in a run.

    Returns the per-file record of results.json (``path``, ``role``, ``status``, ``error``,
    ``exit_code``, the image's ``kind``, ``pixel_size_um``, ``calibration`` and other
    attributes, ``results``); a file that cannot be measured gives
    ``status`` "error" with the reason, as in a run, rather than an exception.

    Examples
    --------
    >>> rec = measure("sample_images/embodiment-1/height-01.x3p")
    >>> rec["role"], rec["status"], round(rec["results"]["Sa_um"], 3)
    ('height', 'ok', 0.068)
    """
    cfg = config or load_run_config(max_memory=default_max_memory(1))
    return measure_file(Path(path), file_context({}, cfg, previews))["record"]


def _like(da: xr.DataArray, values, **attrs: Any) -> xr.DataArray:
    """`values` with `da`'s coordinates and attributes (plus `attrs`)."""
    out = da.copy(data=values)
    out.attrs.update(attrs)
    return out


@xr.register_dataarray_accessor("eqc")
class EqcAccessor:
    """``da.eqc``: electrode-qc's steps on a DataArray that `read` (or a reader) made.

    Height maps: `level`, `band` (each returns a new DataArray with the same coordinates,
    so steps chain), `texture`, `protrusions`. SEM images: `particles`, `porosity`,
    `protrusions`. `calibrate` applies the matching instrument profile.

    Examples
    --------
    >>> da = read("sample_images/embodiment-1/height-01.x3p")
    >>> flat = da.eqc.level("plane").eqc.band(None, 5.0)
    >>> flat.dims == da.dims and flat.attrs["filtered"]
    True
    >>> round(flat.eqc.texture(level="none")["Sa_um"], 3)
    0.048
    >>> len(da.eqc.protrusions(threshold_um=0.3))
    19
    """

    def __init__(self, da: xr.DataArray):
        self._da = da

    def calibrate(self, *, profiles: list[Profile] | None = None,
                  today: _dt.date | None = None) -> xr.DataArray:
        """The matching instrument profile applied (`pipeline.instruments.calibrate_image`)."""
        return calibrate_image(self._da, profiles=profiles, today=today)

    def level(self, how: str = "plane") -> xr.DataArray:
        """The F-operator `how` ("none", "plane", "poly:N") removed from a height map."""
        dx, dy = require_pixel_size(self._da)
        return _like(self._da, apply_level(self._da.values, how, dx, dy), levelled=how)

    def band(self, lambda_s: float | None, lambda_c: float | None) -> xr.DataArray:
        """The S-L surface of a height map: ISO 16610-61 Gaussian S-filter `lambda_s` and
        L-filter `lambda_c` (micrometres; None skips one)."""
        dx, dy = require_pixel_size(self._da)
        z = band_pass(self._da.values.astype(float), dx, dy, lambda_s, lambda_c)
        return _like(self._da, z.astype(float), filtered=True, lambda_s_um=lambda_s,
                     lambda_c_um=lambda_c)

    def texture(self, **kw: Any) -> dict[str, Any]:
        """ISO 25178-2 parameters (`pipeline.metrology.texture.surface_texture`)."""
        return surface_texture(self._da, **kw)

    def particles(self, **kw: Any):
        """The particle table of an SEM image (`pipeline.segmentation.particles.find_particles`)."""
        return find_particles(self._da, **kw)

    def porosity(self, **kw: Any) -> dict[str, Any]:
        """The porosity of an SEM cross-section
        (`pipeline.segmentation.cross_section.porosity_from_cross_section`)."""
        return porosity_from_cross_section(self._da, **kw)

    def protrusions(self, **kw: Any):
        """Protrusions: of an SEM image (`pipeline.segmentation.protrusions.find_protrusions`),
        or of a height map above ``threshold_um`` (`find_height_protrusions`)."""
        if self._da.attrs.get("kind") == "height":
            return find_height_protrusions(self._da, **kw)
        return find_protrusions(self._da, **kw)

