"""The dashboard's entry point and router: ``streamlit run dashboard/app.py``.

It sets the page config, draws the sidebar every page shares (market-cap
filter kept in the URL, refresh button, CoinGecko credit), decides whether the
database can be shown at all (unreachable, empty, ready), then runs the page
chosen in the navigation (the list of pages is ``dashboard.navigation``). It runs
no queries itself: ``dashboard.data`` does.
"""

from __future__ import annotations

import streamlit as st

from dashboard import data, gc_policy, navigation, state, ui
from dashboard import formatting as fmt
from pipeline.api import ConfigError, Settings

gc_policy.freeze_startup_heap()  # the libraries just imported stay out of every later collection


def build_navigation():
    """Every page of ``dashboard.navigation``, in the sidebar, grouped in sections."""
    return st.navigation(
        {
            section: [
                st.Page(page.path, title=page.title, icon=page.icon, url_path=page.url_path, default=page.default)
                for page in pages
            ]
            for section, pages in navigation.sections().items()
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
    if status.ok:
        ui.render_alert_badge(settings.database_url, status.version, current.url_path)
    categories = ui.render_category_filter()
    ui.render_watch_filter(settings)
    if status.ok and ui.render_refresh_button(settings):
        data.clear_caches()
        status = data.probe(settings.database_url)
    ui.render_flashes()
    ui.render_credit()

    state.sync_query_params(categories, keep=navigation.page_params(current.url_path))
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
