"""Make docs/screenshot.png: the Pooled effects page with the demo data, as a new user first sees it.

`make screenshot` runs it: it starts the app on a free local port (benchmarks.app_server), opens the page in
Debian's chromium through Playwright at 1440×900, waits until the forest plot is drawn, saves the
screenshot and stops exactly the server it started.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_util import browser_page, running_app, wait_idle  # noqa: E402

OUT = ROOT / "docs" / "screenshot.png"


def main(out: Path = OUT) -> Path:
    with running_app(timeout=180) as url, browser_page(1440, 900) as page:
        page.goto(url + "/pooled")
        wait_idle(page, timeout=180_000)
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=180_000)
        page.wait_for_timeout(1500)  # the plot's fonts and layout settle
        page.screenshot(path=str(out))
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
