"""A Sentry-compatible ingest endpoint on loopback that keeps every envelope."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from pytest_httpserver import HTTPServer
from sentry_sdk.envelope import Envelope
from werkzeug import Request, Response

from tests.support.envelopes import EnvelopeViews, decompress, wait_until

ENVELOPE_PATH = re.compile(r"^/api/(\d+)/envelope/$")
SINK_KEY = "sinkpublickey0123456789abcdef"


class _PromptHTTPServer(HTTPServer):
    """Stops within 0.05 s; serve_forever's default poll makes that up to 0.5 s."""

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.05)


class RecordingSink(EnvelopeViews):
    """Decodes what the SDK's HTTP transport posts; the test reads it back."""

    def __init__(self, project_id: int = 1) -> None:
        self.project_id = project_id
        self.server = _PromptHTTPServer(host="127.0.0.1", port=0)
        self._lock = threading.Lock()
        self.envelopes: list[Envelope] = []
        self.raw: list[bytes] = []

    def __enter__(self) -> RecordingSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.server.expect_request(ENVELOPE_PATH, method="POST").respond_with_handler(
            self._receive
        )
        self.server.start()

    def stop(self) -> None:
        if self.server.is_running():
            self.server.clear()
            self.server.stop()

    @property
    def dsn(self) -> str:
        return f"http://{SINK_KEY}@127.0.0.1:{self.server.port}/{self.project_id}"

    def _receive(self, request: Request) -> Response:
        body = decompress(request.get_data(), request.headers.get("Content-Encoding"))
        with self._lock:
            self.raw.append(body)
            self.envelopes.append(Envelope.deserialize(body))
        return Response("{}", status=200, content_type="application/json")

    def recorded(self) -> list[Envelope]:
        with self._lock:
            return list(self.envelopes)

    def wait_for(
        self, predicate: Callable[[RecordingSink], Any], timeout: float = 30.0
    ) -> None:
        """Poll until `predicate(self)` holds; TimeoutError after `timeout`."""
        wait_until(
            lambda: predicate(self),
            timeout,
            lambda: (
                f"sink holds {len(self.errors)} errors and "
                f"{len(self.transactions)} transactions"
            ),
        )
