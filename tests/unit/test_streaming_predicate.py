"""The one predicate that tells SSE endpoints apart agrees with the app's URL map."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect, Rule
from werkzeug.test import EnvironBuilder

from app.error_tracking import TracesSampler, is_streaming_path
from app.streaming import SSE_MIMETYPE

pytestmark = pytest.mark.sanity


def _sample_url(rule: Rule, value: str) -> str:
    return rule.build({name: value for name in rule.arguments}, append_unknown=False)[1]


def _streams(client: FlaskClient, url: str, method: str) -> bool:
    response = client.open(url, method=method, json={"agent": "demo", "message": "m"})
    return response.mimetype == SSE_MIMETYPE


def _oracle(app: Flask, path: str, streaming_endpoints: set[str]) -> bool:
    """Whether Werkzeug would route this GET to a view that streams."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method="GET")
    except (HTTPException, RequestRedirect):
        return False
    return endpoint in streaming_endpoints


@pytest.fixture
def streaming_endpoints(app: Flask, client: FlaskClient) -> set[str]:
    """Endpoints whose view answers text/event-stream, found by calling each one."""
    session = client.post("/admin/sessions", json={"agent": "demo"}).json
    execution = client.post(
        "/admin/executions", json={"agent": "demo", "prompt": "p"}
    ).json
    client.delete(f"/admin/executions/{execution['id']}")
    ids = {"session_id": session["id"], "execution_id": execution["id"]}

    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or "GET" not in (rule.methods or ()):
            continue
        url = rule.build(ids, append_unknown=False)[1]
        if _streams(client, url, "GET"):
            found.add(rule.endpoint)
    return found


@pytest.mark.verifies("OBS02-T4")
def test_predicate_matches_every_rule_that_streams(
    app: Flask, client: FlaskClient, streaming_endpoints: set[str]
) -> None:
    assert streaming_endpoints == {
        "executions.stream_execution",
        "sessions.stream_session",
    }
    for rule in app.url_map.iter_rules():
        url = _sample_url(rule, "abc123")
        expected = rule.endpoint in streaming_endpoints
        assert is_streaming_path(url) is expected, (rule.rule, url)


@pytest.mark.verifies("OBS02-T4")
@pytest.mark.parametrize(
    "path",
    [
        "/admin/sessions/abc/output",
        "/admin/sessions/abc/stop",
        "/admin/sessions/abc/messages",
        "/admin/sessions/abc",
        "/admin/executions/abc",
        "/admin/sessions/stream",
        "/admin/xsessions/abc/stream",
        "/admin/sessions/abc/streams",
        "/admin/sessions/abc/stream/extra",
        "/admin/sessions/abc/stream/",
        "/Admin/sessions/abc/stream",
        "/admin/sessions/abc/Stream",
        "/admin/sessions/a/b/stream",
        "/admin/sessions//stream",
        "/admin/sessions/abc/stream\n",
        "/prefix/admin/sessions/abc/stream",
        "/admin//sessions/abc/stream",
    ],
)
def test_json_and_near_miss_paths_are_not_streams(path: str) -> None:
    assert not is_streaming_path(path)


segments = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/?#"),
    min_size=0,
    max_size=12,
)
noise = st.sampled_from(
    ["", "/", "x", "s", "/extra", "%2F", "/stream", "stream", "S", "\n"]
)


@st.composite
def near_stream_paths(draw: st.DrawFn) -> str:
    """Paths around the stream routes: prefixes, ids, encoded slashes, case, tails."""
    prefix = draw(st.sampled_from(["", "/", "/x", "/api", "/admin/admin"]))
    area = draw(
        st.sampled_from(["executions", "sessions", "xsessions", "Sessions", "session"])
    )
    ident = draw(segments)
    tail = draw(st.sampled_from(["stream", "streams", "Stream", "output", "stop", ""]))
    return f"{prefix}/admin/{area}/{ident}/{tail}{draw(noise)}"


@pytest.mark.verifies("OBS02-T4")
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=near_stream_paths(), query=st.sampled_from(["", "?a=1", "?token=x/stream"]))
@example(raw="/admin/executions/%2F/stream", query="")
@example(raw="/admin/sessions/é中/stream", query="?x=1")
def test_sampler_agrees_with_the_url_map(
    app: Flask, streaming_endpoints: set[str], raw: str, query: str
) -> None:
    # the sampler sees the WSGI environ; Werkzeug routes on its decoded PATH_INFO
    path = unquote(raw)
    environ = EnvironBuilder(path="/", query_string=query.lstrip("?")).get_environ()
    # the server decodes %2F and hands over UTF-8 bytes as latin-1 (PEP 3333)
    environ["PATH_INFO"] = path.encode("utf-8", "surrogatepass").decode("latin-1")
    rate = TracesSampler(1.0)({"wsgi_environ": environ})

    expected = _oracle(app, path, streaming_endpoints)
    assert (rate == 0.0) == expected, (raw, query, environ["PATH_INFO"])
