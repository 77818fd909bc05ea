"""Sub-layers (claims 10-11): found from the particle sections' size against depth on the
realistic cross-section model, judged against the layer-claims spec."""

from __future__ import annotations

import pytest

from pipeline.conformity import evaluate_layer_claims, load_layer_claims
from pipeline.errors import ConfigError
from pipeline.segmentation.cross_section import porosity_from_cross_section
from pipeline.synth.xsec import xsec_dataarray

SCENE = {"radius_px": (6.0, 10.0), "sublayer_radius_px": (3.0, 5.0), "porosity": 0.4}
SHAPE = (512, 768)


@pytest.mark.slow
@pytest.mark.parametrize("ratio, seed", [((1, 3), 1), ((1, 5), 0), ((1, 8), 1)])
def test_two_sub_layers_and_their_ratio(ratio, seed):
    da, t = xsec_dataarray(SHAPE, seed=seed, sublayer_ratio=ratio, **SCENE)
    s = porosity_from_cross_section(da)["sublayers"]
    assert s["n_layers"] == 2
    assert s["ratio_claim"] == pytest.approx(t["sublayer_ratio_true"], rel=0.10)
    assert abs(s["ratio_claim"] - t["sublayer_ratio_true"]) <= 2 * s["u_ratio"]
    assert s["radius_px"][0] < s["radius_px"][1]  # the finer sub-layer is at the top
    up, lo = s["thickness_px"]
    assert up + lo == pytest.approx(t["thickness_px"], abs=5)
    assert len(s["profile"]["depth_px"]) == len(s["profile"]["radius_px"]) > 10


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_layer_is_one_layer(seed):
    da, _ = xsec_dataarray(SHAPE, seed=seed, **SCENE)
    s = porosity_from_cross_section(da)["sublayers"]
    assert s["n_layers"] == 1 and s["ratio_claim"] is None


def _layers(n, ratio=None, U=None):
    return {"n_layers": n, "n_fields": 1, "ratio_claim": ratio, "U_ratio": U}


def test_layer_claims_judged_with_their_uncertainty():
    spec = load_layer_claims()
    by = lambda r: {c.claim: c.met for c in r.claims}
    assert by(evaluate_layer_claims(spec, _layers(2, 0.15, 0.02))) == {"10": True, "11": True}
    assert by(evaluate_layer_claims(spec, _layers(2, 0.33, 0.04))) == {"10": True, "11": False}
    r = evaluate_layer_claims(spec, _layers(2, 0.19, 0.03))  # straddles 1:5
    assert by(r) == {"10": True, "11": None} and "straddles" in r.claims[1].note
    assert by(evaluate_layer_claims(spec, _layers(1))) == {"10": False, "11": False}
    r = evaluate_layer_claims(spec, None)
    assert by(r) == {"10": None, "11": None} and r.met is None
    assert evaluate_layer_claims(spec, _layers(None)).claims[0].met is None


def test_layer_claims_spec_is_validated(tmp_path):
    p = tmp_path / "layers.toml"
    p.write_text('schema_version = 1\nid = "x"\n[[claim]]\nclaim = "11"\ntext = "t"\n'
                 'test = "sublayer_ratio"\nmin = 0.3\nmax = 0.2\n')
    with pytest.raises(ConfigError, match="0 < min < max"):
        load_layer_claims(p)
    p.write_text('schema_version = 1\nid = "x"\n[[claim]]\nclaim = "9"\ntext = "t"\ntest = "x"\n')
    with pytest.raises(ConfigError, match="test must be one of"):
        load_layer_claims(p)
