"""Probes, the /admin API key, JSON errors and the request id every answer carries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

pytestmark = pytest.mark.sanity

API_KEY = "s3cret-key"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
# paths no route serves; /admin ones must still ask for the key first
UNKNOWN_ADMIN_PATHS = ["/admin", "/admin/", "/admin/nothing-here", "/admin/x/y/z"]


def admin_urls(app: Flask) -> list[tuple[str, str]]:
    """(method, url) for every /admin rule, with placeholder ids filled in."""
    adapter = app.url_map.bind("localhost")
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        url = adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, "abc"))
        urls += [(method, url) for method in sorted(rule.methods or ())]
    return urls


@pytest.fixture
def keyed_app(app_config: dict[str, str]) -> Any:
    from app.factory import create_app, shutdown

    app = create_app({**app_config, "AGENTED_API_KEY": API_KEY})
    yield app
    shutdown(app)


def test_liveness_and_readiness_answer_ok(client: FlaskClient) -> None:
    assert client.get("/health/liveness").json == {"status": "ok"}
    assert client.get("/health/readiness").json == {
        "status": "ok",
        "database": "ok",
    }


def test_readiness_is_503_json_when_the_database_is_gone(
    client: FlaskClient, app_config: dict[str, str]
) -> None:
    db_path = Path(app_config["AGENTED_DB_PATH"])
    for leftover in db_path.parent.glob(db_path.name + "*"):
        leftover.unlink()

    response = client.get("/health/readiness", headers={"X-Request-ID": "probe-1"})

    assert response.status_code == 503
    assert response.json == {
        "error": "not_ready",
        "message": "the database is not reachable",
        "request_id": "probe-1",
    }


@pytest.mark.parametrize("path", ["/nope", "/health", "/adminx", "/health/liveness/"])
def test_unknown_path_is_404_json(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json["error"] == "not_found"
    assert response.json["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/admin/executions", "GET, HEAD, OPTIONS, POST"),
        ("POST", "/health/liveness", "GET, HEAD, OPTIONS"),
        ("GET", "/admin/sessions/abc/stop", "OPTIONS, POST"),
    ],
)
def test_wrong_method_is_405_json_with_allow_header(
    client: FlaskClient, method: str, path: str, allow: str
) -> None:
    response = client.open(path, method=method)

    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.json["error"] == "method_not_allowed"
    assert response.json["request_id"] == response.headers["X-Request-ID"]


def test_unhandled_error_is_500_json_without_details(client: FlaskClient) -> None:
    response = client.post("/admin/debug/raise", headers={"X-Request-ID": "boom-1"})

    assert response.status_code == 500
    assert response.json == {
        "error": "internal_server_error",
        "message": "the server failed; see its log",
        "request_id": "boom-1",
    }
    assert b"Traceback" not in response.data
    assert b"DeliberateError" not in response.data


@pytest.mark.parametrize(
    "given",
    ["abc-123", "x" * 128, "trace=1;span=2", "a b"],
    ids=["plain", "longest", "punctuation", "space"],
)
def test_sane_request_id_is_echoed(client: FlaskClient, given: str) -> None:
    response = client.get("/health/liveness", headers={"X-Request-ID": given})

    assert response.headers["X-Request-ID"] == given


@pytest.mark.parametrize(
    "given",
    [None, "", "x" * 129, "tab\there", "bell\x07", "caf\u00e9"],
    ids=["absent", "empty", "too-long", "tab", "control", "non-ascii"],
)
def test_missing_or_insane_request_id_is_replaced_by_a_generated_one(
    client: FlaskClient, given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}

    response = client.get("/nope", headers=headers)

    generated = response.headers["X-Request-ID"]
    assert GENERATED_ID.match(generated)
    assert response.json["request_id"] == generated


def test_each_request_gets_its_own_generated_id(client: FlaskClient) -> None:
    ids = {client.get("/health/liveness").headers["X-Request-ID"] for _ in range(5)}

    assert len(ids) == 5


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_every_admin_route_needs_the_api_key(
    keyed_app: Flask, headers: dict[str, str]
) -> None:
    client = keyed_app.test_client()
    urls = admin_urls(keyed_app) + [("GET", p) for p in UNKNOWN_ADMIN_PATHS]
    assert ("GET", "/admin/executions/abc/stream") in urls

    answers = {
        (method, url): client.open(url, method=method, headers=headers, json={})
        for method, url in urls
    }

    wrong = {k: r.status_code for k, r in answers.items() if r.status_code != 401}
    assert wrong == {}
    for (method, _), response in answers.items():
        assert response.mimetype == "application/json"
        if method != "HEAD":
            assert response.json["error"] == "unauthorized"
            assert "X-API-Key" in response.json["message"]


def test_unauthorized_answer_carries_a_challenge(keyed_app: Flask) -> None:
    """RFC 9110, 15.5.2: a 401 MUST send WWW-Authenticate with at least one challenge.

    https://www.rfc-editor.org/rfc/rfc9110#section-15.5.2
    """
    response = keyed_app.test_client().get("/admin/executions")

    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate", "").strip()


def test_every_admin_route_works_with_the_api_key(keyed_app: Flask) -> None:
    client = keyed_app.test_client()

    answers = {
        (method, url): client.open(
            url, method=method, headers={"X-API-Key": API_KEY}, json={}
        ).status_code
        for method, url in admin_urls(keyed_app)
    }

    assert 401 not in answers.values(), answers
    assert client.get("/admin/executions", headers={"X-API-Key": API_KEY}).json == {
        "executions": []
    }


def test_health_stays_open_when_a_key_is_set(keyed_app: Flask) -> None:
    client = keyed_app.test_client()

    assert client.get("/health/liveness").status_code == 200
    assert client.get("/health/readiness").status_code == 200


def test_without_a_configured_key_admin_is_open(client: FlaskClient) -> None:
    assert client.get("/admin/executions").status_code == 200
