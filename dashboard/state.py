"""Session-state and URL query-parameter helpers.

Two scopes (see STYLE.md §3): global keys are set up once by the router with
``setdefault``-style initialisation; keys used by a single page carry that
page's name as a prefix (``page_key("trends", "period")`` -> ``"trends_period"``).

The market-cap filter lives in session state under ``FILTER_KEY`` (the sidebar
multiselect's key) and is mirrored into the URL as ``?category=large_cap,mid_cap``
so a link reproduces the view. The URL is read once, when a session starts;
after that the widget is the source of truth and the URL is rewritten from it
on every run (page switches drop the query string, this puts it back).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard.data import DataStatus
from dashboard.frames import filter_by_category, parse_categories
from pipeline.api import MARKET_CAP_CATEGORIES, Settings, parse_ids

CATEGORY_PARAM = "category"
#: The watchlist (``?watch=bitcoin,ethereum``), its saved name (``?watchlist=``) and the sidebar's
#: "only my watchlist" switch (``?watch_only=1``): global, kept on every page like ``category``.
WATCH_PARAM = "watch"
WATCHLIST_PARAM = "watchlist"
WATCH_ONLY_PARAM = "watch_only"
#: The sector filter (``?sector=meme-token``): only the coins CoinGecko files under that tracked sector.
SECTOR_PARAM = "sector"
SECTOR_KEY = "filter_sector"
#: The sector select's "All sectors" option. Not None: a select whose value is None shows
#: "Choose an option" instead of the option's label.
ALL_SECTORS = ""
GLOBAL_PARAMS = (CATEGORY_PARAM, WATCH_PARAM, WATCHLIST_PARAM, WATCH_ONLY_PARAM, SECTOR_PARAM)
WATCH_KEY = "watch_ids"
WATCH_NAME_KEY = "watch_name"
WATCH_ONLY_KEY = "filter_watch_only"
FILTER_KEY = "filter_categories"
INVALID_KEY = "filter_invalid_categories"
VIEW_KEY = "view"
FLASH_KEY = "flash_messages"


@dataclass(frozen=True)
class View:
    """What every page needs from the router: settings, data version and the filter."""

    settings: Settings
    status: DataStatus
    categories: tuple[str, ...]

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def version(self) -> str:
        return self.status.version

    def filter_coins(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The shared filters (market-cap categories, "Only my watchlist", the sector) on a frame of coins."""
        frame = filter_coins(frame, self.categories)
        sector = selected_sector()
        if sector and "id" in frame.columns:  # the sector's members (ref_sector_members)
            from dashboard.data import load_sector_member_ids

            frame = frame[frame["id"].isin(load_sector_member_ids(self.database_url, self.version, sector))]
        return frame


def page_key(page: str, name: str) -> str:
    """A session-state key owned by one page."""
    return f"{page}_{name}"


def init_category_filter() -> None:
    """On a session's first run, take the filter from ``?category=`` (comma-separated or repeated)."""
    if FILTER_KEY in st.session_state:
        return
    valid, invalid = parse_categories(st.query_params.get_all(CATEGORY_PARAM))
    st.session_state[FILTER_KEY] = valid
    st.session_state[INVALID_KEY] = invalid


def selected_categories() -> list[str]:
    """The market-cap categories chosen in the sidebar ([] means all)."""
    return list(st.session_state.get(FILTER_KEY, []))


def take_invalid_categories() -> list[str]:
    """Unknown categories found in the URL at session start (reported once)."""
    return list(st.session_state.pop(INVALID_KEY, []) or [])


def sync_query_params(categories: list[str], keep: tuple[str, ...] = ()) -> None:
    """Make the URL say what is shown: ``category``, plus the parameters named in ``keep``.

    ``keep`` lists the current page's own parameters (the Coin page's ``coin``),
    which that page maintains; any other parameter (another page's, an unknown
    one) is dropped. Only changed values are written.
    """
    current = {key: st.query_params.get_all(key) for key in st.query_params.keys()}
    for key in current:
        if key not in GLOBAL_PARAMS and key not in keep:
            del st.query_params[key]
    if categories:
        value = ",".join(c for c in MARKET_CAP_CATEGORIES if c in categories)  # one canonical link per view
        if current.get(CATEGORY_PARAM) != [value]:
            st.query_params[CATEGORY_PARAM] = value
    elif CATEGORY_PARAM in current:
        del st.query_params[CATEGORY_PARAM]
    if WATCH_KEY in st.session_state:  # the watchlist's parameters, once a session has read them
        set_query_param(WATCH_PARAM, ",".join(watched()) or None)
        set_query_param(WATCHLIST_PARAM, watchlist_name())
        set_query_param(WATCH_ONLY_PARAM, "1" if watch_only() else None)
    if SECTOR_KEY in st.session_state:
        set_query_param(SECTOR_PARAM, selected_sector())


def set_query_param(name: str, value: str | None) -> None:
    """Set (or with None remove) one of the current page's own parameters."""
    if value:
        if st.query_params.get_all(name) != [value]:
            st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]


def query_param(name: str) -> str | None:
    """One query parameter's value (the first one if repeated)."""
    values = st.query_params.get_all(name)
    return values[0] if values else None


def set_view(view: View) -> None:
    st.session_state[VIEW_KEY] = view


def view() -> View:
    """The router's View for this run (set before the page runs)."""
    return st.session_state[VIEW_KEY]


def flash(kind: str, message: str) -> None:
    """Queue a message to show on the next run (survives ``st.rerun``)."""
    st.session_state.setdefault(FLASH_KEY, []).append((kind, message))


def take_flashes() -> list[tuple[str, str]]:
    return st.session_state.pop(FLASH_KEY, [])


# -- the watchlist (global: every page can show only it) ----------------------------------------


def init_watchlist(load_named=None) -> None:
    """On a session's first run, take the watchlist from the link: ``?watch=`` ids, else the list saved
    under ``?watchlist=`` (``load_named(name)`` returns its ids, or None when there is no such list)."""
    if WATCH_KEY in st.session_state:
        return
    ids = parse_ids(",".join(st.query_params.get_all(WATCH_PARAM)))
    name = query_param(WATCHLIST_PARAM)
    if name and not ids and load_named is not None:
        saved = load_named(name)
        if saved is None:
            flash("warning", "No watchlist is saved under the name in the link.")
            name = None
        else:
            ids = tuple(saved)
    st.session_state[WATCH_KEY] = list(ids)
    st.session_state[WATCH_NAME_KEY] = name
    st.session_state[WATCH_ONLY_KEY] = query_param(WATCH_ONLY_PARAM) == "1"


def watched() -> list[str]:
    """The coin ids on the watchlist, in the order they were starred."""
    return list(st.session_state.get(WATCH_KEY, []))


def set_watched(ids) -> None:
    """Replace the watchlist (cleaned: no repeats, no empties, bounded)."""
    st.session_state[WATCH_KEY] = list(parse_ids(",".join(ids)))


def toggle_watched(coin_id: str) -> bool:
    """Star or unstar one coin; returns True when it is now on the watchlist."""
    ids = watched()
    if coin_id in ids:
        ids.remove(coin_id)
    else:
        ids.append(coin_id)
    set_watched(ids)
    return coin_id in ids


def watchlist_name() -> str | None:
    """The name the current list was saved under or loaded from (None: not saved)."""
    return st.session_state.get(WATCH_NAME_KEY)


def set_watchlist_name(name: str | None) -> None:
    st.session_state[WATCH_NAME_KEY] = name


def watch_only() -> bool:
    """Is the sidebar's "Only my watchlist" switch on."""
    return bool(st.session_state.get(WATCH_ONLY_KEY, False))


def filter_coins(frame: pd.DataFrame, categories) -> pd.DataFrame:
    """The shared filters on a frame of coins (one row per coin, an ``id`` column): the market-cap
    categories, then, with "Only my watchlist" on, the watched coins only."""
    frame = filter_by_category(frame, categories)
    if watch_only() and "id" in frame.columns:
        frame = frame[frame["id"].isin(watched())]
    return frame


# -- the sector filter (global, like the market-cap category) --------------------------------------


def init_sector_filter(tracked: tuple[str, ...]) -> str | None:
    """On a session's first run, take the sector from ``?sector=``; returns an unknown value (ignored)."""
    if SECTOR_KEY in st.session_state:
        return None
    wanted = query_param(SECTOR_PARAM)
    st.session_state[SECTOR_KEY] = wanted if wanted in tracked else ALL_SECTORS
    return wanted if wanted and wanted not in tracked else None


def selected_sector() -> str | None:
    """The tracked sector chosen in the sidebar (None: every coin)."""
    return st.session_state.get(SECTOR_KEY) or None
