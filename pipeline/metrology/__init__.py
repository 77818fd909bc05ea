"""Metrology: form removal, ISO 16610-61 filters and ISO 25178-2 texture parameters."""
