"""Keyence height maps exported as CSV (VK Analyzer / MultiFileAnalyzer "export to CSV").

What real exports look like (VK-X100...X3000 series; English, Japanese, German UIs)::

    "Measured date","2024-01-01 12:00:00"          "測定日時",...
    "Model","VK-X3000 Series"                      "機種","VK-X1000 Series"
    "Data type","ImageDataCsv"                     "ファイル種別","ImageDataCsv"
    "File version","1000"                          "ファイル バージョン","1000"
    "Objective Lens Power","50"                    "倍率","50"
    "XY Calibration","138.9","nm"                  "XYキャリブレーション","0.5","μm"
    "Output image data","Height"                   "出力画像データ","高さ"
    "Horizontal","1024"                            "横","1024"
    "Vertical","768"                               "縦","768"
    "Unit","μm"                                    "単位","μm"
    <blank line>
    "Height"                                       "高さ"
    "1.234","1.240",...                            one row of the height map per line

Some exports put a line break inside the quoted "Data type" key; some give the pixel pitch
as "X pitch"/"Y pitch", or the unit inside the value ("138.9nm/pixel"). The encoding is
UTF-8 (with or without BOM), UTF-16 (with BOM) or Shift-JIS (cp932, Japanese Windows).
Unmeasured points are empty cells and become NaN (``header["invalid_rule"]``).
A file without a lateral calibration or a z unit is refused (MissingCalibration): we never
guess a scale. Row 0 of the matrix is the top of the image.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from pathlib import Path

import numpy as np

from pipeline.errors import MissingCalibration, UnreadableInput
from pipeline.ingest.dataarray import height_dataarray
from pipeline.ingest.limits import MAX_PIXELS, check_shape

__all__ = ["KeyenceCsvReader"]

log = logging.getLogger(__name__)

MAX_CSV_BYTES = 2 * 1024**3
INVALID_RULE = "empty cell -> NaN"

# normalised header key -> role. Keys are compared after `_norm` (casefold, no spaces).
_KEY_ROLES: dict[str, str] = {}
for _role, _keys in {
    "xy_cal": ("XY Calibration", "XYキャリブレーション", "XY-Justierung",
               "XY calibration (nm/pixel)", "Calibration", "キャリブレーション"),
    "x_pitch": ("X pitch", "X Calibration", "Xピッチ", "Xキャリブレーション", "Pitch X"),
    "y_pitch": ("Y pitch", "Y Calibration", "Yピッチ", "Yキャリブレーション", "Pitch Y"),
    "cols": ("Horizontal", "横", "Horizont.", "Horizontal size", "横サイズ", "Width"),
    "rows": ("Vertical", "縦", "Vertikal", "Vertical size", "縦サイズ"),
    "unit": ("Unit", "単位", "Einheit", "Z unit", "Height unit"),
    "data_type": ("Data type", "データの種類", "データ種別", "ファイル種別", "Dateityp",
                  "File type"),
    "output": ("Output image data", "出力画像データ", "Bilddatenausg."),
    "date": ("Measured date", "測定日時", "Gemessenes Datum", "Measurement date"),
    "model": ("Model", "機種", "Modell"),
    "magnification": ("Objective Lens Power", "倍率", "対物レンズ倍率", "Objektivvergrößerung",
                      "Magnification", "Lens magnification"),
    "version": ("File version", "ファイルバージョン", "Dateiversion"),
    "name": ("Measurement data name", "測定データ名", "Messdatenname"),
    "scan_mode": ("Scan Mode", "Measurement Mode", "測定モード", "Messmethode", "Messmodus"),
    "minimum": ("Minimum value", "最小値"),
    "maximum": ("Maximum value", "最大値"),
}.items():  # fmt: skip
    for _k in _keys:
        _KEY_ROLES[re.sub(r"\s+", "", _k).casefold()] = _role

_DATA_LABELS = {"height", "高さ", "höhe", "heightdata", "高さデータ"}
_NOT_HEIGHT = ("light", "laser", "intensity", "color", "colour", "光量", "レーザー", "カラー",
               "強度", "licht", "farbe", "intensität")  # fmt: skip
_LENGTH_UM = {"pm": 1e-6, "nm": 1e-3, "um": 1.0, "mm": 1e3, "m": 1e6}
_NUM_UNIT = re.compile(r"^\s*([-+]?\d*[.,]?\d+(?:[eE][-+]?\d+)?)\s*\[?\s*([^\]/\s]*)")


def _norm(key: str) -> str:
    return re.sub(r"\s+", "", key).casefold()


def _length_factor(unit: str) -> float | None:
    """Micrometres per `unit` ("um", "μm", "µm", "nm", "[um]", "nm/pixel", ...); None if unknown."""
    u = unit.strip().strip("[]()").replace("µ", "u").replace("μ", "u").casefold()
    u = re.split(r"\s*/\s*", u)[0].strip()
    return _LENGTH_UM.get(u)


def _decode(raw: bytes, *, final: bool) -> tuple[str, str]:
    """Text and encoding name. `final=False` tolerates a multi-byte character cut at the end."""

    def attempt(enc: str) -> str:
        return codecs.getincrementaldecoder(enc)(errors="strict").decode(raw, final=final)

    if raw.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    elif b"\x00" in raw[:256]:
        zeros_odd = raw[1:256:2].count(0) > raw[0:256:2].count(0)
        candidates = ["utf-16-le" if zeros_odd else "utf-16-be"]
    else:
        candidates = ["utf-8", "cp932"]
    for enc in candidates:
        try:
            return attempt(enc), enc
        except UnicodeDecodeError:
            continue
    raise ValueError("text encoding not recognised (tried UTF-8, UTF-16, Shift-JIS/cp932)")


def _delimiter(text: str) -> str:
    """Keyence quotes every cell, so the separator is what stands between two quotes."""
    sample = text[:3000]
    quoted = {d: sample.count(f'"{d}"') for d in (",", ";", "\t")}
    if max(quoted.values()) > 0:
        return max(quoted, key=quoted.get)
    first = "\n".join(sample.splitlines()[:5])
    return max((",", ";", "\t"), key=first.count)


def _is_data_row(row: list[str], decimal_comma: bool) -> bool:
    seen = False
    for cell in row:
        c = cell.strip()
        if not c:
            continue
        try:
            float(c.replace(",", ".") if decimal_comma else c)
        except ValueError:
            return False
        seen = True
    return seen


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _header_rows(rows: list[list[str]]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """role -> cells after the key, and the raw key -> value text, for the header rows."""
    roles: dict[str, list[str]] = {}
    raw: dict[str, str] = {}
    for row in rows:
        if len(row) < 2 or not row[0].strip():
            continue
        key = " ".join(row[0].split())
        values = [c.strip() for c in row[1:]]
        raw[key] = " ".join(v for v in values if v)
        role = _KEY_ROLES.get(_norm(key))
        if role and role not in roles:
            roles[role] = values
    return roles, raw


def _looks_keyence(text: str) -> bool:
    if "ImageDataCsv" in text:
        return True
    delim = _delimiter(text)
    try:
        rows = list(csv.reader(io.StringIO(text[:4000]), delimiter=delim))[:40]
    except csv.Error:
        return False
    roles, _ = _header_rows(rows[:-1])  # the last row may be cut off
    scale_keys = {"xy_cal", "x_pitch", "cols", "rows", "unit"}
    return len(roles) >= 3 and bool(scale_keys & roles.keys())


def _length_um(path, role_values: list[str], key: str) -> float:
    """A length such as ["138.9", "nm"] or ["0.1389um/pixel"], in micrometres."""
    joined = " ".join(v for v in role_values if v)
    m = _NUM_UNIT.match(joined)
    if not m:
        raise UnreadableInput(path, f"Keyence CSV header {key!r} is {joined!r}, not a length")
    value = float(m.group(1).replace(",", "."))
    unit = m.group(2) or next((v for v in role_values[1:] if v), "")
    factor = _length_factor(unit)
    if factor is None:
        raise MissingCalibration(
            path,
            f"Keyence CSV header {key!r} = {joined!r} has no length unit; the pixel size "
            "is unknown (give it through a calibration profile)",
        )
    return value * factor


def _count(values: list[str]) -> int | None:
    if not values or not values[0]:
        return None
    m = re.match(r"^\s*(\d+)\s*(px|pixels?)?\s*$", values[0])
    if not m or (len(values) > 1 and _length_factor(values[1]) is not None):
        return None  # a physical size, not a pixel count: shown in the header only
    return int(m.group(1))


def _find_key(raw: dict[str, str], role: str) -> str:
    return next(k for k in raw if _KEY_ROLES.get(_norm(k)) == role)


def _read_text(path: Path) -> tuple[str, str]:
    """The file's text and the name of its encoding; a file over MAX_CSV_BYTES is refused."""
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise UnreadableInput(
            path, f"CSV of {size} bytes exceeds the {MAX_CSV_BYTES}-byte limit"
        )
    try:
        return _decode(path.read_bytes(), final=True)
    except ValueError as exc:
        raise UnreadableInput(path, str(exc)) from None


def _split_rows(
    path, text: str, delim: str, decimal_comma: bool
) -> tuple[list[list[str]], list[tuple[int, list[str]]], list[list[str]]]:
    """The header rows, the data rows as (line number, cells), and the non-blank rows after
    the blank line that closes the data block."""
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    header_rows: list[list[str]] = []
    data: list[tuple[int, list[str]]] = []
    label_seen = False  # the "Height"/"高さ" row right above the matrix
    try:
        for row in reader:
            if not data:
                if label_seen and not row:
                    continue
                if not (label_seen or _is_data_row(row, decimal_comma)):
                    header_rows.append(row)
                    label_seen = len(row) == 1 and _norm(row[0]) in _DATA_LABELS
                    continue
            elif not row:  # a blank line closes the data block
                break
            data.append((reader.line_num, row))
            if len(data) > 65_536:
                raise UnreadableInput(path, "more than 65536 data rows; refusing")
        trailing = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise UnreadableInput(path, f"malformed CSV at line {reader.line_num}: {exc}") from None
    return header_rows, data, trailing


def _shown_header(roles: dict[str, list[str]]) -> dict[str, str]:
    """Header entries for the date, model, objective, data type and output, where given."""
    shown = (("date", "date"), ("model", "model"), ("magnification", "objective_magnification"),
             ("data_type", "data_type"), ("output", "output_image_data"))  # fmt: skip
    return {name: roles[role][0] for role, name in shown if roles.get(role) and roles[role][0]}


def _drop_trailing_empty_column(
    data: list[tuple[int, list[str]]], want_cols: int | None
) -> list[tuple[int, list[str]]]:
    """The data rows without their last cell when every row ends with an empty cell (a
    trailing comma on every line) and that agrees with the declared width; else unchanged."""
    width = len(data[0][1])
    if all(r and not r[-1].strip() for _, r in data) and (
        want_cols is None or width - 1 == want_cols
    ):
        data = [(n, r[:-1]) for n, r in data]  # a trailing comma on every line
    return data


def _data_row(path, i: int, line: int, row: list[str], width: int, decimal_comma: bool) -> np.ndarray:
    """One data row as float64, empty cells as NaN; a ragged row or a non-number is refused."""
    if len(row) != width:
        raise UnreadableInput(
            path,
            f"ragged data: data row {i + 1} (line {line}) has {len(row)} values, "
            f"row 1 has {width}",
        )
    cells = [c.strip() or "nan" for c in row]
    if decimal_comma:
        cells = [c.replace(",", ".") for c in cells]
    try:
        return np.asarray(cells, dtype=np.float64)
    except ValueError:
        j, bad = next(((j, c) for j, c in enumerate(cells) if not _is_number(c)), (-1, "?"))
        raise UnreadableInput(
            path, f"data row {i + 1} (line {line}), column {j + 1}: {bad!r} is not a number"
        ) from None


def _check_declared_size(path, want_cols: int | None, want_rows: int | None, cols: int,
                         rows: int) -> None:
    """Returns None; refuses a matrix whose size differs from the declared Horizontal x Vertical."""
    if (want_cols is not None and want_cols != cols) or (
        want_rows is not None and want_rows != rows
    ):
        raise UnreadableInput(
            path,
            f"Keyence CSV header declares {want_cols} x {want_rows} (horizontal x vertical) "
            f"but the data block has {cols} columns x {rows} rows (truncated or ragged file)",
        )


class KeyenceCsvReader:
    """Keyence VK-X / VR CSV height export (English, Japanese and German headers)."""

    name = "keyence_csv"
    kind = "height"
    suffixes = (".csv",)
    description = "Keyence VK Analyzer / MultiFileAnalyzer CSV height export"
    expects = ("a CSV whose header rows are Keyence keys (XY Calibration/XYキャリブレーション, "
               "Horizontal/横, Vertical/縦, Unit/単位, ImageDataCsv)")  # fmt: skip
    priority = 40

    def can_open(self, head: bytes, path: Path) -> bool:
        try:
            text, _ = _decode(head, final=False)
        except ValueError:
            return False
        return _looks_keyence(text)

    def open(self, path: Path):
        path = Path(path)
        text, encoding = _read_text(path)
        delim = _delimiter(text)
        decimal_comma = delim == ";"
        header_rows, data, trailing = _split_rows(path, text, delim, decimal_comma)
        roles, raw = _header_rows(header_rows)
        self._check_kind(path, roles)

        z_um, cols, rows = self._matrix(path, data, roles, decimal_comma)
        if trailing and "rows" not in roles:
            raise UnreadableInput(
                path,
                f"data block interrupted by a blank line after {rows} rows and no "
                "'Vertical'/'縦' row tells how many rows there are",
            )
        dx, dy, source = self._pixel_size(path, roles, raw)
        z_factor, z_unit = self._z_unit(path, roles)
        header = {
            "encoding": encoding,
            "delimiter": {"\t": "tab"}.get(delim, delim),
            "image_width_px": cols,
            "image_height_px": rows,
            "pixel_size_x_um": dx,
            "pixel_size_y_um": dy,
            "z_unit": z_unit,
            "invalid_rule": INVALID_RULE,
            "header_rows": raw,
        }
        header.update(_shown_header(roles))
        return height_dataarray(
            z_um * z_factor,
            path=path,
            dx_um=dx,
            dy_um=dy,
            pixel_size_source=source,
            vendor="Keyence",
            instrument=header.get("model", ""),
            fmt="keyence_csv",
            header=header,
        )

    @staticmethod
    def _check_kind(path, roles: dict[str, list[str]]) -> None:
        for role in ("output", "data_type"):
            value = " ".join(roles.get(role, [])).casefold()
            if (
                any(w in value for w in _NOT_HEIGHT)
                and "height" not in value
                and "高さ" not in value
            ):
                raise UnreadableInput(
                    path,
                    f"Keyence CSV holds {value!r} data, not a height map (export 'Height'/'高さ')",
                )

    @staticmethod
    def _matrix(path, data, roles, decimal_comma: bool) -> tuple[np.ndarray, int, int]:
        if not data:
            raise UnreadableInput(path, "Keyence CSV has a header but no rows of height values")
        want_cols = _count(roles.get("cols", []))
        want_rows = _count(roles.get("rows", []))
        data = _drop_trailing_empty_column(data, want_cols)
        width = len(data[0][1])
        check_shape(path, len(data), width, what="Keyence CSV height matrix")
        if len(data) * width > MAX_PIXELS:
            raise UnreadableInput(path, "Keyence CSV height matrix is too large")
        z = np.empty((len(data), width), dtype=np.float64)
        for i, (line, row) in enumerate(data):
            z[i] = _data_row(path, i, line, row, width, decimal_comma)
        rows, cols = z.shape
        _check_declared_size(path, want_cols, want_rows, cols, rows)
        return z, cols, rows

    @staticmethod
    def _pixel_size(path, roles, raw) -> tuple[float, float, str]:
        if "x_pitch" in roles:
            dx = _length_um(path, roles["x_pitch"], _find_key(raw, "x_pitch"))
            if "y_pitch" in roles:
                dy = _length_um(path, roles["y_pitch"], _find_key(raw, "y_pitch"))
                key = f"{_find_key(raw, 'x_pitch')}/{_find_key(raw, 'y_pitch')}"
                return dx, dy, f"Keyence CSV header {key!r}"
            return dx, dx, f"Keyence CSV header {_find_key(raw, 'x_pitch')!r}"
        if "xy_cal" in roles:
            key = _find_key(raw, "xy_cal")
            d = _length_um(path, roles["xy_cal"], key)
            return d, d, f"Keyence CSV header {key!r}"
        raise MissingCalibration(
            path,
            "the Keyence CSV header has no lateral calibration ('XY Calibration'/"
            "'XYキャリブレーション' or 'X pitch'): the pixel size is unknown",
        )

    @staticmethod
    def _z_unit(path, roles) -> tuple[float, str]:
        unit = next((v for v in roles.get("unit", []) if v), "")
        if not unit:
            raise MissingCalibration(
                path,
                "the Keyence CSV header has no z unit ('Unit'/'単位'): the height scale is unknown",
            )
        factor = _length_factor(unit)
        if factor is None:
            raise UnreadableInput(
                path, f"Keyence CSV z unit {unit!r} is not a length: not a height map"
            )
        return factor, unit
