"""Alerts: create rules (price, % move, volume spike, dominance, stablecoin de-peg), switch them on and
off, and read what fired. The pipeline evaluates the rules after every successful run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, state, ui
from dashboard import formatting as fmt
from pipeline.api import ALERT_KINDS, ALERT_WINDOWS, AlertRuleError

PAGE = "alerts"

view = state.view()
ui.page_header(
    "🔔 Alerts",
    "Rules on a coin's price, % move, 24h-volume spike, share of the market or a stablecoin's peg. "
    "The pipeline checks them after every successful run (scheduled or the Refresh button) and an "
    "alert fires once when its condition becomes true, then not again until it has been false.",
)


def coin_label(coins: pd.DataFrame):
    names = {row.id: fmt.coin_label(row.name, row.symbol) for row in coins.itertuples()}
    return lambda coin_id: fmt.shorten(names.get(coin_id, coin_id), 60)


def kind_label(kind: str) -> str:
    spec = ALERT_KINDS.get(kind)
    return spec.label if spec else kind


def render_new_rule(coins: pd.DataFrame) -> None:
    st.subheader("New alert rule")
    kind = st.selectbox("Kind", list(ALERT_KINDS), format_func=kind_label, key=state.page_key(PAGE, "kind"))
    spec = ALERT_KINDS[kind]
    options = list(coins["id"])
    if kind == "depeg":
        stablecoins = set(data.load_alert_stablecoins(view.database_url, view.version))
        options = [c for c in options if c in stablecoins]
    with st.form(state.page_key(PAGE, "new_rule"), clear_on_submit=False, border=True):
        left, middle, right = st.columns([3, 2, 2])
        coin_id = left.selectbox(
            "Coin",
            options,
            index=0 if options else None,
            format_func=coin_label(coins),
            key=state.page_key(PAGE, "coin"),
            placeholder="No coin to choose" if not options else "Choose a coin",
        )
        window = None
        if kind.startswith("change"):
            window = middle.selectbox("Move over", ALERT_WINDOWS, index=1, key=state.page_key(PAGE, "window"))
        threshold = right.number_input(
            spec.threshold_label,
            value=float(spec.default_threshold),
            format="%.6g",
            key=state.page_key(PAGE, f"threshold_{kind}"),
            help="Volume spike: standard deviations above the coin's 30-day mean (needs 10 points of history). "
            "De-peg: 0.01 = the price is more than 1 % away from $1.",
        )
        note = st.text_input("Note (optional)", max_chars=500, key=state.page_key(PAGE, "note"))
        if st.form_submit_button("Create rule", icon="➕", type="primary"):
            try:
                rule_id = data.save_alert_rule(
                    view.database_url,
                    kind=kind,
                    coin_id=coin_id or "",
                    threshold=threshold,
                    change_window=window,
                    note=note,
                )
            except AlertRuleError as exc:
                st.error(ui.error_markdown(exc), icon="⚠️")
            else:
                state.flash("success", f"✅ Rule {rule_id} created: it is checked after the next successful run.")
                st.rerun()


def rule_text(rule, label) -> str:
    window = f" over {rule.change_window}" if isinstance(rule.change_window, str) else ""
    note = f" — {fmt.escape_markdown(fmt.shorten(rule.note, 80))}" if isinstance(rule.note, str) and rule.note else ""
    return (
        f"**{kind_label(rule.kind)}**{window}: {fmt.escape_markdown(label(rule.coin_id))}, "
        f"threshold **{rule.threshold:,.6g}**{note}"
    )


def render_rules(rules: pd.DataFrame, coins: pd.DataFrame) -> None:
    st.subheader("Rules")
    if rules.empty:
        st.info("No alert rules yet: create one above.", icon="🔕")
        return
    label = coin_label(coins)
    for rule in rules.itertuples():
        rule_id = int(rule.rule_id)
        text, switch, remove = st.columns([6, 1, 1], vertical_alignment="center")
        text.markdown(f"`#{rule_id}` " + rule_text(rule, label))
        enabled = switch.toggle("On", value=bool(rule.enabled), key=state.page_key(PAGE, f"enabled_{rule_id}"))
        if enabled != bool(rule.enabled):
            data.set_alert_rule_enabled(view.database_url, rule_id, enabled)
            st.rerun()
        if remove.button("Delete", icon="🗑️", key=state.page_key(PAGE, f"delete_{rule_id}")):
            data.delete_alert_rule(view.database_url, rule_id)
            state.flash("info", f"Rule {rule_id} deleted; what it fired stays in the history.")
            st.rerun()


HISTORY_COLUMNS = {
    "fired_at": st.column_config.DatetimeColumn("Fired (UTC)", format="YYYY-MM-DD HH:mm"),
    "message": st.column_config.TextColumn("Alert", width="large"),
    "rule_id": st.column_config.NumberColumn("Rule", format="%d", width="small"),
    "snapshot_at": st.column_config.DatetimeColumn("Data as of (UTC)", format="YYYY-MM-DD HH:mm"),
    "delivered_at": st.column_config.DatetimeColumn("Sent to webhook (UTC)", format="YYYY-MM-DD HH:mm"),
    "delivery_error": st.column_config.TextColumn("Webhook error"),
}


def render_history(events: pd.DataFrame) -> None:
    st.subheader("History")
    if events.empty:
        st.info("No alert has fired yet.", icon="🕊️")
        return
    ui.render_table(events, "alert_history", HISTORY_COLUMNS, key="alerts_history")


coins = data.load_mart(view.database_url, view.version)[["id", "name", "symbol"]]
try:
    rules = data.load_alert_rules(view.database_url, view.version)
    events = data.load_alert_events(view.database_url, view.version, data.newest_alert_event(view.database_url))
except data.DataUnavailable:  # the alert tables come with the next run, or the first rule saved
    rules = events = pd.DataFrame()

render_new_rule(coins)
render_rules(rules, coins)
render_history(events)
if view.settings.alerts_webhook_url:
    st.caption("Fired alerts are also POSTed as JSON to the webhook in `ALERTS_WEBHOOK_URL`.")
else:
    st.caption("Set `ALERTS_WEBHOOK_URL` to have fired alerts POSTed as JSON to a webhook.")
