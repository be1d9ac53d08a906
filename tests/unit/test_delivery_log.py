"""Lost events are logged once per reason and window, with how many were lost."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import sentry_sdk
from freezegun import freeze_time

from app.error_tracking import DeliveryLog, ReportingHttpTransport, init_error_tracking
from app.settings import SentrySettings
from tests.support.sentry_capture import TEST_DSN

pytestmark = pytest.mark.sanity


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    return [
        (r.reason, r.count)
        for r in caplog.records
        if r.getMessage() == "error tracking events lost"
    ]


@pytest.mark.verifies("F-2")
def test_first_loss_is_logged_then_counted_quietly_until_the_window_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with freeze_time("2026-12-04 12:00:00") as frozen, caplog.at_level(logging.INFO):
        delivery = DeliveryLog(window=60.0, clock=time.monotonic)
        delivery.lost("network_error")
        for _ in range(99):
            delivery.lost("network_error")
        frozen.tick(59)
        delivery.lost("network_error")
        frozen.tick(2)
        delivery.lost("network_error")

    assert _lines(caplog) == [("network_error", 1), ("network_error", 101)]


@pytest.mark.verifies("F-2")
def test_each_reason_has_its_own_window(caplog: pytest.LogCaptureFixture) -> None:
    with freeze_time("2026-12-04 12:00:00"), caplog.at_level(logging.INFO):
        delivery = DeliveryLog(window=60.0, clock=time.monotonic)
        delivery.lost("network_error", 3)
        delivery.lost("queue_overflow", 5)
        delivery.lost("network_error", 2)

    assert _lines(caplog) == [("network_error", 3), ("queue_overflow", 5)]


@pytest.mark.verifies("F-2")
def test_production_transport_reports_lost_events_to_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(
        ReportingHttpTransport.delivery_log,
        "lost",
        lambda reason, quantity=1, category="error": seen.append(
            (reason, quantity, category)
        ),
    )
    init_error_tracking(SentrySettings(TEST_DSN, 0.0, "test", "agented@test"))
    transport = sentry_sdk.get_client().transport

    assert isinstance(transport, ReportingHttpTransport)
    transport.record_lost_event("ratelimit_backoff", data_category="error")
    transport.record_lost_event("ratelimit_backoff", data_category="span", quantity=9)
    transport.record_lost_event("network_error", data_category="transaction")
    assert seen == [
        ("ratelimit_backoff", 1, "error"),
        ("network_error", 1, "transaction"),
    ]


def _hold_sends(transport: ReportingHttpTransport, gate: threading.Event) -> None:
    """Every send waits for `gate`: a Sentry server that accepts and never answers."""

    def send_request(*args: object, **kwargs: object) -> None:
        gate.wait(timeout=10)

    transport._send_request = send_request  # type: ignore[method-assign]


def _raise_and_capture(count: int) -> None:
    for index in range(count):
        try:
            raise RuntimeError(f"boom {index}")
        except RuntimeError as error:
            sentry_sdk.capture_exception(error)


@pytest.mark.verifies("F-5")
@pytest.mark.parametrize("sink_answers", [False, True], ids=["hanging", "healthy"])
def test_close_says_how_many_events_it_dropped_unsent(
    caplog: pytest.LogCaptureFixture, sink_answers: bool
) -> None:
    init_error_tracking(SentrySettings(TEST_DSN, 0.0, "test", "agented@test"))
    client = sentry_sdk.get_client()
    gate = threading.Event()
    if sink_answers:
        gate.set()
    _hold_sends(client.transport, gate)

    with caplog.at_level(logging.INFO):
        _raise_and_capture(3)
        client.close(timeout=0.2 if not sink_answers else 5.0)
    gate.set()

    dropped = [
        r.count
        for r in caplog.records
        if r.getMessage() == "error tracking shutdown: events dropped unsent"
    ]
    assert dropped == ([] if sink_answers else [3])


@pytest.mark.verifies("F-2")
@pytest.mark.parametrize("reason", ["sample_rate", "before_send", "event_processor"])
def test_events_left_out_on_purpose_are_not_called_lost(
    caplog: pytest.LogCaptureFixture, reason: str
) -> None:
    with caplog.at_level(logging.INFO):
        delivery = DeliveryLog(window=60.0)
        delivery.lost(reason, 5)
        delivery.flush()

    assert _lines(caplog) == []


@pytest.mark.verifies("F-2")
def test_transactions_turned_away_are_told_apart_with_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bugsink answers 200 with X-Sentry-Rate-Limits for transactions: a fact of
    the server, not an outage; the line must not read like one."""
    with caplog.at_level(logging.INFO):
        delivery = DeliveryLog(window=60.0)
        delivery.lost("ratelimit_backoff", 1, "transaction")
        delivery.lost("ratelimit_backoff", 1, "error")

    records = [
        r for r in caplog.records if r.getMessage() == "error tracking events lost"
    ]
    assert [(r.category, hasattr(r, "hint")) for r in records] == [
        ("transaction", True),
        ("error", False),
    ]
    assert "SENTRY_TRACES_SAMPLE_RATE=0" in records[0].hint
