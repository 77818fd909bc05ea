"""Ingest: instrument files in, DataArrays out."""

from pipeline.ingest.registry import find_reader, read, readers

__all__ = ["read", "readers", "find_reader"]
