"""Synthetic Binance trade frames for demos and tests, in Binance's exact combined-stream format.

Nothing here was recorded from Binance (it cannot be reached from where K2 is built): prices follow a
seeded random walk, ids are consecutive per symbol, and every field has Binance's type and format.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import orjson

START_PRICES = {"BTCUSDT": Decimal("91234.56"), "ETHUSDT": Decimal("3012.34"), "BNBUSDT": Decimal("612.70")}
TICK = {"BTCUSDT": Decimal("0.01"), "ETHUSDT": Decimal("0.01"), "BNBUSDT": Decimal("0.01")}


def generate_events(
    symbols: list[str], seconds: float, trades_per_second: float, start_ms: int, seed: int = 7
) -> Iterator[dict[str, object]]:
    """Trade events in time order across symbols."""
    rng = random.Random(seed)
    prices = {s: START_PRICES.get(s, Decimal("100.00")) for s in symbols}
    next_ids = {s: 1_000_000 * (i + 1) + rng.randrange(1000) for i, s in enumerate(symbols)}
    count = int(seconds * trades_per_second)
    now = start_ms
    for _ in range(count):
        now += max(1, int(rng.expovariate(trades_per_second / 1000.0)))
        symbol = rng.choice(symbols)
        tick = TICK.get(symbol, Decimal("0.01"))
        prices[symbol] = max(tick, prices[symbol] + tick * rng.randint(-3, 3))
        quantity = (Decimal(rng.lognormvariate(-3, 1.2)) + Decimal("0.00001")).quantize(
            Decimal("0.00001"), rounding=ROUND_DOWN
        )
        trade_id = next_ids[symbol]
        next_ids[symbol] += 1
        yield {
            "e": "trade",
            "E": now + rng.randint(0, 3),
            "s": symbol,
            "t": trade_id,
            "p": f"{prices[symbol]:.8f}",
            "q": f"{quantity:.8f}",
            "T": now,
            "m": rng.random() < 0.5,
            "M": True,
        }


def write_frames(path: Path, events: Iterator[dict[str, object]]) -> int:
    """Write combined-stream frames, one per line; returns the number written."""
    written = 0
    with path.open("wb") as out:
        for event in events:
            stream = f"{str(event['s']).lower()}@trade"
            out.write(orjson.dumps({"stream": stream, "data": event}) + b"\n")
            written += 1
    return written
