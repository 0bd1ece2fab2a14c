"""Compare: 2-10 coins side by side from our own history (silver snapshots and backfilled days):
performance from a common start, correlation of returns, rolling 30-day volatility and beta to bitcoin.

The choice is kept in the link: ``?compare=bitcoin,ethereum,solana&range=90d``.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dashboard import analytics, compare_charts, data, ranges, state, ui
from dashboard import formatting as fmt

COINS_KEY = state.page_key("compare", "coins")
RANGE_KEY = state.page_key("compare", "range")
MIN_COINS, MAX_COINS = 2, 10
DEFAULT_COINS = 3  # with no coins in the link: the largest three
DEFAULT_RANGE = "90d"  # long enough for a 30-day rolling volatility
BENCHMARK = "bitcoin"
#: A coin whose data starts this much after the range start is named in the coverage notes.
LATE_START = pd.Timedelta(days=2)
RANGE_KEYS = ranges.range_keys("max")  # the shared range list (dashboard.ranges), "all" named "max" as on Coin


def parse_ids(value: str | None) -> list[str]:
    """Coin ids from ``?compare=``: comma-separated, trimmed, each once, in the given order."""
    seen: list[str] = []
    for part in (value or "").split(","):
        coin_id = part.strip()
        if coin_id and coin_id not in seen:
            seen.append(coin_id)
    return seen


def range_label(key: str) -> str:
    return "max" if key == "all" else key


view = state.view()
ui.page_header(
    "⚖️ Compare",
    "Pick 2 to 10 coins to compare their performance over a range (100 = their first common price), the "
    "correlation of their returns, their rolling 30-day volatility and their beta to bitcoin, all from the "
    "prices the pipeline kept and backfilled. The link keeps the coins and the range (?compare=...&range=...).",
)

directory = data.load_coin_directory(view.database_url, view.version)
mart = data.load_mart(view.database_url, view.version)
known = set(directory["id"])
labels = {  # every coin's 'Name (SYM)', the id when the name is unknown (a coin only backfilled)
    coin_id: fmt.coin_label(name, symbol, limit=fmt.DISPLAY_LIMIT) or coin_id
    for coin_id, name, symbol in zip(directory["id"], directory["name"], directory["symbol"], strict=True)
}
# The sidebar's filters: market-cap categories of the newest snapshot (a coin that left it has none,
# so it only shows with no category chosen) and "Only my watchlist".
directory = view.filter_coins(directory.merge(mart[["id", "market_cap_category"]], on="id", how="left"))

if not ui.nothing_to_show(directory):
    ranks = directory["market_cap_rank"] if "market_cap_rank" in directory.columns else pd.Series(dtype="float64")
    directory = directory.assign(_rank=pd.to_numeric(ranks, errors="coerce")).sort_values(
        ["_rank", "id"], na_position="last", kind="stable"
    )
    options = list(directory["id"])

    if COINS_KEY not in st.session_state:  # first visit in this session: the link decides
        wanted = parse_ids(state.query_param("compare"))
        unknown = [c for c in wanted if c not in known]
        filtered = [c for c in wanted if c in known and c not in options]
        chosen = [c for c in wanted if c in options]
        if unknown:
            shown = ", ".join(f"`{fmt.escape_markdown(fmt.shorten(c, 40))}`" for c in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            st.info(f"Not a coin the pipeline has seen, left out: {shown}{more}.", icon="🔍")
        if filtered:
            st.info(
                "Left out by the sidebar's filter (market-cap categories or watchlist): "
                + ", ".join(fmt.escape_markdown(labels.get(c, c)) for c in filtered)
                + ".",
                icon="🔍",
            )
        if len(chosen) > MAX_COINS:
            st.warning(
                f"At most {MAX_COINS} coins can be compared: the link named {len(chosen)}, showing the first "
                f"{MAX_COINS}.",
                icon="✂️",
            )
            chosen = chosen[:MAX_COINS]
        if not wanted:
            chosen = options[:DEFAULT_COINS]
        st.session_state[COINS_KEY] = chosen
    else:
        st.session_state[COINS_KEY] = [c for c in st.session_state[COINS_KEY] if c in options]
    if RANGE_KEY not in st.session_state:
        st.session_state[RANGE_KEY] = range_label(ranges.parse_range(state.query_param("range"), DEFAULT_RANGE))

    picked, chosen_range = st.columns([3, 2])
    with picked:
        selected = st.multiselect(
            "Coins",
            options,
            key=COINS_KEY,
            format_func=lambda coin_id: labels.get(coin_id, coin_id),
            max_selections=MAX_COINS,
            placeholder=f"Pick {MIN_COINS} to {MAX_COINS} coins",
            help=f"{MIN_COINS} to {MAX_COINS} coins, from every coin the pipeline has seen. Type to search.",
        )
    with chosen_range:
        range_shown = st.radio(
            "Range", RANGE_KEYS, key=RANGE_KEY, horizontal=True, help="Counted back from the newest price."
        )
    range_key = ranges.parse_range(range_shown, DEFAULT_RANGE)
    state.set_query_param("compare", ",".join(selected))
    state.set_query_param("range", range_label(range_key))

    if len(selected) < MIN_COINS:
        st.info(
            f"Pick at least {MIN_COINS} coins to compare (up to {MAX_COINS}); "
            f"{'one is' if len(selected) == 1 else 'none are'} chosen.",
            icon="⚖️",
        )
    else:
        ids = tuple(selected)
        loaded = tuple(sorted({*ids, BENCHMARK}))
        result = data.load_compare_points(view.database_url, view.version, loaded, range_key)
        points = result.frame
        freq = "h" if ranges.compare_grain(range_key) == "hourly" else "D"
        step = "hour" if freq == "h" else "day"
        stepwise = "hourly" if freq == "h" else "daily"
        grid = analytics.price_grid(points, freq)
        present = [c for c in ids if c in grid.columns]
        absent = [c for c in ids if c not in grid.columns]

        if not present:
            st.info(
                "None of these coins has a price in this range. Run the pipeline, or "
                f"`python -m pipeline backfill --ids {','.join(ids)}` for a year of daily history.",
                icon="🔍",
            )
        else:
            # -- performance
            performance, base = analytics.normalised(grid[present])
            ui.render_chart(
                compare_charts.create_performance_chart(
                    performance, labels, freq, title=f"Performance over {range_label(range_key)} (100 = start)"
                ),
                key="compare_performance",
            )
            if base is not None:
                st.caption(
                    f"100 = each coin's price on {base:%Y-%m-%d}{' %H:00' if freq == 'h' else ''} UTC, the first "
                    f"{step} every chosen coin has a price; one point per {step} (the last price in it). "
                    f"Gaps of more than {analytics.MAX_FILL} {step}s stay gaps."
                )
            else:
                st.caption(
                    f"No {step} in this range has a price for every chosen coin, so each line starts at 100 "
                    "at its own first price (the lines do not share a start)."
                )

            # -- coverage notes and the backfill hint
            coverage = analytics.coverage(points).set_index("id")
            since = pd.Timestamp(result.since) if result.since is not None else None
            notes = [f"{fmt.escape_markdown(labels.get(c, c))}: no prices in this range" for c in absent]
            short = list(absent)
            for coin_id in present:
                first, count = coverage.loc[coin_id, "first"], int(coverage.loc[coin_id, "points"])
                if count <= analytics.MIN_OVERLAP:
                    notes.append(f"{fmt.escape_markdown(labels.get(coin_id, coin_id))}: only {count} price point(s)")
                    short.append(coin_id)
                elif since is not None and first - since > LATE_START:
                    notes.append(f"{fmt.escape_markdown(labels.get(coin_id, coin_id))}: history from {first:%Y-%m-%d}")
                    short.append(coin_id)
            if notes:
                st.caption("Coverage: " + "; ".join(notes) + ".")
            if short:
                st.info(
                    "Some history is short. Daily prices for up to a year come from CoinGecko with "
                    f"`python -m pipeline backfill --ids {','.join(short)} --days 365`.",
                    icon="💡",
                )

            # -- correlation and beta
            returns = analytics.log_returns(grid)
            chosen_returns = returns[present]
            matrix = analytics.correlation_matrix(chosen_returns)
            betas = analytics.beta_to(returns, BENCHMARK)
            counts = analytics.overlap_counts(returns)
            left, right = st.columns([3, 2])
            with left:
                ui.render_chart(
                    compare_charts.create_correlation_heatmap(
                        matrix, labels, title=f"Correlation of {stepwise} log returns"
                    ),
                    key="compare_correlation",
                )
                if matrix.isna().to_numpy().any():
                    st.caption(
                        f"— : not shown, because the pair has fewer than {analytics.MIN_OVERLAP} {stepwise} returns "
                        "in common, or a price that did not move (correlation is undefined then)."
                    )
            volatility = analytics.rolling_volatility(analytics.daily_grid(points))
            volatility = volatility[[c for c in present if c in volatility.columns]]
            with right:
                has_benchmark = BENCHMARK in returns.columns
                table = pd.DataFrame(
                    {
                        "coin": [labels.get(c, c) for c in present],
                        "beta": [betas.get(c, math.nan) for c in present],
                        "correlation": [
                            matrix.loc[c, BENCHMARK] if BENCHMARK in matrix.columns else math.nan for c in present
                        ],
                        "common": [int(counts.loc[c, BENCHMARK]) if has_benchmark else 0 for c in present],
                        "volatility": [
                            volatility[c].dropna().iloc[-1]
                            if c in volatility.columns and volatility[c].notna().any()
                            else math.nan
                            for c in present
                        ],
                    }
                )
                st.markdown(f"**Beta to bitcoin** ({range_label(range_key)}, {stepwise} returns)")
                ui.render_table(
                    table,
                    "compare_beta",
                    {
                        "coin": st.column_config.TextColumn("Coin"),
                        "beta": st.column_config.NumberColumn("Beta", format="%.2f", width="small"),
                        "correlation": st.column_config.NumberColumn(
                            "r (BTC)", format="%.2f", width="small", help="Correlation of returns with bitcoin"
                        ),
                        "common": st.column_config.NumberColumn(
                            f"{step.capitalize()}s", format="%d", width="small", help="Returns in common with bitcoin"
                        ),
                        "volatility": st.column_config.NumberColumn(
                            "Vol. 30d",
                            format="%.1f%%",
                            width="small",
                            help="Newest rolling 30-day volatility, annualised",
                        ),
                    },
                    key="compare_beta_table",
                )
                st.caption(
                    "Beta = cov(coin, BTC) / var(BTC) of the returns both have; bitcoin's own beta is 1. "
                    "Empty where bitcoin has no prices in this range, fewer than "
                    f"{analytics.MIN_OVERLAP} returns in common with the coin, or did not move."
                )

            # -- volatility
            ui.render_chart(compare_charts.create_volatility_chart(volatility, labels), key="compare_volatility")
            st.caption(
                "Standard deviation of daily log returns over the last 30 days (at least "
                f"{analytics.VOLATILITY_MIN_RETURNS} of them), annualised by √365 because crypto trades every day "
                "(stocks use √252 trading days)."
                + (" Choose 30d or longer to see it." if ranges.compare_grain(range_key) == "hourly" else "")
            )
