"""Train the particle network of `find_particles(method="learned")` on the synthetic SEM model.

The network sees only images drawn by `pipeline.synth.sem` (never a real micrograph): the
presets with their parameters spread around the preset values (rims, PSF, noise, contrast,
sizes in pixels, coverage), so that it learns what an SE image of particles looks like rather
than one setting. For each pixel it predicts three maps from the model's visible-ownership
truth:

1. ``foreground``: a particle is seen here;
2. ``contact``: the pixel lies on the border between two particles (or primaries of one
   aggregate), within one pixel;
3. ``centre``: the distance to the particle's own border over the particle's largest such
   distance (1 at the centre, falling to 0 at the edge).

`pipeline.segmentation.learned` turns the maps into particles (seeds where the centre map is
high and no contact is predicted, a watershed of the centre map inside the foreground) with
OpenCV's dnn module, so the package needs no deep-learning runtime.

Usage (training dependencies: ``pip install -e ".[train]"``)::

    python training/particles_net.py data  --out TRAIN.npz --images 1400
    python training/particles_net.py train --data TRAIN.npz --steps 3000 --width 8
    python training/particles_net.py export --out pipeline/segmentation/models/particles.onnx

Seeded throughout; ``data`` uses 2 processes.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from pipeline.segmentation.learned import normalise
from pipeline.synth.sem import sem_scene

PATCH = 256          # the size of every drawn image (and of the training crops)
CROP = 192
SEED_OFFSET = 100_000  # scene seeds of the training set: far from the seeds the benchmarks score
CHECKPOINT = Path("training/particles_net.pt")


def targets(owner: np.ndarray) -> np.ndarray:
    """(3, M, N) float32: foreground, contact and centre maps of an ownership map."""
    fg = owner > 0
    edges = np.zeros_like(fg)
    contact = np.zeros_like(fg)
    for axis in (0, 1):
        a = owner
        b = np.roll(owner, 1, axis=axis)
        diff = a != b
        if axis == 0:
            diff[0, :] = False
        else:
            diff[:, 0] = False
        both = diff & (a > 0) & (b > 0)
        edges |= diff
        edges |= np.roll(diff, -1, axis=axis)
        contact |= both | np.roll(both, -1, axis=axis)
    contact = ndi.binary_dilation(contact) & fg
    dist = np.where(fg, ndi.distance_transform_edt(~edges), 0.0)
    peak = ndi.maximum(dist, owner, index=np.arange(owner.max() + 1))
    peak = np.asarray(peak, float)
    peak[peak <= 0] = 1.0
    centre = np.where(fg, dist / peak[owner], 0.0)
    return np.stack([fg, contact, centre]).astype(np.float32)


def _draw(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Image k of the training set: a preset with its parameters spread, and its targets."""
    rng = np.random.default_rng(10_000 + k)
    u = rng.uniform
    if k % 2 == 0:
        preset = "tio2-bam"
        ov = {"pixel_nm": 7.34375 * u(0.6, 1.5), "rim_gain": u(0.5, 2.0),
              "rim_decay_nm": u(8, 30), "rim_rise_nm": u(0, 8), "psf_sigma_px": u(0.2, 1.2),
              "electrons_full": u(200, 900), "gain_sigma": u(0.1, 0.4), "coverage": u(0.05, 0.25),
              "shadow_strength": u(0.0, 0.5), "texture_amplitude": u(0.2, 0.8),
              "modes": ((u(120, 280), u(0.2, 0.4), 1.0),), "primaries": (u(2.0, 6.0), 1.1, 1, 60),
              "level_particle": u(0.25, 0.6), "tilt_weight": u(0.0, 0.6),
              "facet_fraction": u(0.3, 1.0), "facet_contrast": u(0.0, 0.2),
              "light_weight": u(0.0, 0.6), "light_azimuth_deg": u(0, 360)}
    else:
        preset = ["bimodal-40-80", "bimodal-25-70", "mono-40", "cb-agg-40", "cb-agg-80"][(k // 2) % 5]
        from pipeline.synth.sem import PRESETS
        base = PRESETS[preset]
        ov = {"pixel_nm": base.pixel_nm * u(0.7, 1.4), "rim_gain": u(0.0, 1.5),
              "rim_decay_nm": u(3, 12), "psf_sigma_px": u(0.5, 1.5), "electrons_full": u(150, 600),
              "gain_sigma": u(0.03, 0.2), "coverage": base.coverage * u(0.5, 1.2),
              "shadow_strength": u(0.3, 1.0), "light_weight": u(0.0, 0.3),
              "light_azimuth_deg": u(0, 360)}
    img, truth = sem_scene(preset, shape=(PATCH, PATCH), seed=SEED_OFFSET + k, **ov)
    return normalise(img).astype(np.float16), targets(truth["owner"]).astype(np.float16)


def make_data(out: Path, n: int) -> None:
    t0 = time.time()
    with ProcessPoolExecutor(2) as ex:
        pairs = list(ex.map(_draw, range(n), chunksize=8))
    x = np.stack([p[0] for p in pairs])[:, None]
    y = np.stack([p[1] for p in pairs])
    np.savez_compressed(out, x=x, y=y)
    print(f"{n} images in {time.time() - t0:.0f} s -> {out}")


def _net(width: int = 8):
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self, w=8):
            super().__init__()
            self.e1, self.e2, self.e3, self.e4 = block(1, w), block(w, 2 * w), block(2 * w, 4 * w), block(4 * w, 8 * w)
            self.u3 = nn.ConvTranspose2d(8 * w, 4 * w, 2, stride=2)
            self.d3 = block(8 * w, 4 * w)
            self.u2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
            self.d2 = block(4 * w, 2 * w)
            self.u1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
            self.d1 = block(2 * w, w)
            self.head = nn.Conv2d(w, 3, 1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):
            e1 = self.e1(x)
            e2 = self.e2(self.pool(e1))
            e3 = self.e3(self.pool(e2))
            e4 = self.e4(self.pool(e3))
            d3 = self.d3(torch.cat([self.u3(e4), e3], 1))
            d2 = self.d2(torch.cat([self.u2(d3), e2], 1))
            d1 = self.d1(torch.cat([self.u1(d2), e1], 1))
            return self.head(d1)

    return UNet(width)


def train(data: Path, steps: int, width: int = 8, batch: int = 8, seed: int = 0) -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    d = np.load(data)
    x, y = d["x"].astype(np.float32), d["y"].astype(np.float32)
    n = len(x)
    net = _net(width)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(steps):
        idx = rng.integers(0, n, batch)
        oy, ox = rng.integers(0, PATCH - CROP + 1, 2)
        xb = x[idx, :, oy:oy + CROP, ox:ox + CROP]
        yb = y[idx, :, oy:oy + CROP, ox:ox + CROP]
        k = int(rng.integers(4))
        xb, yb = np.rot90(xb, k, (2, 3)), np.rot90(yb, k, (2, 3))
        if rng.random() < 0.5:
            xb, yb = xb[..., ::-1], yb[..., ::-1]
        # contrast and offset jitter on top of the model's own spread
        g = rng.uniform(0.8, 1.25, (batch, 1, 1, 1)).astype(np.float32)
        o = rng.uniform(-0.08, 0.08, (batch, 1, 1, 1)).astype(np.float32)
        xt = torch.from_numpy(np.ascontiguousarray(xb) * g + o)
        yt = torch.from_numpy(np.ascontiguousarray(yb))
        out = net(xt)
        fg = yt[:, 0:1]
        l_fg = F.binary_cross_entropy_with_logits(out[:, 0:1], fg)
        l_ct = F.binary_cross_entropy_with_logits(out[:, 1:2], yt[:, 1:2], pos_weight=torch.tensor(4.0))
        l_ce = ((torch.sigmoid(out[:, 2:3]) - yt[:, 2:3]) ** 2 * (0.2 + fg)).mean()
        loss = l_fg + l_ct + 4.0 * l_ce
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  fg {l_fg.item():.4f}  contact {l_ct.item():.4f}"
                  f"  centre {l_ce.item():.4f}  {time.time() - t0:.0f} s", flush=True)
        if (step + 1) % 250 == 0 or step == steps - 1:
            torch.save({"width": width, "state": net.state_dict()}, CHECKPOINT)
    print(f"saved {CHECKPOINT}")


def export(out: Path) -> None:
    import torch

    ck = torch.load(CHECKPOINT, map_location="cpu")
    net = _net(ck["width"])
    net.load_state_dict(ck["state"])
    net.eval()

    class WithSigmoid(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return torch.sigmoid(self.inner(x))

    out.parent.mkdir(parents=True, exist_ok=True)
    model = WithSigmoid(net).eval()
    torch.onnx.export(model, torch.zeros(1, 1, 256, 256), str(out), input_names=["image"],
                      output_names=["maps"], opset_version=13, dynamo=False,
                      dynamic_axes={"image": {2: "h", 3: "w"}, "maps": {2: "h", 3: "w"}})
    # the package runs it with OpenCV: check that OpenCV gives torch's maps
    import cv2

    x = np.random.default_rng(0).random((1, 1, 200, 312), np.float32)
    cvnet = cv2.dnn.readNetFromONNX(str(out))
    cvnet.setInput(x)
    with torch.no_grad():
        diff = float(np.abs(cvnet.forward() - model(torch.from_numpy(x)).numpy()).max())
    if diff > 1e-4:
        raise RuntimeError(f"OpenCV's maps differ from torch's by {diff:.3g}")
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB; OpenCV agrees with torch within {diff:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("data")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--images", type=int, default=1400)
    a = sub.add_parser("train")
    a.add_argument("--data", type=Path, required=True)
    a.add_argument("--steps", type=int, default=3000)
    a.add_argument("--width", type=int, default=8, help="channels of the first level")
    a = sub.add_parser("export")
    a.add_argument("--out", type=Path, default=Path("pipeline/segmentation/models/particles.onnx"))
    args = ap.parse_args()
    if args.cmd == "data":
        make_data(args.out, args.images)
    elif args.cmd == "train":
        train(args.data, args.steps, args.width)
    else:
        export(args.out)


if __name__ == "__main__":
    main()
