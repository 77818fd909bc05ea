"""Ingest: instrument files in, DataArrays out."""

from pipeline.ingest.registry import find_reader, read, readers

__all__ = ["find_reader", "read", "readers"]
