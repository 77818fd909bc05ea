"""Keyence CSV height exports: English and Japanese headers, UTF-8 (BOM or not), Shift-JIS,
UTF-16; unmeasured cells; refusal of CSVs without a scale and of broken matrices."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline
from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.height.keyence_csv import KeyenceCsvReader
from tests.helpers import assert_unreadable, cli_json

ROWS, COLS = 5, 7
HOLES = [(0, 6), (2, 3)]

EN = {
    "date": "Measured date", "model": "Model", "type": "Data type\r\n", "version": "File version",
    "mag": "Objective Lens Power", "cal": "XY Calibration", "out": "Output image data",
    "h": "Horizontal", "v": "Vertical", "unit": "Unit", "label": "Height", "height": "Height",
}  # fmt: skip
JA = {
    "date": "測定日時", "model": "機種", "type": "ファイル種別", "version": "ファイル バージョン",
    "mag": "倍率", "cal": "XYキャリブレーション", "out": "出力画像データ",
    "h": "横", "v": "縦", "unit": "単位", "label": "高さ", "height": "高さ",
}  # fmt: skip


def _heights() -> np.ndarray:
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    z = 1.5 + 0.125 * xx - 0.25 * yy
    z[0] += 2.0  # the top row is high: pins the orientation
    for r, c in HOLES:
        z[r, c] = np.nan
    return z


def _csv_text(
    keys: dict,
    z: np.ndarray,
    *,
    cal: tuple[str, ...] = ("138.9", "nm"),
    unit: str | None = "μm",
    fmt: str = "{:.4f}",
    drop: tuple[str, ...] = (),
    extra: tuple[tuple[str, ...], ...] = (),
    trailing: str = "",
    sep: str = ",",
) -> str:
    def line(*cells: str) -> str:
        return sep.join(f'"{c}"' for c in cells)

    head = [
        ("date", "2024-05-06 07:08:09"),
        ("model", "VK-X1000 Series"),
        ("type", "ImageDataCsv"),
        ("version", "1000"),
        ("mag", "50"),
        ("cal", *cal),
        ("out", keys["height"]),
        ("h", str(z.shape[1])),
        ("v", str(z.shape[0])),
        ("unit", unit),
    ]
    out = [line(keys[k], *v) for k, *v in head if k not in drop and None not in v]
    out += [line(*e) for e in extra]
    out += ["", line(keys["label"])]
    for row in z:
        out.append(sep.join("" if np.isnan(v) else f'"{fmt.format(v)}"' for v in row) + trailing)
    return "\r\n".join(out) + "\r\n"


def _write(tmp_path, text: str, encoding: str = "utf-8", name: str = "export.csv"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


@pytest.mark.parametrize(
    "keys, encoding",
    [(EN, "utf-8"), (EN, "utf-8-sig"), (EN, "utf-16"), (JA, "cp932"), (JA, "utf-8"),
     (JA, "utf-8-sig"), (JA, "utf-16")],
    ids=["en-utf8", "en-utf8bom", "en-utf16", "ja-sjis", "ja-utf8", "ja-utf8bom", "ja-utf16"],
)  # fmt: skip
def test_reads_english_and_japanese_in_every_encoding(tmp_path, keys, encoding):
    z = _heights()
    p = _write(tmp_path, _csv_text(keys, z), encoding)
    da = pipeline.read(p)
    assert da.attrs["reader"] == "keyence_csv" and da.attrs["vendor"] == "Keyence"
    assert da.attrs["instrument"] == "VK-X1000 Series"
    assert da.shape == (ROWS, COLS)
    np.testing.assert_allclose(da.values, z, atol=5e-5, equal_nan=True)  # 4 decimals written
    assert [tuple(ij) for ij in np.argwhere(np.isnan(da.values))] == HOLES
    assert da.attrs["invalid_fraction"] == pytest.approx(len(HOLES) / z.size)
    assert da.attrs["pixel_size_um"] == {"x": pytest.approx(0.1389), "y": pytest.approx(0.1389)}
    assert keys["cal"] in da.attrs["pixel_size_source"]
    h = da.attrs["header"]
    assert h["encoding"] == {"utf-8-sig": "utf-8-sig", "utf-16": "utf-16"}.get(encoding, encoding)
    assert h["z_unit"] == "μm" and h["invalid_rule"] == "empty cell -> NaN"
    assert h["date"] == "2024-05-06 07:08:09" and h["objective_magnification"] == "50"


def test_units_nm_heights_and_um_calibration(tmp_path):
    z = _heights() * 1000.0  # written in nm
    p = _write(tmp_path, _csv_text(EN, z, cal=("0.25", "μm"), unit="nm", fmt="{:.2f}"))
    da = pipeline.read(p)
    np.testing.assert_allclose(da.values, _heights(), atol=1e-5, equal_nan=True)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.25)


def test_x_and_y_pitch_with_unit_in_the_value(tmp_path):
    text = _csv_text(
        EN,
        _heights(),
        drop=("cal",),
        extra=(("X pitch", "0.2778um/pixel"), ("Y pitch", "277.9 nm")),
    )
    da = pipeline.read(_write(tmp_path, text))
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.2778)
    assert da.attrs["pixel_size_um"]["y"] == pytest.approx(0.2779)
    assert "X pitch/Y pitch" in da.attrs["pixel_size_source"]


def test_trailing_comma_on_every_row(tmp_path):
    da = pipeline.read(_write(tmp_path, _csv_text(EN, _heights(), trailing=",")))
    assert da.shape == (ROWS, COLS)
    np.testing.assert_allclose(da.values, _heights(), atol=5e-5, equal_nan=True)


def test_semicolon_and_decimal_comma(tmp_path):
    z = _heights()
    text = _csv_text(EN, z, sep=";", cal=("138,9", "nm")).replace(".", ",")
    da = pipeline.read(_write(tmp_path, text))
    np.testing.assert_allclose(da.values, z, atol=5e-5, equal_nan=True)
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(0.1389)


def test_inspect_shows_header(tmp_path):
    p = _write(tmp_path, _csv_text(JA, _heights()), "cp932")
    rec = cli_json(["inspect", "--json", str(p)])
    assert rec["reader"] == "keyence_csv"
    assert rec["header"]["image_width_px"] == COLS and rec["header"]["image_height_px"] == ROWS
    assert rec["header"]["header_rows"]["XYキャリブレーション"] == "138.9 nm"


@pytest.mark.parametrize(
    "text",
    [
        "x,y,z\r\n0,0,1.5\r\n1,0,1.6\r\n",
        "1.0,2.0,3.0\r\n4.0,5.0,6.0\r\n",
        '"Sample","A1"\r\n"Operator","kim"\r\n"Unit","um"\r\n1,2\r\n',
        "",
    ],
    ids=["xyz", "bare-matrix", "other-keys", "empty"],
)
def test_declines_csv_that_is_not_a_keyence_export(tmp_path, text):
    assert not KeyenceCsvReader().can_open(text.encode(), tmp_path / "a.csv")


def test_sniffs_a_keyence_header_cut_mid_character(tmp_path):
    data = _csv_text(JA, np.tile(_heights(), (30, 30))).encode("utf-8")
    assert len(data) > 4096
    for cut in range(4090, 4096):  # wherever the 4096-byte head ends, even inside a character
        assert KeyenceCsvReader().can_open(data[:cut], tmp_path / "a.csv")


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("keys", [EN, JA], ids=["en", "ja"])
def test_missing_pixel_size_is_missing_calibration(tmp_path, keys):
    p = _write(tmp_path, _csv_text(keys, _heights(), drop=("cal",)), "utf-8")
    with pytest.raises(MissingCalibration, match="no lateral calibration") as info:
        pipeline.read(p)
    assert str(p) in str(info.value)
    from pipeline.cli import app

    result = CliRunner().invoke(app, ["inspect", str(p)])
    assert result.exit_code == 3, result.output


def test_missing_z_unit_is_missing_calibration(tmp_path):
    p = _write(tmp_path, _csv_text(JA, _heights(), unit=None), "cp932")
    with pytest.raises(MissingCalibration, match="no z unit") as info:
        pipeline.read(p)
    assert str(p) in str(info.value)


def test_calibration_without_unit_is_missing_calibration(tmp_path):
    p = _write(tmp_path, _csv_text(EN, _heights(), cal=("138.9",)))
    with pytest.raises(MissingCalibration, match="has no length unit"):
        pipeline.read(p)


def test_z_unit_not_a_length(tmp_path):
    assert_unreadable(_write(tmp_path, _csv_text(EN, _heights(), unit="%")), "not a length")


def test_light_intensity_export_is_refused(tmp_path):
    text = _csv_text(EN, _heights()).replace('data","Height"', 'data","Light intensity"')
    assert_unreadable(_write(tmp_path, text), "not a height map")


def test_ragged_rows(tmp_path):
    lines = _csv_text(EN, _heights()).split("\r\n")
    i = lines.index('"Height"', 5) + 2  # the second data row
    lines[i] = lines[i].rsplit(",", 1)[0]
    assert_unreadable(
        _write(tmp_path, "\r\n".join(lines)), r"ragged data: data row 2 \(line \d+\) has 6"
    )


def test_non_numeric_cell_names_the_row(tmp_path):
    lines = _csv_text(EN, _heights()).split("\r\n")
    i = lines.index('"Height"', 5) + 3  # the third data row
    cells = lines[i].split(",")
    cells[1] = '"1.2x"'
    lines[i] = ",".join(cells)
    p = _write(tmp_path, "\r\n".join(lines))
    assert_unreadable(p, rf"data row 3 \(line {i + 1}\), column 2: '1.2x' is not a number")


def test_truncated_matrix_against_declared_size(tmp_path):
    text = _csv_text(JA, _heights())
    cut = text[: text.rstrip("\r\n").rfind("\r\n")]  # the last data row is gone
    assert_unreadable(_write(tmp_path, cut, "cp932"), r"declares 7 x 5 .* 7 columns x 4 rows")


def test_header_without_data(tmp_path):
    text = _csv_text(EN, _heights()).rsplit('"Height"\r\n', 1)[0]
    assert_unreadable(_write(tmp_path, text), "no rows of height values")


def test_undecodable_bytes(tmp_path):
    data = _csv_text(EN, np.tile(_heights(), (40, 40))).encode("utf-8") + b"\x81\x7f"
    p = tmp_path / "bad.csv"
    p.write_bytes(data)
    assert KeyenceCsvReader().can_open(data[:4096], p)
    assert_unreadable(p, "text encoding not recognised")


def test_zero_pixel_size(tmp_path):
    p = _write(tmp_path, _csv_text(EN, _heights(), cal=("0", "nm")))
    with pytest.raises(UnreadableInput, match="pixel size x is 0.0 um"):
        pipeline.read(p)
