"""Every page of the dashboard, in sidebar order: the one list of pages.

The router (``app.py``) builds ``st.navigation`` from it and the tests read it, so a
new page is a file in ``app_pages/`` plus one line here. Pure data: no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent / "app_pages"


@dataclass(frozen=True)
class Page:
    """One page: its sidebar section, script, title, emoji icon and URL path."""

    section: str
    file: str  # in app_pages/
    title: str
    icon: str  # an emoji (Material icons do not render in every font)
    url_path: str
    params: tuple[str, ...] = ()  # query parameters the page maintains itself (besides ``category``)
    default: bool = False  # the page at "/"

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file


PAGES = (
    Page("Market", "coins.py", "Coins", "📋", "coins", default=True),
    Page("Market", "overview.py", "Overview", "📊", "overview", params=("range", "log")),
    Page("Market", "dominance.py", "Dominance", "🥧", "dominance", params=("range",)),
    Page("Market", "liquidity.py", "Liquidity", "💧", "liquidity"),
    Page("Market", "trends.py", "Trends", "📈", "trends"),
    Page("Market", "segments.py", "Segments", "🧩", "segments"),
    Page("Market", "sectors.py", "Sectors", "🧭", "sectors", params=("focus",)),
    Page("Coins", "coin.py", "Coin", "🪙", "coin", params=("coin", "range", "log")),
    Page("Coins", "compare.py", "Compare", "⚖️", "compare", params=("compare", "range")),
    Page("Coins", "watchlist.py", "Watchlist", "⭐", "watchlist"),
    Page("Operations", "alerts.py", "Alerts", "🔔", "alerts"),
    Page("Operations", "pipeline_runs.py", "Pipeline", "⚙️", "pipeline"),
)


def sections() -> dict[str, list[Page]]:
    """The pages grouped by section, in order."""
    grouped: dict[str, list[Page]] = {}
    for page in PAGES:
        grouped.setdefault(page.section, []).append(page)
    return grouped


def page_params(url_path: str) -> tuple[str, ...]:
    """The query parameters the page at ``url_path`` keeps (``()`` for an unknown path)."""
    return next((page.params for page in PAGES if page.url_path == url_path), ())
