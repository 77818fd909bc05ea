"""Synthetic electrodes with known truth, written the way instruments write them.

Seeded and deterministic (`numpy.random.default_rng(seed)`): the same arguments give the
same bytes. Used by the tests, `sample_images/` and the benchmarks. Each generator returns
the data and a truth dict; the ``write_*`` functions put a file and ``<name>.truth.json``
beside it.

- `pipeline.synth.ideal`: height maps, idealised SEM particle fields, cross-sections and
  surfaces, and the X3P / TIFF files an instrument would write;
- `pipeline.synth.sem`: the realistic secondary-electron model of particle layers;
- `pipeline.synth.xsec`: the realistic SEM cross-section of a porous layer;
- `pipeline.synth.common`: what they share (shot noise, shading, sphere packing).
"""

from __future__ import annotations

from pipeline.synth.ideal import (
    cross_section_image,
    height_map,
    match_labels,
    particle_image,
    surface_image,
    write_sem_tiff,
    write_truth,
    write_x3p,
)
from pipeline.synth.sem import SemModel, sem_dataarray, sem_scene
from pipeline.synth.xsec import XsecModel, xsec_dataarray, xsec_scene

__all__ = [
    "SemModel",
    "XsecModel",
    "cross_section_image",
    "height_map",
    "match_labels",
    "particle_image",
    "sem_dataarray",
    "sem_scene",
    "surface_image",
    "write_sem_tiff",
    "write_truth",
    "write_x3p",
    "xsec_dataarray",
    "xsec_scene",
]
