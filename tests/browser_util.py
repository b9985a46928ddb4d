"""Start the app on a free local port and drive it with Playwright + Debian chromium."""

from __future__ import annotations

import contextlib
from pathlib import Path

from benchmarks.app_server import app_server, free_port  # noqa: F401  (free_port: used by tests)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextlib.contextmanager
def running_app(timeout: float = 90.0):
    """Start `streamlit run app.py` on loopback; yield its URL; kill exactly that process
    (benchmarks.app_server, shared with the load and memory benchmarks)."""
    with app_server(timeout=timeout) as (url, _pid):
        yield url


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            page = context.new_page()
            yield page
        finally:
            browser.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit has rendered the app shell and finished running the script.

    The sidebar's page links come from app.py, so their presence means the
    script has started; the absence of the 'Running…' status widget, twice
    in a row half a second apart, means it has finished.
    """
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').first.wait_for(timeout=timeout)
    js = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    for _ in range(2):
        page.wait_for_timeout(500)
        page.wait_for_function(js, timeout=timeout)


def choose(page, selectbox, option_text: str) -> None:
    """Open a Streamlit selectbox and pick an option. A rerun that lands while the list is open (e.g. the
    URL being written after the first visit) closes it, so open it again until the option is there."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(4):
        wait_idle(page, 120_000)
        selectbox.click()
        option = page.get_by_role("option").filter(has_text=option_text)
        try:
            option.first.wait_for(timeout=10_000)
            option.first.click()
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"the option {option_text!r} never appeared in the list")
