"""Per-symbol ordering: drop duplicates, hold trades behind a gap, release them once it is filled.

Binance trade ids are consecutive per symbol, so one integer per symbol (the next id to emit) is
enough to drop every duplicate from reconnect overlaps, and any jump in ids is a gap. Trades after a
gap wait (in id order) while the gap is backfilled over REST; if it cannot be filled within
``gap_timeout`` seconds the missing range is reported loudly and the held trades are released.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .frames import Trade


@dataclass
class SymbolState:
    next_id: int | None = None
    held: dict[int, Trade] = field(default_factory=dict)
    gap_since: float | None = None


@dataclass
class SequencerStats:
    duplicates_dropped: int = 0
    gaps_detected: int = 0
    gaps_backfilled: int = 0
    trades_backfilled: int = 0
    gaps_unrecovered: int = 0
    trades_unrecovered: int = 0
    lost_ranges: list[tuple[str, int, int]] = field(default_factory=list)


class Sequencer:
    def __init__(
        self,
        emit: Callable[[Trade], None],
        request_backfill: Callable[[str, int, int], None],
        on_lost: Callable[[str, int, int], None],
        gap_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._request_backfill = request_backfill
        self._on_lost = on_lost
        self.gap_timeout = gap_timeout
        self._clock = clock
        self.states: dict[str, SymbolState] = {}
        self.stats = SequencerStats()

    def accept(self, trade: Trade, from_backfill: bool = False) -> None:
        state = self.states.get(trade.symbol)
        if state is None:
            state = self.states[trade.symbol] = SymbolState()
        trade_id = trade.trade_id
        if state.next_id is None:
            state.next_id = trade_id + 1
            self._emit(trade)
            return
        if trade_id < state.next_id or trade_id in state.held:
            if not from_backfill:  # REST pages overlap what we hold by design; only stream repeats count
                self.stats.duplicates_dropped += 1
            return
        if trade_id == state.next_id and not state.held:
            state.next_id += 1
            self._emit_counted(trade, from_backfill)
            return
        state.held[trade_id] = trade
        self._drain(trade.symbol, state)

    def _emit_counted(self, trade: Trade, from_backfill: bool) -> None:
        if from_backfill:
            self.stats.trades_backfilled += 1
        self._emit(trade)

    def _drain(self, symbol: str, state: SymbolState) -> None:
        assert state.next_id is not None
        while state.next_id in state.held:
            trade = state.held.pop(state.next_id)
            state.next_id += 1
            self._emit_counted(trade, trade.vendor[-1] == ("source", "rest"))
        if state.held:
            if state.gap_since is None:
                state.gap_since = self._clock()
                self.stats.gaps_detected += 1
            self._request_backfill(symbol, state.next_id, min(state.held) - 1)
        elif state.gap_since is not None:
            state.gap_since = None
            self.stats.gaps_backfilled += 1

    def pending(self) -> int:
        """Trades held behind gaps."""
        return sum(len(s.held) for s in self.states.values())

    def gap(self, symbol: str) -> tuple[int, int] | None:
        """The open gap of a symbol as (first missing id, last missing id), if any."""
        state = self.states.get(symbol)
        if state is None or not state.held or state.next_id is None:
            return None
        return state.next_id, min(state.held) - 1

    def tick(self) -> None:
        """Ask again for every open gap (a fetch may have failed or filled only part of it), and give up on
        gaps older than gap_timeout: report them and release what waits behind them."""
        now = self._clock()
        for symbol, state in self.states.items():
            if not state.held or state.gap_since is None or state.next_id is None:
                continue
            if now - state.gap_since >= self.gap_timeout:
                self._give_up(symbol, state)
            else:
                self._request_backfill(symbol, state.next_id, min(state.held) - 1)

    def release_all(self) -> None:
        """At shutdown: report every open gap and emit every held trade in order."""
        for symbol, state in self.states.items():
            while state.held:
                self._give_up(symbol, state)

    def _give_up(self, symbol: str, state: SymbolState) -> None:
        assert state.next_id is not None
        first_held = min(state.held)
        self.stats.gaps_unrecovered += 1
        self.stats.trades_unrecovered += first_held - state.next_id
        self.stats.lost_ranges.append((symbol, state.next_id, first_held - 1))
        self._on_lost(symbol, state.next_id, first_held - 1)
        state.next_id = first_held
        state.gap_since = None
        self._drain(symbol, state)
