"""The application factory."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from flask import Flask

from app.auth import require_api_key
from app.broker import Broker
from app.db import Database
from app.errors import register_error_handlers
from app.logs import assign_request_id, echo_request_id
from app.routes import debug, executions, health, sessions
from app.runner import ExecutionRunner
from app.sessions import SessionService
from app.settings import Settings
from app.store import ExecutionStore, SessionStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What the routes reach through `current_app.extensions["agented"]`."""

    settings: Settings
    db: Database
    executions: ExecutionStore
    broker: Broker
    runner: ExecutionRunner
    sessions: SessionService


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides environment variables, for tests."""
    settings = Settings.from_env({**os.environ, **(config or {})})
    app = Flask("app")
    app.config.update(
        AGENTED_API_KEY=settings.api_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )

    # storage first: readiness and the routes need it
    services = _services(settings)
    recovered = services.executions.interrupt_unfinished()
    app.extensions["agented"] = services

    # every request gets an id, echoed back and put on each log line
    app.before_request(assign_request_id)
    app.after_request(echo_request_id)
    register_error_handlers(app)

    # /admin needs the API key when one is configured, unknown paths included
    app.before_request(require_api_key)
    app.register_blueprint(health.bp)
    app.register_blueprint(executions.bp)
    app.register_blueprint(sessions.bp)
    if settings.debug_routes:
        app.register_blueprint(debug.bp)

    log.info(
        "app ready",
        extra={
            "db_path": str(settings.db_path),
            "recovered": recovered,
            "debug_routes": settings.debug_routes,
            "auth": settings.api_key is not None,
        },
    )
    return app


def begin_shutdown(app: Flask) -> None:
    """End every open event stream, and any opened later, with a `shutdown` event.

    For a server that is stopping: streams never end by themselves, and it waits
    for open responses before it exits. Sets a flag and queues wake-ups, nothing
    more, so a signal handler may call it (from a greenlet of its own under gevent).
    """
    streams = app.extensions["agented"].broker.close()
    log.info("event streams closing", extra={"streams": streams})


def shutdown(app: Flask) -> None:
    """Stop running executions and mark them interrupted; for process exit."""
    stopped = app.extensions["agented"].runner.shutdown()
    if stopped:
        log.warning("executions interrupted at shutdown", extra={"count": stopped})


def _services(settings: Settings) -> Services:
    db = Database(settings.db_path)
    db.init_schema()
    store = ExecutionStore(db)
    broker = Broker()
    runner = ExecutionRunner(
        store,
        broker,
        agent_command=settings.agent_command,
        timeout=settings.execution_timeout,
        cancel_grace=settings.cancel_grace,
    )
    sessions_service = SessionService(SessionStore(db), store, runner)
    return Services(settings, db, store, broker, runner, sessions_service)
