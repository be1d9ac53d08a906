"""Reading back what the Sentry SDK sent, for every recorder the tests use.

The in-memory transport, the recording sink and the fault sink each keep
envelopes their own way; `EnvelopeViews` gives them the same views of what those
envelopes hold.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

from sentry_sdk.envelope import Envelope, Item


class EnvelopeViews:
    """Item payloads by type; a subclass says what it recorded in `recorded()`."""

    def recorded(self) -> list[Envelope]:
        raise NotImplementedError

    def items(self, item_type: str) -> list[dict[str, Any]]:
        payloads = (
            item_json(item)
            for envelope in self.recorded()
            for item in envelope.items
            if item.type == item_type
        )
        return [payload for payload in payloads if payload is not None]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.items("event")

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return self.items("transaction")


def item_json(item: Item) -> Any:
    """The item's JSON; the SDK decodes only events and transactions itself."""
    if item.payload.json is not None:
        return item.payload.json
    try:
        return json.loads(item.payload.get_bytes())
    except ValueError:
        return None


def decompress(body: bytes, encoding: str | None) -> bytes:
    """An envelope body as the SDK's HTTP transport compressed it."""
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding in (None, "", "identity"):
        return body
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


def wait_until(
    holds: Callable[[], Any], timeout: float, describe: Callable[[], str]
) -> None:
    """Poll every 0.05 s until `holds()`; TimeoutError saying `describe()` after."""
    deadline = time.monotonic() + timeout
    while not holds():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{describe()} after {timeout} s")
        time.sleep(0.05)
