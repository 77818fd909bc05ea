"""What the synthetic generators share: shot noise, slow shading, sphere packing."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["MAX_OVERLAP", "place_spheres", "shading", "to_counts"]

MAX_OVERLAP = 0.15  # overlap depth allowed between two spheres, fraction of the smaller radius


def to_counts(signal: np.ndarray, rng: np.random.Generator, dose: float, bits: int) -> np.ndarray:
    """Poisson shot noise on a 0..1 signal (`dose` electrons at full scale), as uint8/16."""
    full = 255 if bits == 8 else 65535
    counts = rng.poisson(np.clip(signal, 0.0, None) * dose) * (full / dose)
    return np.clip(np.rint(counts), 0, full).astype(np.uint8 if bits == 8 else np.uint16)


def shading(shape: tuple[int, int], rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A slow multiplicative field 1 + a * (tilted plane + one broad bump), about 1."""
    ny, nx = shape
    yy, xx = np.ogrid[0:ny, 0:nx]
    gx, gy = rng.uniform(-1.0, 1.0, 2)
    cx, cy = rng.uniform(0.2, 0.8, 2)
    bump = np.exp(-(((xx / nx - cx) ** 2 + (yy / ny - cy) ** 2) / 0.18))
    return 1.0 + amplitude * (gx * (xx / nx - 0.5) + gy * (yy / ny - 0.5) + 0.5 * (bump - 0.5))


def place_spheres(d_nm: np.ndarray, width_nm: float, height_nm: float, target_nm2: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Centres for the spheres `d_nm`, in order, by random sequential packing (in place).

    Each sphere is tried at a random point or, mostly, touching an anchor already placed
    (overlap depth up to `MAX_OVERLAP` of the smaller radius, a sintering neck); a
    candidate is accepted when no overlap with any placed sphere exceeds that depth.
    Packing stops when the disc area reaches `target_nm2` or at the first sphere that finds
    no room (saturation): the placed spheres are always a prefix of the i.i.d. draws, so
    their size distribution is the one asked for. Returns the (n, 2) centres of the first
    n spheres placed.
    """
    n_max = d_nm.size
    r = d_nm / 2.0
    xy = np.empty((n_max, 2))
    dead = np.zeros(n_max, bool)  # anchors that failed often: surrounded
    fails = np.zeros(n_max, np.int32)
    area, n, batch = 0.0, 0, 24
    r_big = float(r.max()) if n_max else 0.0
    while n < n_max and area < target_nm2:
        ri, placed = r[n], False
        for attempt in range(80):
            live = np.flatnonzero(~dead[:n])
            if live.size and (attempt % 5) != 4:
                a = int(live[rng.integers(live.size)])
                ang = rng.uniform(0.0, 2 * np.pi, batch)
                dist = r[a] + ri - rng.uniform(0.0, MAX_OVERLAP, batch) * min(r[a], ri)
                cand = xy[a] + np.column_stack([np.cos(ang), np.sin(ang)]) * dist[:, None]
            else:
                a = -1
                cand = rng.uniform((0.0, 0.0), (width_nm, height_nm), (batch, 2))
            ok = ((cand[:, 0] >= 0) & (cand[:, 0] < width_nm)
                  & (cand[:, 1] >= 0) & (cand[:, 1] < height_nm))
            if n and ok.any():
                lo, hi = cand.min(0) - ri - r_big, cand.max(0) + ri + r_big
                near = np.flatnonzero(np.all((xy[:n] > lo) & (xy[:n] < hi), axis=1))
                if near.size:
                    gap = np.hypot(cand[:, None, 0] - xy[near, 0], cand[:, None, 1] - xy[near, 1])
                    depth = r[near] + ri - gap
                    allowed = MAX_OVERLAP * np.minimum(r[near], ri) + 1e-9
                    ok &= np.all(depth <= allowed, axis=1)
            if ok.any():
                xy[n] = cand[int(np.argmax(ok))]
                placed = True
                break
            if a >= 0:
                fails[a] += 1
                dead[a] = fails[a] >= 3
        if not placed:
            break
        area += math.pi * ri * ri
        n += 1
    return xy[:n]
