"""Particle maps from the network trained on the synthetic SEM model (`training/particles_net.py`).

The network (an ONNX file in ``models/``, run by OpenCV's dnn module) predicts per pixel the
probability that a particle is seen, that the pixel lies on a contact between two particles,
and a centre map (1 at a particle's centre, 0 at its edge). It was trained on images of
`pipeline.synth_sem` only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL = Path(__file__).with_name("models") / "particles.onnx"
LOW_PCT, HIGH_PCT = 1.0, 99.5   # the grey levels mapped to 0 and 1
TILE = 1024     # larger images are run in tiles of this size (memory: ~1 kB per pixel)...
MARGIN = 64     # ... each with this much context on every side (the network sees ~45 px)


def normalise(img: np.ndarray) -> np.ndarray:
    """float32 image with its 1st percentile at 0 and its 99.5th at 1 (clipped to -0.5..1.5)."""
    a = np.asarray(img, np.float32)
    lo, hi = np.percentile(a, [LOW_PCT, HIGH_PCT])
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


def predict(img: np.ndarray) -> np.ndarray:
    """(3, M, N) float32 maps (foreground, contact, centre) of a 2-D image.

    The grey levels are normalised over the whole image; an image larger than `TILE` is
    run in tiles with `MARGIN` px of context each (the maps are those of the whole image
    run at once, to float rounding, and memory stays bounded).
    """
    x = normalise(img)
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
