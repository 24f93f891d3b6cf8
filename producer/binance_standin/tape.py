"""The tape: the trades the stand-in plays, in order, with how far it has played and when each was broadcast.

Frames files hold one combined-stream (``{"stream": ..., "data": ...}``) or raw trade frame per line.
Symbols may hold non-ASCII characters; stream names lowercase only their ASCII letters (CHANGELOG.md
§ 2025-12-02 "Unicode values"). Binance never replays: a frame broadcast while a client is away is lost
to it, and REST's history holds only what was broadcast (trade_lookups.py).
"""

from __future__ import annotations

import string
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from k2.producer.binance_standin.listings import Listings

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def stream_name(symbol: str) -> str:
    """The trade stream of ``symbol``: ASCII letters lowercased, every other character kept.

    web-socket-streams.md § General WSS information says stream symbols are lowercase; symbols may
    hold non-ASCII characters since CHANGELOG.md § 2025-12-02, and only their ASCII letters have a
    case to lower (Python's ``str.lower`` would also fold letters such as ``Ä``).
    """
    return f"{symbol.translate(_ASCII_LOWER)}@trade"


def with_missing_ids(events: list[dict[str, Any]], symbol: str, ids: Iterable[int]) -> list[dict[str, Any]]:
    """The events without ``symbol``'s trades ``ids``: ids that never existed, as Binance's tapes have.

    A stream then jumps over them and ``historicalTrades?fromId=<missing id>`` answers from the next id
    that exists.
    """
    missing = set(ids)
    return [e for e in events if not (e["s"] == symbol and int(e["t"]) in missing)]


def load_frames(path: Path) -> list[dict[str, Any]]:
    """Trade events from a frames file (one combined-stream or raw trade frame per line)."""
    events = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as exc:  # the file's line, not the position inside that line alone
            raise ValueError(f"{path} line {number}, column {exc.colno}: not a JSON frame ({exc.msg})") from None
        if not isinstance(message, dict):
            raise ValueError(f"{path} line {number} is not a JSON object (a Binance frame)")
        data = message.get("data", message)
        if isinstance(data, dict) and data.get("e") == "trade":
            events.append(data)
    return events


def rebase(events: list[dict[str, Any]], end_ms: int, id_offset: int) -> list[dict[str, Any]]:
    """The same trades moved to end at ``end_ms`` with ids shifted, so a demo re-run adds new trades."""
    shift = end_ms - max(int(e["T"]) for e in events)
    return [dict(e, t=int(e["t"]) + id_offset, T=int(e["T"]) + shift, E=int(e["E"]) + shift) for e in events]


@dataclass
class TapeFrame:
    stream: str | None  # None: raw frame for every client
    text: str  # as a combined stream sends it
    symbol: str | None = None
    trade: dict[str, Any] | None = None
    raw_text: str | None = None  # as a raw (/ws) stream sends it; None: same as text
    void: bool = False  # a trade of a symbol that was not TRADING then: it never happens


class Tape:
    """The trade events as frames in play order; ``position`` counts the frames broadcast so far."""

    def __init__(self, events: list[dict[str, Any]], listings: Listings) -> None:
        self.listings = listings
        self.frames: list[TapeFrame] = []
        self._positions: dict[str, list[int]] = {}  # tape positions of each symbol's trades that happen
        self._original = events
        self._counts = Counter(str(e["s"]) for e in events)
        self._cycle = 0
        for event in events:
            self._append(event)
        self.position = 0
        self.sent_at: list[float] = []  # time.monotonic() each frame was broadcast, by position
        self.sent_ms: list[int] = []  # and epoch milliseconds (aggTrades' startTime/endTime)

    def _append(self, event: dict[str, Any]) -> None:
        symbol = str(event["s"])
        stream = stream_name(symbol)
        combined = orjson.dumps({"stream": stream, "data": event}).decode()
        void = self.listings.status_at(symbol, len(self.frames)) != "TRADING"
        if not void:
            self._positions.setdefault(symbol, []).append(len(self.frames))
        self.frames.append(TapeFrame(stream, combined, symbol, event, orjson.dumps(event).decode(), void))

    def play_again(self) -> None:
        """Endless demo mode: append the original trades again with later ids and current times."""
        self._cycle += 1
        shift = int(time.time() * 1000) - int(self._original[0]["T"])
        for event in self._original:
            again = dict(event, t=int(event["t"]) + self._cycle * self._counts[str(event["s"])])
            again["T"], again["E"] = int(event["T"]) + shift, int(event["E"]) + shift
            self._append(again)

    def broadcast_one(self) -> None:
        """Record that the frame at ``position`` was broadcast now, and move on to the next."""
        self.sent_at.append(time.monotonic())
        self.sent_ms.append(int(time.time() * 1000))
        self.position += 1

    def status(self, symbol: str) -> str | None:
        """The status exchangeInfo gives ``symbol`` now (None: not listed)."""
        return self.listings.status_at(symbol, self.position)

    def trades_made(self) -> list[dict[str, Any]]:
        """Every trade of the tape that happens (its symbol was TRADING then), in tape order."""
        return [f.trade for f in self.frames if f.trade is not None and not f.void]

    def broadcast_times(self) -> list[tuple[str, int, float]]:
        """(symbol, trade id, epoch seconds) of every trade broadcast so far."""
        offset = time.time() - time.monotonic()
        return [
            (str(frame.trade["s"]), int(frame.trade["t"]), sent + offset)
            for frame, sent in zip(self.frames, self.sent_at, strict=False)
            if frame.trade is not None and not frame.void
        ]

    def visible_positions(self, symbol: str, lag_s: float) -> list[int]:
        """Positions of ``symbol``'s trades broadcast so far, or, with ``lag_s``, at least that long ago."""
        visible = self.position
        if lag_s > 0:
            visible = bisect_right(self.sent_at, time.monotonic() - lag_s)
        positions = self._positions.get(symbol, [])
        return positions[: bisect_right(positions, visible - 1)]
