"""A fast Avro encoder for the trade record, checked against schemas/trade.avsc at start-up.

fastavro's schemaless writer manages ~59k trades/s on one core; the producer's target is the whole
pipeline at 50k/s, so the hot path encodes this one fixed record layout directly. Start-up compares
the layout with the parsed .avsc, so a schema change without an encoder change fails at once, and the
unit tests decode the output with fastavro against the schema.
"""

from __future__ import annotations

from typing import Any

from k2.schemas.contract import parsed_schema

from .exceptions import ProducerError
from .model import PRECISION, SCALE, Trade

# (name, Avro type as written below) in schema order.
LAYOUT = (
    ("exchange", "string"),
    ("symbol", "string"),
    ("trade_id", "long"),
    ("price", f"decimal({PRECISION},{SCALE})"),
    ("quantity", f"decimal({PRECISION},{SCALE})"),
    ("side", "string"),
    ("is_buyer_maker", "boolean"),
    ("trade_time", "timestamp-millis"),
    ("event_time", "timestamp-millis"),
    ("ingest_time", "timestamp-millis"),
    ("vendor_data", "map<string>"),
)


def _describe(field_type: Any) -> str:
    if isinstance(field_type, dict):
        logical = field_type.get("logicalType")
        if logical == "decimal":
            return f"decimal({field_type['precision']},{field_type['scale']})"
        if logical:
            return str(logical)
        if field_type.get("type") == "map":
            return f"map<{field_type['values']}>"
        return str(field_type.get("type"))
    return str(field_type)


def check_layout(schema: dict[str, Any]) -> None:
    """Raise ProducerError unless the schema's fields are exactly the encoder's LAYOUT."""
    actual = tuple((f["name"], _describe(f["type"])) for f in schema["fields"])
    if actual != LAYOUT:
        raise ProducerError(
            f"schemas/trade.avsc no longer matches the producer's encoder: schema has {actual}, encoder writes "
            f"{LAYOUT}; update producer/avro.py together with the schema"
        )


def encode_long(value: int) -> bytes:
    """Avro long: zig-zag, then base-128 varint."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def encode_string(value: str) -> bytes:
    data = value.encode()
    return encode_long(len(data)) + data


def encode_decimal(unscaled: int) -> bytes:
    """Avro decimal bytes: the unscaled value, two's complement big-endian, minimal length."""
    data = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    return encode_long(len(data)) + data


def encode_map(values: dict[str, str]) -> bytes:
    if not values:
        return b"\x00"
    out = encode_long(len(values))
    for key, value in values.items():
        out += encode_string(key) + encode_string(value)
    return out + b"\x00"


class TradeEncoder:
    """Encodes trades as the schemaless Avro body of schemas/trade.avsc, caching repeated parts."""

    def __init__(self, exchange: str = "BINANCE") -> None:
        check_layout(parsed_schema("trade.avsc"))
        self._exchange = encode_string(exchange)
        self._symbols: dict[str, bytes] = {}
        self._vendor: dict[tuple[tuple[str, str], ...], bytes] = {}
        self._sides = {True: encode_string("SELL") + b"\x01", False: encode_string("BUY") + b"\x00"}

    def encode(
        self,
        symbol: str,
        trade_id: int,
        price_unscaled: int,
        quantity_unscaled: int,
        is_buyer_maker: bool,
        trade_time: int,
        event_time: int,
        ingest_time: int,
        vendor: tuple[tuple[str, str], ...],
    ) -> bytes:
        symbol_bytes = self._symbols.get(symbol)
        if symbol_bytes is None:
            symbol_bytes = self._symbols[symbol] = encode_string(symbol)
        vendor_bytes = self._vendor.get(vendor)
        if vendor_bytes is None:
            vendor_bytes = self._vendor[vendor] = encode_map(dict(vendor))
        return b"".join(
            (
                self._exchange,
                symbol_bytes,
                encode_long(trade_id),
                encode_decimal(price_unscaled),
                encode_decimal(quantity_unscaled),
                self._sides[is_buyer_maker],  # side string, then the is_buyer_maker boolean
                encode_long(trade_time),
                encode_long(event_time),
                encode_long(ingest_time),
                vendor_bytes,
            )
        )

    def encode_trade(self, trade: Trade, ingest_time: int) -> bytes:
        """The Avro body of a parsed trade, stamped with ``ingest_time`` (epoch ms)."""
        return self.encode(
            trade.symbol,
            trade.trade_id,
            trade.price,
            trade.quantity,
            trade.is_buyer_maker,
            trade.trade_time,
            trade.event_time,
            ingest_time,
            trade.vendor,
        )
