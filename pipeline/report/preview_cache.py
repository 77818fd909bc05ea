"""Report pictures kept between runs, so that a re-run whose samples are all stored already
measures nothing, report included.

Two files per sample and key. The previews (below) are what the pictures are drawn from;
the finished pictures (``<sample>-<key>.pictures.json``: the report's encoded images and
their sizes, `save_pictures`) are what the report shows, so that a report of kept samples
draws nothing again. The finished pictures name the drawing code they came from (a hash of
the report's modules): pictures of other code are drawn again. The folder also keeps
``tables.json``, what `pipeline.report.tables.write_outputs` wrote last (so that unchanged
tables are not written again).

The worker that measures a sample for a report writes its previews (SEM images, label
images, height maps, the size histogram) to ``OUT/previews/<sample>-<12 hex digits of its
idempotency key>.npz``: the arrays (label images in the smallest integer type, floats as
float32: enough for pictures), plus the structure around them as JSON. Loaded with
``allow_pickle=False``; a file that is missing, unreadable or of another key is a miss, and
the caller measures the sample again for its pictures.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.fsutil import atomic_open, ensure_folder
from pipeline.jsonio import to_json

__all__ = ["load", "load_pictures", "path_for", "pictures_path", "save", "save_pictures"]

log = logging.getLogger(__name__)

_SKELETON = "__skeleton__"
_ARRAY = "__array__"
_ITEMS = "__items__"


def path_for(out: Path, sample_id: str, key: str) -> Path:
    return Path(out) / "previews" / f"{sample_id}-{key[:12]}.npz"


def _compact(a: np.ndarray) -> np.ndarray:
    """Pictures need less than the measurement: label images in the smallest integer type
    that holds them (lossless), heights and sizes in float32 (7 digits)."""
    if a.dtype.kind in "iu" and a.size and a.min() >= 0:
        for t in (np.uint8, np.uint16, np.uint32):
            if a.max() <= np.iinfo(t).max:
                return a.astype(t, copy=False)
    if a.dtype == np.float64:
        return a.astype(np.float32)
    return a


def _split(v: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":  # only plain numbers and booleans go to the file
            raise TypeError(f"array of dtype {v.dtype}")
        name = f"a{len(arrays)}"
        arrays[name] = _compact(v)
        return {_ARRAY: name}
    if isinstance(v, dict):
        if _ARRAY in v or _ITEMS in v:
            raise TypeError("a dict key of the cache's own")
        if not all(isinstance(k, str) for k in v):  # label -> phase maps: integer keys
            return {_ITEMS: [[k.item() if isinstance(k, np.generic) else k, _split(x, arrays)]
                             for k, x in v.items()]}
        return {k: _split(x, arrays) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_split(x, arrays) for x in v]
    return v


def _join(v: Any, arrays) -> Any:
    if isinstance(v, dict):
        if set(v) == {_ARRAY}:
            return arrays[v[_ARRAY]]
        if set(v) == {_ITEMS}:
            return {k: _join(x, arrays) for k, x in v[_ITEMS]}
        return {k: _join(x, arrays) for k, x in v.items()}
    if isinstance(v, list):
        return [_join(x, arrays) for x in v]
    return v


def save(out: Path, sample_id: str, key: str, artifacts: dict[str, Any]) -> Path | None:
    """Write a sample's previews (atomically, `pipeline.fsutil`) and remove its previews of
    other keys. Returns the file, or None if the previews hold something this file cannot
    keep. Raises `pipeline.fsutil.OutputError` if the file cannot be written."""
    arrays: dict[str, np.ndarray] = {}
    try:
        skeleton = to_json(_split(artifacts, arrays))
    except (TypeError, ValueError) as exc:
        log.debug("previews of %s not kept: %s", sample_id, exc)
        return None
    target = path_for(out, sample_id, key)
    ensure_folder(target.parent)
    with atomic_open(target) as f:
        np.savez_compressed(f, **arrays,
                            **{_SKELETON: np.frombuffer(skeleton.encode("utf-8"), np.uint8)})
    pat = re.compile(rf"^{re.escape(sample_id)}-[0-9a-f]{{12}}\.npz$")
    for p in target.parent.glob(f"{sample_id}-*.npz"):
        if p != target and pat.match(p.name):
            p.unlink(missing_ok=True)
    return target


def load(out: Path, sample_id: str, key: str) -> dict[str, Any] | None:
    """The previews a worker kept for this sample and key, or None."""
    path = path_for(out, sample_id, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        skeleton = json.loads(arrays.pop(_SKELETON).tobytes().decode("utf-8"))
        return _join(skeleton, arrays)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        log.warning("%s: kept previews unreadable (%s); measuring the sample again for its "
                    "pictures", path, exc)
        return None


def pictures_path(out: Path, sample_id: str, key: str) -> Path:
    return Path(out) / "previews" / f"{sample_id}-{key[:12]}.pictures.json"


def save_pictures(out: Path, sample_id: str, key: str, pictures: dict[str, Any],
                  drawn_by: str) -> Path:
    """Keep a sample's finished report pictures (JSON: data URIs and sizes), drawn by the
    code `drawn_by` names, and remove its finished pictures of other keys. Raises
    `pipeline.fsutil.OutputError` if the file cannot be written."""
    target = pictures_path(out, sample_id, key)
    ensure_folder(target.parent)
    with atomic_open(target) as f:
        f.write(to_json({"drawn_by": drawn_by, "pictures": pictures}).encode("utf-8"))
    pat = re.compile(rf"^{re.escape(sample_id)}-[0-9a-f]{{12}}\.pictures\.json$")
    for p in target.parent.glob(f"{sample_id}-*.pictures.json"):
        if p != target and pat.match(p.name):
            p.unlink(missing_ok=True)
    return target


def load_pictures(out: Path, sample_id: str, key: str, drawn_by: str) -> dict[str, Any] | None:
    """The finished pictures kept for this sample and key by the code `drawn_by` names, or
    None (none kept, unreadable, or drawn by other code)."""
    path = pictures_path(out, sample_id, key)
    try:
        kept = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: kept pictures unreadable (%s); drawing them again", path, exc)
        return None
    if not isinstance(kept, dict) or kept.get("drawn_by") != drawn_by:
        return None
    pictures = kept.get("pictures")
    return pictures if isinstance(pictures, dict) else None
