"""An in-memory Sentry transport that keeps exactly what would go over the wire."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from app.error_tracking import init_error_tracking
from app.settings import SentrySettings
from tests.support.envelopes import EnvelopeViews

# loopback, never listened on: the recording transport replaces the HTTP one
TEST_DSN = "http://testkey1234567890@127.0.0.1:9/42"


class RecordingTransport(Transport):
    """Serialises each envelope as the HTTP transport would, and keeps the bytes."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.wire: list[bytes] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.wire.append(envelope.serialize())


@dataclass
class Capture(EnvelopeViews):
    """Views of what the SDK sent, decoded back from the serialised envelopes."""

    transport: RecordingTransport
    settings: SentrySettings
    started: bool = field(default=False)

    @property
    def wire(self) -> list[bytes]:
        return self.transport.wire

    def recorded(self) -> list[Envelope]:
        return [Envelope.deserialize(raw) for raw in self.wire]

    def wire_text(self) -> str:
        """Every byte sent, decoded, with JSON escapes undone, for leak searches."""
        texts = [raw.decode("utf-8", "replace") for raw in self.wire]
        decoded = [
            json.dumps(item)
            for kind in ("event", "transaction")
            for item in self.items(kind)
        ]
        return "\n".join(texts + decoded)


def start_capture(
    *,
    rate: float = 1.0,
    environment: str = "test",
    release: str = "agented@test",
    api_key: str | None = None,
    dsn: str = TEST_DSN,
) -> Capture:
    """Initialise the SDK through the project's own init, with a recording transport."""
    settings = SentrySettings(
        dsn=dsn, traces_sample_rate=rate, environment=environment, release=release
    )
    started = init_error_tracking(
        settings, api_key=api_key, transport=RecordingTransport
    )
    transport = sentry_sdk.get_client().transport
    assert isinstance(transport, RecordingTransport)
    return Capture(transport=transport, settings=settings, started=started)
