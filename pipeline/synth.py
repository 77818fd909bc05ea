"""Synthetic electrodes with known truth, written the way instruments write them.

Seeded and deterministic (`numpy.random.default_rng(seed)`): the same arguments give the
same bytes. Used by the tests, `sample_images/` and the benchmarks. Each generator returns
the data and a truth dict; the ``write_*`` functions put a file and ``<name>.truth.json``
beside it.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["height_map", "write_x3p", "write_truth"]


def height_map(
    shape: tuple[int, int] = (512, 512),
    *,
    pixel_um: float = 0.1,
    sa_um: float = 0.05,
    correlation_um: float = 1.0,
    protrusions: int = 0,
    protrusion_height_um: float = 0.5,
    protrusion_sigma_um: float = 1.0,
    tilt: tuple[float, float] = (0.0, 0.0),
    invalid_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A confocal-like height map with a chosen roughness and Gaussian protrusions.

    The roughness is Gaussian random texture (white noise filtered to an isotropic
    correlation length) scaled so that its Sa, on its own and about its own mean, equals
    `sa_um` exactly. Protrusions are Gaussian bumps of the given height and width at random
    positions at least four widths apart and two widths from the edges; a tilt (um/um) is
    added on top and unmeasured points (NaN) are scattered at random.

    Returns
    -------
    z : (M, N) float64 ndarray
        Heights in micrometres, NaN where "unmeasured".
    truth : dict
        ``sa_roughness_um``, ``protrusions`` (list of {"x_um", "y_um", "height_um"}),
        ``pixel_um``, ``tilt``, ``invalid_fraction``, ``seed`` and the arguments.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    ny, nx = shape
    rough = gaussian_filter(rng.normal(size=shape), correlation_um / pixel_um / 2.0, mode="wrap")
    rough -= rough.mean()
    rough *= sa_um / np.abs(rough).mean()
    y, x = (np.mgrid[0:ny, 0:nx] + 0.5) * pixel_um
    z = rough.copy()
    bumps: list[dict[str, float]] = []
    margin = 2 * protrusion_sigma_um
    for _ in range(protrusions * 50):
        if len(bumps) == protrusions:
            break
        cx = rng.uniform(margin, nx * pixel_um - margin)
        cy = rng.uniform(margin, ny * pixel_um - margin)
        if all(math.hypot(cx - b["x_um"], cy - b["y_um"]) > 4 * protrusion_sigma_um for b in bumps):
            bumps.append({"x_um": cx, "y_um": cy, "height_um": protrusion_height_um})
    for b in bumps:
        z += b["height_um"] * np.exp(
            -((x - b["x_um"]) ** 2 + (y - b["y_um"]) ** 2) / (2 * protrusion_sigma_um**2)
        )
    z += tilt[0] * x + tilt[1] * y
    if invalid_fraction > 0:
        z[rng.random(shape) < invalid_fraction] = np.nan
    truth = {
        "kind": "height",
        "sa_roughness_um": sa_um,
        "protrusions": bumps,
        "pixel_um": pixel_um,
        "shape": [ny, nx],
        "tilt": list(tilt),
        "invalid_fraction": invalid_fraction,
        "correlation_um": correlation_um,
        "seed": seed,
    }
    return z, truth


def write_x3p(path: str | Path, z_um: np.ndarray, *, dx_um: float, dy_um: float,
              manufacturer: str = "electrode-qc synth", model: str = "height_map") -> Path:
    """Write an ISO 25178-72 X3P (SUR, float64 metres; NaN marks unmeasured points)."""
    path = Path(path)
    ny, nx = z_um.shape
    data = np.asarray(z_um, dtype=np.float64) * 1e-6
    main = f"""<?xml version="1.0" encoding="UTF-8"?>
<p:ISO5436_2 xmlns:p="http://www.opengps.eu/2008/ISO5436_2">
<Record1><Revision>ISO5436 - 2000</Revision><FeatureType>SUR</FeatureType><Axes>
<CX><AxisType>I</AxisType><DataType>D</DataType><Increment>{dx_um * 1e-6!r}</Increment><Offset>0</Offset></CX>
<CY><AxisType>I</AxisType><DataType>D</DataType><Increment>{dy_um * 1e-6!r}</Increment><Offset>0</Offset></CY>
<CZ><AxisType>A</AxisType><DataType>D</DataType></CZ></Axes></Record1>
<Record2><Date>2026-01-01T00:00:00</Date><Instrument><Manufacturer>{manufacturer}</Manufacturer>
<Model>{model}</Model><Serial>0</Serial><Version>1</Version></Instrument>
<CalibrationDate>2026-01-01T00:00:00</CalibrationDate><ProbingSystem><Type>NonContacting</Type>
<Identification>synthetic</Identification></ProbingSystem><Comment>synthetic</Comment></Record2>
<Record3><MatrixDimension><SizeX>{nx}</SizeX><SizeY>{ny}</SizeY><SizeZ>1</SizeZ></MatrixDimension>
<DataLink><PointDataLink>bindata/data.bin</PointDataLink></DataLink></Record3>
<Record4><ChecksumFile>md5checksum.hex</ChecksumFile></Record4></p:ISO5436_2>"""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("main.xml", main)
        zf.writestr("bindata/data.bin", data.astype("<f8").tobytes())
    return path


def write_truth(path: str | Path, truth: dict[str, Any]) -> Path:
    """``<path>.truth.json`` beside a generated file."""
    out = Path(str(path) + ".truth.json")
    out.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return out
