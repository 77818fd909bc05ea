"""The records of results.json, defined once: a sample (`SampleRecord`: what a measured sample
and a sample whose task failed both become) and each of its files (`ImageRecord`); their
``to_json()`` is checked against ``results.schema.json`` by the tests. The decisions they hold
are `pipeline.conformity.Decision` and `ClaimsDecision`; the metrics' summaries
`pipeline.uncertainty.MetricSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.conformity import ClaimsDecision, Decision
from pipeline.jsonio import json_safe

__all__ = ["FAILED_METRICS", "ImageRecord", "SampleRecord"]

#: the metrics a failed sample reports, every one None
FAILED_METRICS = ("Sa_um", "Sz_um", "porosity_cross_section", "thickness_cross_section_um",
                  "porosity_gravimetric", "protrusions_per_mm2", "protrusions_by_class", "layers",
                  "psd")


@dataclass
class ImageRecord:
    """One file of a sample: its path, role, status ("ok", "error", "skipped"), the error and
    its exit code, the measurement's results, what the file says of itself (`file`: kind,
    reader, vendor, SHA-256, shape, pixel size and its source, calibration), the error's type
    and ``retry`` (the failure may not repeat: out of memory, a memory limit).

    Examples
    --------
    >>> im = ImageRecord("a.tif")
    >>> im.fail("a.tif: unreadable", 4, "UnreadableInput")
    >>> im.to_json()["status"], im.to_json()["exit_code"]
    ('error', 4)
    """

    path: str
    role: str | None = None
    status: str = "ok"
    error: str | None = None
    exit_code: int = 0
    results: dict[str, Any] | None = None
    file: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    retry: bool = False

    def fail(self, error: str, exit_code: int, error_type: str | None = None, *,
             retry: bool = False) -> None:
        """Mark the file failed with `error` (a message that names it) and `exit_code`."""
        self.status, self.error, self.exit_code = "error", error, exit_code
        self.error_type, self.retry = error_type, retry

    def to_json(self) -> dict[str, Any]:
        """As results.json holds it (``sample.images[]``): ``error_type`` only on a failed
        file, ``retry`` only when true."""
        out = {"path": self.path, "role": self.role, "status": self.status,
               "error": self.error, "exit_code": self.exit_code, "results": self.results,
               **self.file}
        if self.error_type is not None:
            out["error_type"] = self.error_type
        if self.retry:
            out["retry"] = True
        return out


@dataclass
class SampleRecord:
    """One electrode's results: its identity in the export, the two decisions (the run's
    spec, claim 15 unless another is given, and the production gate) and the information
    claims, the void reduction, the aggregated metrics, the per-file records, flags, notes
    and provenance.

    Examples
    --------
    >>> from pipeline.conformity import evaluate_spec, load_spec
    >>> d = evaluate_spec(load_spec(), {})
    >>> rec = SampleRecord("e1", title="e1", state="after", pair=None, spec=d, gate=d)
    >>> list(rec.to_json())[:5], rec.to_json()["spec"]["outcome"]
    (['sample_id', 'title', 'state', 'pair', 'spec'], 'indeterminate')
    """

    sample_id: str
    title: str
    state: str
    pair: str | None
    spec: Decision
    gate: Decision
    particle_claims: ClaimsDecision | None = None
    layer_claims: ClaimsDecision | None = None
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
               "pair": self.pair, "spec": self.spec.to_json(),
               "particle_claims": ({"met": None, "claims": []} if self.particle_claims is None
                                   else self.particle_claims.to_json()),
               "layer_claims": ({"met": None, "claims": []} if self.layer_claims is None
                                else self.layer_claims.to_json()),
               "gate": self.gate.to_json(), "void_reduction_pct": self.void_reduction_pct}
        if not self.task_failed:
            out["void_reduction_source"] = self.void_reduction_source
        out.update(metrics=json_safe(self.metrics), images=self.images, flags=self.flags,
                   notes=self.notes)
        if self.task_failed:
            out["task_failed"] = True
        out["provenance"] = self.provenance
        return out
