"""Time how long each dashboard page takes to be fully drawn in Chromium.

    DATABASE_URL=sqlite:////path/to/warehouse.db python scripts/bench_pages.py --repeat 5

Starts ``streamlit run dashboard/app.py`` against DATABASE_URL, then for each page
opens a fresh browser tab and measures from navigation to "drawn": every Plotly
chart rendered, no script still running, no exception box. The first visit is cold
(empty Streamlit cache); the following ones are the analyst's usual case (cached
queries). Prints p50/p95 per page and writes JSON next to the benchmark's results.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PAGES = ["", "dominance", "liquidity", "trends", "segments", "coin?coin=bitcoin", "pipeline"]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the dashboard did not start")


def drawn_seconds(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    started = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stPlotlyChart"] .js-plotly-plot, [data-testid="stDataFrame"]',
                           timeout=60_000)
    # Drawn = the script has finished (no "Running" status) and every chart placeholder has its plot.
    page.wait_for_function(
        """() => !document.querySelector('[data-testid="stStatusWidget"]')
               && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
                    .every(c => c.querySelector('.js-plotly-plot .main-svg'))""",
        timeout=60_000, polling=50)
    elapsed = time.perf_counter() - started
    if page.locator('[data-testid="stException"]').count():
        raise SystemExit(f"{url}: the page shows an exception")
    page.close()
    return elapsed


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="warm visits per page (default 5)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results" / "pages.json")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL to the database to measure")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", f"--server.port={port}",
         "--server.address=127.0.0.1", "--server.headless=true"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        wait_healthy(port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for path in PAGES:
                url = f"http://127.0.0.1:{port}/{path}"
                cold = drawn_seconds(browser, url)
                warm = [drawn_seconds(browser, url) for _ in range(args.repeat)]
                results[path or "overview"] = {
                    "cold_s": round(cold, 3),
                    "warm_p50_s": round(statistics.median(warm), 3),
                    "warm_p95_s": round(sorted(warm)[max(0, int(len(warm) * 0.95 + 0.5) - 1)], 3),
                }
                print(f"{path or 'overview':<20} cold {cold:5.2f} s   warm p50 {results[path or 'overview']['warm_p50_s']:5.2f} s"
                      f"   p95 {results[path or 'overview']['warm_p95_s']:5.2f} s", flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    worst = max(r["warm_p95_s"] for r in results.values())
    worst_cold = max(r["cold_s"] for r in results.values())
    print(f"pages_warm_p95_s={worst:.2f} pages_cold_max_s={worst_cold:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
