"""Take the README's screenshots of the demo back office at 1440×900.

Run it against the demo (`make run`, which seeds it), with Playwright for
Python and Debian's Chromium (/usr/bin/chromium; never a downloaded browser):

    .venv/bin/python scripts/screenshots.py [--url http://127.0.0.1:8000]

It logs in as the demo superuser and writes docs/img/dashboard.png and
docs/img/payment-page.png (a payment flagged for review, so the page shows
the review warning beside the timeline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="demo-admin-2026")
    args = parser.parse_args()
    base = args.url.rstrip("/")
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
        )
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", args.username)
        page.fill("#id_password", args.password)
        page.click("button[type=submit]")
        page.wait_for_url("**/admin/")

        page.wait_for_load_state("networkidle")
        # The whole page: the per-currency charts sit below the first screen.
        page.screenshot(path=OUT / "dashboard.png", full_page=True)

        page.goto(f"{base}/admin/payments/payment/?needs_review__exact=1")
        page.locator("#result_list tbody a").first.click()
        page.wait_for_selector("#payment-summary")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=OUT / "payment-page.png")
        browser.close()
    for name in ("dashboard.png", "payment-page.png"):
        print(OUT / name)


if __name__ == "__main__":
    main()
