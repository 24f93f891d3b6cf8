"""Per-symbol ordering: drop duplicates, hold trades behind a gap, release them once it is filled.

Binance trade ids are consecutive per symbol, so one integer per symbol (the next id to emit) is
enough to drop every duplicate from reconnect overlaps, and any jump in ids is a gap. Trades after a
gap wait (in id order) while the gap is backfilled over REST. REST's answer is authoritative: a page
for ``fromId=a`` that starts above ``a`` means the ids in between never existed (counted as absent,
not lost). A gap is given up (reported loudly, its held trades released) only when REST stopped
making progress on it: ``stalled_answers`` answers in a row added nothing and ``gap_timeout`` seconds
passed since the last one that did. Time a gap spends queued behind other symbols' backfill (a mass
disconnect leaves hundreds at once) never counts against it.

Repeats are counted by where they come from: with redundant connection sets (``--redundancy``) every
trade arrives once per set, and a copy from a set that had not delivered that id yet is the expected
redundant copy (``redundant_copies_dropped``); a repeat of an id its own set delivered before is a
reconnect overlap (``duplicates_dropped``). A gap that trades from another set close before REST is
asked is ``gaps_filled_live``, not backfilled.

One owner: the event loop calls every method here; REST requests run in worker threads and hand
their pages back to the loop (see app.py).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .model import Trade
from .stats import SequencerStats


@dataclass
class SymbolState:
    next_id: int | None = None
    held: dict[int, Trade] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # min-heap of the ids in held
    gap_open: bool = False
    last_progress: float = 0.0  # when the gap opened or REST last filled part of it
    stalled: int = 0  # REST answers in a row that added nothing to the gap
    gap_opened: float = 0.0  # when the open gap opened
    rest_applied: bool = False  # a REST page was applied to the open gap

    def first_held(self) -> int:
        return self.order[0]


class Sequencer:
    def __init__(
        self,
        emit: Callable[[Trade], None],
        on_lost: Callable[[str, int, int], None],
        gap_timeout: float,
        stalled_answers: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._on_lost = on_lost
        self.gap_timeout = gap_timeout
        self.stalled_answers = stalled_answers
        self._clock = clock
        self.states: dict[str, SymbolState] = {}
        self.stats = SequencerStats()

    def resume_from(self, last_ids: dict[str, int]) -> None:
        """Expect each symbol's trades after ``last_id`` (what Kafka already holds): the first live trade
        then opens a gap from there, backfilled like any other."""
        for symbol, last_id in last_ids.items():
            state = self.states.setdefault(symbol, SymbolState())
            if state.next_id is None:
                state.next_id = last_id + 1

    def accept(self, trade: Trade, from_backfill: bool = False, first_on_feed: bool = False) -> None:
        """Take one trade. ``first_on_feed``: its connection set had not delivered this id before, so a
        repeat is another set's copy, not an overlap."""
        state = self.states.get(trade.symbol)
        if state is None:
            state = self.states[trade.symbol] = SymbolState()
        trade_id = trade.trade_id
        if state.next_id is None:
            state.next_id = trade_id + 1
            self._emit(trade)
            return
        if trade_id < state.next_id or trade_id in state.held:
            if from_backfill:
                pass  # REST pages overlap what we hold by design; only stream repeats count
            elif first_on_feed:
                self.stats.redundant_copies_dropped += 1
            else:
                self.stats.duplicates_dropped += 1
            return
        if trade_id == state.next_id and not state.held:
            state.next_id += 1
            self._emit_counted(trade, from_backfill)
            return
        state.held[trade_id] = trade
        heapq.heappush(state.order, trade_id)
        self._drain(trade.symbol, state)

    def _emit_counted(self, trade: Trade, from_backfill: bool) -> None:
        if from_backfill:
            self.stats.trades_backfilled += 1
        self._emit(trade)

    def _drain(self, symbol: str, state: SymbolState) -> None:
        assert state.next_id is not None
        while state.order and state.order[0] == state.next_id:
            trade = state.held.pop(heapq.heappop(state.order))
            state.next_id += 1
            self._emit_counted(trade, trade.vendor[-1] == ("source", "rest"))
        if state.held:
            if not state.gap_open:
                state.gap_open = True
                state.last_progress = state.gap_opened = self._clock()
                state.stalled = 0
                state.rest_applied = False
                self.stats.gaps_detected += 1
        elif state.gap_open:
            state.gap_open = False
            if state.rest_applied:
                self.stats.gaps_backfilled += 1
            else:
                self.stats.gaps_filled_live += 1

    def gap(self, symbol: str) -> tuple[int, int] | None:
        """The open gap of a symbol as (first missing id, last missing id), if any."""
        state = self.states.get(symbol)
        if state is None or not state.held or state.next_id is None:
            return None
        return state.next_id, state.first_held() - 1

    def held(self, symbol: str) -> int:
        """Trades of ``symbol`` waiting behind its gap."""
        state = self.states.get(symbol)
        return len(state.held) if state is not None else 0

    def gap_age(self, symbol: str) -> float:
        """Seconds since the open gap of ``symbol`` opened."""
        state = self.states.get(symbol)
        return self._clock() - state.gap_opened if state is not None and state.gap_open else 0.0

    def gaps(self) -> list[tuple[str, int, int]]:
        """Every open gap as (symbol, first missing id, last missing id)."""
        return [(s, *gap) for s in self.states if (gap := self.gap(s)) is not None]

    def apply_page(self, symbol: str, from_id: int, trades: list[Trade]) -> None:
        """REST's answer to ``historicalTrades?fromId=from_id`` for a symbol (trades in id order).

        Ids from ``from_id`` up to the first returned id never existed: they are skipped as absent. An
        empty page (REST has not caught up yet) or one that adds nothing counts as a stalled answer.
        """
        state = self.states.get(symbol)
        if state is None or state.next_id is None or not state.held:
            return
        before = state.next_id
        state.rest_applied = True
        if trades and state.next_id == from_id and trades[0].trade_id > from_id:
            absent_until = min(trades[0].trade_id, state.first_held())
            self.stats.trades_absent += absent_until - state.next_id
            state.next_id = absent_until
        for trade in trades:
            self.accept(trade, from_backfill=True)
        self._drain(symbol, state)
        if state.next_id > before:
            state.last_progress = self._clock()
            state.stalled = 0
        else:
            state.stalled += 1

    def tick(self) -> None:
        """Give up on gaps REST stopped filling: report them and release what waits behind them."""
        now = self._clock()
        for symbol, state in self.states.items():
            if state.held and state.stalled >= self.stalled_answers and now - state.last_progress >= self.gap_timeout:
                self._give_up(symbol, state)

    def release_all(self) -> None:
        """At shutdown: report every open gap and emit every held trade in order."""
        for symbol, state in self.states.items():
            while state.held:
                self._give_up(symbol, state)

    def _give_up(self, symbol: str, state: SymbolState) -> None:
        assert state.next_id is not None
        first_held = state.first_held()
        self.stats.gaps_unrecovered += 1
        self.stats.trades_unrecovered += first_held - state.next_id
        self.stats.lost_ranges.append((symbol, state.next_id, first_held - 1))
        self._on_lost(symbol, state.next_id, first_held - 1)
        state.next_id = first_held
        state.gap_open = False
        state.stalled = 0
        self._drain(symbol, state)

    def held_count(self) -> int:
        """Trades waiting behind gaps (for the status line)."""
        return sum(len(s.held) for s in self.states.values())
