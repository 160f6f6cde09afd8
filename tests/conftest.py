"""Fixtures every test folder shares: a real headless browser for the HTML reports."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Chromium from Debian's package (apt-get install chromium): Playwright's own browser download is not
# reachable here. Under CI (or SCONES_REQUIRE_BROWSER=1) a missing browser fails instead of skipping.
BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def browser_executable() -> str | None:
    return os.environ.get("SCONES_BROWSER") or next(filter(None, map(shutil.which, BROWSER_CANDIDATES)), None)


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium, driven by Playwright, for the pages people look at (reports, the console)."""
    executable = browser_executable()
    if executable is None:
        message = "no Chromium (apt-get install chromium, or set SCONES_BROWSER)"
        if os.environ.get("CI") == "true" or os.environ.get("SCONES_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def rendered_images(browser):
    """`rendered_images(page) -> [(src, loaded, natural_width)]` for every <img> of an HTML file, as a real
    headless Chromium (driven by Playwright) rendered it."""

    def render(page_path: Path) -> list[tuple[str, bool, int]]:
        page = browser.new_page()
        try:
            page.goto(Path(page_path).resolve().as_uri(), wait_until="load")
            found = page.evaluate(
                "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
            )
        finally:
            page.close()
        return [tuple(item) for item in found]

    return render
