"""The report opens in headless Chromium with every picture loaded and no console error.

Chromium (Debian's ``chromium`` package) is driven over the DevTools protocol through
``--remote-debugging-pipe`` (JSON messages separated by NUL bytes on file descriptors 3 and
4): no driver, no Python package, no TCP port. The browser runs with a temporary profile,
``--no-sandbox`` (CI runs as root), every host name resolving to nothing, and a deadline.
Errors are what Selenium reports as SEVERE: uncaught exceptions, ``console.error``, and the
browser's own error entries (a resource that failed to load, a blocked request).

The test skips only when no Chromium binary is found (set ``CHROMIUM`` to point at one).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Self

import pytest

from pipeline.report.html import write_html
from tests.report.report_data import artifacts_for, results_for, sample_result

DEADLINE_S = 60.0
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_IMAGES_JS = """Array.from(document.images, im => {
    const r = im.getBoundingClientRect();
    return {alt: im.alt, cls: im.className, complete: im.complete, width: im.naturalWidth,
            height: im.naturalHeight, box: [r.left, r.top, r.width, r.height]};
})"""


def chromium_binary() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    return next((p for p in map(shutil.which, _NAMES) if p), None)


class Browser:
    """One headless Chromium and its DevTools pipe; a context manager that always ends it."""

    def __init__(self, binary: str, profile: Path):
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self.stderr = profile / "chromium.stderr"
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-crash-reporter", "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile / 'profile'}", "--remote-debugging-pipe", "about:blank"]
        # posix_spawn puts the pipe ends on 3 and 4 in the child (subprocess cannot renumber
        # descriptors without a preexec_fn); the originals are close-on-exec (PEP 446)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, str(self.stderr), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, to_child_r, 3),
            (os.POSIX_SPAWN_DUP2, from_child_w, 4),
        ]
        try:
            # its own session: the browser and its helpers can be ended as one process group
            self.pid = os.posix_spawn(binary, args, dict(os.environ), file_actions=actions,
                                      setsid=True)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.returncode: int | None = None
        self._deadline = time.monotonic() + DEADLINE_S
        self._next_id = 0
        self._pending = b""
        self.events: list[dict] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.poll() is None:
                self._send("Browser.close")
                self.wait(10.0)
        except OSError:
            pass
        finally:
            if self.poll() is None:
                os.killpg(self.pid, signal.SIGKILL)  # the group this test started
                self.wait(10.0)
            os.close(self._to_child)
            os.close(self._from_child)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        end = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        return self.returncode

    # --------------------------------------------------------------------- protocol
    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _read(self, timeout: float) -> dict | None:
        """The next message, or None when none arrives within `timeout` seconds."""
        while b"\0" not in self._pending:
            left = min(timeout, self._deadline - time.monotonic())
            if left <= 0:
                if timeout >= self._deadline - time.monotonic():
                    raise TimeoutError(f"Chromium did not answer within {DEADLINE_S} s; "
                                       f"stderr: {self.stderr_tail()}")
                return None
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed its DevTools pipe; stderr: {self.stderr_tail()}")
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and return its result; events that arrive meanwhile are kept."""
        want = self._send(method, params, session)
        while True:
            msg = self._read(DEADLINE_S)
            if msg is None:
                continue
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, session: str, after: int = 0) -> dict:
        """The first `method` event of `session` among events number `after` and later."""
        i = after
        while True:
            while i < len(self.events):
                ev = self.events[i]
                i += 1
                if ev["method"] == method and ev.get("sessionId") == session:
                    return ev
            msg = self._read(DEADLINE_S)
            if msg and "method" in msg:
                self.events.append(msg)

    def drain(self, quiet_s: float = 0.3) -> None:
        """Collect events until none has come for `quiet_s` seconds."""
        while (msg := self._read(quiet_s)) is not None:
            if "method" in msg:
                self.events.append(msg)

    def stderr_tail(self) -> str:
        try:
            return self.stderr.read_text(errors="replace")[-2000:]
        except OSError:
            return "(none)"

    # ------------------------------------------------------------------------- a page
    def open(self, path: Path) -> tuple[list[dict], list[str]]:
        """Load a file; return its images' load state and the page's errors."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        url = path.resolve().as_uri()
        seen = len(self.events)
        nav = self.call("Page.navigate", {"url": url}, session=session)
        if nav.get("errorText"):
            raise RuntimeError(f"navigation to {path} failed: {nav['errorText']}")
        while True:  # a late load event of the first about:blank would not be this page's
            ev = self.wait_event("Page.loadEventFired", session, after=seen)
            seen = self.events.index(ev) + 1
            href = self.call("Runtime.evaluate", {"expression": "location.href", "returnByValue": True},
                             session=session)["result"]["value"]
            if href == url:
                break
        result = self.call("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True},
                           session=session)
        self.drain()
        return result["result"]["value"], page_errors(self.events, session)


def page_errors(events: list[dict], session: str) -> list[str]:
    """Uncaught exceptions, console.error/assert calls and error-level log entries."""
    out = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        p = ev.get("params", {})
        if ev["method"] == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                   for a in p.get("args", [])))
        elif ev["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return out


@pytest.fixture
def browser(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip(f"no Chromium binary found (looked for {', '.join(_NAMES)}; set CHROMIUM); "
                    "on Debian: apt-get install chromium")
    with Browser(binary, tmp_path) as b:
        yield b


def test_report_renders_with_all_images_and_no_console_errors(browser, tmp_path):
    samples = [sample_result("e1", outcome="conforming"),
               sample_result("c1", outcome="non-conforming", error_image=True),
               sample_result("<b>odd & id</b>", outcome="indeterminate")]
    arts = {"e1": artifacts_for(1), "c1": artifacts_for(2)}  # the third has no artifacts
    path = write_html(tmp_path / "report.html", results_for(samples), arts)
    images, errors = browser.open(path)
    assert errors == []
    # per sample: 3 SEM photos (WebP) each with its overlay (PNG), a histogram, 2 height maps
    assert len(images) == 2 * 9
    broken = [im["alt"] for im in images if not (im["complete"] and im["width"] > 0)]
    assert broken == []
    # each overlay covers its photo exactly, as laid out
    overlays = [i for i, im in enumerate(images) if im["cls"] == "overlay"]
    assert len(overlays) == 2 * 3
    for i in overlays:
        photo, overlay = images[i - 1], images[i]
        assert overlay["alt"] == f"segmentation of {photo['alt']}"
        assert (overlay["width"], overlay["height"]) == (photo["width"], photo["height"])
        assert overlay["box"] == pytest.approx(photo["box"], abs=0.5)
        assert photo["box"][2] > 100


def test_a_broken_page_is_caught(browser, tmp_path):
    """The checks above can fail: a broken picture, a missing file and a script error show."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
                    '<img alt="bad-data" src="data:image/png;base64,iVBORw0KGgoAAAA=">'
                    '<img alt="missing" src="missing.png">'
                    '<script>console.error("boom"); undefinedFunction();</script></body></html>',
                    encoding="utf-8")
    images, errors = browser.open(page)
    assert sorted(im["alt"] for im in images if im["width"] == 0) == ["bad-data", "missing"]
    assert any("boom" in e for e in errors)
    assert any("undefinedFunction" in e for e in errors)
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)
