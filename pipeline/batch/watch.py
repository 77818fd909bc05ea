"""Watching an instrument export folder: new exports are measured as they arrive.

The folder has the layout `electrode-qc run` reads (`pipeline.ingest.discover`): one
sub-folder per electrode, or files grouped by name, and an optional manifest. Filesystem
events (watchdog; a polling observer for network shares) are only hints that a path may
have changed. A file becomes a candidate when the watcher itself has seen its size and
mtime unchanged for `stable_seconds`; it is then parsed (`pipeline.ingest.registry.read`).
A file that does not parse is quarantined in the store with the reason, once per
(path, SHA-256), and tried again only when its bytes, or a sidecar beside it, change.

A sample is handed to ``process_sample(sample)`` when one of its files became ready or was
quarantined (or its manifest entry changed) and none of its files is still settling. The
`Sample` passed on lists every file that settled, quarantined ones included (and named in
its notes): a quarantined file fails again when measured, so its sample is judged
indeterminate until the file is replaced, never on its other files alone. A sample whose
files, their sidecars and manifest entry are unchanged since the last call is not passed
again; across restarts `process_sample` itself must be idempotent (the store's key).

A reconciliation scan at start and every `scan_interval_s` treats every file as a hint,
so nothing added while the watcher was stopped, or whose event was lost, is missed.
Inputs are only read: never moved, renamed, written or deleted.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.batch import persist
from pipeline.batch.store import Store
from pipeline.errors import EXIT_OK, ConfigError, ElectrodeQCError, UnreadableInput
from pipeline.ingest.discover import MANIFEST_NAMES, discover, load_rules
from pipeline.ingest.registry import read, sha256_file

__all__ = ["Watcher", "watch"]

log = logging.getLogger(__name__)

_Stat = tuple[int, int]  # (size, mtime_ns)


@dataclass
class _Settling:
    stat: _Stat
    since: float  # clock() when `stat` was first seen


@dataclass(frozen=True)
class _Checked:
    stat: _Stat
    sha256: str
    sidecars: tuple[tuple[str, int, int], ...]  # (name, size, mtime_ns) of sidecars at parse
    reason: str | None = None  # why it does not parse; None when it does


def _stat(path: Path) -> _Stat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    import stat as _st

    return (st.st_size, st.st_mtime_ns) if _st.S_ISREG(st.st_mode) else None


class Watcher:
    """Watch `folder` and hand each sample whose files are complete to `process_sample`.

    Parameters
    ----------
    folder : path
        The export folder (see `pipeline.ingest.discover`).
    store : pipeline.batch.store.Store
        Used for `quarantined()` (at start) and `quarantine(...)`.
    process_sample : callable
        ``process_sample(sample: pipeline.ingest.discover.Sample) -> Any``: measures the
        sample's files (all ready and parseable) and stores the result; idempotent for
        unchanged input. A ConfigError it raises stops the watcher (a configuration problem
        holds for every sample); any other error is logged and the sample tried again at the
        next reconciliation scan.
    poll : bool
        Use watchdog's polling observer (network shares, where change events do not arrive).
    stable_seconds : float
        How long a file's size and mtime must stay unchanged before it is read.
    scan_interval_s : float
        Seconds between reconciliation scans (one also runs at start).
    poll_interval_s : float
        The polling observer's interval (``poll=True`` only).
    clock : callable
        Monotonic seconds (tests may pass their own).
    """

    def __init__(self, folder: str | Path, *, store: Any,
                 process_sample: Callable[[Any], Any], poll: bool = False,
                 stable_seconds: float = 2.0, scan_interval_s: float = 60.0,
                 poll_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):

        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise ConfigError(folder, "is not a folder; watch needs an existing export folder")
        for name, v in (("stable_seconds", stable_seconds), ("scan_interval_s", scan_interval_s),
                        ("poll_interval_s", poll_interval_s)):
            if not v > 0:
                raise ConfigError(None, f"{name} must be a positive number of seconds, found {v!r}")
        self.store = store
        self.process_sample = process_sample
        self.poll = poll
        self.stable_seconds = float(stable_seconds)
        self.scan_interval_s = float(scan_interval_s)
        self.poll_interval_s = float(poll_interval_s)
        self.clock = clock
        self._rules = load_rules()
        self._skip = [g.lower() for g in self._rules.skip]
        self._hints: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._settling: dict[Path, _Settling] = {}
        self._checked: dict[Path, _Checked] = {}   # images read once stable (ok or not)
        self._aux: dict[Path, _Stat] = {}           # manifest and skipped files, once stable
        self._quarantined: set[tuple[str, str | None]] = set()
        self._dirty: set[Path] = set()              # ready files whose sample is still due
        self._retry: set[Path] = set()              # files of samples whose processing failed
        self._done: dict[str, tuple] = {}           # sample id -> what it was last passed with
        self._manifest_changed = True
        self._discover_error: str | None = None
        self._notes: set[str] = set()               # discovery's notes, logged once each

    # -- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end; it does so after the sample being processed, if any."""
        self._stop.set()

    def run_forever(self) -> int:
        """`run()` with SIGTERM and SIGINT asking for a clean stop; returns 0.

        The handlers are installed only in the main thread and restored on return. A second
        SIGINT while stopping raises KeyboardInterrupt.
        """
        installed: dict[int, Any] = {}

        def on_signal(signum, frame):
            if self._stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt
            log.info("signal %s: stopping after the current sample", signal.Signals(signum).name)
            self.stop()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                installed[sig] = signal.signal(sig, on_signal)
        try:
            self.run()
        finally:
            for sig, prev in installed.items():
                signal.signal(sig, prev)
        return EXIT_OK

    def run(self) -> None:
        """Watch until `stop()`: observer started, scan at start and every scan_interval_s.

        A Watcher runs once: after `stop()`, make a new one to watch again.
        """
        self._quarantined = {(str(r["path"]), r.get("sha256")) for r in self.store.quarantined()}
        observer = self._start_observer()
        log.info("watching %s (%s; stable after %.3g s; scan every %.3g s)", self.folder,
                 "polling" if self.poll else "filesystem events", self.stable_seconds,
                 self.scan_interval_s)
        tick = max(0.02, min(0.25, self.stable_seconds / 4))
        try:
            self._scan()
            next_scan = self.clock() + self.scan_interval_s
            while not self._stop.is_set():
                self._drain(tick)
                if self.clock() >= next_scan:
                    self._scan()
                    next_scan = self.clock() + self.scan_interval_s
                self._settle()
                self._process()
        finally:
            observer.stop()
            observer.join(timeout=10)
            log.info("stopped watching %s", self.folder)

    # -- hints ---------------------------------------------------------------------------
    def _start_observer(self):
        from watchdog.events import (
            EVENT_TYPE_CLOSED_NO_WRITE,
            EVENT_TYPE_CREATED,
            EVENT_TYPE_MOVED,
            EVENT_TYPE_OPENED,
            FileSystemEventHandler,
        )

        put = self._hints.put

        class Hints(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in (EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE):
                    return  # our own reads, and anyone else's
                if event.is_directory and event.event_type not in (EVENT_TYPE_CREATED,
                                                                   EVENT_TYPE_MOVED):
                    return  # "folder modified" comes with every file event inside it
                put(os.fsdecode(event.src_path))
                if getattr(event, "dest_path", ""):
                    put(os.fsdecode(event.dest_path))

        if self.poll:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=self.poll_interval_s)
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(Hints(), str(self.folder), recursive=True)
        try:
            observer.start()
        except OSError as exc:  # e.g. the inotify watch limit
            raise ConfigError(self.folder, f"cannot watch for filesystem events ({exc}); "
                                           "use --poll") from None
        return observer

    def _drain(self, timeout: float) -> None:
        try:
            self._hint(Path(self._hints.get(timeout=timeout)))
            while True:
                self._hint(Path(self._hints.get_nowait()))
        except queue.Empty:
            pass

    def _kind(self, path: Path) -> str | None:
        """"image", "manifest", "skipped" (sidecars, notes), or None (not ours to look at)."""
        from fnmatch import fnmatch

        try:
            rel = path.relative_to(self.folder)
            # a link whose target leaves the folder is not ours to read (nor is a loop)
            path.resolve().relative_to(self.folder)
        except (ValueError, OSError, RuntimeError):
            return None
        if not rel.parts or any(p.startswith(".") for p in rel.parts):
            return None
        if len(rel.parts) == 1 and path.name in MANIFEST_NAMES:
            return "manifest"
        low = path.name.lower()
        return "skipped" if any(fnmatch(low, g) for g in self._skip) else "image"

    def _hint(self, path: Path) -> None:
        if path.is_dir():  # a folder created or moved in: its files may bring no events
            if self._kind(path) is not None:
                for p in sorted(path.rglob("*")):
                    if p.is_file():
                        self._hint(p)
            return
        if self._kind(path) is None:
            return
        st = _stat(path)
        if st is None:
            self._forget(path)
        elif path not in self._settling and st != self._known_stat(path):
            self._settling[path] = _Settling(st, self.clock())

    def _known_stat(self, path: Path) -> _Stat | None:
        c = self._checked.get(path)
        return c.stat if c is not None else self._aux.get(path)

    def _forget(self, path: Path) -> None:
        self._settling.pop(path, None)
        self._checked.pop(path, None)
        self._dirty.discard(path)
        if self._aux.pop(path, None) is not None:
            self._aux_changed(path)

    def _scan(self) -> None:
        """Reconciliation: every file is a hint; files gone are forgotten."""
        seen = set()
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                p = Path(root, name)
                seen.add(p)
                self._hint(p)
        for p in set(self._settling) | set(self._checked) | set(self._aux):
            if p not in seen:
                self._forget(p)
        self._dirty |= self._retry
        self._retry.clear()
        self._discover_error = None

    # -- settling and checking ---------------------------------------------------------
    def _settle(self) -> None:
        for path, s in list(self._settling.items()):
            if self._stop.is_set():
                return
            st, now = _stat(path), self.clock()  # `now` per file: reading the last may take long
            if st is None:
                self._forget(path)
            elif st != s.stat:
                s.stat, s.since = st, now
            elif now - s.since >= self.stable_seconds:
                del self._settling[path]
                self._discover_error = None  # e.g. the files a manifest entry waited for
                if self._kind(path) == "image":
                    self._check(path, st)
                else:
                    self._aux[path] = st
                    self._aux_changed(path)

    def _aux_changed(self, path: Path) -> None:
        """A manifest or a skipped file (possibly a sidecar) settled with new content, or went."""
        if self._kind(path) == "manifest":
            self._manifest_changed = True
            self._discover_error = None
            return
        low = path.name.lower()
        for img, c in list(self._checked.items()):
            if (img.parent == path.parent and low.startswith(img.stem.lower())
                    and c.sidecars != self._sidecars(img)):
                del self._checked[img]  # read it again, with its sidecar as it now is
                self._settling[img] = _Settling(c.stat, float("-inf"))

    def _sidecars(self, image: Path) -> tuple[tuple[str, int, int], ...]:
        """Skipped files beside `image` whose names start with its stem (.txt, -tif.hdr, ...)."""
        stem = image.stem.lower()
        out = []
        try:
            siblings = list(image.parent.iterdir())
        except OSError:
            return ()
        for p in siblings:
            if p != image and p.name.lower().startswith(stem) and self._kind(p) == "skipped":
                st = _stat(p)
                if st is not None:
                    out.append((p.name, *st))
        return tuple(sorted(out))

    def _check(self, path: Path, st: _Stat) -> None:
        """Read a settled image: ready, or quarantined with the reason."""

        sidecars = self._sidecars(path)
        reason = None
        try:
            try:
                sha = read(path, sha256=True).attrs["source_sha256"]
            except UnreadableInput as exc:
                reason = exc.problem
                sha = sha256_file(path)
            except ElectrodeQCError:  # read, but e.g. without a scale: measured, and flagged
                sha = sha256_file(path)
        except OSError as exc:  # stable but not readable (permissions): quarantined, like
            # a broken file, and tried again when its size or mtime changes
            sha = f"unreadable:{st[0]}:{st[1]}"
            reason = f"cannot be read: {exc.strerror or exc}"
        now = _stat(path)
        if now != st or self._sidecars(path) != sidecars:
            if now is not None:  # it changed while being read: let it settle again
                self._settling[path] = _Settling(now, self.clock())
            else:
                self._forget(path)
            return
        self._checked[path] = _Checked(st, sha, sidecars, reason)
        self._dirty.add(path)  # its sample is judged again, with it ready or quarantined
        if reason is None:
            log.info("ready: %s", path)
            return
        if (str(path), sha) not in self._quarantined:
            self.store.quarantine(str(path), reason, sha256=sha)
            self._quarantined.add((str(path), sha))
            log.warning("quarantined %s: %s", path, reason)

    # -- samples -------------------------------------------------------------------------
    def _process(self) -> None:
        """Hand on each sample whose files have all settled and that changed since it was
        last handed on (a file ready or quarantined anew, or its manifest entry)."""
        if not (self._dirty or self._manifest_changed) or self._discover_error is not None:
            return
        samples = self._discover()
        if samples is None:
            return
        listed: set[Path] = set()
        for s in samples:
            if self._stop.is_set():
                return
            listed.update(s.files)
            self._hint_unseen(s)
            if any(f in self._settling for f in s.files):
                continue  # wait until all its files have settled
            checked, key = self._sample_key(s)
            if self._is_new(s, checked, key):
                self._hand_on(s, checked, key)
        self._dirty &= listed

    def _discover(self) -> list | None:
        """The folder's samples (`discover`), logging its notes not logged before; None when
        it cannot be grouped into samples (then nothing is tried until something changes)."""
        notes: list[str] = []
        try:
            samples, _ = discover(self.folder, rules=self._rules, notes=notes)
        except ConfigError as exc:  # e.g. a manifest being edited: wait for it to change
            self._discover_error = str(exc)
            log.error("cannot group the folder into samples (%s); waiting for a change", exc)
            return None
        self._manifest_changed = False
        for note in notes:
            if note not in self._notes:
                log.warning("%s", note)
        self._notes = set(notes)
        return samples

    def _hint_unseen(self, s) -> None:
        """Hint the files of sample `s` the watcher has neither read nor seen settling."""
        for f in s.files:
            if f not in self._checked and f not in self._settling:
                self._hint(f)  # listed but never hinted (an event lost)

    def _sample_key(self, s) -> tuple[list[Path], tuple]:
        """The files of sample `s` that were read (ready or quarantined), and what it would
        be handed on with: each such file's path, SHA-256 and sidecars, and its manifest
        entry."""
        checked = [f for f in s.files if f in self._checked]
        entry = json.dumps(s.manifest, sort_keys=True, default=str)
        key = (tuple((str(f), self._checked[f].sha256, self._checked[f].sidecars)
                     for f in checked), entry)
        return checked, key

    def _is_new(self, s, checked: list[Path], key: tuple) -> bool:
        """Whether sample `s` is to be handed on: one of its files was read anew or its
        manifest entry changed, its `key` differs from the one it was last handed on with,
        and it has a file read or a manifest entry. Its files are no longer dirty."""
        entry = key[1]
        prev = self._done.get(s.id)
        news = any(f in self._dirty for f in s.files) or entry != (prev[1] if prev else "{}")
        self._dirty.difference_update(s.files)
        return news and key != prev and bool(checked or s.manifest)

    def _hand_on(self, s, checked: list[Path], key: tuple) -> None:
        """`process_sample` of sample `s` with its `checked` files (quarantined ones named in
        its notes); remembered under `key` once processed, its ready files tried again at the
        next scan when processing fails."""
        ready = [f for f in checked if self._checked[f].reason is None]
        bad = [f for f in checked if self._checked[f].reason]
        notes = list(s.notes) + [f"quarantined {f.relative_to(self.folder)}: "
                                 f"{self._checked[f].reason}" for f in bad]
        # a quarantined file stays one of the sample's files: it fails again when
        # measured, so the sample is indeterminate until the file is replaced
        sample = replace(s, files=checked, notes=notes)
        log.info("processing sample %s (%d ready files, %d quarantined)", s.id,
                 len(ready), len(bad))
        try:
            self.process_sample(sample)
        except ConfigError:
            raise
        except Exception:
            log.exception("processing sample %s failed; tried again at the next scan", s.id)
            self._retry.update(ready)
            return
        self._done[s.id] = key


def _store_process_sample(store: Any, out: Path | None,
                          on_stored: Callable[[dict], Any] | None = None
                          ) -> Callable[[Any], Any]:
    """`pipeline.batch.persist.process_sample_into_store(sample, store, out=out)`, bound to
    `store`; `on_stored(record)` is called with each sample's stored (or reused) record."""

    def process_sample(sample):
        rec = persist.process_sample_into_store(sample, store, out=out)
        if on_stored is not None:
            on_stored(rec)
        return rec

    return process_sample


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def watch(folder: str | Path, *, db_url: str | None = None, out: str | Path | None = None,
          poll: bool = False, stable_seconds: float = 2.0, scan_interval_s: float = 60.0,
          poll_interval_s: float = 1.0,
          process_sample: Callable[[Any], Any] | None = None,
          on_stored: Callable[[dict], Any] | None = None) -> int:
    """`electrode-qc watch`: open the store, watch `folder` until SIGTERM/SIGINT; return 0.

    Results go to the store at `db_url` (default SQLite at ``out/results.db``); particle
    tables to `out`. `process_sample` defaults to
    `pipeline.batch.persist.process_sample_into_store(sample, store, out=out)`, and then
    `on_stored(record)` is called for every sample stored (the command line prints its
    verdict line). Neither `out` nor a SQLite database may lie inside the watched folder (the watcher would read its own outputs).
    """

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(folder, "is not a folder; watch needs an existing export folder")
    if db_url is None and out is None:
        raise ConfigError(None, "watch needs --out (for results.db and the particle tables) "
                                "or --db URL")
    out = None if out is None else Path(out)
    if out is not None and _inside(out, folder):
        raise ConfigError(out, f"the output folder is inside the watched folder {folder}; "
                               "choose one outside it")
    if db_url is not None and db_url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        try:
            db = make_url(db_url).database
        except Exception as exc:
            raise ConfigError(None, f"--db {db_url!r} is not a database URL ({exc})") from None
        if db and db != ":memory:" and _inside(Path(db), folder):
            raise ConfigError(db, f"the database is inside the watched folder {folder}; "
                                  "choose a path outside it")
    store = Store.open(db_url, out=out)
    try:
        fn = process_sample or _store_process_sample(store, out, on_stored)
        return Watcher(folder, store=store, process_sample=fn, poll=poll,
                       stable_seconds=stable_seconds, scan_interval_s=scan_interval_s,
                       poll_interval_s=poll_interval_s).run_forever()
    finally:
        store.close()
