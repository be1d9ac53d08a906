"""Liveness and readiness probes."""

from __future__ import annotations

import logging
import sqlite3

from flask import Blueprint

from app.errors import error_body
from app.routes import services

bp = Blueprint("health", __name__, url_prefix="/health")
log = logging.getLogger(__name__)


@bp.get("/liveness")
def liveness():
    return {"status": "ok"}


@bp.get("/readiness")
def readiness():
    try:
        services().db.ping()
    except sqlite3.Error as exc:
        log.warning("readiness check failed", extra={"error": str(exc)})
        return error_body(503, "not_ready", "the database is not reachable")
    return {"status": "ok", "database": "ok"}
