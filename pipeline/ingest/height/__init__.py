"""Height-map readers, one module per format (confocal, interferometric, focus-variation, AFM)."""
