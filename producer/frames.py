"""Binance frames -> validated trades. Anything that is not a valid trade raises BadFrame with a reason."""

from __future__ import annotations

from typing import Any

import orjson

from .exceptions import BadFrame
from .exchange import is_symbol, normalize_symbol
from .model import MAX_UNSCALED, PRECISION, SCALE, Trade


class Control:
    """A frame to ignore silently (subscription acks: {"result": null, "id": 1})."""


class ServerShutdown:
    """Binance's warning that the connection will close soon: rotate now."""


CONTROL = Control()
SHUTDOWN = ServerShutdown()


def parse_decimal(value: Any, field: str) -> int:
    """A positive decimal string with at most 8 decimals -> unscaled integer; never through float."""
    if not isinstance(value, str):
        raise BadFrame(f"{field} is {type(value).__name__}, not a decimal string", kind="bad_decimal")
    whole, dot, fraction = value.partition(".")
    if not (whole.isascii() and whole.isdigit()) or (dot and not (fraction.isascii() and fraction.isdigit())):
        raise BadFrame(f"{field} {value[:40]!r} is not a positive decimal", kind="bad_decimal")
    if len(fraction) > SCALE:
        if fraction[SCALE:].strip("0"):
            raise BadFrame(f"{field} {value[:40]!r} has more than {SCALE} decimal places", kind="bad_decimal")
        fraction = fraction[:SCALE]
    unscaled = int(whole + fraction.ljust(SCALE, "0"))
    if unscaled <= 0:
        raise BadFrame(f"{field} {value!r} is not positive", kind="bad_decimal")
    if unscaled > MAX_UNSCALED:
        raise BadFrame(f"{field} {value[:40]!r} does not fit decimal({PRECISION},{SCALE})", kind="decimal_overflow")
    return unscaled


def _integer(data: dict[str, Any], key: str, field: str) -> int:
    value = data.get(key)
    if type(value) is not int or value < 0:  # bool is an int subclass: excluded on purpose
        raise BadFrame(f"{field} ({key}) is missing or not a non-negative integer", kind="bad_field")
    return value


def trade_from_event(data: dict[str, Any], source: str) -> Trade:
    """A Binance ``trade`` event payload -> Trade."""
    symbol = data.get("s")
    if not isinstance(symbol, str) or not is_symbol(symbol):  # Unicode letters allowed: see exchange.py
        raise BadFrame("symbol (s) is missing or not a symbol", kind="bad_field")
    symbol = normalize_symbol(symbol)
    try:
        trade_id = _integer(data, "t", "trade_id")
        price = parse_decimal(data.get("p"), "price")
        quantity = parse_decimal(data.get("q"), "quantity")
        trade_time = _integer(data, "T", "trade_time")
        event_time = _integer(data, "E", "event_time")
        maker = data.get("m")
        if type(maker) is not bool:
            raise BadFrame("is_buyer_maker (m) is missing or not a boolean", kind="bad_field")
    except BadFrame as exc:
        exc.symbol = symbol
        raise
    # "M" is documented as "Ignore" (web-socket-streams.md, "Trade Streams"): it is not kept.
    return Trade(symbol, trade_id, price, quantity, maker, trade_time, event_time, (("source", source),))


def parse_frame(raw: bytes | str, source: str = "ws") -> Trade | Control | ServerShutdown:
    """Classify one WebSocket frame (combined-stream wrapper or raw event)."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadFrame("invalid JSON", kind="invalid_json") from None
    if not isinstance(message, dict):
        raise BadFrame("frame is not a JSON object", kind="not_an_object")
    data = message.get("data", message) if "stream" in message else message
    if not isinstance(data, dict):
        raise BadFrame("data is not a JSON object", kind="not_an_object")
    event = data.get("e")
    if event == "trade":
        return trade_from_event(data, source)
    if event == "serverShutdown":
        return SHUTDOWN
    if event is None and "id" in message and ("result" in message or "error" in message):
        return CONTROL
    raise BadFrame(f"not a trade event (e={str(event)[:30]!r})", kind="not_a_trade")


def trade_from_rest(symbol: str, item: Any) -> Trade:
    """One ``/api/v3/historicalTrades`` item -> Trade (REST carries no event time: trade time stands in)."""
    if not isinstance(item, dict):
        raise BadFrame("REST trade is not a JSON object", symbol)
    data = {
        "s": symbol,
        "t": item.get("id"),
        "p": item.get("price"),
        "q": item.get("qty"),
        "T": item.get("time"),
        "E": item.get("time"),
        "m": item.get("isBuyerMaker"),
    }
    return trade_from_event(data, "rest")
