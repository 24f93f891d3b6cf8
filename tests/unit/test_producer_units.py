"""The producer's pure parts: Avro encoding, frame validation, ordering and gap handling, stream URLs."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from k2.producer.avro import TradeEncoder, check_layout
from k2.producer.exceptions import BadFrame, ProducerError
from k2.producer.frames import CONTROL, SHUTDOWN, parse_decimal, parse_frame, trade_from_rest
from k2.producer.model import Trade
from k2.producer.sequencer import Sequencer
from k2.producer.websocket import AttemptLimiter, stream_urls
from k2.schemas.contract import parsed_schema


def frame(**overrides: Any) -> bytes:
    data = {"e": "trade", "E": 1700000000123, "s": "BTCUSDT", "t": 42, "p": "34188.03000000", "q": "0.01200000"}
    data |= {"T": 1700000000120, "m": True, "M": True}
    data |= overrides
    return json.dumps({"stream": "btcusdt@trade", "data": data}).encode()


def test_encoder_output_decodes_with_fastavro_exactly() -> None:
    trade = parse_frame(frame())
    assert isinstance(trade, Trade)
    body = TradeEncoder().encode_trade(trade, 1700000000999)
    record = fastavro.schemaless_reader(io.BytesIO(body), parsed_schema("trade.avsc"))
    assert record == {
        "exchange": "BINANCE",
        "symbol": "BTCUSDT",
        "trade_id": 42,
        "price": Decimal("34188.03000000"),
        "quantity": Decimal("0.01200000"),
        "side": "SELL",  # m=true: the buyer was the maker, so the taker sold
        "is_buyer_maker": True,
        "trade_time": datetime(2023, 11, 14, 22, 13, 20, 120000, tzinfo=UTC),
        "event_time": datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        "ingest_time": datetime(2023, 11, 14, 22, 13, 20, 999000, tzinfo=UTC),
        "vendor_data": {"source": "ws"},  # M is documented "Ignore": not kept
    }


@pytest.mark.parametrize(
    "price",
    [
        "0.00000001",
        "1",
        "9999999999.99999999",
        "127.5",
        "128",
        "255.00000001",
        # meme-coin quantities and the widest value the contract holds: decimal(28,8)
        "12345678901.00000000",
        "9223372036854.77580000",
        "9223372036854775807",
        "99999999999999999999.99999999",
    ],
)
def test_encoder_matches_fastavro_byte_for_byte(price: str) -> None:
    schema = parsed_schema("trade.avsc")
    record = {
        "exchange": "BINANCE",
        "symbol": "ETHUSDT",
        "trade_id": 2**40 + 7,
        "price": Decimal(price),
        "quantity": Decimal("3.5"),
        "side": "BUY",
        "is_buyer_maker": False,
        "trade_time": 1,
        "event_time": 2,
        "ingest_time": 3,
        "vendor_data": {"source": "rest"},
    }
    expected = io.BytesIO()
    fastavro.schemaless_writer(expected, schema, record)
    ours = TradeEncoder().encode(
        "ETHUSDT", 2**40 + 7, parse_decimal(price, "price"), 350_000_000, False, 1, 2, 3, (("source", "rest"),)
    )
    assert ours == expected.getvalue()


def test_a_schema_change_without_an_encoder_change_is_refused() -> None:
    changed = json.loads(json.dumps(parsed_schema("trade.avsc")))
    changed["fields"].insert(3, {"name": "venue", "type": "string"})
    with pytest.raises(ProducerError, match="no longer matches the producer's encoder"):
        check_layout(changed)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "frame is not a JSON object"),
        (frame(p=34188.03), "price is float, not a decimal string"),
        (frame(p="abc"), "price 'abc' is not a positive decimal"),
        (frame(p="-1.5"), "price '-1.5' is not a positive decimal"),
        (frame(p="0.00000000"), "price '0.00000000' is not positive"),
        (frame(q="0"), "quantity '0' is not positive"),
        (frame(p="1.000000001"), "price '1.000000001' has more than 8 decimal places"),
        (frame(p="123456789012345678901.0"), "price '123456789012345678901.0' does not fit decimal(28,8)"),
        (frame(t="42"), "trade_id (t) is missing or not a non-negative integer"),
        (frame(T=None), "trade_time (T) is missing or not a non-negative integer"),
        (frame(m="yes"), "is_buyer_maker (m) is missing or not a boolean"),
        (frame(s=""), "symbol (s) is missing or not a symbol"),
        (json.dumps({"stream": "x", "data": {"e": "aggTrade"}}).encode(), "not a trade event (e='aggTrade')"),
    ],
)
def test_bad_frames_carry_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadFrame) as caught:
        parse_frame(raw)
    assert caught.value.reason == reason


def test_meme_coin_quantities_are_trades_not_dead_letters() -> None:
    trade = parse_frame(frame(s="PEPEUSDT", p="0.00001234", q="9223372036854.77580000"))
    assert isinstance(trade, Trade)
    assert trade.quantity == 922337203685477580000
    widest = parse_frame(frame(q="99999999999999999999.99999999"))
    assert isinstance(widest, Trade) and widest.quantity == 10**28 - 1


def test_trailing_zeros_beyond_8_places_are_exact_not_rejected() -> None:
    assert parse_decimal("1.5000000000", "price") == 150_000_000


def test_control_and_shutdown_frames() -> None:
    assert parse_frame(b'{"result": null, "id": 1}') is CONTROL
    assert parse_frame(b'{"e": "serverShutdown", "E": 1}') is SHUTDOWN
    assert parse_frame(b'{"stream": "!x", "data": {"e": "serverShutdown", "E": 1}}') is SHUTDOWN


def test_rest_trade_uses_trade_time_as_event_time() -> None:
    item = {"id": 9, "price": "1.00000000", "qty": "2.00000000", "time": 5, "isBuyerMaker": False, "isBestMatch": True}
    trade = trade_from_rest("BTCUSDT", item)
    assert (trade.trade_id, trade.event_time, trade.trade_time, trade.is_buyer_maker) == (9, 5, 5, False)
    assert ("source", "rest") in trade.vendor


def make_trade(trade_id: int, symbol: str = "BTCUSDT", source: str = "ws") -> Trade:
    return Trade(symbol, trade_id, 100, 1, False, trade_id, trade_id, (("source", source),))


class Recorder:
    def __init__(self) -> None:
        self.now = 0.0
        self.emitted: list[tuple[str, int]] = []
        self.lost: list[tuple[str, int, int]] = []
        self.seq = Sequencer(
            lambda t: self.emitted.append((t.symbol, t.trade_id)),
            lambda *gap: self.lost.append(gap),
            gap_timeout=30,
            clock=lambda: self.now,
        )

    def page(self, from_id: int, ids: list[int], symbol: str = "BTCUSDT") -> None:
        self.seq.apply_page(symbol, from_id, [make_trade(i, symbol, source="rest") for i in ids])


def test_duplicates_from_an_overlap_are_dropped() -> None:
    r = Recorder()
    for trade_id in [1, 2, 3, 2, 3, 4]:
        r.seq.accept(make_trade(trade_id))
    assert [t for _, t in r.emitted] == [1, 2, 3, 4]
    assert r.seq.stats.duplicates_dropped == 2


def test_a_gap_holds_later_trades_until_backfilled_in_order() -> None:
    r = Recorder()
    for trade_id in [10, 11, 15, 16]:
        r.seq.accept(make_trade(trade_id))
    assert [t for _, t in r.emitted] == [10, 11]
    assert r.seq.gaps() == [("BTCUSDT", 12, 14)]
    r.page(12, [12, 13, 14, 15, 16, 17])  # a REST page overlapping what is held
    assert [t for _, t in r.emitted] == [10, 11, 12, 13, 14, 15, 16, 17]
    assert (r.seq.stats.gaps_backfilled, r.seq.stats.trades_backfilled, r.seq.stats.duplicates_dropped) == (1, 4, 0)
    assert r.seq.gaps() == []


def test_ids_rest_skips_never_existed_and_are_not_lost() -> None:
    r = Recorder()
    for trade_id in [1, 9]:
        r.seq.accept(make_trade(trade_id))
    r.page(2, [5, 6, 7, 8, 9])  # asked from 2, REST starts at 5: 2, 3 and 4 never existed
    assert [t for _, t in r.emitted] == [1, 5, 6, 7, 8, 9]
    assert (r.seq.stats.trades_absent, r.seq.stats.trades_unrecovered, r.lost) == (3, 0, [])
    assert r.seq.stats.gaps_backfilled == 1


def test_a_gap_is_given_up_only_when_rest_stops_making_progress() -> None:
    r = Recorder()
    for trade_id in [1, 3000, 3001]:
        r.seq.accept(make_trade(trade_id))
    r.now = 100.0  # queued behind other symbols' backfill for 100 s: REST was never asked, nothing is lost
    r.seq.tick()
    assert r.lost == []
    r.page(2, list(range(2, 1002)))  # progress: 1,000 trades
    r.now = 140.0
    r.seq.tick()
    assert r.lost == [] and r.seq.gaps() == [("BTCUSDT", 1002, 2999)]
    for _ in range(2):
        r.page(1002, [])  # REST has not caught up (lag): stalled answers
    r.now = 200.0
    r.seq.tick()
    assert r.lost == [], "two stalled answers are not enough"
    r.page(1002, list(range(1002, 2000)))  # progress again at t=200
    for _ in range(3):
        r.page(2000, [])
    r.now = 229.9
    r.seq.tick()
    assert r.lost == [], "three stalled answers but under gap_timeout since the last progress"
    r.now = 230.0
    r.seq.tick()
    assert r.lost == [("BTCUSDT", 2000, 2999)]
    assert [t for _, t in r.emitted][-2:] == [3000, 3001]
    assert (r.seq.stats.gaps_unrecovered, r.seq.stats.trades_unrecovered) == (1, 1000)


def test_resume_from_the_last_id_in_kafka_opens_a_gap_to_the_first_live_trade() -> None:
    r = Recorder()
    r.seq.resume_from({"BTCUSDT": 41})
    r.seq.accept(make_trade(50))
    assert r.emitted == [] and r.seq.gaps() == [("BTCUSDT", 42, 49)]
    r.page(42, list(range(42, 51)))
    assert [t for _, t in r.emitted] == list(range(42, 51))
    assert r.seq.stats.trades_backfilled == 8


def test_symbols_are_independent() -> None:
    r = Recorder()
    r.seq.accept(make_trade(1, "BTCUSDT"))
    r.seq.accept(make_trade(3, "BTCUSDT"))
    r.seq.accept(make_trade(7, "ETHUSDT"))
    assert r.emitted == [("BTCUSDT", 1), ("ETHUSDT", 7)]


def test_release_all_reports_every_open_gap() -> None:
    r = Recorder()
    for trade_id in [1, 3, 6]:
        r.seq.accept(make_trade(trade_id))
    r.seq.release_all()
    assert [t for _, t in r.emitted] == [1, 3, 6]
    assert r.lost == [("BTCUSDT", 2, 2), ("BTCUSDT", 4, 5)]


def test_the_weight_budget_paces_requests_and_a_pause_holds_those_already_waiting() -> None:
    from k2.producer.backfill import WeightBudget
    from k2.producer.exceptions import BackfillError

    budget = WeightBudget(weight=25, per_minute=6000, budget_share=0.9, window_s=0.6)
    assert budget.interval == pytest.approx(0.6 * 25 / 5400)
    started = time.monotonic()
    for _ in range(10):
        budget.wait()
    assert time.monotonic() - started >= 9 * budget.interval * 0.99
    budget.pause(0.3, "rate limit hit (429)")
    with pytest.raises(BackfillError, match="rate limit hit"):
        budget.wait(deadline=time.monotonic() + 0.1)  # the pause ends after the deadline: give up at once
    waited = time.monotonic()
    budget.wait()
    assert time.monotonic() - waited >= 0.25


def test_streams_are_split_at_1024_per_connection() -> None:
    symbols = [f"S{i}USDT" for i in range(2500)]
    urls = stream_urls("wss://stream.binance.com:9443/", symbols, max_url_length=10**6)  # count limit alone
    assert len(urls) == 3
    assert urls[0].startswith("wss://stream.binance.com:9443/stream?streams=s0usdt@trade/s1usdt@trade")
    assert [u.count("@trade") for u in urls] == [1024, 1024, 452]


def test_attempt_limiter_waits_once_the_window_is_full() -> None:
    async def attempts() -> float:
        limiter = AttemptLimiter(max_attempts=3, window_s=0.3)
        started = time.monotonic()
        for _ in range(4):
            await limiter.acquire()
        return time.monotonic() - started

    assert asyncio.run(attempts()) >= 0.29


def test_event_lag_buckets_count_values_up_to_each_bound_and_sum_seconds() -> None:
    from k2.producer.stats import EVENT_LAG_BUCKETS, Buckets

    lag = Buckets(EVENT_LAG_BUCKETS)
    for seconds in (0, 0.05, 0.051, 1.0, 7_200):  # 0.05 is in le="0.05" (Prometheus buckets are <=); 2 h is past all
        lag.observe(seconds)
    cumulative = dict(lag.cumulative())
    assert cumulative["0.05"] == 2 and cumulative["0.1"] == 3 and cumulative["1.0"] == 4
    assert cumulative["3600.0"] == 4 and cumulative["+Inf"] == 5
    assert lag.sum == pytest.approx(7_201.101)
