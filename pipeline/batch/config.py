"""What a run is configured with: the claim and gate specs, the particle and layer claims,
the recipe, the discovery rules, the instrument profiles and the materials, loaded once and
stamped on every result by their identities."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.conformity import ClaimSet, Spec, load_layer_claims, load_particle_claims, load_spec
from pipeline.gravimetric import Materials, load_materials
from pipeline.ingest.discover import DiscoveryRules, load_rules
from pipeline.instruments import Profile, load_profiles
from pipeline.metrology.recipe import Recipe, load_recipe

__all__ = ["RunConfig", "load_run_config"]


@dataclass
class RunConfig:
    """The configuration files a run measures and decides with (see `load_run_config`)."""

    spec: Spec
    gate_spec: Spec
    particle_claims: ClaimSet
    layer_claims: ClaimSet
    recipe: Recipe
    rules: DiscoveryRules
    profiles: list[Profile]
    materials: Materials
    today: _dt.date
    max_memory: int | None = None  # bytes one measurement may use; None: no limit

    def identities(self) -> dict[str, Any]:
        return {"spec": self.spec.identity(), "gate_spec": self.gate_spec.identity(),
                "particle_claims": self.particle_claims.identity(),
                "layer_claims": self.layer_claims.identity(),
                "recipe": self.recipe.identity(), "discovery": self.rules.identity(),
                "materials": self.materials.identity(),
                "instrument_profiles": [{"id": p.id, "path": p.path} for p in self.profiles]}


def load_run_config(spec: str | Path | None = None, gate_spec: str | Path | None = None,
                    recipe: str | Path | None = None, today: _dt.date | None = None,
                    max_memory: int | None = None) -> RunConfig:
    """Load a run's configuration: `spec` (default claim15), `gate_spec` (default
    gate-production) and `recipe` (default recipes/default.toml) from their paths, the rest
    from the calibration folder; `today` (default today) dates the instrument profiles'
    validity."""
    return RunConfig(
        spec=load_spec(spec, default="claim15"),
        gate_spec=load_spec(gate_spec, default="gate-production"),
        particle_claims=load_particle_claims(),
        layer_claims=load_layer_claims(),
        recipe=load_recipe(recipe),
        rules=load_rules(),
        profiles=load_profiles(),
        materials=load_materials(),
        today=today or _dt.date.today(),
        max_memory=max_memory,
    )
