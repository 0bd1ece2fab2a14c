"""Every page at 1280×800 in chromium, as a person sees it: no error, no "None"/"nan"/"NaT" text, the
sidebar's Sector select reads "All sectors", the Coins grid's NULL cells are empty values (the grid
draws them as the em dash placeholder). Screenshots: test-artifacts/screenshots/polish_<page>.png."""

from __future__ import annotations

import re

import pytest

from dashboard import navigation
from tests.browser.test_coins_browser import GRID, coins_dashboard, grid_rows  # noqa: F401  (module fixture)
from tests.browser.test_dashboard_browser import EXCEPTION, IDLE, TIMEOUT_MS, wait_for_page
from tests.dashboard.helpers import EXPECTED_CHARTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTH, HEIGHT = 1280, 800
NULL_WORDS = re.compile(r"(?<![\w-])(None|nan|NaN|NaT)(?![\w-])")


@pytest.mark.parametrize("page_def", navigation.PAGES, ids=[p.url_path for p in navigation.PAGES])
def test_every_page_at_1280_shows_no_null_text(page_def, coins_dashboard, page, screenshots):  # noqa: F811
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(f"{coins_dashboard}/{'' if page_def.default else page_def.url_path}")
    wait_for_page(page, EXPECTED_CHARTS[page_def.url_path])
    page.mouse.move(WIDTH - 1, 1)
    page.screenshot(path=str(screenshots / f"polish_{page_def.url_path}.png"))
    assert page.locator(EXCEPTION).count() == 0
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert not NULL_WORDS.search(main), main[max(0, NULL_WORDS.search(main).start() - 80) :][:160]
    sector = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    shown = sector.inner_text() + " " + " ".join(i.input_value() for i in sector.locator("input").all())
    assert "All sectors" in shown and "Choose an option" not in shown, shown
    assert not page.js_errors, page.js_errors


def test_the_coins_grid_keeps_null_cells_null(coins_dashboard, page):  # noqa: F811
    """The sample has no 30-day change: the grid's cells for it are NULL (drawn with the em dash
    placeholder), never the text "None"; the accessible table beside the canvas says so."""
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    page.goto(f"{coins_dashboard}/")
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)
    page.wait_for_selector(GRID, timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)
    rows = grid_rows(page, 5)
    assert rows and all(len(r) > 8 for r in rows)
    cells = [cell for row in rows for cell in row]
    assert not any(NULL_WORDS.fullmatch(c.strip()) for c in cells), rows
    assert all(row[8].strip() in ("", "—") for row in rows)  # 30d change: none in the sample
