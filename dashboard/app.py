"""The dashboard's entry point and router: ``streamlit run dashboard/app.py``.

It sets the page config, draws the sidebar every page shares (market-cap
filter kept in the URL, refresh button, CoinGecko credit), decides whether the
database can be shown at all (unreachable, empty, ready), then runs the page
chosen in the navigation. It runs no queries itself: ``dashboard.data`` does.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import data, state, ui
from dashboard import formatting as fmt
from pipeline.config import Settings
from pipeline.errors import ConfigError

PAGES_DIR = Path(__file__).resolve().parent / "app_pages"

#: Query parameters each page maintains itself (besides the global ``category``).
PAGE_PARAMS = {"coin": ("coin",)}


def build_navigation():
    """Every page, in the sidebar, grouped in sections."""

    def page(file: str, title: str, icon: str, url_path: str, default: bool = False):
        return st.Page(PAGES_DIR / file, title=title, icon=icon, url_path=url_path, default=default)

    return st.navigation(
        {
            "Market": [
                page("overview.py", "Overview", "📊", "overview", default=True),
                page("dominance.py", "Dominance", "🥧", "dominance"),
                page("liquidity.py", "Liquidity", "💧", "liquidity"),
                page("trends.py", "Trends", "📈", "trends"),
                page("segments.py", "Segments", "🧩", "segments"),
            ],
            "Coins": [page("coin.py", "Coin", "🪙", "coin")],
            "Operations": [page("pipeline_runs.py", "Pipeline", "⚙️", "pipeline")],
        }
    )


def main() -> None:
    st.set_page_config(page_title="Crypto market dashboard", page_icon="📊", layout="wide")
    current = build_navigation()

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        st.error(
            f"**The configuration is invalid:** {fmt.escape_markdown(exc)}. Fix the environment variable "
            "and restart the dashboard.",
            icon="🚫",
        )
        return

    status = data.probe(settings.database_url)
    categories = ui.render_category_filter()
    if status.ok and ui.render_refresh_button(settings):
        data.clear_caches()
        status = data.probe(settings.database_url)
    ui.render_flashes()
    ui.render_credit()

    state.sync_query_params(categories, keep=PAGE_PARAMS.get(current.url_path, ()))
    view = state.View(settings=settings, status=status, categories=tuple(categories))
    state.set_view(view)

    if status.state == "unreachable":
        st.title("Crypto market dashboard")
        ui.render_database_problem(settings, status)
        return
    if not status.ok:
        ui.render_first_start(view)
        return
    ui.guarded(current.run)


main()
