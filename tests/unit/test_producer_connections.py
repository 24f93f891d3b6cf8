"""Connections, symbols and resume points, without a network: URLs under Binance's limits, Unicode
symbols, backoff of connections that never deliver, the silence watchdog, refused handshakes, the
exchangeInfo check, and the trade ids read back from Kafka records."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import pytest
import requests
import websockets
from websockets.datastructures import Headers
from websockets.http11 import Response

from k2.cli.options import SYMBOLS
from k2.cli.produce_cmd import produce
from k2.producer import websocket as ws_module
from k2.producer.avro import TradeEncoder
from k2.producer.exceptions import ProducerError
from k2.producer.exchange import check_symbols, normalize_symbol, stream_name
from k2.producer.frames import parse_frame, trade_from_rest
from k2.producer.model import Trade
from k2.producer.resume import RESUME_BUDGET, read_long, trade_id_of
from k2.producer.stats import ConnectionStats
from k2.producer.websocket import (
    MAX_STREAMS_PER_CONNECTION,
    MAX_URL_LENGTH,
    SILENCE_TIMEOUT_S,
    AttemptLimiter,
    StreamConnection,
    StreamRefused,
    stream_urls,
)

UNICODE_SYMBOL = "这是测试币456"  # the Unicode symbol Binance lists on its spot testnet (CHANGELOG 2025-12-02)


def streams_of(url: str) -> list[str]:
    return [unquote(s) for s in urlsplit(url).query.removeprefix("streams=").split("/")]


# -- URLs -------------------------------------------------------------------------------------------
def test_600_symbols_fit_in_urls_under_the_limit_each_stream_once() -> None:
    symbols = [f"S{i}{'X' * (i % 7)}USDT" for i in range(600)]
    urls = stream_urls("wss://stream.binance.com:9443", symbols)
    assert len(urls) > 1
    assert all(len(url) <= MAX_URL_LENGTH for url in urls)
    assert all(len(streams_of(url)) <= MAX_STREAMS_PER_CONNECTION for url in urls)
    covered = [stream for url in urls for stream in streams_of(url)]
    assert covered == [stream_name(s) for s in symbols], "every stream exactly once, in order"
    # Packed, not merely split: each URL but the last is full enough that the next stream would not fit.
    for url, following in zip(urls, urls[1:], strict=False):
        assert len(url) + 1 + len(following.split("streams=")[1].split("/")[0]) > MAX_URL_LENGTH


def test_the_stream_count_limit_still_applies_to_short_symbols() -> None:
    urls = stream_urls("ws://h", [f"A{i}" for i in range(3000)], max_url_length=10**6)
    assert [len(streams_of(u)) for u in urls] == [1024, 1024, 952]


def test_unicode_symbols_are_percent_encoded_and_only_ascii_letters_lowered() -> None:
    urls = stream_urls("ws://h:1/", ["BTCUSDT", UNICODE_SYMBOL, "ÄBCUSDT"])
    assert urls == [
        "ws://h:1/stream?streams=btcusdt@trade/%E8%BF%99%E6%98%AF%E6%B5%8B%E8%AF%95%E5%B8%81456@trade/%C3%84bcusdt@trade"
    ]
    assert urls[0].isascii()
    assert streams_of(urls[0]) == ["btcusdt@trade", f"{UNICODE_SYMBOL}@trade", "Äbcusdt@trade"]


def test_a_long_unicode_list_counts_encoded_characters() -> None:
    symbols = [f"{UNICODE_SYMBOL}{i}" for i in range(300)]  # ~60 URL characters each once encoded
    urls = stream_urls("wss://stream.binance.com:9443", symbols)
    assert all(len(u) <= MAX_URL_LENGTH for u in urls)
    assert [s for u in urls for s in streams_of(u)] == [f"{s}@trade" for s in symbols]


def test_symbols_keep_non_ascii_letters_as_they_are() -> None:
    assert normalize_symbol(" btcusdt ") == "BTCUSDT"
    assert normalize_symbol("straße") == "STRAßE", "str.upper would turn ß into SS: another symbol"
    assert SYMBOLS.convert(f"btcusdt, {UNICODE_SYMBOL},BTCUSDT", None, None) == ["BTCUSDT", UNICODE_SYMBOL]
    for bad in ("BTC/USDT", "BTC@USDT", "BTC USDT", "BTC%55", ","):
        with pytest.raises(click.BadParameter, match="not a Binance symbol"):
            SYMBOLS.convert(bad, None, None)


# -- frames ---------------------------------------------------------------------------------------
def test_a_unicode_symbol_frame_is_a_trade_and_keyed_in_utf8() -> None:
    data = {"e": "trade", "E": 2, "s": UNICODE_SYMBOL, "t": 7, "p": "1.5", "q": "2", "T": 1, "m": False, "M": True}
    raw = json.dumps({"stream": f"{UNICODE_SYMBOL}@trade", "data": data}, ensure_ascii=False).encode()
    trade = parse_frame(raw)
    assert isinstance(trade, Trade) and trade.symbol == UNICODE_SYMBOL
    body = b"\x00\x00\x00\x00\x07" + TradeEncoder().encode_trade(trade, 3)
    assert trade_id_of(body) == 7


def test_m_is_not_copied_into_vendor_data() -> None:
    """web-socket-streams.md documents the trade event's "M" as "Ignore"."""
    data = {"e": "trade", "E": 2, "s": "BTCUSDT", "t": 7, "p": "1.5", "q": "2", "T": 1, "m": False, "M": False}
    trade = parse_frame(json.dumps(data).encode())
    assert isinstance(trade, Trade) and trade.vendor == (("source", "ws"),)
    item = {"id": 9, "price": "1", "qty": "2", "time": 5, "isBuyerMaker": False, "isBestMatch": True}
    assert trade_from_rest("BTCUSDT", item).vendor == (("source", "rest"),)


# -- resume decoding --------------------------------------------------------------------------------
@pytest.mark.parametrize("trade_id", [0, 1, 63, 64, 127, 128, 2**31, 2**40 + 7, 2**63 - 1])
def test_trade_ids_are_read_back_from_the_encoders_records(trade_id: int) -> None:
    trade = Trade("BTCUSDT", trade_id, 100, 1, True, 1, 2, (("source", "ws"),))
    value = b"\x00" + (12345).to_bytes(4, "big") + TradeEncoder().encode_trade(trade, 3)
    assert trade_id_of(value) == trade_id


def test_values_that_are_not_framed_trades_give_no_id() -> None:
    assert trade_id_of(b"") is None
    assert trade_id_of(b"\x01\x00\x00\x00\x01" + b"\x02A\x02B\x02") is None  # wrong magic byte
    assert trade_id_of(b"\x00\x00\x00\x00\x01\x7f") is None  # truncated
    assert read_long(b"\x01", 0) == (-1, 1) and read_long(b"\x80\x01", 0) == (64, 2)


# -- backoff, silence, refusal -------------------------------------------------------------------------
class FakeSocket:
    """Stands for a websockets connection: yields ``frames`` then ends, or stays silent until closed."""

    def __init__(self, frames: list[str], silent: bool = False) -> None:
        self.frames = frames
        self.silent = silent
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> str:
        if self.frames:
            return self.frames.pop(0)
        if self.silent:
            await self.closed.wait()
        self.close_code = 1000
        raise StopAsyncIteration

    async def close(self) -> None:
        self.closed.set()


def run_connection(
    monkeypatch: pytest.MonkeyPatch, sockets: list[Any], stop_after_frames: int, **options: Any
) -> tuple[list[float], list[str], StreamConnection]:
    """Run one StreamConnection over scripted sockets; returns attempt times, frames seen, connection."""
    attempts: list[float] = []
    seen: list[str] = []

    async def connect(url: str, **_kwargs: Any) -> Any:
        attempts.append(time.monotonic())
        item = sockets.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(ws_module.websockets, "connect", connect)

    async def main() -> StreamConnection:
        stop = asyncio.Event()

        def on_frame(frame: str | bytes, _source: str) -> bool:
            seen.append(str(frame))
            if len(seen) >= stop_after_frames:
                stop.set()
            return False

        connection = StreamConnection("ws://h", ["A"], on_frame, stop, AttemptLimiter(), ConnectionStats(), **options)
        await asyncio.wait_for(connection.run(), 30)
        return connection

    return attempts, seen, asyncio.run(main())


def test_connections_closed_at_once_are_retried_with_growing_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    sockets: list[Any] = [FakeSocket([]) for _ in range(5)] + [FakeSocket(["a", "b"], silent=True)]
    attempts, seen, connection = run_connection(monkeypatch, sockets, 2, backoff_base=0.04)
    assert len(attempts) == 6 and seen == ["a", "b"]
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    # Delays are drawn from [c/2, c] with the ceiling c doubling: never shorter than the one before.
    assert all(later >= earlier * 0.95 for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[0] >= 0.02 and gaps[-1] >= 0.16, gaps
    assert connection.stats.reconnects == 5 and connection.stats.failed_attempts == 5


def test_a_healthy_connection_resets_the_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    sockets: list[Any] = [FakeSocket([]), FakeSocket(["a"]), FakeSocket(["b"], silent=True)]
    attempts, _seen, connection = run_connection(monkeypatch, sockets, 2, backoff_base=0.2, healthy_after=0.0)
    assert attempts[2] - attempts[1] < 0.05, "a connection that delivered reconnects at once"
    assert connection.failures == 0


def test_connections_dropped_after_a_burst_reconnect_at_once_then_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    sockets: list[Any] = [FakeSocket([f"f{i}"]) for i in range(6)] + [FakeSocket(["last"], silent=True)]
    attempts, seen, connection = run_connection(monkeypatch, sockets, 7, backoff_base=0.1)
    assert len(seen) == 7
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(gap < 0.04 for gap in gaps[:3]), f"the first drops cost no wait: {gaps}"
    assert 0.05 <= gaps[3] and gaps[4] >= gaps[3] * 0.95 and gaps[5] >= 0.2, gaps
    assert connection.failures == 0 and connection.short_lived == 6


def test_a_silent_connection_is_closed_and_reopened(monkeypatch: pytest.MonkeyPatch) -> None:
    silent = FakeSocket([], silent=True)
    sockets: list[Any] = [silent, FakeSocket(["a"], silent=True)]
    attempts, seen, connection = run_connection(monkeypatch, sockets, 1, silence_timeout=0.3, backoff_base=0.02)
    assert silent.closed.is_set() and seen == ["a"]
    assert 0.3 <= attempts[1] - attempts[0] < 1.0
    assert connection.stats.silences == 1 and connection.stats.reconnects == 1


def refusal(status: int) -> websockets.InvalidStatus:
    return websockets.InvalidStatus(Response(status, "refused", Headers({"Retry-After": "0"}), b""))


def test_a_4xx_handshake_refusal_stops_at_once_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StreamRefused) as caught:
        run_connection(monkeypatch, [refusal(414)], 1)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("ws://h/stream refused the stream handshake with HTTP 414")
    assert "retrying cannot help" in message and "--symbols" in message


@pytest.mark.parametrize("status", [429, 503, 418])
def test_rate_limits_and_outages_are_retried(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    sockets: list[Any] = [refusal(status), FakeSocket(["a"], silent=True)]
    attempts, seen, _connection = run_connection(monkeypatch, sockets, 1, backoff_base=0.02)
    assert len(attempts) == 2 and seen == ["a"]


# -- exchangeInfo -----------------------------------------------------------------------------------
class FakeExchange:
    """Answers exchangeInfo like Binance: -1121 for a whole request holding any unknown symbol."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.requests: list[list[str]] = []

    def get(self, url: str, params: dict[str, str], timeout: float) -> requests.Response:
        asked = json.loads(params["symbols"])
        self.requests.append(asked)
        response = requests.Response()
        if any(s not in self.statuses for s in asked):
            response.status_code, body = 400, {"code": -1121, "msg": "Invalid symbol."}
        else:
            response.status_code = 200
            body = {"symbols": [{"symbol": s, "status": self.statuses[s]} for s in asked]}
        response._content = json.dumps(body).encode()
        return response


def test_unknown_and_not_trading_symbols_are_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = {f"S{i}USDT": "TRADING" for i in range(300)} | {"OLDUSDT": "BREAK", "LIMBOUSDT": "CANCEL_ONLY"}
    exchange = FakeExchange(listed)
    monkeypatch.setattr(requests.Session, "get", lambda _self, url, params, timeout: exchange.get(url, params, timeout))
    wanted = [*list(listed)[:150], "NOPEUSDT", *list(listed)[150:]]
    with pytest.raises(ProducerError) as caught:
        check_symbols("http://rest", wanted)
    message = str(caught.value)
    assert "\n" not in message
    assert "NOPEUSDT (unknown), OLDUSDT (BREAK), LIMBOUSDT (CANCEL_ONLY)" in message
    assert len(exchange.requests) < 25, "the unknown symbol is found by halving, not one request per symbol"
    assert all(len(json.dumps(r)) < 4000 for r in exchange.requests)


def test_trading_symbols_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    exchange = FakeExchange({"BTCUSDT": "TRADING", UNICODE_SYMBOL: "TRADING"})
    monkeypatch.setattr(requests.Session, "get", lambda _self, url, params, timeout: exchange.get(url, params, timeout))
    assert check_symbols("http://rest", ["BTCUSDT", UNICODE_SYMBOL]) == {
        "BTCUSDT": "TRADING",
        UNICODE_SYMBOL: "TRADING",
    }
    assert exchange.requests == [["BTCUSDT", UNICODE_SYMBOL]]


# -- CLI ----------------------------------------------------------------------------------------------
def test_produce_and_run_defaults_are_the_producers_own() -> None:
    from k2.cli.run_cmd import run
    from k2.producer import defaults

    own = {
        "ws_url": defaults.BINANCE_WS_URL,
        "gap_timeout": defaults.GAP_TIMEOUT_S,
        "resume_budget": RESUME_BUDGET,
        "silence_timeout": SILENCE_TIMEOUT_S,
        "symbols_refresh": defaults.SYMBOLS_REFRESH_S,
        "metrics_port": defaults.METRICS_PORT,
    }
    for command, options in ((produce, set(own)), (run, {"symbols_refresh", "metrics_port"})):
        context = click.Context(command)
        shown = {p.name: p.type_cast_value(context, p.default) for p in command.params if p.name in own}
        assert shown == {name: own[name] for name in options}, command.name
