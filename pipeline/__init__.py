"""electrode-qc: measurements of battery-electrode micrographs and height maps.

The public API is imported lazily so that ``import pipeline`` (and the command line's
``--help``) stay fast: ``pipeline.read``, ``pipeline.surface_texture``, ``pipeline.run``
(the main job; the module is `pipeline.batch.runner` so that the name stays the function's).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "read": ("pipeline.ingest.registry", "read"),
    "surface_texture": ("pipeline.metrology.texture", "surface_texture"),
    "find_protrusions": ("pipeline.segmentation.protrusions", "find_protrusions"),
    "find_particles": ("pipeline.segmentation.particles", "find_particles"),
    "size_distribution": ("pipeline.segmentation.psd", "size_distribution"),
    "porosity_from_cross_section": ("pipeline.segmentation.cross_section", "porosity_from_cross_section"),
    "gravimetric_porosity": ("pipeline.gravimetric", "gravimetric_porosity"),
    "void_reduction": ("pipeline.gravimetric", "void_reduction"),
    "run": ("pipeline.batch.runner", "run"),
    "gate": ("pipeline.batch.runner", "gate"),
    "RunResult": ("pipeline.batch.runner", "RunResult"),
}

__all__ = [  # noqa: RUF022 - the version first, then the API as listed in _LAZY
    "__version__", "read", "surface_texture", "find_protrusions", "find_particles",
    "size_distribution", "porosity_from_cross_section", "gravimetric_porosity", "void_reduction",
    "run", "gate", "RunResult",
]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
