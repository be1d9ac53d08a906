"""Server-Sent Events: wire format, resume ids, heartbeats, the broker and the feed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st

from app.broker import Broker
from app.db import Database
from app.store import ExecutionStore
from app.streaming import (
    Heartbeat,
    execution_events,
    parse_last_event_id,
    sse_comment,
    sse_event,
)
from tests.support.sse import parse_sse

pytestmark = pytest.mark.sanity

DEADLINE = 5.0


def collect_until_complete(
    events: Iterator[str], deadline: float = DEADLINE
) -> list[dict[str, Any]]:
    """Read the feed up to its `complete` event, failing past the deadline."""
    seen: list[dict[str, Any]] = []
    end = time.monotonic() + deadline
    for chunk in events:
        seen.extend(parse_sse(chunk))
        if seen and seen[-1].get("event") == "complete":
            return seen
        if time.monotonic() > end:
            break
    pytest.fail(f"no complete event within {deadline} s: {seen}")


@pytest.fixture
def store(tmp_path: Path) -> ExecutionStore:
    db = Database(tmp_path / "agented.db")
    db.init_schema()
    return ExecutionStore(db)


@pytest.fixture
def broker() -> Broker:
    return Broker()


def new_execution(store: ExecutionStore, status: str, lines: int = 0) -> str:
    execution_id = store.create("demo", "p", ["agent"], None)["id"]
    for seq in range(1, lines + 1):
        store.append_line(execution_id, seq, f"line {seq}")
    store.update(execution_id, status=status, exit_code=0 if status else None)
    return execution_id


# --- wire format ---------------------------------------------------------------


def test_event_has_name_id_and_json_data_then_a_blank_line() -> None:
    wire = sse_event("log", {"seq": 3, "line": "hi"}, event_id=3)

    assert wire == 'event: log\nid: 3\ndata: {"seq": 3, "line": "hi"}\n\n'


def test_event_without_id_has_no_id_field() -> None:
    assert sse_event("status", {"status": "running"}) == (
        'event: status\ndata: {"status": "running"}\n\n'
    )


def test_newlines_in_data_cannot_end_the_event_early() -> None:
    wire = sse_event("log", {"line": "one\ntwo\r\nthree\rfour\u2028five"})

    events = parse_sse(wire)

    assert wire.count("\n\n") == 1
    assert "\r" not in wire
    assert events == [
        {"event": "log", "data": {"line": "one\ntwo\r\nthree\rfour\u2028five"}}
    ]


@given(text=st.text(), event_id=st.none() | st.integers(0, 10**18))
def test_any_line_round_trips_through_one_event(text: str, event_id: int) -> None:
    wire = sse_event("log", {"line": text}, event_id=event_id)

    (event,) = parse_sse(wire)

    assert event["data"] == {"line": text}
    assert event.get("id") == (None if event_id is None else str(event_id))


def test_comment_is_a_colon_line_ignored_by_clients() -> None:
    assert sse_comment("heartbeat") == ": heartbeat\n\n"
    assert parse_sse(sse_comment("heartbeat")) == [{"comment": "heartbeat"}]


# --- Last-Event-ID -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 0),
        ("", 0),
        ("   ", 0),
        ("0", 0),
        ("42", 42),
        (" 7 ", 7),
        ("9" * 18, int("9" * 18)),
    ],
    ids=["absent", "empty", "blank", "zero", "number", "padded", "longest"],
)
def test_last_event_id_gives_the_seq_to_resume_after(
    raw: str | None, expected: int
) -> None:
    assert parse_last_event_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["-1", "+5", "1.5", "1e3", "0x10", "abc", "12abc", "١٢", "²", "9" * 19],
    ids=[
        "negative",
        "plus",
        "fraction",
        "exponent",
        "hex",
        "letters",
        "trailing-letters",
        "arabic-indic-digits",
        "superscript",
        "too-long",
    ],
)
def test_last_event_id_that_is_not_plain_digits_is_rejected(raw: str) -> None:
    with pytest.raises(ValueError, match="non-negative whole number"):
        parse_last_event_id(raw)


@given(seq=st.integers(0, 10**18 - 1))
def test_any_seq_we_sent_is_accepted_back(seq: int) -> None:
    assert parse_last_event_id(str(seq)) == seq


# --- heartbeat -----------------------------------------------------------------


def test_heartbeat_follows_the_monotonic_clock() -> None:
    """Under freezegun the default clock is the frozen one, as for any caller."""
    with freeze_time("2030-01-01") as frozen:
        heartbeat = Heartbeat(15.0)

        frozen.tick(14.9)
        assert not heartbeat.due()

        frozen.tick(0.2)
        assert heartbeat.due()


def test_heartbeat_is_due_only_after_its_interval_since_last_sent() -> None:
    with freeze_time("2030-01-01") as frozen:
        heartbeat = Heartbeat(15.0, clock=time.monotonic)

        frozen.tick(14.9)
        assert not heartbeat.due()
        assert heartbeat.remaining() == pytest.approx(0.1)

        frozen.tick(0.1)
        assert heartbeat.due()

        heartbeat.sent()
        assert not heartbeat.due()
        assert heartbeat.remaining() == pytest.approx(15.0)


# --- broker --------------------------------------------------------------------


def test_publish_wakes_every_subscriber_of_the_key_only(broker: Broker) -> None:
    with (
        broker.subscribe("a") as first,
        broker.subscribe("a") as second,
        broker.subscribe("b") as other,
    ):
        broker.publish("a")

        assert first.get_nowait() is None
        assert second.get_nowait() is None
        assert other.empty()


def test_many_publishes_leave_one_pending_wakeup(broker: Broker) -> None:
    with broker.subscribe("a") as wakeups:
        for _ in range(100):
            broker.publish("a")

        assert wakeups.qsize() == 1
        wakeups.get_nowait()
        assert wakeups.empty()


def _fail_while_subscribed(broker: Broker, key: str) -> None:
    with broker.subscribe(key):
        assert broker.subscriber_count(key) == 2
        raise RuntimeError("client went away")


def test_leaving_a_subscription_removes_it_even_on_error(broker: Broker) -> None:
    with broker.subscribe("a"):
        assert broker.subscriber_count("a") == 1
        with pytest.raises(RuntimeError, match="went away"):
            _fail_while_subscribed(broker, "a")
        assert broker.subscriber_count("a") == 1

    assert broker.subscriber_count("a") == 0
    assert broker._subscribers == {}
    broker.publish("a")  # nobody listening is fine


# --- the execution feed --------------------------------------------------------


def test_finished_execution_replays_its_lines_then_completes(
    store: ExecutionStore, broker: Broker
) -> None:
    execution_id = new_execution(store, "succeeded", lines=3)

    events = parse_sse("".join(execution_events(store, broker, execution_id)))

    assert events == [
        {"event": "log", "id": "1", "data": {"seq": 1, "line": "line 1"}},
        {"event": "log", "id": "2", "data": {"seq": 2, "line": "line 2"}},
        {"event": "log", "id": "3", "data": {"seq": 3, "line": "line 3"}},
        {"event": "status", "data": {"status": "succeeded"}},
        {
            "event": "complete",
            "data": {
                "id": execution_id,
                "status": "succeeded",
                "exit_code": 0,
                "lines": 3,
            },
        },
    ]
    assert broker.subscriber_count(execution_id) == 0


def test_feed_resumes_after_the_last_event_id(
    store: ExecutionStore, broker: Broker
) -> None:
    execution_id = new_execution(store, "failed", lines=3)

    events = parse_sse(
        "".join(execution_events(store, broker, execution_id, after_seq=2))
    )

    assert [e.get("id") for e in events if e["event"] == "log"] == ["3"]
    assert events[-1]["data"]["lines"] == 3


def test_idle_feed_sends_heartbeat_comments(
    store: ExecutionStore, broker: Broker
) -> None:
    execution_id = new_execution(store, "running")
    feed = execution_events(store, broker, execution_id, heartbeat_interval=0.05)

    first, second, third = next(feed), next(feed), next(feed)
    feed.close()

    assert parse_sse(first) == [{"event": "status", "data": {"status": "running"}}]
    assert second == third == sse_comment("heartbeat")
    assert broker.subscriber_count(execution_id) == 0


def test_feed_follows_lines_published_from_another_thread(
    store: ExecutionStore, broker: Broker
) -> None:
    """Wake-ups, not polling, carry it: the heartbeat is far longer than the run."""
    execution_id = new_execution(store, "queued")
    feed = execution_events(store, broker, execution_id, heartbeat_interval=60.0)
    assert parse_sse(next(feed))[0]["data"] == {"status": "queued"}

    def agent() -> None:
        store.update(execution_id, status="running")
        broker.publish(execution_id)
        for seq in range(1, 6):
            store.append_line(execution_id, seq, f"live {seq}")
            broker.publish(execution_id)
            time.sleep(0.005)
        store.update(execution_id, status="succeeded", exit_code=0)
        broker.publish(execution_id)

    writer = threading.Thread(target=agent)
    started = time.monotonic()
    writer.start()
    events = collect_until_complete(feed)
    writer.join(DEADLINE)

    assert time.monotonic() - started < 2.0
    logs = [e["data"]["line"] for e in events if e["event"] == "log"]
    assert logs == [f"live {seq}" for seq in range(1, 6)]
    assert {"event": "status", "data": {"status": "running"}} in events
    assert events[-2:] == [
        {"event": "status", "data": {"status": "succeeded"}},
        {
            "event": "complete",
            "data": {
                "id": execution_id,
                "status": "succeeded",
                "exit_code": 0,
                "lines": 5,
            },
        },
    ]
