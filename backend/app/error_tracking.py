"""Error tracking with Sentry: start-up, sampling of transactions, scrubbing."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import (
    parse_qsl,
    unquote,
    unquote_plus,
    urlencode,
    urlsplit,
)

import sentry_sdk
from flask import has_request_context, request
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.transport import HttpTransport

from app.settings import SentrySettings, dsn_host_and_project, dsn_key

log = logging.getLogger(__name__)

# The only routes that answer text/event-stream. Matched against the path Flask
# routes on (PATH_INFO), whole, case-sensitive, no trailing slash: exactly the URLs
# Werkzeug hands to the stream views.
_STREAM_PATH = re.compile(r"/admin/(?:executions|sessions)/[^/]+/stream")

FILTERED = "[Filtered]"
# a name containing any of these words holds a credential
_SENSITIVE_NAME = re.compile(
    r"auth|token|secret|passw|passphrase|pwd|api.?key|apikey|private.?key|credential"
    r"|(?:access|client|master|signing|encryption).?key"
    r"|signature|session|cookie|csrf|xsrf|jwt|bearer|otp|^key$|[_-]key$|^sig$"
    # short names: whole, or the last part of a dashed or underscored name
    r"|(?:^|[_-])(?:pass|pw)$"
    # an OAuth authorization code in a callback's query string
    r"|^code$",
    re.IGNORECASE,
)
# a value shorter than this is masked where it stands but not hunted elsewhere
_MIN_HUNTED_SECRET = 6
SHUTDOWN_TIMEOUT = 5.0


def is_streaming_path(path: str) -> bool:
    """True for the URL paths of the SSE endpoints, and only those."""
    # Werkzeug routes "//admin/..." like "/admin/...": leading slashes collapse
    return _STREAM_PATH.fullmatch("/" + path.lstrip("/")) is not None


def is_sensitive_name(name: str) -> bool:
    return _SENSITIVE_NAME.search(name) is not None


def init_error_tracking(
    settings: SentrySettings, *, api_key: str | None = None, transport: Any = None
) -> bool:
    """Start the Sentry client when a DSN is configured; True when it started."""
    if not settings.enabled:
        log.info("error tracking off", extra={"reason": "SENTRY_DSN is not set"})
        return False

    scrubber = SecretScrubber(known_secrets=[api_key, dsn_key(settings.dsn)])
    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=settings.release,
        send_default_pii=False,
        traces_sampler=TracesSampler(settings.traces_sample_rate),
        before_send=scrubber.scrub_error,
        before_send_transaction=scrubber.scrub_transaction,
        event_scrubber=EventScrubber(denylist=_denylist(), recursive=True),
        # the integrations this app uses, named; probing ~40 optional libraries on
        # every start costs a third of a second and may pick up what we never test
        integrations=[FlaskIntegration(transaction_style="endpoint")],
        auto_enabling_integrations=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        transport=transport or ReportingHttpTransport,
    )
    # Flask logs every unhandled exception it has already signalled; the SDK would
    # build that event a second time only for its dedupe step to drop it
    ignore_logger("app")

    # which process made the client, and whether gevent had patched it by then
    sentry_sdk.get_global_scope().set_context("process", process_facts())

    host, project = dsn_host_and_project(settings.dsn or "")
    log.info(
        "error tracking on",
        extra={
            "environment": settings.environment,
            "release": settings.release,
            "traces_sample_rate": settings.traces_sample_rate,
            "sentry_host": host,
            "sentry_project": project,
        },
    )
    return True


class DeliveryLog:
    """Says once per reason, kind of event and window that events were lost.

    The SDK keeps its own complaints to itself unless debug is on, so without this
    an unreachable or refusing Sentry would go unnoticed; one line per event would
    flood the log instead. Events left out on purpose (sampling, filters) are not
    losses and are not mentioned.
    """

    # the SDK's reasons for events it chose not to send
    INTENDED: ClassVar[frozenset[str]] = frozenset(
        {"sample_rate", "before_send", "event_processor"}
    )
    MEANING: ClassVar[dict[str, str]] = {
        "network_error": "the Sentry server could not be reached or answered an error",
        "send_error": "the Sentry server refused the envelope",
        "ratelimit_backoff": (
            "the Sentry server asked to hold this kind of event back "
            "(HTTP 429 or an X-Sentry-Rate-Limits header)"
        ),
        "queue_overflow": "more events at once than the SDK's queue holds",
        "backpressure": "the SDK sampled down because sending is unhealthy",
    }
    # a server that stores errors only (Bugsink is one) turns every transaction
    # away, for good; say what to do about it
    HINT: ClassVar[dict[tuple[str, str], str]] = {
        ("ratelimit_backoff", "transaction"): (
            "if errors still arrive, the server stores no transactions (Bugsink "
            "is such a server); set SENTRY_TRACES_SAMPLE_RATE=0 for it"
        ),
    }

    def __init__(self, window: float = 300.0, clock=time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], int] = {}
        self._last_logged: dict[tuple[str, str], float] = {}

    def lost(self, reason: str, quantity: int = 1, category: str = "error") -> None:
        if reason in self.INTENDED:
            return
        key = (reason, category)
        with self._lock:
            self._pending[key] = self._pending.get(key, 0) + quantity
            last = self._last_logged.get(key)
            if last is not None and self.clock() - last < self.window:
                return
            self._last_logged[key] = self.clock()
            count = self._pending.pop(key)
        self._say(key, count)

    def flush(self) -> None:
        """Say what was counted quietly since the last line, window or not."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, count in pending.items():
            self._say(key, count)

    def _say(self, key: tuple[str, str], count: int) -> None:
        reason, category = key
        fields = {
            "reason": reason,
            "count": count,
            "category": category,
            "meaning": self.MEANING.get(reason, "see sentry-sdk client reports"),
            "window_s": self.window,
        }
        if key in self.HINT:
            fields["hint"] = self.HINT[key]
        log.warning("error tracking events lost", extra=fields)


# envelope items that are events; client reports and the like are not counted
_EVENT_ITEMS = frozenset({"event", "transaction"})


def _event_items(envelope: Any) -> int:
    return sum(1 for item in envelope.items if item.type in _EVENT_ITEMS)


class ReportingHttpTransport(HttpTransport):
    """The SDK's HTTP transport, telling the log when events do not get through.

    Losses the SDK counts (network errors, rate limits, a full queue) go to the
    DeliveryLog. Events still in the queue when the client closes (at exit, after
    the SDK's flush has had its shutdown_timeout) are dropped without a word from
    the SDK; this transport counts them and says how many.
    """

    delivery_log = DeliveryLog()

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self._count_lock = threading.Lock()
        self._queued = 0  # events handed to the worker
        self._settled = 0  # ... that it has sent or given up on

    def capture_envelope(self, envelope: Any) -> None:
        events = _event_items(envelope)
        with self._count_lock:
            self._queued += events
        super().capture_envelope(envelope)

    def _send_envelope(self, envelope: Any) -> None:
        try:
            super()._send_envelope(envelope)
        finally:
            events = _event_items(envelope)
            with self._count_lock:
                self._settled += events

    def record_lost_event(
        self,
        reason: str,
        data_category: Any = None,
        item: Any = None,
        *,
        quantity: int = 1,
    ) -> None:
        super().record_lost_event(reason, data_category, item, quantity=quantity)
        refused = reason == "queue_overflow" and item is not None
        if refused and item.type in _EVENT_ITEMS:
            with self._count_lock:
                self._settled += 1  # refused at the door: never in the queue
        category = item.data_category if item is not None else data_category
        if category in ("error", "transaction"):
            self.delivery_log.lost(reason, quantity, category)

    @property
    def unsent(self) -> int:
        """Events queued and neither sent nor given up on yet."""
        with self._count_lock:
            return self._queued - self._settled

    def kill(self) -> None:
        unsent = self.unsent
        super().kill()
        self.delivery_log.flush()
        if unsent > 0:
            log.warning(
                "error tracking shutdown: events dropped unsent",
                extra={"count": unsent, "shutdown_timeout_s": SHUTDOWN_TIMEOUT},
            )


def last_event_id() -> str | None:
    """The id of the last event sent while handling this request, if any."""
    if not sentry_sdk.get_client().is_active():
        return None
    return sentry_sdk.last_event_id()


def process_facts() -> dict[str, Any]:
    """This process as error tracking sees it: pid, parent, gevent, client."""
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "gevent_patched": _gevent_patched(),
        "error_tracking": sentry_sdk.get_client().is_active(),
    }


def _gevent_patched() -> bool:
    if "gevent.monkey" not in sys.modules:
        return False
    return bool(sys.modules["gevent.monkey"].is_module_patched("socket"))


class TracesSampler:
    """Decides before routing: SSE streams never become transactions.

    The SDK closes a WSGI transaction when the view returns its iterator, so a
    stream's transaction would measure nothing and cost a slot in the queue.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, context: dict[str, Any]) -> float:
        environ = context.get("wsgi_environ") or {}
        if is_streaming_path(environ.get("PATH_INFO", "")):
            return 0.0
        parent = context.get("parent_sampled")
        if parent is not None:
            return 1.0 if parent else 0.0
        return self.rate


class SecretScrubber:
    """Masks credentials the SDK's defaults let through, in errors and transactions."""

    def __init__(self, known_secrets: Iterable[str | None] = ()) -> None:
        self.known = _spellings(known_secrets)

    def scrub_error(self, event: dict[str, Any], hint: dict[str, Any]) -> dict:
        return self.scrub(event)

    def scrub_transaction(self, event: dict[str, Any], hint: dict[str, Any]):
        # second line behind the sampler: a stream transaction that got this far
        if is_streaming_path(_event_path(event)):
            return None
        return self.scrub(event)

    def scrub(self, event: dict[str, Any]) -> dict[str, Any]:
        secrets = self.known | _request_secrets()
        req = event.get("request")
        if isinstance(req, dict):
            _scrub_request(req, secrets)
        if secrets:
            event = _replace_everywhere(event, _secret_pattern(secrets))
        return event


def _denylist() -> list[str]:
    extra = [
        "x_auth_token",
        "auth_token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_token",
        "client_secret",
        "signature",
        "jwt",
        "otp",
    ]
    return [*DEFAULT_DENYLIST, *extra]


def _event_path(event: dict[str, Any]) -> str:
    url = (event.get("request") or {}).get("url")
    if isinstance(url, str):
        return unquote(urlsplit(url).path)
    if (event.get("transaction_info") or {}).get("source") == "url":
        return str(event.get("transaction", ""))
    return ""


def _request_secrets() -> set[str]:
    """Values of this request's credential-like fields, to hunt everywhere."""
    if not has_request_context():
        return set()
    try:
        return _spellings(_credential_values())
    except Exception:  # an unreadable body must not cost the event
        log.debug("request secrets unreadable", exc_info=True)
        return set()


def _spellings(values: Iterable[Any]) -> set[str]:
    """Each secret as it may appear in an event: raw, or escaped by a repr.

    Percent-encoded spellings need no entry: `_mask_text` decodes before looking.
    """
    found = set()
    for value in values:
        if isinstance(value, str) and len(value) >= _MIN_HUNTED_SECRET:
            found |= {value, repr(value)[1:-1]}
    return found


def _credential_values() -> list[Any]:
    found = [v for k, v in request.headers.items() if is_sensitive_name(k)]
    found += list(request.cookies.values())
    found += [v for k, v in request.args.items(multi=True) if is_sensitive_name(k)]
    found += [v for k, v in request.form.items(multi=True) if is_sensitive_name(k)]
    body = request.get_json(silent=True) if request.is_json else None
    found += list(_sensitive_values(body))
    return found


def _sensitive_values(data: Any) -> Iterable[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if is_sensitive_name(str(key)) and isinstance(value, str | int | float):
                yield str(value)
            else:
                yield from _sensitive_values(value)
    elif isinstance(data, list):
        for item in data:
            yield from _sensitive_values(item)


def _scrub_request(req: dict[str, Any], secrets: set[str]) -> None:
    headers = req.get("headers")
    if isinstance(headers, dict):
        req["headers"] = {
            k: FILTERED if is_sensitive_name(k) else v for k, v in headers.items()
        }
    if isinstance(req.get("query_string"), str):
        req["query_string"] = _scrub_query(req["query_string"])
    if "cookies" in req:
        req["cookies"] = {k: FILTERED for k in (req["cookies"] or {})}
    if isinstance(req.get("data"), dict | list):
        req["data"] = _mask_keys(req["data"])
    elif isinstance(req.get("data"), str):
        req["data"] = _scrub_query(req["data"]) if "=" in req["data"] else req["data"]


def _scrub_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    masked = [(k, FILTERED if is_sensitive_name(k) else v) for k, v in pairs]
    return urlencode(masked)


def _mask_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: FILTERED if is_sensitive_name(str(k)) else _mask_keys(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_mask_keys(item) for item in data]
    return data


def _mask_text(text: str, pattern: re.Pattern[str]) -> str:
    """Mask secrets in `text`, also where it holds them percent-encoded.

    A query string or URL in a stack frame's locals (the WSGI environ, a Request's
    repr) may encode a secret in any of several ways; decoding the text once finds
    them all, and the decoded, masked text is what is kept.
    """
    if pattern.search(text):
        return pattern.sub(FILTERED, text)
    if "%" not in text and "+" not in text:
        return text
    for decoded in (unquote_plus(text), unquote(text)):
        if pattern.search(decoded):
            return pattern.sub(FILTERED, decoded)
    return text


def _secret_pattern(secrets: set[str]) -> re.Pattern[str]:
    # longest first, so a secret that contains another is masked whole
    ordered = sorted(secrets, key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in ordered))


def _replace_everywhere(data: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(data, str):
        return _mask_text(data, pattern)
    if isinstance(data, dict):
        return {k: _replace_everywhere(v, pattern) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_replace_everywhere(v, pattern) for v in data]
    return data
