"""Grating pixel size, step height and profile writing on synthetic standards."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipeline.errors import ConfigError, MeasurementError
from pipeline.instruments import load_profile
from pipeline.metrology.standards import grating_pixel_size, step_height, write_profile

PITCH_NM = 463.0


def grating(shape, period_x, period_y=None, *, kind="sin", angle_deg=0.0, noise=0.0, seed=0,
            offset=100.0, amplitude=40.0):
    """Lines of known period (px) along x and optionally y, grey values around `offset`."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    u, v = x * c + y * s, -x * s + y * c
    phase = rng.uniform(0, 2 * np.pi, 2)

    def wave(t, p, ph):
        w = np.sin(2 * np.pi * t / p + ph)
        if kind == "square":
            # Band-limited edges (a real beam blurs them): tanh of a steep sine.
            w = np.tanh(8 * w)
        return w

    img = wave(u, period_x, phase[0])
    if period_y is not None:
        img = img + wave(v, period_y, phase[1])
    return offset + amplitude * img + noise * amplitude * rng.standard_normal(shape)


@pytest.mark.parametrize("kind", ["sin", "square"])
@pytest.mark.parametrize("period_y", [None, 23.7])
@pytest.mark.parametrize("noise", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_grating_recovers_pixel_size(kind, period_y, noise, seed):
    img = grating((480, 512), 17.3, period_y, kind=kind, noise=noise, seed=seed)
    r = grating_pixel_size(img, PITCH_NM)
    truth_x = PITCH_NM / 17.3 / 1000
    assert r["x"]["pixel_size_um"] == pytest.approx(truth_x, rel=2e-3)
    assert r["x"]["period_px"] == pytest.approx(17.3, rel=2e-3)
    # The stated uncertainty is of the size of the error actually made, not absurdly small.
    assert abs(r["x"]["pixel_size_um"] / truth_x - 1) < 5 * r["x"]["uncertainty_rel"] + 1e-6
    if period_y is None:
        assert r["y"] is None and "peak" in r["y_reason"]
    else:
        assert r["y"]["pixel_size_um"] == pytest.approx(PITCH_NM / 23.7 / 1000, rel=2e-3)


@pytest.mark.parametrize("angle", [-2.0, 1.5])
def test_grating_slightly_rotated(angle):
    img = grating((400, 600), 17.3, 21.1, kind="square", angle_deg=angle, noise=0.5)
    r = grating_pixel_size(img, PITCH_NM)
    assert r["x"]["pixel_size_um"] == pytest.approx(PITCH_NM / 17.3e3, rel=2e-3)
    assert r["y"]["pixel_size_um"] == pytest.approx(PITCH_NM / 21.1e3, rel=2e-3)
    assert r["x"]["angle_deg"] == pytest.approx(angle, abs=0.1)


def test_grating_lines_along_y_only_and_1d_profile():
    img = grating((512, 300), 19.9).T  # period along y
    r = grating_pixel_size(img, PITCH_NM)
    assert r["x"] is None
    assert r["y"]["period_px"] == pytest.approx(19.9, rel=2e-3)
    prof = grating((1, 1024), 13.7, noise=0.3)[0]
    r1 = grating_pixel_size(prof, PITCH_NM)
    assert r1["x"]["period_px"] == pytest.approx(13.7, rel=2e-3)
    assert r1["y"] is None


def test_grating_non_square_pixels_and_correction_factor():
    # Pixel 0.02 x 0.025 um: a 0.4 um pitch is 20 px along x and 16 px along y.
    img = grating((400, 400), 20.0, 16.0, noise=0.5)
    r = grating_pixel_size(img, 400.0, pixel_size_um={"x": 0.0201, "y": 0.025})
    assert r["x"]["pixel_size_um"] == pytest.approx(0.02, rel=2e-3)
    assert r["y"]["pixel_size_um"] == pytest.approx(0.025, rel=2e-3)
    assert r["x"]["correction_factor"] == pytest.approx(0.02 / 0.0201, rel=2e-3)
    assert r["y"]["correction_factor"] == pytest.approx(1.0, rel=2e-3)


def test_grating_harmonic_stronger_than_fundamental_uses_fundamental():
    # Two lines per 24 px period, 10 px apart: the 2nd harmonic outshines the fundamental.
    x = np.arange(720)
    line = ((np.mod(x, 24.0) < 2) | (np.abs(np.mod(x, 24.0) - 11) < 1)).astype(float)
    spec = np.abs(np.fft.rfft(line - line.mean()))
    assert np.argmax(spec) == 2 * 720 // 24  # the premise: the harmonic is the strongest
    img = np.tile(line, (200, 1)) * 50 + 10 + np.random.default_rng(3).normal(0, 2, (200, 720))
    r = grating_pixel_size(img, 240.0)
    assert r["x"]["period_px"] == pytest.approx(24.0, rel=2e-3)


def test_grating_refuses_noise_and_flat():
    rng = np.random.default_rng(5)
    with pytest.raises(MeasurementError, match="no clear grating peak"):
        grating_pixel_size(rng.normal(100, 10, (256, 256)), PITCH_NM)
    with pytest.raises(MeasurementError, match="no clear grating peak"):
        grating_pixel_size(np.full((128, 128), 7.0), PITCH_NM)


def test_grating_bad_input():
    img = grating((128, 128), 10.0)
    with pytest.raises(ConfigError, match="pitch_nm"):
        grating_pixel_size(img, -1.0)
    with pytest.raises(ConfigError, match="pixel_size_um"):
        grating_pixel_size(img, 100.0, pixel_size_um=(0.0, 1.0))
    bad = img.copy()
    bad[3, 3] = np.nan
    with pytest.raises(MeasurementError, match="non-finite"):
        grating_pixel_size(bad, 100.0)
    with pytest.raises(MeasurementError, match="too small"):
        grating_pixel_size(img[:10, :10], 100.0)
    with pytest.raises(MeasurementError, match="dimensions"):
        grating_pixel_size(np.zeros((4, 40, 40)), 100.0)


def step_map(shape=(200, 300), *, step=1.25, kind="groove", tilt=(2e-3, -1.5e-3), noise=0.01,
             seed=0, nan_fraction=0.0):
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    z = 3.0 + tilt[0] * x + tilt[1] * y
    if kind == "groove":
        z = z - step * ((x > nx * 0.35) & (x < nx * 0.65))
    else:
        z = z - step * (y > ny * 0.5)
    z = z + noise * rng.standard_normal(shape)
    if nan_fraction:
        z[rng.random(shape) < nan_fraction] = np.nan
    return z


@pytest.mark.parametrize("kind", ["groove", "step"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_height_recovers_step_with_tilt_and_noise(kind, seed):
    z = step_map(kind=kind, seed=seed, noise=0.02, nan_fraction=0.02)
    r = step_height(z, certified_um=1.3)
    assert r["step_um"] == pytest.approx(1.25, rel=5e-3)
    assert r["z_scale"] == pytest.approx(1.3 / 1.25, rel=5e-3)
    assert r["tilt_x"] == pytest.approx(2e-3, abs=2e-4)
    assert r["residual_rms_um"] == pytest.approx(0.02, rel=0.2)
    assert r["n_upper"] > 100 and r["n_lower"] > 100


def test_step_height_strong_tilt_and_1d_profile():
    # Tilt across the field (0.6 um) about half the step: the first split is wrong near the
    # ends, the iteration must correct it.
    z = step_map(step=1.0, tilt=(2e-3, 0.0), noise=0.005)
    assert step_height(z)["step_um"] == pytest.approx(1.0, rel=5e-3)
    prof = step_map(shape=(1, 600), step=0.08, tilt=(1e-4, 0.0), noise=0.001)[0]
    r = step_height(prof, certified_um=0.08, certified_uncertainty_um=0.001)
    assert r["step_um"] == pytest.approx(0.08, rel=5e-3)
    assert r["z_scale_uncertainty_rel"] >= 0.001 / 0.08


def test_step_height_refuses_flat_and_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(MeasurementError, match="no clear step"):
        step_height(rng.normal(0, 0.01, (100, 100)))
    with pytest.raises(MeasurementError, match="fewer than 20 valid"):
        step_height(np.full((10, 10), np.nan))
    with pytest.raises(MeasurementError, match="too few points away from the edges"):
        step_height(step_map(), edge_exclusion_px=500)
    with pytest.raises(ConfigError, match="certified height"):
        step_height(step_map(), certified_um=-1.0)


def test_write_profile_round_trip(tmp_path):
    g = grating_pixel_size(grating((300, 300), 17.3, 17.3, noise=0.2), PITCH_NM,
                           pixel_size_um=0.0265)
    s = step_height(step_map(), certified_um=1.3, certified_uncertainty_um=0.005)
    cert = {"id": "PTB-2025-0042", "date": dt.date(2025, 3, 1),
            "valid_until": dt.date(2026, 3, 1), "issuer": 'Lab "A"'}
    path = write_profile(tmp_path / "inst" / "helios.toml", profile_id="helios-1",
                         match={"vendor": "FEI", "model": "Helios*", "serial": "9922"},
                         grating=g, step=s, certificate=cert)
    p = load_profile(path)
    assert p.id == "helios-1"
    assert p.correction_factor[0] == pytest.approx(PITCH_NM / 17.3e3 / 0.0265, rel=2e-3)
    assert p.z_scale == pytest.approx(1.3 / 1.25, rel=5e-3)
    assert p.certificate["valid_until"] == dt.date(2026, 3, 1)
    assert p.certificate["issuer"] == 'Lab "A"'
    with pytest.raises(ConfigError, match="exists"):
        write_profile(path, profile_id="x", match={"vendor": "FEI"}, step=s)
    # Without a recorded pixel size the grating supplies override_um.
    g2 = grating_pixel_size(grating((300, 300), 17.3, 17.3), PITCH_NM)
    p2 = load_profile(write_profile(path, profile_id="y", match={"vendor": "x"}, grating=g2,
                                    overwrite=True))
    assert p2.override_um[1] == pytest.approx(PITCH_NM / 17.3e3, rel=2e-3)
    assert p2.correction_factor is None


def test_write_profile_refuses_one_axis_and_invalid(tmp_path):
    g = grating_pixel_size(grating((200, 300), 17.3), PITCH_NM)
    with pytest.raises(ConfigError, match="only one axis"):
        write_profile(tmp_path / "a.toml", profile_id="a", match={"vendor": "v"}, grating=g)
    p = load_profile(write_profile(tmp_path / "a.toml", profile_id="a", match={"vendor": "v"},
                                   grating=g, square_pixels=True))
    assert p.override_um[0] == p.override_um[1]
    with pytest.raises(ConfigError, match="would not be a valid profile.*match"):
        write_profile(tmp_path / "b.toml", profile_id="b", match={}, grating=g,
                      square_pixels=True)
    assert not (tmp_path / "b.toml").exists() and not (tmp_path / "b.toml.tmp").exists()
    with pytest.raises(ConfigError, match="no z_scale"):
        write_profile(tmp_path / "c.toml", profile_id="c", match={"vendor": "v"},
                      step=step_height(step_map()))
