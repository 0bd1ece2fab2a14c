"""Fired alerts POSTed to ALERTS_WEBHOOK_URL as JSON: bounded in time and size, never raising.

Why this shape: the run that fired an alert is already recorded (and its lock released) when
delivery starts, and the caller (scheduler, refresh button, CLI) waits for delivery at most
ALERTS_WEBHOOK_TIMEOUT_SECONDS in all. The events table is the queue: an event not delivered
(receiver down, HTTP 500, deadline) is tried again after the next successful run, up to
ALERTS_WEBHOOK_MAX_ATTEMPTS times, and only while it is less than a day old. Every attempt is a
row in ``alert_deliveries``; the event keeps the last error.

A request is one POST with (connect, read) timeouts and, around it, a wall-clock deadline
(a server trickling bytes cannot stretch it); redirects are not followed; at most
``MAX_RESPONSE_BYTES`` of the answer are read; no proxy, netrc or session headers from the
environment (``trust_env`` off), so nothing but the JSON body leaves: never the CoinGecko key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import Engine, insert, select, update

from pipeline import logs
from pipeline.config import Settings
from pipeline.db import utcnow
from pipeline.schema import alert_deliveries, alert_events, alert_rules

log = logs.get_logger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 3.0
#: Events older than this are not sent any more (a webhook configured today does not replay last month).
DELIVERY_WINDOW = timedelta(days=1)
#: Events tried per run at most (the rest wait for the next run).
BATCH = 50
USER_AGENT = "crypto-market-analytics-alerts/1"
ERROR_LIMIT = 300


@dataclass(frozen=True)
class Attempt:
    """How one POST ended: ``ok`` on a 2xx answer; otherwise ``error`` says why in one line."""

    ok: bool
    status_code: int | None
    error: str | None
    elapsed_seconds: float

    @property
    def receiver_down(self) -> bool:
        """No HTTP answer at all (refused, timed out, deadline): stop trying for this run."""
        return not self.ok and self.status_code is None


@dataclass
class DeliveryReport:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    left: int = 0


def url_problem(url: str) -> str | None:
    """Why this URL cannot be a webhook (None when it can): only http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"the webhook URL must start with http:// or https:// (got {parts.scheme or 'no'} scheme)"
    if not parts.hostname:
        return "the webhook URL has no host"
    return None


def describe_url(url: str) -> str:
    """scheme://host[:port] only: a webhook path or query often carries a token."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_LIMIT else line[: ERROR_LIMIT - 1] + "…"


def _scrub(text: str, url: str) -> str:
    """An error message without the URL's path and query (requests names the URL it failed on)."""
    parts = urlsplit(url)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    return text.replace(secret, "/…") if len(secret) > 1 else text


def _post(url: str, body: bytes, timeout: float, outcome: list[Attempt], started: float) -> None:
    """The POST itself (run in a worker thread, so the caller's deadline holds whatever the server does)."""
    deadline = started + timeout
    try:
        with requests.Session() as session:
            session.trust_env = False  # no proxies, netrc credentials or CA overrides from the environment
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                timeout=(min(CONNECT_TIMEOUT_SECONDS, timeout), timeout),
                allow_redirects=False,
                stream=True,
            )
            with response:
                received = b""
                for chunk in response.iter_content(4096):
                    received += chunk
                    if len(received) >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                        break
            elapsed = time.monotonic() - started
            status = response.status_code
            if 200 <= status < 300:
                outcome.append(Attempt(True, status, None, elapsed))
            elif 300 <= status < 400:
                outcome.append(Attempt(False, status, f"HTTP {status}: redirects are not followed", elapsed))
            else:
                text = received[:ERROR_LIMIT].decode("utf-8", "replace")
                outcome.append(Attempt(False, status, _one_line(f"HTTP {status}: {text}".rstrip(": ")), elapsed))
    except Exception as exc:  # noqa: BLE001 - a worker thread must record, never raise (requests' errors too)
        message = _one_line(_scrub(f"{type(exc).__name__}: {exc}", url))
        outcome.append(Attempt(False, None, message, time.monotonic() - started))


def post_json(url: str, payload: Mapping[str, Any], timeout: float) -> Attempt:
    """POST ``payload`` to ``url``; returns within ``timeout`` seconds (plus a few ms), never raises."""
    started = time.monotonic()
    problem = url_problem(url)
    if problem:
        return Attempt(False, None, problem, 0.0)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    if len(body) > MAX_REQUEST_BYTES:
        return Attempt(False, None, f"the alert is {len(body):,} bytes, over the {MAX_REQUEST_BYTES:,}-byte limit", 0.0)
    if timeout <= 0:
        return Attempt(False, None, "no time left for the webhook in this run", 0.0)
    outcome: list[Attempt] = []
    worker = threading.Thread(
        target=_post, args=(url, body, timeout, outcome, started), name="alert-webhook", daemon=True
    )
    worker.start()
    worker.join(timeout)
    if outcome:
        return outcome[0]
    # The daemon thread ends on its own read timeout; nobody waits for it.
    return Attempt(False, None, f"no answer within the {timeout:g}-second deadline", time.monotonic() - started)


def event_payload(event: Mapping[str, Any], rule: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON a receiver gets: the rule, the message, the value and the snapshot it describes."""

    def iso(value: object) -> str | None:
        return value.isoformat() if isinstance(value, datetime) else None if value is None else str(value)

    return {
        "event_id": event["event_id"],
        "rule": {
            "id": event["rule_id"],
            "kind": event["kind"],
            "threshold": event["threshold"],
            "change_window": rule["change_window"] if rule else None,
            "note": rule["note"] if rule else None,
        },
        "coin": event["coin_id"],
        "message": event["message"],
        "value": event["value"],
        "snapshot_at": iso(event["snapshot_at"]),
        "fired_at": iso(event["fired_at"]),
    }


def deliver_pending(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    post: Callable[[str, Mapping[str, Any], float], Attempt] = post_json,
) -> DeliveryReport:
    """Send the events not yet delivered, within ALERTS_WEBHOOK_TIMEOUT_SECONDS in all."""
    report = DeliveryReport()
    url = settings.alerts_webhook_url
    if not url:
        return report
    now = now or utcnow()
    budget_end = time.monotonic() + settings.alerts_webhook_timeout_seconds
    e = alert_events
    with engine.connect() as conn:
        pending = [
            dict(row._mapping)
            for row in conn.execute(
                select(e)
                .where(
                    e.c.delivered_at.is_(None),
                    e.c.delivery_attempts < settings.alerts_webhook_max_attempts,
                    e.c.fired_at >= now - DELIVERY_WINDOW,
                )
                .order_by(e.c.event_id)
                .limit(BATCH)
            )
        ]
        rule_ids = {event["rule_id"] for event in pending}
        rules = {
            row.rule_id: dict(row._mapping)
            for row in conn.execute(select(alert_rules).where(alert_rules.c.rule_id.in_(rule_ids)))
        }
    for number, event in enumerate(pending):
        remaining = budget_end - time.monotonic()
        if remaining <= 0:
            report.left = len(pending) - number
            break
        attempt = post(url, event_payload(event, rules.get(event["rule_id"])), remaining)
        _record(engine, event, attempt)
        report.attempted += 1
        if attempt.ok:
            report.delivered += 1
        else:
            report.failed += 1
            log.warning(
                "alert %s not delivered to %s: %s", event["event_id"], describe_url(url), attempt.error or "failed"
            )
            if attempt.receiver_down:
                report.left = len(pending) - number - 1
                break
    return report


def _record(engine: Engine, event: Mapping[str, Any], attempt: Attempt) -> None:
    number = int(event["delivery_attempts"]) + 1
    at = utcnow()
    with engine.begin() as conn:
        conn.execute(
            insert(alert_deliveries).values(
                event_id=event["event_id"],
                attempt=number,
                attempted_at=at,
                status_code=attempt.status_code,
                error=attempt.error,
                elapsed_ms=round(attempt.elapsed_seconds * 1000, 1),
            )
        )
        conn.execute(
            update(alert_events)
            .where(alert_events.c.event_id == event["event_id"])
            .values(
                delivery_attempts=number,
                delivered_at=at if attempt.ok else None,
                delivery_error=None if attempt.ok else attempt.error,
            )
        )
