"""A Sentry-compatible ingest endpoint on loopback that keeps every envelope."""

from __future__ import annotations

import gzip
import re
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

from pytest_httpserver import HTTPServer
from sentry_sdk.envelope import Envelope
from werkzeug import Request, Response

ENVELOPE_PATH = re.compile(r"^/api/(\d+)/envelope/$")
SINK_KEY = "sinkpublickey0123456789abcdef"


class RecordingSink:
    """Decodes what the SDK's HTTP transport posts; the test reads it back."""

    def __init__(self, project_id: int = 1) -> None:
        self.project_id = project_id
        self.server = HTTPServer(host="127.0.0.1", port=0)
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
        body = _decompress(request.get_data(), request.headers.get("Content-Encoding"))
        with self._lock:
            self.raw.append(body)
            self.envelopes.append(Envelope.deserialize(body))
        return Response("{}", status=200, content_type="application/json")

    def items(self, item_type: str) -> list[dict[str, Any]]:
        with self._lock:
            envelopes = list(self.envelopes)
        return [
            item.payload.json
            for envelope in envelopes
            for item in envelope.items
            if item.type == item_type and item.payload.json is not None
        ]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.items("event")

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return self.items("transaction")

    def wait_for(
        self, predicate: Callable[[RecordingSink], bool], timeout: float = 30.0
    ) -> None:
        """Poll every 0.05 s until `predicate(self)` holds; TimeoutError after."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"sink holds {len(self.errors)} errors and "
                    f"{len(self.transactions)} transactions after {timeout} s"
                )
            time.sleep(0.05)


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding in (None, "", "identity"):
        return body
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")
