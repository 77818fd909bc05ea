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


def normalise(img: np.ndarray) -> np.ndarray:
    """float32 image with its 1st percentile at 0 and its 99.5th at 1 (clipped to -0.5..1.5)."""
    a = np.asarray(img, np.float32)
    lo, hi = np.percentile(a, [LOW_PCT, HIGH_PCT])
    span = float(hi - lo) if hi > lo else 1.0
    return np.clip((a - float(lo)) / span, -0.5, 1.5)


@lru_cache(maxsize=1)
def _net():
    import cv2

    if not MODEL.is_file():
        raise FileNotFoundError(f"the particle network {MODEL} is missing from the installation")
    return cv2.dnn.readNetFromONNX(str(MODEL))


def predict(img: np.ndarray) -> np.ndarray:
    """(3, M, N) float32 maps (foreground, contact, centre) of a 2-D image."""
    x = normalise(img)
    m, n = x.shape
    pm, pn = -m % 8, -n % 8
    xp = np.pad(x, ((0, pm), (0, pn)), mode="reflect")
    net = _net()
    net.setInput(xp[None, None])
    out = net.forward()
    return np.ascontiguousarray(out[0, :, :m, :n], dtype=np.float32)
