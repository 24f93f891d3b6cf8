"""Synthetic Binance trade frames for demos and tests, in Binance's exact combined-stream format.

Nothing here was recorded from Binance (it cannot be reached from where K2 is built): prices follow a
seeded random walk, ids are consecutive per symbol, and every field has Binance's type and format.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from decimal import ROUND_DOWN, Decimal
from itertools import accumulate
from pathlib import Path

import orjson

START_PRICES = {"BTCUSDT": Decimal("91234.56"), "ETHUSDT": Decimal("3012.34"), "BNBUSDT": Decimal("612.70")}
TICK = {"BTCUSDT": Decimal("0.01"), "ETHUSDT": Decimal("0.01"), "BNBUSDT": Decimal("0.01")}


def market_symbols(count: int, quotes: tuple[str, ...] = ("USDT", "FDUSD", "USDC", "BTC")) -> list[str]:
    """``count`` symbol names for a whole-market run: the three sample pairs first, then made-up ones
    (``M0003USDT``, ``M0004FDUSD``, ...) over a few quote assets, so a ``--quote`` filter has work to do."""
    names = list(START_PRICES)[:count]
    names += [f"M{i:04d}{quotes[i % len(quotes)]}" for i in range(len(names), count)]
    return names


def zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    """Relative trade rates of ``count`` symbols ranked by activity (rank r trades ~ 1 / r**exponent).

    Binance's spot market is this shape: BTCUSDT and ETHUSDT make 2.3-5 M trades a day each (from trade-id
    deltas) while most of the ~1,600 pairs make a few thousand; with exponent 1 the top symbol carries about
    13% of 1,600 symbols' trades.
    """
    return [1.0 / (rank**exponent) for rank in range(1, count + 1)]


def generate_events(
    symbols: list[str],
    seconds: float,
    trades_per_second: float,
    start_ms: int,
    seed: int = 7,
    weights: list[float] | None = None,
) -> Iterator[dict[str, object]]:
    """Trade events in time order across symbols (chosen uniformly, or by ``weights``)."""
    rng = random.Random(seed)
    cumulative = list(accumulate(weights)) if weights else None
    prices = {s: START_PRICES.get(s, Decimal("100.00")) for s in symbols}
    next_ids = {s: 1_000_000 * (i + 1) + rng.randrange(1000) for i, s in enumerate(symbols)}
    count = int(seconds * trades_per_second)
    now = start_ms
    for _ in range(count):
        now += max(1, int(rng.expovariate(trades_per_second / 1000.0)))
        symbol = rng.choices(symbols, cum_weights=cumulative)[0] if cumulative else rng.choice(symbols)
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


def write_frames(
    path: Path, events: Iterator[dict[str, object]], on_progress: Callable[[int], None] | None = None
) -> int:
    """Write combined-stream frames, one per line; returns the number written. ``on_progress`` hears the
    count every 100,000 frames."""
    written = 0
    with path.open("wb") as out:
        for event in events:
            stream = f"{str(event['s']).lower()}@trade"
            out.write(orjson.dumps({"stream": stream, "data": event}) + b"\n")
            written += 1
            if on_progress is not None and written % 100_000 == 0:
                on_progress(written)
    return written
