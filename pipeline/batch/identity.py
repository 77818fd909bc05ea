"""What identifies a sample's input: its files, their sidecars, their SHA-256, and the
idempotency key that makes a re-run of the same input a no-op in the results store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.ingest.registry import sha256_file

__all__ = ["SIDECAR_SUFFIXES", "digests_of", "hash_files", "idempotency_key", "inputs",
           "sidecars_of"]


def idempotency_key(sample, cfg, file_sha256: dict[str, str]) -> str:
    """SHA-256 over what decides a sample's result: its id, its input bytes (file and
    sidecar SHA-256s), its manifest entry, the recipe, spec, gate-spec, particle-claims,
    materials, discovery and instrument-profile hashes, which instrument certificates have
    expired by the run's date, and the package version.

    `cfg` is the run's configuration (`identities()` and `profiles`); `file_sha256` maps
    each file and sidecar path (as str) to its SHA-256, from `hash_files`."""
    import hashlib
    import json

    ident = cfg.identities()
    parts = {
        "sample_id": sample.id,
        "files": sorted((Path(f).name, file_sha256[str(f)]) for f in sample.files),
        "sidecars": sorted((p.name, file_sha256[str(p)]) for f in sample.files
                           for p in sidecars_of(Path(f))),
        "manifest": sample.manifest,
        "config": {k: (_hashes(v) if isinstance(v, dict) else
                       [p.get("path") for p in v] if isinstance(v, list) else v)
                   for k, v in ident.items()},
        "profiles": [p.identity() for p in cfg.profiles],
        # a certificate that lapses turns a verdict indeterminate: the key changes that day
        "expired_profiles": _expired(cfg),
        "package_version": __version__,
    }
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _hashes(identity: dict[str, Any]):
    """A configuration file's SHA-256; with the chain of files it extends, their hashes in
    order (a change to the base spec changes the key of every spec built on it)."""
    chain, ext = [identity.get("sha256")], identity.get("extends")
    while isinstance(ext, dict):
        chain.append(ext.get("sha256"))
        ext = ext.get("extends")
    return chain[0] if len(chain) == 1 else chain


SIDECAR_SUFFIXES = (".txt", ".hdr")


def sidecars_of(image: Path) -> list[Path]:
    """Text files beside an image that some vendors keep its scale in (Hitachi and JEOL
    ``<stem>.txt``, TESCAN ``<stem>-tif.hdr``): part of what decides its result."""
    try:
        siblings = list(image.parent.iterdir())
    except OSError:
        return []
    return sorted(p for p in siblings if p != image and p.is_file()
                  and p.suffix.lower() in SIDECAR_SUFFIXES and p.name.startswith(image.stem))


def inputs(files) -> list[Path]:
    """Files and their sidecars, once each."""
    return sorted({Path(x) for f in files for x in (Path(f), *sidecars_of(Path(f)))})


def hash_files(paths: list[Path]) -> dict[str, str]:
    """Each path (as str) to its SHA-256, or to ``"unreadable: <why>"`` when it cannot be
    read (the file is then measured, and reported, with the rest of its sample)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p: Path) -> tuple[str, str]:
        try:
            return str(p), sha256_file(p)
        except OSError as exc:
            return str(p), f"unreadable: {exc.strerror or exc}"

    with ThreadPoolExecutor(max_workers=4) as ex:  # hashlib releases the GIL
        return dict(ex.map(one, paths))


def digests_of(files, hashed: dict[str, str]) -> dict[str, str]:
    """The SHA-256 `hash_files` found for each of `files` that it could read: what a task
    passes on to `read` so that no file is hashed twice."""
    return {str(f): hashed[str(f)] for f in files
            if not hashed.get(str(f), "unreadable").startswith("unreadable")}


def _expired(cfg) -> list[str]:
    today = getattr(cfg, "today", None)
    return sorted(p.id for p in cfg.profiles
                  if today is not None and p.certificate and today > p.certificate["valid_until"])
