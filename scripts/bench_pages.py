"""Time how long each dashboard page takes to be fully drawn in Chromium.

    DATABASE_URL=sqlite:////path/to/warehouse.db python scripts/bench_pages.py --repeat 5

Starts ``streamlit run dashboard/app.py`` against DATABASE_URL, opens it in a fresh
Chromium (the first load fetches and compiles Streamlit's JS bundle), then visits every
page from the sidebar ``--repeat`` times, as an analyst does, and measures from the click
to "drawn": every Plotly chart rendered, no script running, nothing stale, no exception
box. Each page's first visit is cold (empty query cache). Prints p50/p95 per page and
writes JSON next to the benchmark's results.
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


DRAWN = """() => {
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  return !document.querySelector('[data-testid="stStatusWidget"]')
      && !document.querySelector('[data-stale="true"]')
      && charts.length > 0 && charts.every(c => c.querySelector('.js-plotly-plot .main-svg'));
}"""
NAV = ["Dominance", "Liquidity", "Trends", "Segments", "Coin", "Pipeline", "Overview"]


def timed(page, action) -> float:
    started = time.perf_counter()
    action()
    page.wait_for_timeout(30)  # let the click reach the server before checking for "drawn"
    page.wait_for_function(DRAWN, polling=30, timeout=60_000)
    if page.locator('[data-testid="stException"]').count():
        raise SystemExit(f"{page.url}: the page shows an exception")
    return time.perf_counter() - started


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
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "dashboard/app.py",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--server.headless=true",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = {}
    try:
        wait_healthy(port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            # First visit in a fresh browser: Streamlit's JS bundle is fetched and compiled.
            first = timed(page, lambda: page.goto(f"http://127.0.0.1:{port}/"))
            print(f"first load (fresh browser, Overview): {first:.2f} s", flush=True)
            visits: dict[str, list[float]] = {name: [] for name in NAV}
            for _ in range(args.repeat):  # then what an analyst does: pages from the sidebar
                for name in NAV:
                    visits[name].append(timed(page, lambda n=name: page.get_by_role("link", name=n).first.click()))
            browser.close()
        results["first_load_s"] = round(first, 3)
        for name, times in visits.items():
            ordered = sorted(times)
            results[name] = {
                "p50_s": round(statistics.median(times), 3),
                "p95_s": round(ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)], 3),
                "first_s": round(times[0], 3),
            }
            print(
                f"{name:<10} p50 {results[name]['p50_s']:.2f} s   p95 {results[name]['p95_s']:.2f} s   "
                f"(first visit {results[name]['first_s']:.2f} s)",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    worst = max(r["p95_s"] for k, r in results.items() if isinstance(r, dict))
    print(f"pages_p95_s={worst:.2f} first_load_s={results['first_load_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
