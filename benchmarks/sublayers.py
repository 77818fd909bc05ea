"""Sub-layers (claims 10-11) on the realistic cross-section model, against its truth.

Run by hand: ``python benchmarks/sublayers.py [--seeds 3]``.

Scenes of `pipeline.synth.xsec` with two sub-layers at thickness ratios 1:3, 1:5, 1:8 and
1:12 (upper particles of 3-5 px radius, the lower a mix of those and 6-10 px; silver in
both; rims, pore-back, noise), and one-layer scenes of the lower mix. Per scene: the number
of layers found, the claim-11 ratio (the thinnest upper over the thickest lower) against the
truth, its error, and claim 11 (1:5 to 1:10) judged with U (k = 2) against the truth's.
Target: the ratio within 10 %, claim 11 (`calibration/specs/layer-claims.toml`) judged correctly
(an indeterminate judgement where the truth lies within U of a limit counts as correct),
one layer reported for one-layer scenes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATIOS = ((1, 3), (1, 5), (1, 8), (1, 12))
SCENE = {"radius_px": (6.0, 10.0), "sublayer_radius_px": (3.0, 5.0), "porosity": 0.4}
SHAPE = (512, 768)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    opts = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from pipeline.conformity import evaluate_layer_claims, load_layer_claims
    from pipeline.segmentation.cross_section import porosity_from_cross_section
    from pipeline.synth.xsec import xsec_dataarray

    spec = load_layer_claims()
    claim11 = next(c for c in spec.claims if c.test == "sublayer_ratio")
    lo, hi = float(claim11.min), float(claim11.max)

    errors, correct, n_cases, one_ok, n_one = [], 0, 0, 0, 0
    print(f"{'ratio':6s} {'seed':>4s} {'layers':>6s} {'found':>7s} {'U':>6s} {'truth':>6s} "
          f"{'err %':>6s} {'claim 11':>9s} {'truth':>6s}")
    for ratio in (*RATIOS, None):
        for seed in range(opts.seeds if ratio else 2 * opts.seeds):
            kw = dict(SCENE, sublayer_ratio=ratio) if ratio else dict(SCENE)
            da, t = xsec_dataarray(SHAPE, seed=seed, **kw)
            s = porosity_from_cross_section(da)["sublayers"]
            label = f"1:{ratio[1]}" if ratio else "one"
            if ratio is None:
                n_one += 1
                one_ok += s["n_layers"] == 1
                print(f"{label:6s} {seed:4d} {s['n_layers']:6d}   (z {s['z'] if s['z'] is None else round(s['z'], 1)})")
                continue
            n_cases += 1
            truth = t["sublayer_ratio_true"]
            t_met = lo <= truth <= hi
            if s["n_layers"] != 2:
                print(f"{label:6s} {seed:4d} {s['n_layers']:6d}   not found")
                errors.append(float("nan"))
                continue
            U = 2.0 * s["u_ratio"]
            err = 100.0 * (s["ratio_claim"] / truth - 1.0)
            errors.append(err)
            judged = evaluate_layer_claims(spec, {"n_layers": 2, "n_fields": 1,
                                                  "ratio_claim": s["ratio_claim"], "U_ratio": U})
            met = next(c.met for c in judged.claims if c.test == "sublayer_ratio")
            ok = met == t_met or (met is None and min(abs(truth - lo), abs(truth - hi)) <= U)
            correct += ok
            print(f"{label:6s} {seed:4d} {s['n_layers']:6d} {s['ratio_claim']:7.3f} {U:6.3f} "
                  f"{truth:6.3f} {err:+6.1f} {met!s:>9s} {t_met!s:>6s}")
    e = np.asarray(errors)
    within = int(np.sum(np.abs(e[np.isfinite(e)]) <= 10.0))
    print(f"\nratio within 10 %: {within}/{n_cases}; claim 11 judged correctly: {correct}/{n_cases}; "
          f"one-layer scenes reported as one: {one_ok}/{n_one}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
