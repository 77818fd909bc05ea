"""electrode-qc: measurements of battery-electrode micrographs and height maps.

The public API is imported lazily so that ``import pipeline`` (and the command line's
``--help``) stay fast. For a notebook (`pipeline.api`): ``pipeline.read`` (with the matching
instrument profile applied, as in production), ``pipeline.measure`` (one file as a run
measures it), the steps (``surface_texture``, ``find_particles``, ``size_distribution``,
``porosity_from_cross_section``, ``find_protrusions``, ``gravimetric_porosity``,
``void_reduction``), the decisions (``load_spec``, ``evaluate_spec``, ``judge``,
``load_recipe``), and the main job (``run``, ``gate``, ``RunOptions``, ``RunResult``). Reading a file
registers the ``da.eqc`` accessor that chains the steps on a DataArray.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "read": ("pipeline.api", "read"),
    "measure": ("pipeline.api", "measure"),
    "load_spec": ("pipeline.api", "load_spec"),
    "evaluate_spec": ("pipeline.api", "evaluate_spec"),
    "judge": ("pipeline.api", "judge"),
    "load_recipe": ("pipeline.api", "load_recipe"),
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
    "RunOptions": ("pipeline.batch.runner", "RunOptions"),
}

__all__ = [  # noqa: RUF022 - the version first, then the API as listed in _LAZY
    "__version__", "read", "measure", "load_spec", "evaluate_spec", "judge", "load_recipe",
    "surface_texture", "find_protrusions", "find_particles",
    "size_distribution", "porosity_from_cross_section", "gravimetric_porosity", "void_reduction",
    "run", "gate", "RunResult", "RunOptions",
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
