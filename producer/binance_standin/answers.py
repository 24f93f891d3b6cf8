"""The shapes of the stand-in's answers: Binance's error body, the API's JSON answers, and HTML from in front of it."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

# The Server header, the thread's name and the prefix of errors only the stand-in gives: never mistaken for Binance.
STAND_IN_NAME = "k2-binance-stand-in"


def error(code: int, msg: str) -> dict[str, Any]:
    """errors.md: every error, REST or WebSocket, is ``{"code": ..., "msg": ...}``."""
    return {"code": code, "msg": msg}


def json_answer(status: HTTPStatus, body: Any, extra: dict[str, str] | None = None) -> Response:
    """An API answer: JSON in UTF-8 (non-ASCII symbols as they are, rest-api.md § General API Information)."""
    data = orjson.dumps(body)
    headers = Headers(
        {
            "Content-Type": "application/json;charset=UTF-8",
            "Content-Length": str(len(data)),
            # One request per TCP connection (websockets' HTTP side); saying so lets clients close at once
            # instead of leaving the server waiting for them. (websockets adds the Server header.)
            "Connection": "close",
        }
    )
    for key, value in (extra or {}).items():
        headers[key] = value
    return Response(status.value, status.phrase, headers, data)


def html_answer(status: HTTPStatus, text: str) -> Response:
    """An answer from in front of the API (CDN, firewall): HTML, none of the API's JSON or headers."""
    data = f"<html><head><title>{status.value} {status.phrase}</title></head><body><h1>{status.value} "
    data += f"{status.phrase}</h1><p>{text}</p></body></html>\n"
    body = data.encode()
    headers = Headers(
        {
            "Content-Type": "text/html",
            "Content-Length": str(len(body)),
            "Connection": "close",
        }
    )
    return Response(status.value, status.phrase, headers, body)
