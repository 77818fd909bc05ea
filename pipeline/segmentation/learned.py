"""Particle maps from the network trained on the synthetic SEM model (`training/particles_net.py`).

The network (an ONNX file in ``models/``, run by OpenCV's dnn module) predicts per pixel the
probability that a particle is seen, that the pixel lies on a contact between two particles,
and a centre map (1 at a particle's centre, 0 at its edge). It was trained on images of
`pipeline.synth.sem` only. It is a 4-level U-Net of 8-64 channels (0.12 M parameters,
0.5 MB): about 0.09 s for a 1024 x 712 image at full resolution on 2 cores, a quarter of the
time of the same network with 16-128 channels trained the same way. Measured at full
resolution, the two differ little: on the real labelled set mean |x50 error| 7.8 and 7.1 %,
F1 0.65 and 0.67; on the synthetic model's mixtures, mode errors within +-4 % for both.

Particles read best at 12-25 px; larger ones need more context than the network sees
(on the real set and the synthetic TiO2 model, full resolution over-splits 25-30 px
particles), and smaller ones lose their contacts. `choose_scale` picks the scale from the
sizes a first pass finds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL = Path(__file__).with_name("models") / "particles.onnx"
LOW_PCT, HIGH_PCT = 1.0, 99.5   # the grey levels mapped to 0 and 1
TILE = 1024     # larger images are run in tiles of this size (peak ~250 B per pixel)...
MARGIN = 64     # ... each with this much context on every side (the network sees ~45 px)
# The network is run at the scale that brings the particles to the sizes it reads best
# (chosen on synthetic validation scenes): their median near TARGET_MEDIAN_PX and the
# smaller particles at no less than SMALL_PX. The sizes come from a first pass on a
# central block of PROBE x PROBE px at full resolution (`find_particles`).
TARGET_MEDIAN_PX = 20.0
SMALL_PX = 12.0
MIN_SCALE = 0.5          # never below half resolution ...
FULL_SCALE = 0.95        # ... and at full resolution when the scale would be above this
PROBE = 384
MIN_PARTICLES = 5        # whole particles needed to choose a scale (else full resolution)


def _percentiles(img: np.ndarray, q) -> np.ndarray:
    """``np.percentile(img, q)`` (linear interpolation); from the histogram when the image
    is of 8- or 16-bit integers (exact, and several times faster than a partition)."""
    a = np.asarray(img)
    if a.dtype not in (np.uint8, np.uint16) or a.size == 0:
        return np.percentile(a.astype(np.float32, copy=False), q)
    below = np.cumsum(np.bincount(a.ravel()))  # below[k]: values <= k
    pos = np.asarray(q, float) / 100.0 * (a.size - 1)
    i = np.floor(pos).astype(np.int64)
    lo = np.searchsorted(below, i, side="right")
    hi = np.searchsorted(below, np.minimum(i + 1, a.size - 1), side="right")
    return lo + (pos - i) * (hi - lo)


def normalise(img: np.ndarray) -> np.ndarray:
    """float32 image with its 1st percentile at 0 and its 99.5th at 1 (clipped to -0.5..1.5)."""
    a = np.asarray(img, np.float32)
    lo, hi = _percentiles(img, [LOW_PCT, HIGH_PCT])
    span = float(hi - lo) if hi > lo else 1.0
    return np.clip((a - float(lo)) / span, -0.5, 1.5)


@lru_cache(maxsize=1)
def model_identity() -> dict:
    """The network file that produced a result: name, size in bytes, SHA-256."""
    import hashlib

    data = MODEL.read_bytes()
    return {"file": MODEL.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@lru_cache(maxsize=1)
def _net():
    import cv2

    if not MODEL.is_file():
        raise FileNotFoundError(f"the particle network {MODEL} is missing from the installation")
    return cv2.dnn.readNetFromONNX(str(MODEL))


def _run(x: np.ndarray) -> np.ndarray:
    """The network on one normalised block (padded to a multiple of 8 by reflection)."""
    m, n = x.shape
    xp = np.pad(x, ((0, -m % 8), (0, -n % 8)), mode="reflect")
    net = _net()
    net.setInput(xp[None, None])
    return net.forward()[0, :, :m, :n]


def choose_scale(diameters_px, min_diameter_px: float | None = None) -> float:
    """The scale to run the network at, from particle diameters in full-resolution pixels.

    Brings the median to `TARGET_MEDIAN_PX` unless that puts the 25th percentile (or the
    expected smallest diameter, when given) under `SMALL_PX`; never below `MIN_SCALE`, and
    1.0 when above `FULL_SCALE` or with fewer than `MIN_PARTICLES` particles to go by.
    """
    d = np.asarray(diameters_px, float)
    if d.size < MIN_PARTICLES:
        return 1.0
    s = max(TARGET_MEDIAN_PX / float(np.median(d)), SMALL_PX / float(np.percentile(d, 25)))
    if min_diameter_px is not None:
        s = max(s, SMALL_PX / float(min_diameter_px))
    s = max(s, MIN_SCALE)
    return 1.0 if s > FULL_SCALE else s


def probe_block(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The central block (at most `PROBE` x `PROBE`) whose particles choose the scale."""
    m, n = shape
    y0, x0 = max(0, (m - PROBE) // 2), max(0, (n - PROBE) // 2)
    return slice(y0, y0 + PROBE), slice(x0, x0 + PROBE)


def maps(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(3, M, N) float32 maps (foreground, contact, centre) of a normalised image
    (`normalise`), the network run at ``scale``.

    Below 1 the image is reduced by pixel-area averaging and the maps are interpolated
    back (bilinear), so particles are still cut at full resolution. An image larger than
    `TILE` at that scale runs in tiles with `MARGIN` px of context each (the maps are those
    of the whole image run at once, to float rounding, and memory stays bounded).
    """
    import cv2

    if scale >= 1.0:
        return _tiled(x)
    m, n = x.shape
    small = cv2.resize(x, (max(8, round(n * scale)), max(8, round(m * scale))),
                       interpolation=cv2.INTER_AREA)
    return np.stack([cv2.resize(c, (n, m), interpolation=cv2.INTER_LINEAR)
                     for c in _tiled(small)])


def predict(img: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """`maps` of a 2-D image, its grey levels normalised over the whole image."""
    return maps(normalise(img), scale)


def _tiled(x: np.ndarray) -> np.ndarray:
    """The network's maps of a normalised image, in tiles when it is larger than `TILE`."""
    m, n = x.shape
    if m <= TILE and n <= TILE:
        return np.ascontiguousarray(_run(x), dtype=np.float32)
    out = np.empty((3, m, n), np.float32)
    for y0 in range(0, m, TILE):
        for x0 in range(0, n, TILE):
            y1, x1 = min(y0 + TILE, m), min(x0 + TILE, n)
            a0, b0 = max(y0 - MARGIN, 0), max(x0 - MARGIN, 0)
            a1, b1 = min(y1 + MARGIN, m), min(x1 + MARGIN, n)
            block = _run(x[a0:a1, b0:b1])
            out[:, y0:y1, x0:x1] = block[:, y0 - a0:y1 - a0, x0 - b0:x1 - b0]
    return out
