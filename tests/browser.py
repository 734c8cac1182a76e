"""Headless Debian Chromium through Playwright, recording console errors and every request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Without these Chromium phones home at start, which this closed network refuses.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class Visit:
    """A page being looked at, with what it logged and asked for."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def external_requests(self) -> list[str]:
        """Requests leaving the page itself and 127.0.0.1."""
        def local(url: str) -> bool:
            parsed = urlparse(url)
            return parsed.scheme in ("file", "data", "blob", "about") or parsed.hostname in (
                "127.0.0.1", "localhost", "testserver")
        return [url for url in self.requests if not local(url)]

    def screenshot(self, name: str) -> Path:
        """Save the page as it settles: Leaflet's fades and zooms are run to their end."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), animations="disabled")
        return path


@contextmanager
def visit(url: str, width: int = 1280, height: int = 800) -> Iterator[Visit]:
    """Open ``url`` in a fresh headless Chromium; chromium missing is a failure, not a skip."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: `make test` installs it"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height},
                                    timezone_id="Asia/Shanghai")
            seen = Visit(page)
            page.on("console",
                    lambda msg: seen.errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: seen.errors.append(str(exc)))
            page.on("request", lambda request: seen.requests.append(request.url))
            page.goto(url, wait_until="load")
            yield seen
        finally:
            browser.close()
