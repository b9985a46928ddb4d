"""Hostile names in a real browser: nothing a data file says may make the viewer's browser call out.

A local beacon HTTP server stands in for an attacker's host. The hostile data file (tests/hostile.py:
Markdown images and links, HTML <img onerror>, <script>, LaTeX, quotes and a newline, a 300-character
name, right-to-left overrides, all pointing at the beacon) is uploaded through the Data page, with a
hostile file name; then every page is opened through the sidebar (the same session) and the Pooled
page's sections are opened. The beacon must receive no request, no dialog may open, and no element
may point at the beacon (no injected <img>, <a>, <script>).
"""

from __future__ import annotations

import http.server
import threading

import pytest

from tests.browser_util import ARTIFACTS, browser_page, free_port, running_app, wait_idle
from tests.hostile import hostile_csv, hostile_file_name

pytestmark = pytest.mark.browser

PAGES = ["Overview", "Data", "Lagged effects", "Pooled effects", "Convergence", "Ruptures & gains", "Teaching",
         "Screening", "Methods"]
POOLED_SECTIONS = ["Leave-one-out", "Funnel & Egger", "Meta-regression", "Report & script"]


class Beacon:
    """A local HTTP server that records every request it receives."""

    def __init__(self):
        self.port = free_port()
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


INJECTED = """(port) => {
  const hit = (s) => typeof s === 'string' && s.includes('127.0.0.1:' + port);
  const out = [];
  for (const el of document.querySelectorAll('img, a, script, iframe, image, use, link, source, video, audio')) {
    const refs = [el.getAttribute('src'), el.getAttribute('href'), el.getAttribute('xlink:href')];
    if (refs.some(hit)) out.push(el.tagName + ' ' + refs.filter(Boolean).join(' '));
  }
  for (const el of document.querySelectorAll('[onerror], [onload], [onclick]')) out.push('handler on ' + el.tagName);
  return out;
}"""


def _go(page, title: str) -> None:
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text=title).first.click()
    page.wait_for_timeout(300)
    wait_idle(page, 180_000)


def test_hostile_upload_then_every_page_makes_no_outbound_request():
    dialogs: list[str] = []
    outbound: list[str] = []
    problems: list[str] = []
    with Beacon() as beacon, running_app() as url, browser_page() as page:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: outbound.append(r.url) if f":{beacon.port}" in r.url else None)

        def check(where: str) -> None:
            found = page.evaluate(INJECTED, beacon.port)
            if found:
                problems.append(f"{where}: {found[:5]}")

        page.goto(url + "/data")
        page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        page.get_by_role("tab", name="Upload your files").click()
        name = hostile_file_name(beacon.port)
        page.set_input_files('[data-testid="stFileUploader"] input[type=file]',
                             files=[{"name": name, "mimeType": "text/csv", "buffer": hostile_csv(beacon.port)}])
        page.get_by_role("button", name="Use these files").wait_for(timeout=60_000)
        wait_idle(page, 120_000)
        check("Data page, file read")
        page.get_by_role("button", name="Use these files").click()
        page.get_by_text("Data loaded. The analysis pages now use it.").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        check("Data page, after upload")
        if page.get_by_text("beacon-file", exact=False).count() == 0:
            problems.append("the file name is not shown as text")

        for title in PAGES:
            _go(page, title)
            check(title)
            if title == "Pooled effects":
                for section in POOLED_SECTIONS:
                    page.locator('[data-testid="stButtonGroup"] button').filter(has_text=section).click()
                    page.wait_for_timeout(300)
                    wait_idle(page, 180_000)
                    check(f"Pooled: {section}")
        # hover every forest-plot row label: plotly hover text is markup too
        page.screenshot(path=str(ARTIFACTS / "hostile_last_page.png"), full_page=True)
        page.wait_for_timeout(1000)  # give any late image request time to arrive

    assert beacon.hits == [], f"the beacon received requests: {beacon.hits}"
    assert outbound == [], f"the browser requested the beacon: {outbound}"
    assert dialogs == [], f"dialogs opened: {dialogs}"
    assert problems == [], "\n".join(problems)


def test_pooled_terms_with_k1_covariate_make_no_outbound_request():
    """Issue 25 #1: a covariate that varies in one study only makes its terms k = 1, and the Pooled page's
    term summary names that study; every term of both directions is opened in chromium."""
    import io

    from tests.hostile import hostile_frame, with_k1_covariate

    outbound: list[str] = []
    problems: list[str] = []
    with Beacon() as beacon, running_app() as url, browser_page() as page:
        page.on("request", lambda r: outbound.append(r.url) if f":{beacon.port}" in r.url else None)
        buf = io.StringIO()
        with_k1_covariate(hostile_frame(beacon.port), beacon.port).to_csv(buf, index=False)
        page.goto(url + "/data")
        page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        page.get_by_role("tab", name="Upload your files").click()
        page.set_input_files('[data-testid="stFileUploader"] input[type=file]',
                             files=[{"name": "k1.csv", "mimeType": "text/csv", "buffer": buf.getvalue().encode()}])
        page.get_by_role("button", name="Use these files").wait_for(timeout=60_000)
        wait_idle(page, 120_000)
        page.get_by_role("button", name="Use these files").click()
        page.get_by_text("Data loaded. The analysis pages now use it.").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        _go(page, "Pooled effects")
        box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Patient-level covariates")
        if not box.first.is_visible():  # the covariate picker sits in the collapsed "More options" expander
            page.locator("[data-testid=stExpander]").filter(has_text="More options").first.locator("summary").click()
            wait_idle(page, 120_000)  # a click on the picker before the expander's rerun ends opens nothing
        box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Patient-level covariates").first
        box.scroll_into_view_if_needed()
        box.locator("input").click()
        if box.locator("input").get_attribute("aria-expanded") != "true":
            box.locator("input").press("ArrowDown")
        page.get_by_role("option").filter(has_text="beacon-cov").first.click(timeout=120_000)  # slow under load
        page.keyboard.press("Escape")
        wait_idle(page, 180_000)
        term_box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Pooled term").first
        term_box.locator("input").click()
        n_terms = page.get_by_role("option").count()
        page.keyboard.press("Escape")
        assert n_terms >= 6, n_terms
        k1_seen = 0
        for i in range(n_terms):
            term_box.locator("input").click()
            page.get_by_role("option").nth(i).click()
            wait_idle(page, 180_000)
            k1_seen += page.get_by_text("Only one study", exact=False).count()
            found = page.evaluate(INJECTED, beacon.port)
            if found:
                problems.append(f"term {i}: {found[:5]}")
        page.screenshot(path=str(ARTIFACTS / "hostile_pooled_terms.png"), full_page=True)
        page.wait_for_timeout(1000)
    assert k1_seen >= 2, "no k = 1 term summary was shown"
    assert beacon.hits == [], f"the beacon received requests: {beacon.hits}"
    assert outbound == [], f"the browser requested the beacon: {outbound}"
    assert problems == [], "\n".join(problems)
