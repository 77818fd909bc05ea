"""JSON text of measurement records: numpy scalars as Python numbers, NaN and infinity as
null (never the non-standard NaN), paths as strings. One encoder for results.json, the store,
the tables' side files, the kept previews and the command line."""

from __future__ import annotations

import json
import math
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

__all__ = ["json_safe", "to_json"]


def json_safe(v: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, paths to strings, a
    record (a dataclass with ``to_json()``) to its JSON form."""
    if is_dataclass(v) and not isinstance(v, type) and hasattr(v, "to_json"):
        v = v.to_json()
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def to_json(v: Any, **kw) -> str:
    """`v` as JSON text, NaN and inf as null (never the non-standard NaN). Values that are
    plain JSON already go straight to the encoder; others pass through `json_safe` first.

    >>> import numpy as np
    >>> to_json({"n": np.int64(3), "x": float("nan"), "p": Path("a/b")})
    '{"n": 3, "x": null, "p": "a/b"}'
    """
    try:
        return json.dumps(v, allow_nan=False, **kw)
    except (TypeError, ValueError):  # numpy integers, paths, NaN: convert, then encode
        return json.dumps(json_safe(v), allow_nan=False, **kw)
