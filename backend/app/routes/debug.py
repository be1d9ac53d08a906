"""Deliberate failures for checking error tracking end to end; off by default."""

from __future__ import annotations

from flask import Blueprint, request

from app.error_tracking import process_facts

bp = Blueprint("debug", __name__, url_prefix="/admin/debug")


class DeliberateError(RuntimeError):
    """Raised on purpose by /admin/debug/raise."""


@bp.post("/raise")
def raise_error():
    # the message names the route only: request data stays out of exception text
    raise DeliberateError(f"deliberate failure from {request.path}")


@bp.get("/runtime")
def runtime():
    """Which process answered and whether it tracks errors; for the proxy suite."""
    return process_facts()
