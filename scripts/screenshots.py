"""Screenshots of the dashboards for the README, taken in Debian's Chromium with Playwright.

Point it at a running CXM with data and a user who may read the dashboards, e.g. the dashboards
bench's database served by `manage.py runserver`:

    .venv/bin/python scripts/screenshots.py --url http://127.0.0.1:8000 --user admin --password ... \
        --query "from=2026-08-01&to=2026-10-31&granularity=week"

Writes dashboard.png, dashboard-hourly.png, drilldown.png and alerts.png into --out (docs/screenshots).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CXM_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", required=True)
    parser.add_argument("--query", default="", help="the dashboard's filters, as a query string")
    parser.add_argument("--hourly-query", default="", help="filters of the hourly screenshot")
    parser.add_argument("--out", default="docs/screenshots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
        page.goto(f"{args.url}/accounts/login/")
        page.fill("input[name=username]", args.user)
        page.fill("input[name=password]", args.password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        for name, query in (("dashboard", args.query), ("dashboard-hourly", args.hourly_query)):
            if name == "dashboard-hourly" and not query:
                continue
            page.goto(f"{args.url}/console/insight/?{query}")
            page.wait_for_selector(".dash-panel[aria-busy=false] .js-plotly-plot", timeout=60_000)
            # The CSP refuses eval, so wait with selectors rather than wait_for_function.
            page.locator(".dash-panel[aria-busy=true]").first.wait_for(state="detached", timeout=60_000)
            page.wait_for_timeout(1500)  # Plotly's transitions
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        page.goto(f"{args.url}/console/insight/messages/?{args.query}&sentiment=negative")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "drilldown.png"))
        page.goto(f"{args.url}/console/insight/alerts/")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "alerts.png"))
        browser.close()
    print(f"screenshots in {out}/")


if __name__ == "__main__":
    main()
