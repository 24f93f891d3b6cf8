"""The WebSocket protocol of one connection: the streams its URL asks for, and its control messages.

Combined streams ``/stream?streams=btcusdt@trade/...`` wrap each event as ``{"stream": ..., "data": ...}``;
raw streams ``/ws/btcusdt@trade`` send the bare event; ``/stream`` or ``/ws`` without streams subscribe
later (web-socket-streams.md § General WSS information). Live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` /
``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` / ``GET_PROPERTY`` get the documented answers and error messages
(§ Live Subscribing/Unsubscribing to streams, § Error Messages), with at most 1,024 streams per connection
(§ WebSocket Limits). Stream names arrive percent-encoded in the URL (CHANGELOG.md § 2025-12-02
"URL-encoded urls").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from k2.producer.binance_standin.answers import error
from k2.producer.binance_standin.tape import TapeFrame

# web-socket-streams.md § WebSocket Limits
MAX_STREAMS_PER_CONNECTION = 1024
# web-socket-streams.md § Error Messages lists these as the accepted methods
WS_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")

_REQUEST_ID = re.compile(r"[A-Za-z0-9]{0,36}")


@dataclass
class Subscriber:
    """What one connection listens to and how it wants frames."""

    streams: dict[str, None]  # subscribed streams in subscription order (LIST_SUBSCRIPTIONS)
    combined: bool  # web-socket-streams.md § Setting Properties: true on /stream, false on /ws
    silent: bool = False  # Script.silent_connections: answers pings, never gets a frame

    def text_for(self, frame: TapeFrame) -> str:
        """The frame as this connection's kind of stream (combined or raw) sends it."""
        return frame.text if self.combined or frame.raw_text is None else frame.raw_text


def requested_streams(path: str) -> tuple[bool, list[str]]:
    """(combined, streams) of a WebSocket request path; names percent-decoded as UTF-8, kept exact."""
    parts = urlsplit(path)
    if parts.path.startswith("/ws"):
        names = unquote(parts.path[len("/ws") :]).split("/")
        return False, [n for n in names if n]
    query = parse_qs(parts.query)
    names = "/".join(query.get("streams", [])).split("/")
    return True, [n for n in names if n]


def request_id(message: dict[str, Any]) -> tuple[bool, Any]:
    """(valid, id) of a control message. web-socket-streams.md § Live Subscribing: an id is a signed
    64-bit integer, an alphanumeric string of at most 36 characters, or null."""
    if "id" not in message:
        return False, None
    value = message["id"]
    if value is None or (type(value) is int and -(2**63) <= value < 2**63):
        return True, value
    if isinstance(value, str) and _REQUEST_ID.fullmatch(value):
        return True, value
    return False, None


def answer_control(subscriber: Subscriber, text: str, subscriptions: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """The answer to one control message (web-socket-streams.md § Live Subscribing/Unsubscribing,
    § Setting Properties, § Retrieving Properties, § Error Messages).

    Each well-formed SUBSCRIBE and UNSUBSCRIBE is appended to ``subscriptions`` as (method, streams).
    """
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        return error(3, f"Invalid JSON: expected value at line {exc.lineno} column {exc.colno}")
    if not isinstance(message, dict) or "method" not in message:
        return error(2, f"Invalid request: missing field `method` at line 1 column {len(text)}")
    method = message["method"]
    if method not in WS_METHODS:
        shown = json.dumps(method)
        column = text.find(shown) + len(shown) if shown in text else len(text)
        expected = ", ".join(f"`{m}`" for m in WS_METHODS)
        return error(
            2, f"Invalid request: unknown variant `{method}`, expected one of {expected} at line 1 column {column}"
        )
    valid, message_id = request_id(message)
    if not valid:
        return error(2, "Invalid request: request ID must be an unsigned integer")
    params = message.get("params", [])
    if not isinstance(params, list):
        return error(2, "Invalid request: params must be a list")
    if method == "LIST_SUBSCRIPTIONS":
        if params:
            return error(2, "Invalid request: too many parameters")
        return {"result": list(subscriber.streams), "id": message_id}
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        return _property(subscriber, method, params, message_id)
    if not all(isinstance(p, str) for p in params):
        return error(2, "Invalid request: stream names must be strings")
    subscriptions.append((method, list(params)))
    if method == "UNSUBSCRIBE":
        for name in params:
            subscriber.streams.pop(name, None)
        return {"result": None, "id": message_id}
    added = [p for p in dict.fromkeys(params) if p not in subscriber.streams]
    if len(subscriber.streams) + len(added) > MAX_STREAMS_PER_CONNECTION:
        # The limit is documented (§ WebSocket Limits); the error is this stand-in's, in § Error Messages' shape.
        return {
            "code": 2,
            "msg": f"Invalid request: a connection can listen to at most {MAX_STREAMS_PER_CONNECTION} streams",
            "id": message_id,
        }
    subscriber.streams.update(dict.fromkeys(added))
    return {"result": None, "id": message_id}


def _property(subscriber: Subscriber, method: str, params: list[Any], message_id: Any) -> dict[str, Any]:
    """SET_PROPERTY / GET_PROPERTY (§ Setting Properties, § Retrieving Properties): only ``combined`` exists."""
    wanted = 2 if method == "SET_PROPERTY" else 1
    if len(params) > wanted:
        return error(2, "Invalid request: too many parameters")
    if not params or not isinstance(params[0], str):
        return error(2, "Invalid request: property name must be a string")
    if params[0] != "combined":
        return {"code": 0, "msg": "Unknown property", "id": message_id}
    if method == "GET_PROPERTY":
        return {"result": subscriber.combined, "id": message_id}
    if len(params) < 2 or not isinstance(params[1], bool):
        return error(1, "Invalid value type: expected Boolean")
    subscriber.combined = params[1]
    return {"result": None, "id": message_id}
