"""The Bugsink test server stores what a real sentry-sdk client sends it."""

from __future__ import annotations

import pytest
import sentry_sdk

from tests.support.bugsink import BugsinkServer

pytestmark = pytest.mark.proxy


def _send_errors(dsn: str, message: str, count: int = 1) -> list[str]:
    """Raise and capture `count` identical errors with a client of their own."""
    client = sentry_sdk.Client(dsn=dsn)
    event_ids = []
    with sentry_sdk.isolation_scope(), sentry_sdk.new_scope() as scope:
        scope.set_client(client)
        for _ in range(count):
            try:
                raise LookupError(message)
            except LookupError as error:
                event_ids.append(sentry_sdk.capture_exception(error))
    client.close(timeout=10)
    assert all(event_ids), "the SDK dropped an event before sending it"
    return event_ids


def test_error_sent_by_sdk_is_retrievable_by_its_event_id(
    bugsink: BugsinkServer,
) -> None:
    project = bugsink.create_project("sdk-roundtrip")

    [event_id] = _send_errors(project.dsn, "no such agent: demo")
    event = bugsink.wait_for_event(project, event_id, timeout=30)

    assert event["event_id"].replace("-", "") == event_id
    [exception] = event["data"]["exception"]["values"]
    assert exception["type"] == "LookupError"
    assert exception["value"] == "no such agent: demo"


def test_identical_errors_group_into_one_issue_counting_each_event(
    bugsink: BugsinkServer,
) -> None:
    project = bugsink.create_project("grouping")

    event_ids = _send_errors(project.dsn, "same failure", count=3)
    for event_id in event_ids:
        bugsink.wait_for_event(project, event_id, timeout=30)

    [issue] = bugsink.issues(project)
    stored_ids = [e["event_id"].replace("-", "") for e in bugsink.events(project)]
    assert issue["digested_event_count"] == 3
    assert sorted(stored_ids) == sorted(event_ids)


def test_background_worker_digests_events_when_not_eager(
    worker_bugsink: BugsinkServer,
) -> None:
    project = worker_bugsink.create_project("worker")

    [event_id] = _send_errors(project.dsn, "digested later")
    event = worker_bugsink.wait_for_event(project, event_id, timeout=30)

    assert event["data"]["exception"]["values"][0]["value"] == "digested later"
