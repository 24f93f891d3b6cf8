"""The producer's value types: a trade with exact decimals, as schemas/trade.avsc declares it.

Parsing (frames.py) makes trades and the encoder (avro.py) writes them; both import them from here, so
neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISION = 28
SCALE = 8
MAX_UNSCALED = 10**PRECISION - 1  # decimal(28, 8): see schemas/trade.avsc
UNIT = 10**SCALE  # unscaled units in one (a price of 1.5 is 150_000_000)


@dataclass(slots=True)
class Trade:
    """A trade with exact decimals as unscaled integers (value * 10**8)."""

    symbol: str
    trade_id: int
    price: int
    quantity: int
    is_buyer_maker: bool
    trade_time: int
    event_time: int
    vendor: tuple[tuple[str, str], ...]
