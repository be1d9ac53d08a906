"""API-key check for the /admin routes."""

from __future__ import annotations

import hmac

from flask import current_app, request

from app.errors import error_body

API_KEY_HEADER = "X-API-Key"


def require_api_key():
    """Before-request hook: /admin answers 401 unless the configured key is sent."""
    expected: str | None = current_app.config["AGENTED_API_KEY"]
    if expected is None or not _is_admin_path(request.path):
        return None
    given = request.headers.get(API_KEY_HEADER, "")
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    body, status = error_body(
        401, "unauthorized", f"missing or wrong {API_KEY_HEADER} header"
    )
    # RFC 9110 15.5.2: a 401 names the scheme the client should use
    return body, status, {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}


def _is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")
