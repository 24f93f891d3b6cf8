"""Live subscriptions without a network (a stand-in on port 0 at most): the pacing of control messages,
where new streams go (1,024 per connection, URL length), SUBSCRIBE answers and errors, the symbol changes
and their reasons, redundant copies, and the order gaps are backfilled in."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from k2.producer.backfill import WeightBudget, backfill_order
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.connections import ConnectionSets
from k2.producer.exchange import stream_name
from k2.producer.model import Trade
from k2.producer.sample import generate_events
from k2.producer.sequencer import Sequencer
from k2.producer.stats import ConnectionStats
from k2.producer.subscriptions import (
    CONTROL_INTERVAL_S,
    MAX_STREAMS_PER_CONNECTION,
    ControlPacer,
    Load,
    assign,
    load_of,
    opening_url,
    pack,
)
from k2.producer.universe import (
    ADDED,
    REMOVED,
    ExchangeInfoError,
    Listing,
    Market,
    SymbolChange,
    SymbolUniverse,
    fetch_market,
)
from k2.producer.websocket import AttemptLimiter, StreamConnection

BINANCE_LIMIT_PER_S = 5  # web-socket-streams.md § WebSocket Limits


def most_in_one_second(times: Iterable[float]) -> int:
    """The most messages in any rolling one-second window."""
    ordered = sorted(times)
    most = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= 1.0 - 1e-9:  # spaced a second apart, within float error
            start += 1
        most = max(most, end - start + 1)
    return most


# -- pacing ------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("seed", range(5))
def test_control_messages_with_our_pings_and_pongs_never_pass_5_a_second(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    pacer = ControlPacer(clock=clock)
    sent: list[float] = []
    # Bursts of changes at random moments over ten minutes: each asks for several control messages at once.
    for moment in sorted(rng.uniform(0, 600) for _ in range(60)):
        clock.now = max(clock.now, moment)
        for _ in range(rng.randint(1, 8)):
            clock.now += pacer.delay()
            clock.now += rng.choice([0.0, 0.0, 0.3, 1.7])  # the event loop was busy: the message went late
            sent.append(clock.now)
            pacer.sent()
    assert all(b - a >= CONTROL_INTERVAL_S - 1e-9 for a, b in zip(sent, sent[1:], strict=False))
    # Besides control messages a connection sends its own pings (every 30 s) and a pong to each of
    # Binance's pings (every 20 s), at phases of their own.
    pings = [rng.uniform(0, 30) + 30 * n for n in range(25)]
    pongs = [rng.uniform(0, 20) + 20 * n for n in range(35)]
    assert most_in_one_second(sent) == 1
    assert most_in_one_second(sent + pings + pongs) <= 3 < BINANCE_LIMIT_PER_S


def events_for(symbols: list[str], seconds: float = 60, rate: float = 40) -> list[dict[str, Any]]:
    return list(generate_events(symbols, seconds, rate, start_ms=1_790_000_000_000, seed=3))


async def run_until(connection: StreamConnection, done: Any, timeout: float = 20) -> None:
    """Run ``connection`` until ``done()`` holds (checked every 20 ms), then stop it."""
    task = asyncio.create_task(connection.run())
    try:
        for _ in range(int(timeout / 0.02)):
            if done() or task.done():
                break
            await asyncio.sleep(0.02)
    finally:
        connection.stop.set()
        await task


def connection_to(server: BinanceStandIn, symbols: list[str], seen: list[str], **options: Any) -> StreamConnection:
    def on_frame(frame: str | bytes, _source: str) -> bool:
        message = json.loads(frame)
        seen.append(message["data"]["s"])
        return False

    return StreamConnection(
        server.ws_url, symbols, on_frame, asyncio.Event(), AttemptLimiter(), ConnectionStats(), **options
    )


SYMBOLS = [f"S{i:02d}USDT" for i in range(10)]
TWO_FIT = len(opening_url("ws://127.0.0.1:65535", SYMBOLS[:2])[0])  # a URL naming two streams at most


def test_streams_past_the_url_are_subscribed_paced_and_binance_never_disconnects() -> None:
    # Binance pings every 20 s and we every 30 s; here both every 2 s, 10-15 times as often.
    with BinanceStandIn(events_for(SYMBOLS), rate=40, ping_interval=2.0) as server:
        seen: list[str] = []
        connection = connection_to(server, SYMBOLS, seen, max_url_length=TWO_FIT, control_batch=3, ping_interval=2.0)
        assert opening_url(server.ws_url, SYMBOLS, TWO_FIT)[1] == SYMBOLS[2:]
        asyncio.run(run_until(connection, lambda: set(seen) == set(SYMBOLS)))
        subscribed = [names for method, names in server.control_requests if method == "SUBSCRIBE"]
    assert set(seen) == set(SYMBOLS), "every stream delivers: two from the URL, the rest by SUBSCRIBE"
    assert subscribed == [[stream_name(s) for s in SYMBOLS[n : n + 3]] for n in (2, 5, 8)]
    assert connection.stats.subscribe_requests == 3 and connection.stats.control_errors == 0
    assert server.incoming_limit_disconnects == 0


def test_unpaced_control_messages_would_be_disconnected_by_binance() -> None:
    """The stand-in catches a client that does not pace: the test above proves something."""
    with BinanceStandIn(events_for(SYMBOLS), rate=40) as server:
        connection = connection_to(
            server, SYMBOLS, [], max_url_length=TWO_FIT, control_batch=1, control_interval=0.0, backoff_base=5
        )
        asyncio.run(run_until(connection, lambda: server.incoming_limit_disconnects > 0, timeout=10))
    assert server.incoming_limit_disconnects >= 1


def test_symbols_added_and_removed_while_open_are_subscribed_and_unsubscribed() -> None:
    with BinanceStandIn(events_for(SYMBOLS[:4]), rate=40) as server:
        seen: list[str] = []
        connection = connection_to(server, SYMBOLS[:2], seen, control_interval=0.2)

        async def scenario() -> None:
            task = asyncio.create_task(connection.run())
            while not {"S00USDT", "S01USDT"} <= set(seen):
                await asyncio.sleep(0.02)
            connection.add(["S02USDT", "S03USDT"])
            connection.remove(["S00USDT"])
            while connection.carried != {"S01USDT", "S02USDT", "S03USDT"}:
                await asyncio.sleep(0.02)
            assert connection.url.endswith("stream?streams=s01usdt@trade/s02usdt@trade/s03usdt@trade")
            connection.remove(["S01USDT", "S02USDT", "S03USDT"])  # none left: closed, not unsubscribed
            while connection.connected:
                await asyncio.sleep(0.02)
            connection.stop.set()
            await task

        asyncio.run(asyncio.wait_for(scenario(), 20))
    assert server.control_requests == [
        ("UNSUBSCRIBE", ["s00usdt@trade"]),
        ("SUBSCRIBE", ["s02usdt@trade", "s03usdt@trade"]),
    ]
    assert server.incoming_limit_disconnects == 0


class AnsweringSocket:
    """A websockets connection stand-in that answers each control message as ``answers`` says."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers  # "error", "error-without-id", "silence" or "ok", one per request
        self.sent: list[dict[str, Any]] = []
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.close_code: int | None = None

    async def send(self, text: str) -> None:
        request = json.loads(text)
        self.sent.append(request)
        answer = self.answers.pop(0)
        if answer == "ok":
            await self.queue.put(json.dumps({"result": None, "id": request["id"]}))
        elif answer == "error":
            await self.queue.put(json.dumps({"code": 2, "msg": "Invalid request: busy", "id": request["id"]}))
        elif answer == "error-without-id":
            await self.queue.put(json.dumps({"code": 3, "msg": "Invalid JSON: expected value"}))

    def __aiter__(self) -> AnsweringSocket:
        return self

    async def __anext__(self) -> str:
        if self.close_code is not None:
            raise StopAsyncIteration
        try:
            return await asyncio.wait_for(self.queue.get(), 0.05)
        except TimeoutError:
            # Keep the connection looking alive between answers: a trade frame.
            return '{"stream":"a@trade","data":{}}'

    async def close(self) -> None:
        self.close_code = 1000


def test_error_answers_and_silence_are_logged_once_each_and_asked_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    socket = AnsweringSocket(["error", "silence", "error-without-id", "ok"])

    async def connect(url: str, **_kwargs: Any) -> AnsweringSocket:
        assert unquote(urlsplit(url).query) == "streams=a@trade"
        return socket

    monkeypatch.setattr("k2.producer.websocket.websockets.connect", connect)
    caplog.set_level(logging.WARNING, "k2.producer.ws")
    stats = ConnectionStats()
    connection = StreamConnection(
        "ws://h",
        ["A", "B"],
        lambda _frame, _source: False,
        asyncio.Event(),
        AttemptLimiter(),
        stats,
        max_url_length=len("ws://h/stream?streams=a@trade"),
        control_interval=0.0,
        control_retry=0.05,
        answer_timeout=0.2,
    )
    carried: list[set[str]] = []

    def both_carried() -> bool:
        carried.append(connection.carried)  # read while open: a stopped connection carries nothing
        return carried[-1] == {"A", "B"}

    asyncio.run(run_until(connection, both_carried))
    assert carried[-1] == {"A", "B"}
    assert [r["params"] for r in socket.sent] == [["b@trade"]] * 4
    assert len({r["id"] for r in socket.sent}) == 4, "each request has its own id"
    assert stats.control_errors == 3 and stats.subscribe_requests == 4
    warnings = [r.getMessage() for r in caplog.records if "SUBSCRIBE" in r.getMessage()]
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert "code 2: Invalid request: busy" in warnings[0] and "no answer within 0.2s" in warnings[1]
    assert "code 3" in warnings[2]


# -- where streams go --------------------------------------------------------------------------------
def test_new_streams_fill_connections_with_room_and_open_one_only_when_none_has() -> None:
    full, many, few = Load(1024, None), Load(1000, None), Load(3, None)
    names = [f"N{i}USDT" for i in range(30)]
    assert assign("ws://h", [full, many, few], names) == [1] * 24 + [2] * 6
    assert assign("ws://h", [full, full], names[:2]) == [2, 2]
    assert assign("ws://h", [], [f"S{i}" for i in range(1025)], max_url_length=10**6) == [0] * 1024 + [1]
    assert assign("ws://h", [Load(MAX_STREAMS_PER_CONNECTION - 1, None)], names[:3]) == [0, 1, 1]


def test_a_new_stream_goes_where_a_reconnect_names_it_in_the_url() -> None:
    ws_url = "wss://stream.binance.com:9443"
    crowded = load_of(ws_url, [f"LONGSYMBOL{i:04d}USDT" for i in range(300)])  # past what one URL names
    roomy = load_of(ws_url, ["BTCUSDT", "ETHUSDT"])
    assert crowded.url_length is None and roomy.url_length == len(opening_url(ws_url, ["BTCUSDT", "ETHUSDT"])[0])
    assert assign(ws_url, [crowded, roomy], ["NEWUSDT"]) == [1], "the connection whose URL can still name it"
    # Once every URL is full, streams go where there is room all the same (subscribed after each open).
    nearly = Load(2, 4000 - len("/newusdt@trade") + 1)
    assert assign(ws_url, [nearly, crowded], ["NEWUSDT", "NEXTUSDT"]) == [0, 0]
    exact = Load(2, 4000 - len("/newusdt@trade"))
    assert assign(ws_url, [crowded, exact], ["NEWUSDT", "NEXTUSDT"]) == [1, 0]


def test_the_opening_url_names_what_fits_and_leaves_the_rest_for_subscribe() -> None:
    symbols = [f"LONGSYMBOL{i:04d}USDT" for i in range(400)]
    url, rest = opening_url("wss://stream.binance.com:9443", symbols, max_url_length=4000)
    named = urlsplit(url).query.removeprefix("streams=").split("/")
    assert len(url) <= 4000 and len(named) + len(rest) == 400
    assert named == [stream_name(s) for s in symbols[: len(named)]] and rest == symbols[len(named) :]
    assert len(url) + 1 + len(stream_name(rest[0])) > 4000, "as many as fit"
    assert opening_url("ws://h", ["A"])[1] == []


class Recorded:
    """What ConnectionSets made, without sockets."""

    def __init__(self) -> None:
        self.made: list[tuple[int, StreamConnection]] = []

    def __call__(self, feed: int, symbols: list[str]) -> StreamConnection:
        connection = StreamConnection(
            "ws://h", symbols, lambda _f, _s: False, asyncio.Event(), AttemptLimiter(), ConnectionStats()
        )
        self.made.append((feed, connection))
        return connection


def test_both_redundant_sets_carry_every_stream_and_change_alike() -> None:
    made = Recorded()
    symbols = [f"S{i}USDT" for i in range(1500)]
    fleet = ConnectionSets("ws://h", symbols, 2, made, max_url_length=10**6)
    assert [len(c) for c in fleet.sets] == [2, 2] and fleet.symbols(0) == fleet.symbols(1) == symbols
    assert [c.streams for c in fleet.connections] == [1024, 476, 1024, 476]
    opened = fleet.add([f"N{i}USDT" for i in range(600)])  # 548 fit on the second connections, 52 need more
    assert [c.streams for c in fleet.connections] == [1024, 1024, 1024, 1024, 52, 52]
    assert [feed for feed, c in made.made if c in opened] == [0, 1]
    fleet.remove(["S0USDT", "N599USDT"])
    assert [c.streams for c in fleet.connections] == [1023, 1024, 1023, 1024, 51, 51]
    assert fleet.symbols(0) == fleet.symbols(1)
    fleet.add(["S0USDT"])  # back on the first connection with room
    assert fleet.sets[0][0].streams == fleet.sets[1][0].streams == 1024


def test_packing_is_the_stream_urls_split() -> None:
    symbols = [f"S{i}{'X' * (i % 7)}USDT" for i in range(600)]
    groups = pack("wss://stream.binance.com:9443", symbols)
    assert [s for g in groups for s in g] == symbols
    assert all(opening_url("wss://stream.binance.com:9443", g)[1] == [] for g in groups)


# -- symbol changes and their reasons ---------------------------------------------------------------------
def listings(**statuses: str) -> Market:
    quote = {symbol: "FDUSD" if symbol.endswith("FDUSD") else "USDT" for symbol in statuses}
    return Market({symbol: Listing(status, quote[symbol]) for symbol, status in statuses.items()})


def test_changes_name_listings_status_changes_and_delistings() -> None:
    universe = SymbolUniverse(None, ["USDT"])
    first = listings(AAAUSDT="TRADING", BBBUSDT="TRADING", CCCUSDT="BREAK", DDDFDUSD="TRADING", EEEUSDT="TRADING")
    assert universe.start(first) == ["AAAUSDT", "BBBUSDT", "EEEUSDT"], "TRADING and quoted in USDT"
    later = listings(AAAUSDT="HALT", CCCUSDT="TRADING", DDDFDUSD="TRADING", EEEUSDT="END_OF_DAY", NEWUSDT="TRADING")
    changes = universe.plan(later.listings)
    assert [str(c) for c in changes] == [
        "CCCUSDT (TRADING)",
        "NEWUSDT (listed)",
        "AAAUSDT (HALT)",
        "BBBUSDT (delisted)",
        "EEEUSDT (END_OF_DAY)",
    ]
    universe.apply(later, changes)
    assert list(universe.subscribed) == ["CCCUSDT", "NEWUSDT"]
    after = dict(later.listings, CCCUSDT=Listing("BREAK", "USDT"), NEWUSDT=Listing("CANCEL_ONLY", "USDT"))
    after["AAAUSDT"] = Listing("TRADING", "USDT")
    after["XXXUSDT"] = Listing("PRE_TRADING", "USDT")  # a status Binance may add: not streamed
    universe.apply(Market(after, 42), universe.plan(after))
    assert universe.server_time_ms == 42, "the clock of the exchangeInfo the list matches"
    assert universe.named(ADDED) == ["CCCUSDT (TRADING)", "NEWUSDT (listed)", "AAAUSDT (TRADING)"]
    assert universe.named(REMOVED)[-2:] == ["CCCUSDT (BREAK)", "NEWUSDT (CANCEL_ONLY)"]
    assert universe.counts[(ADDED, "TRADING")] == 2 and universe.counts[(REMOVED, "HALT")] == 1
    assert universe.plan(after) == [], "nothing changed, nothing planned"


def test_an_explicit_list_only_drops_and_takes_back_its_own_symbols() -> None:
    universe = SymbolUniverse(["AAAUSDT", "BBBUSDT"])
    universe.start(listings(AAAUSDT="TRADING", BBBUSDT="TRADING"), ["AAAUSDT", "BBBUSDT"])
    market = listings(AAAUSDT="BREAK", BBBUSDT="TRADING", NEWUSDT="TRADING")
    assert universe.plan(market.listings) == [SymbolChange("AAAUSDT", REMOVED, "BREAK")]
    universe.apply(market, universe.plan(market.listings))
    back = listings(AAAUSDT="TRADING", BBBUSDT="TRADING", NEWUSDT="TRADING")
    assert universe.plan(back.listings) == [SymbolChange("AAAUSDT", ADDED, "TRADING")]


class FakeSession:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.response = requests.Response()
        self.response.status_code = status
        self.response._content = json.dumps(body).encode()
        self.response.headers.update(headers or {})

    def get(self, url: str, timeout: float) -> requests.Response:
        assert url == "http://rest/api/v3/exchangeInfo"
        return self.response


def test_exchange_info_is_read_with_status_and_quote_asset_and_refusals_say_how_long_to_wait() -> None:
    body = {
        "serverTime": 1_790_000_000_123,
        "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "quoteAsset": "USDT"}, {"nope": 1}],
    }
    assert fetch_market("http://rest/", session=FakeSession(200, body)) == Market(
        {"BTCUSDT": Listing("TRADING", "USDT")}, 1_790_000_000_123
    )
    with pytest.raises(ExchangeInfoError) as banned:
        fetch_market("http://rest", session=FakeSession(418, {"code": -1003}, {"Retry-After": "120"}))
    assert banned.value.retry_after == 120.0
    with pytest.raises(ExchangeInfoError, match="listed no symbols"):
        fetch_market("http://rest", session=FakeSession(200, {"symbols": []}))


def test_exchange_info_takes_its_weight_from_the_backfill_budget() -> None:
    clock = FakeClock()
    budget = WeightBudget(weight=25, per_minute=6000, budget_share=0.9, window_s=60, clock=clock)
    budget.wait()
    assert budget._next_slot == pytest.approx(60 * 25 / 5400)  # historicalTrades: 25 of 90% of 6,000
    clock.now = budget._next_slot
    budget.wait(weight=20)
    assert budget._next_slot - clock.now == pytest.approx(60 * 20 / 5400)  # exchangeInfo: 20


def test_a_symbol_added_starts_at_its_first_trade_since_the_previous_exchange_info() -> None:
    """aggTrades by time finds it (a listing's trades before its subscription, never older history)."""
    from websockets.sync.client import connect

    from k2.producer.backfill import RestClient

    events = events_for(["OLDUSDT", "NEWUSDT", "QUIETUSDT"], seconds=4, rate=150)
    first_quiet = min(int(e["t"]) for e in events if e["s"] == "QUIETUSDT")
    events = [e for e in events if e["s"] != "QUIETUSDT" or int(e["t"]) < first_quiet + 10]  # early, then quiet
    with BinanceStandIn(events, rate=300, symbol_status={"NEVERUSDT": "BREAK"}) as server:
        client = RestClient(server.rest_url, WeightBudget(window_s=0.6))
        with connect(server.ws_url + "/stream", open_timeout=5):  # the tape plays from the first connection
            wait_until(lambda: server.position >= 150)
            since = int(requests.get(f"{server.rest_url}/api/v3/time", timeout=5).json()["serverTime"])
            after = server.position
            wait_until(lambda: server.position >= len(server.tape))
            answers = {s: client.first_id_since(s, since) for s in ("NEWUSDT", "QUIETUSDT", "NEVERUSDT")}
        client.close()
    new_ids = [int(e["t"]) for e in server.trades_made() if e["s"] == "NEWUSDT"]
    new_before = [int(e["t"]) for e in server.trades_made()[:after] if e["s"] == "NEWUSDT"]
    assert new_before[0] < answers["NEWUSDT"], "not its whole history"
    assert answers["NEWUSDT"] in new_ids and new_before[-1] - 2 <= answers["NEWUSDT"] <= new_before[-1] + 1
    assert answers["QUIETUSDT"] == first_quiet + 10, "no trade since: the id after its latest"
    assert answers["NEVERUSDT"] == 0
    assert server.requests_by_endpoint["/api/v3/aggTrades"] == 3


def wait_until(condition: Any, timeout: float = 10) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


# -- repeats, gaps and their order ------------------------------------------------------------------------
def trade(trade_id: int, symbol: str = "BTCUSDT", source: str = "ws") -> Trade:
    return Trade(symbol, trade_id, 100, 1, False, trade_id, trade_id, (("source", source),))


def test_redundant_copies_are_counted_apart_from_reconnect_repeats() -> None:
    emitted: list[int] = []
    seq = Sequencer(lambda t: emitted.append(t.trade_id), lambda *_: None, gap_timeout=30)
    last = {0: -1, 1: -1}

    def feed(number: int, trade_id: int) -> None:
        first = trade_id > last[number]
        last[number] = max(last[number], trade_id)
        seq.accept(trade(trade_id), first_on_feed=first)

    for trade_id in (1, 2, 3):
        feed(0, trade_id)
        feed(1, trade_id)
    feed(0, 4)  # set 1 is away and misses 4
    feed(0, 5)
    feed(1, 5)  # set 1 is back: its first 5 and 6 are copies of what set 0 brought
    feed(0, 6)
    feed(1, 6)
    feed(0, 6)  # set 0 repeats what it delivered before: a reconnect overlap
    assert emitted == [1, 2, 3, 4, 5, 6]
    assert (seq.stats.redundant_copies_dropped, seq.stats.duplicates_dropped) == (5, 1)
    assert seq.stats.gaps_detected == 0


def test_a_gap_the_other_set_closes_is_filled_live_not_backfilled() -> None:
    now = [0.0]
    seq = Sequencer(lambda t: None, lambda *_: None, gap_timeout=30, clock=lambda: now[0])
    for trade_id in (1, 2, 5):  # set 0 reconnected ahead of set 1: 3 and 4 are on set 1's way
        seq.accept(trade(trade_id), first_on_feed=True)
    now[0] = 0.5
    assert seq.gaps() == [("BTCUSDT", 3, 4)] and seq.gap_age("BTCUSDT") == 0.5 and seq.held("BTCUSDT") == 1
    for trade_id in (3, 4, 5):
        seq.accept(trade(trade_id), first_on_feed=True)
    assert seq.gaps() == [] and (seq.stats.gaps_filled_live, seq.stats.gaps_backfilled) == (1, 0)


def test_gaps_with_the_most_trades_held_go_to_rest_first_ties_least_recently_asked() -> None:
    gaps = [("A", 1, 9), ("B", 1, 9), ("C", 1, 9), ("D", 1, 9)]
    held = {"A": 3, "B": 40, "C": 40, "D": 1}
    asked = {"B": 5.0, "C": 2.0, "D": 9.0}
    assert [g[0] for g in backfill_order(gaps, held, asked)] == ["C", "B", "A", "D"]


def test_after_a_mass_disconnect_the_busiest_symbols_are_released_first() -> None:
    """Hundreds of gaps of one page each, served one request at a time: the trades left waiting, summed
    over every request, are fewest when the fullest gaps go first (no other order does better)."""
    rng = random.Random(1)
    held = {f"S{i}USDT": int(rng.paretovariate(1.2) * 10) for i in range(600)}

    def waiting(order: list[str]) -> int:
        return sum(sum(held[s] for s in order[served:]) for served in range(len(order)))

    gaps = [(s, 1, 2) for s in held]
    busiest = [g[0] for g in backfill_order(gaps, held, {})]
    in_turn = [g[0] for g in gaps]  # the old order: least recently asked, all equal after a mass disconnect
    assert waiting(busiest) < waiting(in_turn) / 2
    for _ in range(20):
        shuffled = list(held)
        rng.shuffle(shuffled)
        assert waiting(busiest) <= waiting(shuffled)
