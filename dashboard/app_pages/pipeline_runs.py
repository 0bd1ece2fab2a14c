"""Pipeline: recent runs, data freshness, who is running now, the CoinGecko API budget, held snapshots and
quarantined records."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from dashboard import budget_charts, charts, data, frames, state, ui
from dashboard import formatting as fmt
from pipeline.api import budget_plan, budget_usage, utcnow

view = state.view()
ui.page_header(
    "⚙️ Pipeline",
    "Every run of the pipeline (scheduler, refresh button, command line), how long it "
    "took, what it loaded, the snapshots the plausibility gate held back, and the records the silver "
    "checks rejected. The market-cap filter does not apply here.",
)

holder = data.load_lock_holder(view.database_url)
runs = frames.runs_table(data.load_runs(view.database_url, view.version), holder["run_id"] if holder else None)
quarantined_total = data.count_quarantine(view.database_url, view.version)
try:
    held = data.load_held_snapshots(view.database_url, view.version)
except data.DataUnavailable:  # a database older than the snapshots ledger: nothing was ever held
    held = None

successes = runs[runs["status"] == "success"]
last_success = successes["finished_at"].max() if not successes.empty else None
metrics = st.columns(5)
metrics[0].metric(
    "Last successful run",
    fmt.format_age(utcnow() - last_success) + " ago" if last_success is not None else "never",
    help="When the newest successful run finished.",
    border=True,
)
metrics[1].metric(
    "Running now",
    fmt.shorten(holder["run_id"]) if holder else "nothing",
    fmt.shorten(f"pid {holder['pid']} on {holder['host']}") if holder else None,
    delta_color="off",
    delta_arrow="off",
    border=True,
)
failed = int(runs["status"].isin(["failed", "abandoned"]).sum())
metrics[2].metric("Failed runs", f"{failed} of {len(runs)}", help="Among the runs listed below.", border=True)
metrics[3].metric(
    "Quarantined records",
    fmt.format_count(quarantined_total),
    help="Records the silver checks rejected, over all runs.",
    border=True,
)
held_count = 0 if held is None else len(held)
metrics[4].metric(
    "Held snapshots",
    f"{held_count}+" if held_count >= data.HELD_LIMIT else str(held_count),
    help="Snapshots the plausibility gate kept out of gold (not what was asked for); the pages keep "
    "showing the last published one.",
    border=True,
)

if runs.empty:
    st.info("No pipeline runs recorded yet.", icon="🔍")
else:
    ui.render_chart(charts.create_runs_chart(runs), key="pipeline_runs_chart")
    st.subheader("Recent runs")
    ui.render_table(
        runs,
        "pipeline_runs",
        {
            "started_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "status": st.column_config.TextColumn("Status"),
            "trigger": st.column_config.TextColumn("Trigger"),
            "source": st.column_config.TextColumn("Source"),
            "stage": st.column_config.TextColumn("Last stage"),
            "duration_s": st.column_config.NumberColumn("Duration (s)", format="%.1f"),
            "bronze_records": st.column_config.NumberColumn("Bronze records", format="%d"),
            "silver_rows": st.column_config.NumberColumn("Silver rows", format="%d"),
            "gold_rows": st.column_config.NumberColumn("Gold rows", format="%d"),
            "quarantined_count": st.column_config.NumberColumn("Quarantined", format="%d"),
            "duplicates_dropped": st.column_config.NumberColumn("Duplicates dropped", format="%d"),
            "snapshot_at": st.column_config.DatetimeColumn("Snapshot (UTC)", format="YYYY-MM-DD HH:mm"),
            "error_message": st.column_config.TextColumn("Error", width="large"),
            "notes": st.column_config.TextColumn("Notes (skipped bronze, /global, ...)", width="large"),
            "run_id": st.column_config.TextColumn("Run id"),
        },
        key="pipeline_runs_table",
    )

# -- API budget --
st.subheader("CoinGecko API budget")
now = utcnow()
month = datetime(now.year, now.month, 1)
allowance = view.settings.monthly_calls
try:
    api_calls = data.load_api_calls(view.database_url, view.version, month)
except data.DataUnavailable:  # a database from before the API budget: nothing counted yet
    api_calls = None
plan = budget_plan(view.settings)
plan_note = (
    f"The schedule plans about {plan.per_day:,.0f} calls a day ({plan.per_month:,.0f} in a 30-day month): "
    + ", ".join(
        f"{g.group.replace('_', ' ')} {budget_charts.cadence_label(g.every_minutes)}" for g in plan.groups if g.per_day
    )
    + f". Allowance: {allowance:,} calls a month (COINGECKO_MONTHLY_CALLS)."
)
if api_calls is None or api_calls.empty:
    st.info(
        f"No CoinGecko API call recorded in {month:%B %Y} (runs of the bundled sample and replays make none).",
        icon="🔍",
    )
    st.caption(plan_note)
else:
    used = int(api_calls["calls"].sum())
    usage = budget_usage(used, allowance, now, budget_charts.counting_since(api_calls))
    st.progress(
        min(usage.share, 1.0),
        text=f"{used:,} of {allowance:,} calls used in {month:%B %Y} ({usage.share:.0%})",
    )
    budget_metrics = st.columns(4)
    budget_metrics[0].metric("Calls this month", fmt.format_count(used), border=True)
    budget_metrics[1].metric(
        "Projected by month end",
        fmt.format_count(usage.projected),
        help="This month's calls so far, continued at their rate since the first call this month.",
        border=True,
    )
    budget_metrics[2].metric("Left this month", fmt.format_count(max(allowance - used, 0)), border=True)
    budget_metrics[3].metric(
        "Failed calls",
        fmt.format_count(int(api_calls["failures"].sum())),
        help="Requests without an answer: errors, rate limits, timeouts (each retry counts).",
        border=True,
    )
    if usage.share >= 1:
        st.error(f"The month's allowance is used up: {used:,} of {allowance:,} calls.", icon="🚨")
    elif usage.warn:
        st.warning(
            f"{usage.share:.0%} of the month's allowance is used ({used:,} of {allowance:,} calls). Categories and "
            "memberships are skipped when the remaining scheduled runs need the rest.",
            icon="⚠️",
        )
    if usage.over_projected and usage.share < 1:
        st.warning(
            f"At the current rate this month ends at about {usage.projected:,} calls, over the allowance of "
            f"{allowance:,}: lengthen PIPELINE_INTERVAL_MINUTES or lower PIPELINE_TOP_N.",
            icon="📈",
        )
    left, right = st.columns([3, 2])
    with left:
        ui.render_chart(
            budget_charts.create_daily_calls_chart(api_calls, month.date(), allowance), key="pipeline_budget_chart"
        )
    with right:
        ui.render_table(
            budget_charts.by_endpoint(api_calls),
            "api_calls_by_endpoint",
            {
                "endpoint": st.column_config.TextColumn("Endpoint"),
                "calls": st.column_config.NumberColumn("Calls", format="%d"),
                "failures": st.column_config.NumberColumn("Failed", format="%d"),
                "share_pct": st.column_config.NumberColumn("Share", format="%.1f %%"),
                "last_at": st.column_config.DatetimeColumn("Last call (UTC)", format="YYYY-MM-DD HH:mm"),
            },
            key="pipeline_budget_table",
        )
    st.caption(plan_note)

st.subheader("Held snapshots")
if held is None or held.empty:
    st.success("No snapshot has been held: every snapshot passed the plausibility gate.", icon="✅")
else:
    st.caption(
        "Snapshots the plausibility gate kept out of gold, newest first. They stay in silver; after checking "
        "one, `python -m pipeline publish RUN_ID --force` publishes it."
    )
    ui.render_table(
        held,
        "held_snapshots",
        {
            "snapshot_at": st.column_config.DatetimeColumn("Snapshot (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "reasons": st.column_config.TextColumn("Why it was held", width="large"),
            "coin_count": st.column_config.NumberColumn("Coins", format="%d"),
            "requested_coins": st.column_config.NumberColumn("Requested", format="%d"),
            "source": st.column_config.TextColumn("Source"),
            "run_id": st.column_config.TextColumn("Run id"),
            "decided_at": st.column_config.DatetimeColumn("Held at (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        },
        key="pipeline_held_table",
    )

st.subheader("Quarantined records")
quarantine = data.load_quarantine(view.database_url, view.version)
if quarantine.empty:
    st.success("No record has been quarantined: every record passed the silver checks.", icon="✅")
else:
    reasons = frames.quarantine_reasons(quarantine)
    left, right = st.columns([2, 3])
    with left:
        ui.render_chart(charts.create_quarantine_chart(reasons), key="pipeline_quarantine_chart")
    with right:
        ui.render_table(
            quarantine,
            "quarantined_records",
            {
                "snapshot_at": st.column_config.DatetimeColumn("Snapshot (UTC)", format="YYYY-MM-DD HH:mm"),
                "record_id": st.column_config.TextColumn("Coin id"),
                "reason": st.column_config.TextColumn("Reason", width="large"),
                "run_id": st.column_config.TextColumn("Run id"),
                "record_index": st.column_config.NumberColumn("Record #", format="%d"),
                "raw_record": st.column_config.TextColumn("Raw record (beginning; more in the CSV)"),
            },
            key="pipeline_quarantine_table",
        )
    if quarantined_total > len(quarantine):
        st.caption(f"Showing the newest {len(quarantine):,} of {quarantined_total:,} quarantined records.")
