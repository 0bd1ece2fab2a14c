"""Streamlit pieces shared by the router and the pages: tables, charts, notices, sidebar, refresh.

Everything that draws lives here or in a page file; queries stay in
``dashboard.data``, figures in ``dashboard.charts``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, health, ranges, refresh, state
from dashboard import formatting as fmt
from dashboard.refresh import Decision, ExternalRun, Job
from dashboard.sector_charts import sector_label, sector_names
from pipeline.api import MARKET_CAP_CATEGORIES, ConfigError, Settings, mask_url, utcnow

COINGECKO_URL = "https://www.coingecko.com/en/api"
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: Text cells on screen are cut to this many characters (the CSV download keeps the full text).
TABLE_TEXT_LIMIT = 200
#: Tighter limits for columns of external text that have a natural length.
COLUMN_TEXT_LIMITS = {"name": fmt.DISPLAY_LIMIT, "symbol": fmt.SYMBOL_LIMIT, "record_id": fmt.DISPLAY_LIMIT}
#: What every table on screen draws for a NULL cell (Streamlit's default is the text "None"); pass it
#: as ``placeholder=`` to every ``st.dataframe``/``st.data_editor`` (tests/dashboard/test_display_polish.py).
MISSING_CELL = fmt.MISSING
#: Error messages can echo input (a URL, a value from the API): shown cut to this length.
ERROR_TEXT_LIMIT = 300
#: Unknown ``?category=`` values named in the sidebar warning, and the length each is cut to.
INVALID_CATEGORIES_SHOWN = 3
INVALID_CATEGORY_LIMIT = 30


# -- tables and charts -----------------------------------------------------------------


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV for download; text cells that a spreadsheet would run as a formula get a leading quote."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(CSV_FORMULA_START) else v
            )
    return safe.to_csv(index=False).encode("utf-8")


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as drawn on screen: text cells cut (``formatting.shorten``), symbols upper case
    (``formatting.format_symbol``), ±Infinity as empty cells (never "Infinity"); NULLs stay NULL, which
    every table draws as the em dash (``MISSING_CELL``)."""
    shown = frame
    for column in frame.columns:
        values = frame[column]
        if column == "symbol":
            if shown is frame:
                shown = frame.copy()
            shown[column] = values.map(lambda v: fmt.format_symbol(v) if isinstance(v, str) else v)
            continue
        if pd.api.types.is_float_dtype(values.dtype):
            infinite = values.isin([math.inf, -math.inf])
            if infinite.any():
                if shown is frame:
                    shown = frame.copy()
                shown[column] = values.mask(infinite)
            continue
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            continue
        limit = COLUMN_TEXT_LIMITS.get(column, TABLE_TEXT_LIMIT)
        lengths = values.map(lambda v: len(v) if isinstance(v, str) else 0)
        if not len(lengths) or lengths.max() <= limit:
            continue
        if shown is frame:
            shown = frame.copy()
        shown[column] = values.map(lambda v, limit=limit: fmt.shorten(v, limit) if isinstance(v, str) else v)
    return shown


def render_table(
    frame: pd.DataFrame,
    name: str,
    column_config: dict | None = None,
    height: int | str = "auto",
    key: str | None = None,
) -> None:
    """A sortable table (click a header) with a CSV download of exactly these rows and columns.

    Text cells are cut for the screen (``display_frame``); the CSV has the full values.
    """
    columns = list(column_config) if column_config else list(frame.columns)
    shown = frame[[c for c in columns if c in frame.columns]]
    st.dataframe(
        display_frame(shown),
        hide_index=True,
        column_config=column_config,
        height=height,
        width="stretch",
        key=key,
        placeholder=MISSING_CELL,
    )
    rows = f"{len(shown):,} row" + ("" if len(shown) == 1 else "s")
    st.download_button(
        f"Download CSV ({rows})",
        data=lambda: csv_bytes(shown),
        file_name=f"{name}.csv",
        mime="text/csv",
        on_click="ignore",
        icon="⬇️",
        key=f"download_{key or name}",
    )


def render_chart(figure: go.Figure, key: str) -> None:
    """A Plotly chart, full width, without the Plotly logo."""
    st.plotly_chart(figure, width="stretch", key=key, config={"displaylogo": False})


def nothing_to_show(frame: pd.DataFrame, what: str = "coins", reason: str | None = None) -> bool:
    """Say so (and return True) when a filtered frame is empty, instead of drawing an empty chart.

    The message gives the real reason: ``reason`` when the page knows it (e.g. "this data has no
    7-day change"); with no category chosen the filter cannot be why, so it says the data has none;
    otherwise it names the filter.
    """
    if not frame.empty:
        return False
    if reason:
        st.info(reason, icon="🔍")
        return True
    categories = state.selected_categories()
    if state.watch_only():
        st.info(
            f"No {what} on your watchlist match the current filters. Star coins on the Coins page, or turn off "
            "**Only my watchlist** in the sidebar.",
            icon="🔍",
        )
        return True
    if not categories:
        st.info(
            f"No {what} in this data: the newest published snapshot has none. Run the pipeline to load some.", icon="🔍"
        )
        return True
    chosen = ", ".join(fmt.category_label(c, short=True) for c in categories) or "all categories"
    st.info(
        f"No {what} match the current filter ({chosen}). Choose other market-cap categories in the sidebar.", icon="🔍"
    )
    return True


# Column configs shared by several pages (raw numbers stay numeric, so sorting and CSV are exact).
COIN_COLUMNS = {
    "market_cap_rank": st.column_config.NumberColumn("Rank", format="%d", width="small"),
    "name": st.column_config.TextColumn("Coin"),
    "symbol": st.column_config.TextColumn("Symbol", width="small"),
    # %g keeps 6 significant digits: $20431.5 and $0.0000123456 alike ("dollar" shows $0.00 for tiny prices).
    "current_price": st.column_config.NumberColumn("Price (USD)", format="$%.6g"),
    "market_cap": st.column_config.NumberColumn("Market cap (USD)", format="compact"),
    "total_volume": st.column_config.NumberColumn("24h volume (USD)", format="compact"),
    "price_change_percentage_1h": st.column_config.NumberColumn("1h", format="%+.2f%%"),
    "price_change_percentage_24h": st.column_config.NumberColumn("24h", format="%+.2f%%"),
    "price_change_percentage_7d": st.column_config.NumberColumn("7d", format="%+.2f%%"),
    "volume_to_mcap_ratio": st.column_config.NumberColumn("Volume / market cap", format="%.3g"),
    "market_dominance_pct": st.column_config.NumberColumn("Share of market", format="%.2f%%"),
    "market_cap_category": st.column_config.TextColumn("Market-cap category"),
    "liquidity_category": st.column_config.TextColumn("Liquidity"),
    "price_trend_category": st.column_config.TextColumn("24h trend"),
    "stale_record": st.column_config.CheckboxColumn(
        "Stale",
        help="CoinGecko last updated this coin hours before the snapshot (PIPELINE_STALE_RECORD_HOURS): "
        "shown, but left out of movers and trends",
    ),
}


def coin_columns(*names: str) -> dict:
    return {name: COIN_COLUMNS[name] for name in names}


def page_header(title: str, description: str) -> None:
    """The page title, the data's freshness stamp, and one line on what the page shows."""
    st.title(title)
    render_freshness(state.view())
    st.caption(description)


# -- status banners ---------------------------------------------------------------------


def render_freshness(view: state.View) -> None:
    """'Data as of <data time> (fetched <time>, <source>)' on every page, with a warning when stale or
    sample data. The data time is the moment the coins' data describes; the fetch time is beside it."""
    fresh = data.load_freshness(view.database_url, view.version, view.settings.interval_minutes)
    if fresh is None:
        return
    snapshot_at = fresh["snapshot_at"]
    source = fresh["source"]
    source_text = {
        "api": "live CoinGecko API",
        "sample": "bundled offline sample",
        "import": "imported saved responses",
    }.get(source, fmt.escape_markdown(fmt.shorten(source)))
    fetched_at = fresh.get("fetched_at")
    if fetched_at is not None and not pd.isna(fetched_at) and fetched_at != snapshot_at:
        source_text = f"fetched {fmt.format_timestamp(fetched_at)}, {source_text}"
    age = utcnow() - snapshot_at
    st.caption(f"📅 Data as of **{fmt.format_timestamp(snapshot_at)}** ({source_text}), {fmt.format_age(age)} old.")
    if source == "sample":
        st.warning(
            "This is the bundled **sample data** recorded on "
            f"{snapshot_at:%Y-%m-%d}, not live prices. Use **Refresh data** in the sidebar to load "
            "the current market.",
            icon="⚠️",
        )
    elif fresh["stale"]:
        st.warning(
            f"The data is **{fmt.format_age(age)} old**, more than twice the "
            f"{view.settings.interval_minutes}-minute schedule: the scheduler may be stopped or failing "
            "(see the Pipeline page).",
            icon="⚠️",
        )
    render_failure_banner(view)


def render_failure_banner(view: state.View) -> None:
    """After PIPELINE_FAILURE_BANNER_RUNS failed fetches in a row, say so on every page, with the
    last error, before the data has had time to turn stale."""
    try:
        streak = health.failure_streak(data.load_runs(view.database_url, view.version))
    except data.DataUnavailable:
        return
    if streak.count < view.settings.failure_banner_runs:
        return
    since = f" since {fmt.format_timestamp(streak.since)}" if streak.since is not None else ""
    st.error(
        f"**The last {streak.count} pipeline runs failed**{since}: "
        f"{error_markdown(streak.last_error or 'unknown error')}. The pages show the last good data; "
        "see the Pipeline page.",
        icon="🚨",
    )


def render_database_problem(settings: Settings, status: data.DataStatus) -> None:
    """A clear message, never a traceback, when the database cannot be used."""
    url = mask_url(settings.database_url)
    if status.state == "unreachable":
        st.error(f"**The database cannot be reached.** {error_markdown(status.message)}", icon="🚫")
        st.markdown(
            f"The dashboard reads `{url.replace('`', '')}` (the `DATABASE_URL` setting). Check that the "
            "database server is running and reachable from here, and that `DATABASE_URL` names the same "
            "database the pipeline writes to. Then reload this page."
        )
    elif status.state == "missing_tables":
        st.error(f"**Some tables are missing:** {error_markdown(', '.join(status.missing))}.", icon="🧱")
        st.markdown(
            "The database was created by an older or unfinished pipeline setup. Load data below "
            "(which creates any missing tables), or run `python -m pipeline run` against the same "
            "`DATABASE_URL`."
        )


# -- sidebar ---------------------------------------------------------------------------------


def render_category_filter() -> list[str]:
    """The one market-cap filter, shared by every page (kept in session state and the URL)."""
    state.init_category_filter()
    st.sidebar.multiselect(
        "Market-cap category",
        MARKET_CAP_CATEGORIES,
        key=state.FILTER_KEY,
        format_func=lambda c: fmt.category_label(c),
        placeholder="All categories",
        help="Applies to every page and is kept in the link (?category=...). Empty means all coins.",
    )
    invalid = state.take_invalid_categories()
    if invalid:
        st.sidebar.warning(invalid_categories_message(invalid))
    render_sector_filter()
    return state.selected_categories()


def render_sector_filter() -> str | None:
    """The sector filter beside the market-cap one: the tracked sectors (PIPELINE_TRACKED_SECTORS)."""
    try:
        settings = Settings.from_env()
    except ConfigError:
        settings = None
    tracked = settings.tracked_sectors if settings else ()
    names = _sector_names(settings)
    unknown = state.init_sector_filter(tracked)
    st.sidebar.selectbox(
        "Sector",
        [state.ALL_SECTORS, *tracked],
        key=state.SECTOR_KEY,
        format_func=lambda s: "All sectors" if s == state.ALL_SECTORS else sector_label(s, names),
        help="Only the coins CoinGecko files under this sector (tracked sectors); kept in the link (?sector=...).",
    )
    if unknown:
        st.sidebar.warning(f"Ignored an unknown sector in the link: `{fmt.escape_markdown(unknown[:60])}`")
    return state.selected_sector()


def _sector_names(settings: Settings | None) -> dict[str, str]:
    """CoinGecko's names of the sectors (the newest ranking), so the sidebar says "Meme" like the Sectors
    page; {} before the first sector fetch or when the database cannot be read (labels from the ids then)."""
    if settings is None:
        return {}
    status = data.probe(settings.database_url)
    if not status.ok:
        return {}
    try:
        return sector_names(data.load_sector_ranking(settings.database_url, status.version))
    except data.DataUnavailable:
        return {}


def render_watch_filter(settings: Settings) -> None:
    """The sidebar's "Only my watchlist" switch (every page shows only the starred coins when on); the
    watchlist itself comes from the link at session start (``?watch=`` or a saved ``?watchlist=``)."""

    def load_named(name: str):
        try:
            saved = data.find_watchlist(settings.database_url, name)
        except data.DataUnavailable:
            return None
        return None if saved is None else saved.coin_ids

    state.init_watchlist(load_named)
    count = len(state.watched())
    st.sidebar.toggle(
        f"Only my watchlist ({count} coin{'' if count == 1 else 's'})",
        key=state.WATCH_ONLY_KEY,
        help="Show only the coins you starred (Coins table, Coin page) on every page. The list is kept in the "
        "link (?watch=...) and can be saved under a name on the Watchlist page.",
    )


def watch_toggle(coin_id: str, key: str | None = None) -> None:
    """A star button for one coin: adds it to the watchlist, or takes it off."""
    on = coin_id in state.watched()
    if st.button(
        "★ On your watchlist (remove)" if on else "☆ Add to watchlist",
        key=key or f"watch_toggle_{coin_id}",
        help="The watchlist is kept in the link (?watch=...); save it under a name on the Watchlist page.",
    ):
        state.toggle_watched(coin_id)
        st.rerun()


def invalid_categories_message(invalid: list[str]) -> str:
    """'Ignored unknown categories in the link: `a`, `b`, `c` and 9,997 more' (each value cut)."""
    named = ", ".join(
        f"`{fmt.escape_markdown(fmt.shorten(c, INVALID_CATEGORY_LIMIT))}`" for c in invalid[:INVALID_CATEGORIES_SHOWN]
    )
    rest = len(invalid) - INVALID_CATEGORIES_SHOWN
    more = f" and {rest:,} more" if rest > 0 else ""
    return "Ignored unknown categor" + ("ies" if len(invalid) > 1 else "y") + f" in the link: {named}{more}"


def error_markdown(message) -> str:
    """An error message for markdown: one line, cut (it may echo input), escaped."""
    return fmt.escape_markdown(fmt.shorten(message, ERROR_TEXT_LIMIT))


def render_credit() -> None:
    st.sidebar.divider()
    st.sidebar.caption(f"Data provided by [CoinGecko]({COINGECKO_URL}).")


def render_flashes(container=None) -> None:
    target = container or st.sidebar
    for kind, message in state.take_flashes():
        getattr(target, kind)(message)


# -- refresh ------------------------------------------------------------------------------------

JOB_KEY = "refresh_job_id"


def render_refresh_button(settings: Settings) -> bool:
    """The sidebar's Refresh button and its progress. Returns True when new data was published."""
    clicked = st.sidebar.button(
        "Refresh data",
        icon="🔄",
        width="stretch",
        key="refresh_button",
        help="Fetch the newest market data from CoinGecko now (the same run as the "
        "scheduler's, recorded with trigger 'button').",
    )
    job = refresh.get_job(st.session_state.get(JOB_KEY))
    if clicked:
        decision = refresh.request_refresh(settings, source="api")
        return _handle_decision(settings, decision, st.sidebar)
    if job is not None and job.running:  # clicked earlier, then the page reran (navigation, filter)
        return _show_job(settings, job, st.sidebar)
    return False


def start_first_load(settings: Settings, container) -> bool:
    """The empty-database button's action: live data, or the bundled sample when offline."""
    decision = refresh.request_refresh(settings, source="auto", respect_cooldown=False)
    return _handle_decision(settings, decision, container)


def _handle_decision(settings: Settings, decision: Decision, container) -> bool:
    if decision.kind == "cooldown":
        container.info(decision.message, icon="⏱️")
        return False
    if decision.kind == "external":
        container.info(decision.message, icon="⏳")
        return _show_external(settings, decision.run_id, container)
    if decision.kind == "attached":
        container.info(decision.message, icon="⏳")
    st.session_state[JOB_KEY] = decision.job.job_id
    return _show_job(settings, decision.job, container)


def _render_stages(placeholder, current: str | None, finished: bool, failed: bool, detail: str = "") -> None:
    lines = [f"{mark} {stage}" for stage, mark in refresh.stage_lines(current, finished, failed)]
    text = "  \n".join(lines)
    if detail:
        text += f"  \n{error_markdown(detail)}"
    placeholder.markdown(text)


def _show_job(settings: Settings, job: Job, container) -> bool:
    """Follow a job of this process to its end, stage by stage."""
    with container.status("Refreshing data…", expanded=True) as box:
        placeholder = box.empty()

        def tick(current: Job) -> None:
            message = current.events[-1][1] if current.events else "starting…"
            _render_stages(
                placeholder,
                current.stage,
                not current.running and current.state == "success",
                current.state in ("failed", "source_error", "held"),
                message,
            )

        refresh.follow_job(job, tick)
        if job.state == "success":
            box.update(label="Data refreshed", state="complete", expanded=False)
        elif job.state == "locked":
            box.update(label="Another run was already going", state="complete", expanded=False)
        elif job.state == "held":
            box.update(label="New data held back", state="error", expanded=False)
        else:
            box.update(label="Refresh failed", state="error", expanded=False)
    st.session_state.pop(JOB_KEY, None)
    data.clear_caches()
    if job.state == "success":
        note = ""
        if job.used_source == "sample":
            note = (
                " (the bundled sample: CoinGecko could not be reached)"
                if job.fallback_reason
                else " (the bundled sample)"
            )
        state.flash("success", f"✅ Refreshed: data as of {fmt.format_timestamp(job.snapshot_at)}{note}.")
        return True
    if job.state == "locked":
        return _show_external(settings, job.holder_run_id, container) if job.holder_run_id else False
    if job.state == "held":
        container.warning(
            f"**The new data looked implausible and was held back**: {error_markdown(job.error)}. "
            "The pages keep showing the last published data; an operator can publish it with "
            "`python -m pipeline publish RUN_ID --force` (see the Pipeline page).",
            icon="✋",
        )
    elif job.state == "source_error":
        container.error(
            f"**CoinGecko could not be reached**: {error_markdown(job.error)}. "
            "The pages keep showing the last good data; try again later.",
            icon="📡",
        )
    else:
        container.error(
            f"**The refresh failed**: {error_markdown(job.error)}. The pages keep showing "
            "the last good data; details are on the Pipeline page.",
            icon="❌",
        )
    return False


def _show_external(settings: Settings, run_id: str | None, container) -> bool:
    """Follow a run that another process started (scheduler, CLI) through the run log."""
    if not run_id:
        return False
    with container.status(f"Waiting for run {run_id}…", expanded=True) as box:
        placeholder = box.empty()

        def tick(run: ExternalRun) -> None:
            _render_stages(
                placeholder,
                run.stage,
                run.status == "success",
                run.status in ("failed", "abandoned"),
                f"status: {run.status}",
            )

        seen = refresh.follow_external(settings, run_id, tick)
        if seen.status == "success":
            box.update(label=f"Run {run_id} finished", state="complete", expanded=False)
        elif seen.timed_out:
            box.update(label=f"Run {run_id} is still going", state="running", expanded=False)
        else:
            box.update(label=f"Run {run_id} ended: {seen.status}", state="error", expanded=False)
    if seen.status == "success":
        state.flash("success", f"✅ The running pipeline run {run_id} finished; showing its data.")
        return True
    if seen.timed_out:
        container.info("That run is still going; the pages will show its data once it finishes.")
    elif seen.error:
        container.error(
            f"Run {fmt.escape_markdown(fmt.shorten(run_id))} did not succeed: "
            f"{error_markdown(seen.error)}. The pages keep "
            "showing the last good data."
        )
    return False


# -- first start ----------------------------------------------------------------------------------


def render_first_start(view: state.View) -> None:
    """Empty database (or no tables yet): a friendly welcome with one button that loads data."""
    st.title("👋 Welcome to the crypto market dashboard")
    if view.status.state == "missing_tables":
        render_database_problem(view.settings, view.status)
    else:
        st.markdown(
            "There is **no market data yet** in this database. Load it now: the dashboard fetches the top "
            f"{view.settings.button_top_n} coins from the CoinGecko API, or, when the API cannot be reached, loads "
            "the bundled offline sample (a real snapshot from 2022-10-16) so you can explore right away."
        )
    last_runs = _last_failed_run(view)
    if last_runs:
        st.caption(f"The last attempt failed: {error_markdown(last_runs)}")
    if st.button("Load data", icon="📥", type="primary", key="first_start_load"):
        if start_first_load(view.settings, st.container()):
            st.rerun()
    st.caption(
        "Afterwards the scheduler (`python -m pipeline schedule`) keeps the data fresh, and "
        "**Refresh data** in the sidebar fetches it on demand."
    )


def _last_failed_run(view: state.View) -> str | None:
    if view.status.state != "empty":
        return None
    try:
        runs = data.load_runs(view.database_url, view.version, 1)
    except data.DataUnavailable:
        return None
    if runs.empty or runs.iloc[0]["status"] != "failed":
        return None
    return str(runs.iloc[0]["error_message"] or "unknown error")


def guarded(render: Callable[[], None]) -> None:
    """Run a page; a database failure mid-page becomes one clear message instead of a traceback."""
    try:
        render()
    except data.DataUnavailable as exc:
        st.error(
            f"**The data could not be read.** {error_markdown(exc)}. Check that the database is running "
            "and that "
            "`DATABASE_URL` is right, then reload.",
            icon="🚫",
        )


# -- history ranges ---------------------------------------------------------------------

RANGE_PARAM, LOG_PARAM = "range", "log"


def render_range_controls(
    page: str, all_label: str = "all", default: str = ranges.DEFAULT_RANGE, log_switch: bool = True
) -> tuple[str, bool]:
    """The range buttons (24h … 1y, all|max) and the log-scale switch, kept in the URL as
    ``?range=7d&log=1`` (the default range and a linear scale leave the URL clean).

    The URL is read when the widgets have no state yet (a link, or coming back from another page);
    after that the widgets are the truth. Returns (canonical range key, log)."""
    range_key, log_key = state.page_key(page, "range"), state.page_key(page, "log")
    options = ranges.range_keys(all_label)
    if st.session_state.get(range_key) not in options:
        wanted = ranges.parse_range(state.query_param(RANGE_PARAM), default)
        st.session_state[range_key] = all_label if wanted == "all" else wanted
    if log_switch and log_key not in st.session_state:
        st.session_state[log_key] = (state.query_param(LOG_PARAM) or "").lower() in ("1", "true", "yes", "on")
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    chosen = left.segmented_control(
        "Range",
        options,
        key=range_key,
        required=True,
        help="How far back the charts reach, counted from the newest data point.",
    )
    log = log_switch and right.toggle(
        "Log scale", key=log_key, help="Logarithmic value axes: equal steps are equal % moves."
    )
    canonical = ranges.parse_range(chosen, default)
    state.set_query_param(
        RANGE_PARAM,
        None if canonical == default else ("max" if all_label == "max" and canonical == "all" else canonical),
    )
    if log_switch:
        state.set_query_param(LOG_PARAM, "1" if log else None)
    return canonical, bool(log)


# -- alerts badge -------------------------------------------------------------------------------

ALERTS_PAGE = "alerts"
ALERTS_PAGE_SCRIPT = "app_pages/alerts.py"
ALERTS_SEEN_KEY = "alerts_seen_at"
ALERTS_BADGE_WINDOW = timedelta(hours=24)


def render_alert_badge(database_url: str, version: str, current_page: str) -> None:
    """'🔔 N new alerts' at the top of the sidebar on every page, linking to the Alerts page: alerts fired
    in the last 24 h that this session has not seen on the Alerts page yet. Nothing when there are none."""
    now = utcnow()
    if current_page == ALERTS_PAGE:
        st.session_state[ALERTS_SEEN_KEY] = now
    window_start = (now - ALERTS_BADGE_WINDOW).replace(second=0, microsecond=0)  # a cache key per minute
    since = max(window_start, st.session_state.get(ALERTS_SEEN_KEY, window_start))
    try:
        count = data.count_new_alerts(database_url, version, since)
    except data.DataUnavailable:  # e.g. a database the pipeline has not run on since alerts came
        return
    if count:
        st.sidebar.page_link(
            ALERTS_PAGE_SCRIPT,
            label=f"{count:,} new alert" + ("" if count == 1 else "s"),
            icon="🔔",
            help="Alerts fired in the last 24 hours that you have not seen yet: open the Alerts page.",
        )
