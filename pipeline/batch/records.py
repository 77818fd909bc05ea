"""The sample record of results.json, defined once: what a measured sample and a sample whose
task failed both become (`SampleRecord.to_json`, checked against ``results.schema.json``'s
``sample`` by the tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAILED_METRICS", "SampleRecord"]

#: the metrics a failed sample reports, every one None
FAILED_METRICS = ("Sa_um", "Sz_um", "porosity_cross_section", "thickness_cross_section_um",
                  "porosity_gravimetric", "protrusions_per_mm2", "protrusions_by_class", "layers",
                  "psd")


@dataclass
class SampleRecord:
    """One electrode's results: its identity in the export, the two decisions (claim 15, the
    production gate) and the information claims, the void reduction, the aggregated
    metrics, the per-file records, flags, notes and provenance.

    Examples
    --------
    >>> rec = SampleRecord("e1", title="e1", state="after", pair=None, claim15={}, gate={})
    >>> list(rec.to_json())[:4]
    ['sample_id', 'title', 'state', 'pair']
    """

    sample_id: str
    title: str
    state: str
    pair: str | None
    claim15: dict[str, Any]
    gate: dict[str, Any]
    particle_claims: dict[str, Any] = field(
        default_factory=lambda: {"met": None, "claims": []})
    layer_claims: dict[str, Any] = field(default_factory=lambda: {"met": None, "claims": []})
    void_reduction_pct: float | None = None
    void_reduction_source: str | None = None
    metrics: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(FAILED_METRICS))
    images: list[dict[str, Any]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    task_failed: bool = False

    @classmethod
    def of(cls, sample, **fields: Any) -> SampleRecord:
        """The record of a discovered `sample` (its id, title, state, pair and, unless given,
        notes)."""
        fields.setdefault("notes", list(sample.notes))
        return cls(sample_id=sample.id, title=sample.manifest.get("title", sample.id),
                   state=sample.state, pair=sample.manifest.get("pair"), **fields)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict, as results.json holds it once the run has added
        its provenance (version, time, key, configuration identities); ``task_failed`` only
        when it failed, and then without ``void_reduction_source``."""
        out = {"sample_id": self.sample_id, "title": self.title, "state": self.state,
               "pair": self.pair, "claim15": self.claim15,
               "particle_claims": self.particle_claims, "layer_claims": self.layer_claims,
               "gate": self.gate, "void_reduction_pct": self.void_reduction_pct}
        if not self.task_failed:
            out["void_reduction_source"] = self.void_reduction_source
        out.update(metrics=self.metrics, images=self.images, flags=self.flags,
                   notes=self.notes)
        if self.task_failed:
            out["task_failed"] = True
        out["provenance"] = self.provenance
        return out
