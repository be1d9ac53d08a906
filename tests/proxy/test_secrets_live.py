"""Secrets never leave the real server: not in envelopes, not in logs; /admin is keyed.

The sanity suite proves the scrubber with an in-memory transport; here the whole
path runs: Gunicorn's gevent worker, the SDK's HTTP transport, gzip, a loopback
ingest server, and the server's own log at DEBUG.
"""

from __future__ import annotations

import json
import random
import string
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests

from tests.proxy.conftest import StartBackend
from tests.support.recording_sink import SINK_KEY, RecordingSink

pytestmark = pytest.mark.proxy

API_KEY = "agented-live-api-key-7f3a9c1e5b"
GENERATED_REQUESTS = 520
# envelopes the SDK may hold unsent before the next request waits: its queue takes
# 100, so a machine slower than the traffic loses no event the scan needs
MAX_BACKLOG = 50
BACKLOG_WAIT = 5.0
SEED = 20260604
# names the scrubber must recognise as credentials, in each place they can travel
CREDENTIAL_HEADERS = [
    "X-Auth-Token",
    "X-Foo-Key",
    "X-Service-Secret",
    "X-Upstream-Token",
    "X-Client-Password",
    "X-Signature",
]
CREDENTIAL_PARAMS = ["token", "api_key", "signature", "password", "access_token"]
CREDENTIAL_FIELDS = ["password", "client_secret", "api_token", "auth", "privateKey"]
PLACES = [
    "authorization",
    "cookie",
    "credential-header",
    "query",
    "json",
    "nested-json",
    "form",
    "wrong-api-key",
]
_TOKEN_CHARS = string.ascii_letters + string.digits + "-_.~"
_HEADER_CHARS = _TOKEN_CHARS + "+/="


@dataclass
class Planned:
    """One request carrying one generated secret in one place."""

    place: str
    secret: str
    method: str = "POST"
    path: str = "/admin/debug/raise"
    headers: dict[str, str] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def reaches_the_route(self) -> bool:
        return self.place != "wrong-api-key"


def plan_request(rng: random.Random) -> Planned:
    place = rng.choice(PLACES)
    chars = _HEADER_CHARS if place in ("authorization", "credential-header") else ""
    secret = "S3cr" + "".join(rng.choices(chars or _TOKEN_CHARS, k=rng.randint(8, 40)))
    planned = Planned(place, secret, headers={"X-API-Key": API_KEY})
    if place == "authorization":
        planned.headers["Authorization"] = f"{rng.choice(['Bearer', 'Basic'])} {secret}"
    elif place == "cookie":
        planned.headers["Cookie"] = f"{rng.choice(['sessionid', 'theme'])}={secret}"
    elif place == "credential-header":
        planned.headers[rng.choice(CREDENTIAL_HEADERS)] = secret
    elif place == "query":
        planned.kwargs["params"] = {rng.choice(CREDENTIAL_PARAMS): secret, "page": "2"}
    elif place == "json":
        planned.kwargs["json"] = {rng.choice(CREDENTIAL_FIELDS): secret, "prompt": "hi"}
    elif place == "nested-json":
        nested = {"options": [{rng.choice(CREDENTIAL_FIELDS): secret}]}
        planned.kwargs["json"] = {**nested, "prompt": "hi"}
    elif place == "form":
        planned.kwargs["data"] = {rng.choice(CREDENTIAL_FIELDS): secret, "p": "x"}
    elif place == "wrong-api-key":
        planned.headers["X-API-Key"] = secret
        planned.method, planned.path = rng.choice(
            [("GET", "/admin/executions"), ("POST", "/admin/debug/raise")]
        )
    if rng.random() < 0.15 and planned.reaches_the_route:
        planned.method, planned.path = "GET", "/admin/executions"
    return planned


def spellings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)}


def wire_text(sink: RecordingSink) -> str:
    """Every decompressed envelope, plus each JSON item re-encoded without escapes."""
    raw = [body.decode("utf-8", "replace") for body in sink.raw]
    items = [
        json.dumps(item, ensure_ascii=False)
        for kind in ("event", "transaction")
        for item in sink.items(kind)
    ]
    return "\n".join(raw + items)


def lost_errors(sink: RecordingSink) -> Counter[str]:
    """Errors the SDK says it dropped, by reason, from its client reports.

    `event_processor` is left out: Flask logs each unhandled exception and the SDK's
    logging integration makes a second event of it, which dedupe drops.
    """
    lost: Counter[str] = Counter()
    for envelope in sink.envelopes:
        for item in envelope.items:
            if item.type != "client_report":
                continue
            for entry in json.loads(item.payload.get_bytes())["discarded_events"]:
                if (
                    entry["category"] == "error"
                    and entry["reason"] != "event_processor"
                ):
                    lost[entry["reason"]] += entry["quantity"]
    return lost


def wait_for_backlog(sink: RecordingSink, sent: int) -> None:
    """Hold the traffic while more than MAX_BACKLOG envelopes are still on their
    way; at most BACKLOG_WAIT, as the count of what was sent is an estimate."""
    deadline = time.monotonic() + BACKLOG_WAIT
    while sent - len(sink.raw) > MAX_BACKLOG and time.monotonic() < deadline:
        time.sleep(0.002)


@pytest.mark.verifies("F-9")
def test_generated_secrets_never_reach_an_envelope_or_a_log_line(
    start_backend: StartBackend,
    recording_sink: RecordingSink,
    record_figure: Callable[[str, str], None],
) -> None:
    rng = random.Random(SEED)
    planned = [plan_request(rng) for _ in range(GENERATED_REQUESTS)]
    server = start_backend(
        SENTRY_DSN=recording_sink.dsn,
        SENTRY_TRACES_SAMPLE_RATE="1.0",
        AGENTED_API_KEY=API_KEY,
        LOG_LEVEL="DEBUG",
    )

    statuses = []
    sent_envelopes = 0
    with requests.Session() as session:
        for p in planned:
            response = session.request(
                p.method, server.url + p.path, headers=p.headers, timeout=10, **p.kwargs
            )
            statuses.append(response.status_code)
            # at 1.0 each request is a transaction, each 500 an error too
            sent_envelopes += 1 + (response.status_code == 500)
            wait_for_backlog(recording_sink, sent_envelopes)
    assert server.stop() == 0

    raised = sum(1 for p in planned if p.reaches_the_route and "raise" in p.path)
    wire, log = wire_text(recording_sink), server.log()
    leaked = [
        (p.place, p.secret)
        for p in planned
        if any(spelling in wire for spelling in spellings(p.secret))
    ]
    logged = [(p.place, p.secret) for p in planned if p.secret in log]
    received, lost = len(recording_sink.errors), lost_errors(recording_sink)
    record_figure(
        "F-9",
        f"{len(planned)} requests, {raised} errors raised: {received} received, "
        f"{dict(lost)} lost; {len(recording_sink.transactions)} transactions; "
        f"{len(wire) // 1024} KiB scanned, {len(leaked)} leaks",
    )
    assert statuses.count(500) == raised
    # every error is accounted for; most must arrive for the scan to mean anything
    assert received + sum(lost.values()) == raised
    assert received >= raised // 2
    assert recording_sink.transactions
    # the scan sees request data: harmless values are there, credentials masked
    assert "page=2" in wire
    assert "[Filtered]" in wire
    assert leaked == []
    assert API_KEY not in wire
    assert logged == []
    assert API_KEY not in log
    assert SINK_KEY not in log


def admin_routes() -> list[tuple[str, str]]:
    """(method, path) for every /admin rule of the app, ids filled with a dummy."""
    from app.factory import create_app, shutdown

    with tempfile.TemporaryDirectory() as folder:
        config = {"AGENTED_DB_PATH": str(Path(folder) / "a.db")}
        app = create_app({**config, "AGENTED_DEBUG_ROUTES": "1"})
        try:
            rules = list(app.url_map.iter_rules())
        finally:
            shutdown(app)
    routes = []
    for rule in rules:
        if not rule.rule.startswith("/admin"):
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "some-id")
        routes += [(m, path) for m in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


@pytest.mark.verifies("F-10")
def test_every_admin_route_and_stream_needs_the_api_key(
    start_backend: StartBackend,
) -> None:
    server = start_backend(AGENTED_API_KEY=API_KEY)
    keyed = {"X-API-Key": API_KEY}
    created = requests.post(
        f"{server.url}/admin/executions",
        json={"agent": "command", "prompt": "hello"},
        headers=keyed,
        timeout=10,
    )
    stream = f"/admin/executions/{created.json()['id']}/stream"
    routes = [*admin_routes(), ("GET", stream), ("GET", "/admin/no-such-route")]

    refused = []
    for method, path in routes:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": API_KEY.upper()}):
            answer = requests.request(
                method, server.url + path, headers=headers, timeout=10
            )
            is_json = answer.headers.get("Content-Type") == "application/json"
            refused.append((method, path, answer.status_code, is_json))
    with requests.get(
        server.url + stream, headers=keyed, timeout=10, stream=True
    ) as followed:
        followed_type = followed.headers["Content-Type"]

    assert created.status_code == 201
    assert len(routes) >= 12
    assert [r for r in refused if r[2:] != (401, True)] == []
    assert followed_type.startswith("text/event-stream")
