"""Draw docs/tour.png: a synthetic electrode height map through the surface stage.

Run: ``python docs/make_tour_figure.py``. The map is made here with a fixed seed: a tilted
layer with 80 nm-scale roughness, a few protrusions and two spike pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_map(seed: int = 3, n: int = 512, px_um: float = 0.2):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[0:n, 0:n] + 0.5) * px_um
    rough = gaussian_filter(rng.normal(size=(n, n)), 2.0)
    rough *= 0.06 / rough.std()
    bumps = np.zeros((n, n))
    for cx, cy in rng.uniform(5, n * px_um - 5, size=(6, 2)):
        bumps += 0.35 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 1.2**2))
    z = 3.0 + 0.02 * x - 0.01 * y + rough + bumps
    z[100, 200] += 4.0
    z[300, 60] -= 3.0
    z[rng.random((n, n)) < 0.004] = np.nan
    return z, px_um


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import pipeline
    from pipeline.ingest.dataarray import height_dataarray
    from pipeline.metrology.texture import scale_limited_surface

    z, px = synthetic_map()
    da = height_dataarray(z, path="synthetic", dx_um=px, dy_um=px, pixel_size_source="synthetic",
                          vendor="synthetic", fmt="synthetic")
    res = pipeline.surface_texture(da, level="plane", lambda_s=0.8, lambda_c=25.0)
    s = scale_limited_surface(z, px, px, level="plane", lambda_s_um=0.8, lambda_c_um=25.0)
    ext = [0, z.shape[1] * px, z.shape[0] * px, 0]
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.2), constrained_layout=True)
    im = ax[0].imshow(z, cmap="viridis", extent=ext)
    ax[0].set_title("as read: tilt, spikes, unmeasured points (white)")
    fig.colorbar(im, ax=ax[0], label="height (um)")
    lim = np.nanpercentile(np.abs(s), 99.9)
    im = ax[1].imshow(s, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
    ax[1].set_title("plane removed, S-L band 0.8-25 um")
    fig.colorbar(im, ax=ax[1], label="height (um)")
    for a in ax[:2]:
        a.set_xlabel("x (um)")
        a.set_ylabel("y (um)")
    names = ["Sa", "Sz", "Sz w/o outliers"]
    vals = [res["Sa_um"], res["Sz_um"], res["sz_without_outliers_um"]]
    limits = [0.10, 1.0, 1.0]
    colors = ["tab:green" if v < lim_ else "tab:red" for v, lim_ in zip(vals, limits)]
    ax[2].barh(names, vals, color=colors)
    for i, (v, lim_) in enumerate(zip(vals, limits)):
        ax[2].plot([lim_, lim_], [i - 0.4, i + 0.4], "k--")
        ax[2].text(v, i, f" {v:.3g} um", va="center")
    ax[2].set_xscale("log")
    ax[2].set_title("claim 15 limits (dashed): Sa < 0.10 um, Sz < 1.0 um")
    ax[2].set_xlabel("um")
    out = Path(__file__).with_name("tour.png")
    fig.savefig(out, dpi=80)
    print(f"wrote {out}; Sa {res['Sa_um']:.4g} um, Sz {res['Sz_um']:.4g} um, "
          f"Sz without outliers {res['sz_without_outliers_um']:.4g} um; flags {res['flags']}")


if __name__ == "__main__":
    main()
