"""BinanceStandIn keeps Binance's documented limits and failure modes (binance/binance-spot-api-docs).

Each test starts the stand-in on 127.0.0.1 (an ephemeral port, nothing leaves the machine) and talks
to it as a client would, with `requests` and `websockets`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.binance_standin.tape import stream_name, with_missing_ids
from k2.producer.binance_standin.weights import ban_length_s
from k2.producer.sample import generate_events

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]


def trades(symbols: list[str] = SYMBOLS, count: int = 300, seed: int = 5) -> list[dict[str, Any]]:
    return list(generate_events(symbols, count / 100, 100, start_ms=1_790_000_000_000, seed=seed))


@contextmanager
def ws(server: BinanceStandIn, path: str) -> Iterator[ClientConnection]:
    with connect(server.ws_url + path, ping_interval=None, open_timeout=5, close_timeout=1) as connection:
        yield connection


def play_all(server: BinanceStandIn) -> None:
    """Start the tape (it starts on the first connection) and wait until every frame was broadcast."""
    with ws(server, "/stream"):
        deadline = time.monotonic() + 10
        while server.position < len(server.tape) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert server.position == len(server.tape)


def get(server: BinanceStandIn, endpoint: str, **params: Any) -> requests.Response:
    return requests.get(f"{server.rest_url}/api/v3/{endpoint}", params=params, timeout=5)


def messages(connection: ClientConnection, timeout: float = 0.5) -> list[dict[str, Any]]:
    """Every message that arrives until the connection stays quiet for ``timeout`` (or closes)."""
    received = []
    try:
        while True:
            received.append(json.loads(connection.recv(timeout=timeout)))
    except (TimeoutError, ConnectionClosed):
        return received


def first(connection: ClientConnection, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first message that ``wanted`` accepts."""
    while True:
        message = json.loads(connection.recv(timeout=2))
        if wanted(message):
            return dict(message)


def answer(connection: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
    """Send a control message; its answer, skipping trade frames that arrive first."""
    connection.send(json.dumps(request))
    return first(connection, lambda message: "stream" not in message)


def fresh_window(server: BinanceStandIn, unless_left: float = math.inf) -> None:
    """Wait for the next weight window unless ``unless_left`` seconds are left in this one, so that a
    test's requests all fall in one window."""
    left = server.window_resets_at - time.time()
    if left < unless_left:
        time.sleep(left + 0.01)


# 1. URL length -----------------------------------------------------------------------------------
def test_a_handshake_url_over_the_limit_is_refused_with_414() -> None:
    with BinanceStandIn(trades(), rate=1) as server:
        prefix = "/stream?streams="
        with ws(server, prefix + "a" * (8000 - len(prefix))):
            pass  # exactly 8,000 characters: accepted
        with pytest.raises(InvalidStatus) as refused, ws(server, prefix + "a" * (8001 - len(prefix))):
            pass
    assert refused.value.response.status_code == 414
    assert server.connections == 1


# 2. Incoming messages, live subscriptions ----------------------------------------------------------
def test_a_sixth_control_message_within_a_second_disconnects() -> None:
    with BinanceStandIn(trades(), rate=1) as server, ws(server, "/stream") as connection:
        for batch in range(2):
            if batch:
                time.sleep(1.05)  # 5 messages in each second are fine
            for n in range(5):
                connection.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": n}))
            assert [json.loads(connection.recv(timeout=2)) for _ in range(5)] == [
                {"result": [], "id": n} for n in range(5)
            ]
        connection.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 6}))
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv(timeout=2)
        assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1008,
            "Too many requests",
        )
        deadline = time.monotonic() + 2
        while server.incoming_limit_disconnects < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert server.incoming_limit_disconnects == 1


def test_pings_and_pongs_count_as_incoming_messages() -> None:
    with BinanceStandIn(trades(), rate=1) as server, ws(server, "/stream") as connection:
        for n in range(3):
            connection.ping(f"p{n}")
            connection.pong(b"")  # unsolicited pongs are allowed, but they count
        with pytest.raises(ConnectionClosed) as closed:
            connection.recv(timeout=2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_live_subscribe_list_and_unsubscribe_on_a_stream_opened_without_streams() -> None:
    with BinanceStandIn(trades(), rate=100) as server, ws(server, "/stream") as connection:
        assert answer(connection, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}) == {
            "result": None,
            "id": 1,
        }
        frame = json.loads(connection.recv(timeout=2))
        assert frame["stream"] == "btcusdt@trade" and frame["data"]["s"] == "BTCUSDT"
        listed = answer(connection, {"method": "LIST_SUBSCRIPTIONS", "id": "list2"})
        assert listed == {"result": ["btcusdt@trade"], "id": "list2"}
        assert answer(connection, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 3}) == {
            "result": None,
            "id": 3,
        }
        assert messages(connection, timeout=0.3) == [], "nothing after the unsubscribe's answer"
        assert answer(connection, {"method": "GET_PROPERTY", "params": ["combined"], "id": 4}) == {
            "result": True,
            "id": 4,
        }


def test_a_connection_listens_to_at_most_1024_streams() -> None:
    names = [f"s{n}usdt@trade" for n in range(1025)]
    with BinanceStandIn(trades(), rate=1) as server:
        with ws(server, "/stream") as connection:
            refused = answer(connection, {"method": "SUBSCRIBE", "params": names, "id": 1})
            assert refused["code"] == 2 and refused["id"] == 1 and "1024" in refused["msg"]
            assert answer(connection, {"method": "SUBSCRIBE", "params": names[:1024], "id": 2})["result"] is None
            assert len(answer(connection, {"method": "LIST_SUBSCRIPTIONS", "id": 3})["result"]) == 1024
        with pytest.raises(InvalidStatus) as too_many, ws(server, "/stream?streams=" + "/".join(map(str, range(1025)))):
            pass
    assert too_many.value.response.status_code == 400


def test_bad_control_messages_get_the_documented_errors() -> None:
    with BinanceStandIn(trades(), rate=1) as server, ws(server, "/stream") as connection:
        connection.send('{"method":')
        assert json.loads(connection.recv(timeout=2)) == {
            "code": 3,
            "msg": "Invalid JSON: expected value at line 1 column 11",
        }
        unknown = answer(connection, {"method": "SUBSCRIB", "id": 1})
        assert unknown["code"] == 2 and unknown["msg"].startswith("Invalid request: unknown variant `SUBSCRIB`")
        bad_id = answer(connection, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1.5})
        assert bad_id == {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}


# 3. Ids that never existed -----------------------------------------------------------------------
def test_history_from_an_id_that_never_existed_starts_at_the_next_id() -> None:
    events = trades()
    btc = [e["t"] for e in events if e["s"] == "BTCUSDT"]
    with BinanceStandIn(with_missing_ids(events, "BTCUSDT", btc[10:12]), rate=10_000) as server:
        play_all(server)
        page = get(server, "historicalTrades", symbol="BTCUSDT", fromId=btc[10], limit=3)
    assert page.status_code == 200
    assert [t["id"] for t in page.json()] == btc[12:15]


# 4. REST lag -------------------------------------------------------------------------------------
def test_history_serves_only_trades_broadcast_rest_lag_ago() -> None:
    with BinanceStandIn(trades(), rate=10_000, rest_lag_s=1.0) as server:
        play_all(server)
        assert get(server, "historicalTrades", symbol="BTCUSDT").json() == []
        time.sleep(1.1)
        later = get(server, "historicalTrades", symbol="BTCUSDT", limit=1000).json()
    assert len(later) == sum(1 for e in server.tape if e.symbol == "BTCUSDT")


# 5. Request weight, 429, 418 ---------------------------------------------------------------------
def test_every_answer_carries_the_weight_used_this_minute() -> None:
    with BinanceStandIn(trades(), rate=1) as server:
        fresh_window(server, unless_left=1.0)
        used = [
            get(server, endpoint, **params).headers["X-MBX-USED-WEIGHT-1M"]
            for endpoint, params in [("ping", {}), ("exchangeInfo", {}), ("historicalTrades", {"symbol": "BTCUSDT"})]
        ]
        legacy = get(server, "time").headers["X-MBX-USED-WEIGHT"]
    assert used == ["1", "21", "46"] and legacy == "47"


def test_past_the_weight_limit_429_then_a_ban_that_doubles() -> None:
    # time_scale=120: the one-minute window lasts 0.5 s, the first ban 1 s, the second 2 s.
    with BinanceStandIn(trades(), rate=1, weight_limit_per_min=100, time_scale=120) as server:
        bans = []
        for _ in range(2):
            fresh_window(server)
            assert [get(server, "historicalTrades", symbol="BTCUSDT").status_code for _ in range(4)] == [200] * 4
            limited = get(server, "historicalTrades", symbol="BTCUSDT")
            assert limited.status_code == 429
            assert limited.headers["Retry-After"] == "1" and limited.headers["X-MBX-USED-WEIGHT-1M"] == "125"
            assert limited.json() == {
                "code": -1003,
                "msg": "Too much request weight used; current limit is 100 request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API.",
            }
            banned = get(server, "ping")  # kept sending after the 429, in the same window
            assert banned.status_code == 418
            assert banned.json()["code"] == -1003
            assert f"IP banned until {int(server.banned_until * 1000)}." in banned.json()["msg"]
            bans.append(banned.headers["Retry-After"])
            assert get(server, "time").status_code == 418, "every request is refused during the ban"
            time.sleep(server.banned_until - time.time() + 0.01)
            assert get(server, "ping").status_code == 200, "the ban is over"
        counts = (server.rest_429, server.rest_418)
    assert bans == ["1", "2"] and counts == (2, 4)
    assert [ban_length_s(n) for n in (0, 1, 2)] == [120, 240, 480]
    assert ban_length_s(11) == 245_760 and ban_length_s(12) == ban_length_s(99) == 3 * 24 * 3600


def test_a_client_that_waits_retry_after_is_not_banned() -> None:
    with BinanceStandIn(trades(), rate=1, weight_limit_per_min=2, time_scale=120) as server:
        fresh_window(server)
        answers = [get(server, "ping") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert server.used_weight == 3
        time.sleep(int(answers[-1].headers["Retry-After"]))
        assert get(server, "ping").status_code == 200
    assert server.rest_418 == 0 and server.banned_until == 0.0


# 6. WAF ------------------------------------------------------------------------------------------
def test_requests_the_firewall_blocks_get_403_html_and_cost_no_weight() -> None:
    with BinanceStandIn(trades(), rate=1, waf_block_requests={2}) as server:
        fresh_window(server, unless_left=1.0)
        first, blocked, third = (get(server, "ping") for _ in range(3))
    assert (first.status_code, blocked.status_code, third.status_code) == (200, 403, 200)
    assert blocked.headers["Content-Type"].startswith("text/html") and "X-MBX-USED-WEIGHT-1M" not in blocked.headers
    assert third.headers["X-MBX-USED-WEIGHT-1M"] == "2"
    assert server.rest_403 == 1 and server.rest_requests == 3


# 7. exchangeInfo ---------------------------------------------------------------------------------
def test_exchange_info_lists_the_tapes_symbols_with_their_status() -> None:
    with BinanceStandIn(trades(), rate=1, symbol_status={"ETHUSDT": "CANCEL_ONLY"}) as server:
        everything = get(server, "exchangeInfo").json()
        one = get(server, "exchangeInfo", symbol="BTCUSDT")
        two = get(server, "exchangeInfo", symbols=json.dumps(["ETHUSDT", "BNBUSDT"], separators=(",", ":")))
        unknown = get(server, "exchangeInfo", symbol="DOGEUSDT")
        one_unknown = get(server, "exchangeInfo", symbols='["BTCUSDT","NOPEUSDT"]')
    assert sorted(s["symbol"] for s in everything["symbols"]) == sorted(SYMBOLS)
    assert everything["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
    }
    btc = one.json()["symbols"]
    assert [(s["symbol"], s["status"], s["baseAsset"], s["quoteAsset"]) for s in btc] == [
        ("BTCUSDT", "TRADING", "BTC", "USDT")
    ]
    assert [(s["symbol"], s["status"]) for s in two.json()["symbols"]] == [
        ("ETHUSDT", "CANCEL_ONLY"),
        ("BNBUSDT", "TRADING"),
    ]
    for refused in (unknown, one_unknown):
        assert refused.status_code == 400 and refused.json() == {"code": -1121, "msg": "Invalid symbol."}
    with pytest.raises(ValueError, match="CANCEL_ONLY"):
        BinanceStandIn(trades(), symbol_status={"BTCUSDT": "PAUSED"})


# 8. Unicode symbols ------------------------------------------------------------------------------
def test_unicode_symbols_stream_under_percent_encoded_names_with_only_ascii_lowercased() -> None:
    # 这是测试币456 is the Unicode symbol Binance lists on its SPOT testnet (CHANGELOG.md § 2025-12-18).
    symbols = ["币安人生USDT", "这是测试币456", "ÄBCUSDT"]
    assert [stream_name(s) for s in symbols] == ["币安人生usdt@trade", "这是测试币456@trade", "Äbcusdt@trade"]
    with BinanceStandIn(trades(symbols, count=150), rate=300) as server:
        path = "/stream?streams=" + quote("币安人生usdt@trade/Äbcusdt@trade/äbcusdt@trade/币安人生USDT@trade")
        with ws(server, path) as connection:
            frames = messages(connection)
        assert frames and {f["stream"] for f in frames} == {"币安人生usdt@trade", "Äbcusdt@trade"}
        assert {f["data"]["s"] for f in frames} == {"币安人生USDT", "ÄBCUSDT"}
        history = get(server, "historicalTrades", symbol="币安人生USDT")
        info = get(server, "exchangeInfo", symbol="这是测试币456")
    assert history.status_code == 200 and history.json()
    assert info.json()["symbols"][0]["symbol"] == "这是测试币456"


# 9. serverShutdown -------------------------------------------------------------------------------
def test_server_shutdown_is_wrapped_on_combined_streams_and_bare_on_raw_ones() -> None:
    with BinanceStandIn(trades(), rate=200, script=Script(shutdown_at={100})) as server:
        with ws(server, "/stream?streams=btcusdt@trade") as combined, ws(server, "/ws/btcusdt@trade") as raw:
            first_raw = json.loads(raw.recv(timeout=2))
            wrapped = first(combined, lambda m: m["data"]["e"] != "trade")
            bare = first(raw, lambda m: m["e"] != "trade")
    assert first_raw["e"] == "trade" and first_raw["s"] == "BTCUSDT", "raw streams send the bare event"
    assert wrapped["stream"] == "!serverShutdown" and set(wrapped["data"]) == {"e", "E"}
    assert wrapped["data"]["e"] == "serverShutdown" and isinstance(wrapped["data"]["E"], int)
    assert set(bare) == {"e", "E"} and bare["e"] == "serverShutdown" and bare["E"] == wrapped["data"]["E"]


# 10. Connection trouble --------------------------------------------------------------------------
def test_connections_closed_on_open_then_one_that_works() -> None:
    with BinanceStandIn(trades(), rate=200, script=Script(close_on_open=2)) as server:
        for _ in range(2):
            with ws(server, "/stream?streams=btcusdt@trade") as dropped:
                with pytest.raises(ConnectionClosed) as closed:
                    dropped.recv(timeout=2)
                assert closed.value.rcvd is None, "no frame at all, not even a close frame"
        with ws(server, "/stream?streams=btcusdt@trade") as working:
            assert json.loads(working.recv(timeout=2))["stream"] == "btcusdt@trade"
    assert (server.connections, server.connections_closed_on_open) == (3, 2)


def test_a_silent_connection_answers_pings_but_never_gets_a_frame() -> None:
    with BinanceStandIn(trades(), rate=200, script=Script(silent_connections=1)) as server:
        with ws(server, "/stream?streams=btcusdt@trade") as silent, ws(server, "/stream?streams=btcusdt@trade") as fine:
            assert json.loads(fine.recv(timeout=2))["stream"] == "btcusdt@trade"
            assert silent.ping().wait(2), "the silent connection still answers pings"
            with pytest.raises(TimeoutError):
                silent.recv(timeout=0.5)


def test_a_forced_disconnect_drops_every_connection_at_the_same_frame() -> None:
    symbols = [f"C{n:03d}USDT" for n in range(120)]
    events = trades(symbols, count=600)
    with BinanceStandIn(events, rate=100, script=Script(disconnect_at={80})) as server:
        groups = [symbols[i : i + 40] for i in range(0, 120, 40)]
        paths = ["/stream?streams=" + "/".join(stream_name(s) for s in group) for group in groups]
        with ws(server, paths[0]) as first, ws(server, paths[1]) as second, ws(server, paths[2]) as third:
            seen = [messages(c, timeout=2) for c in (first, second, third)]
            codes = [c.close_code for c in (first, second, third)]
    position = {(e["s"], e["t"]): n for n, e in enumerate(events)}
    assert codes == [1001, 1001, 1001]
    assert all(seen) and max(position[(f["data"]["s"], f["data"]["t"])] for got in seen for f in got) <= 80
    assert server.connections == 3


def test_only_the_oldest_connections_are_dropped_when_one_front_end_goes_down() -> None:
    with BinanceStandIn(trades(), rate=100, script=Script(disconnect_some_at={60: 1})) as server:
        path = "/stream?streams=btcusdt@trade"
        with ws(server, path) as oldest:
            time.sleep(0.05)  # handshakes in a known order
            with ws(server, path) as younger:
                dropped = messages(oldest, timeout=1)
                kept = messages(younger, timeout=1)
                assert oldest.close_code == 1001 and younger.close_code is None
    assert server.partial_disconnects == 1 and not server.mass_disconnects
    assert len(kept) > len(dropped), "the younger connection kept streaming after the oldest was dropped"


# 11. A market that changes while it plays ------------------------------------------------------------
def test_a_listing_appears_in_exchange_info_at_its_position_and_trades_only_after_it() -> None:
    events = trades(["BTCUSDT", "NEWUSDT"], count=300)
    listed_at = 150
    script = Script(status_changes={listed_at: {"NEWUSDT": "TRADING"}})
    with BinanceStandIn(events, rate=300, script=script, symbol_status={"NEWUSDT": None}) as server:
        before = get(server, "exchangeInfo").json()
        unknown = [get(server, "exchangeInfo", symbol="NEWUSDT"), get(server, "historicalTrades", symbol="NEWUSDT")]
        assert server.status("NEWUSDT") is None and server.status_at("NEWUSDT", listed_at + 1) == "TRADING"
        with ws(server, "/stream?streams=newusdt@trade/btcusdt@trade") as connection:
            streamed = messages(connection, timeout=1)
        after = get(server, "exchangeInfo", symbolStatus="TRADING").json()
        history = get(server, "historicalTrades", symbol="NEWUSDT", fromId=0, limit=1000).json()
    assert [s["symbol"] for s in before["symbols"]] == ["BTCUSDT"]
    assert all(r.status_code == 400 and r.json()["code"] == -1121 for r in unknown)
    assert [s["symbol"] for s in after["symbols"]] == ["BTCUSDT", "NEWUSDT"]
    new_trades = [(n, e) for n, e in enumerate(events) if e["s"] == "NEWUSDT"]
    made = [e["t"] for n, e in new_trades if n > listed_at]
    assert made and len(made) < len(new_trades), "the tape holds NEWUSDT trades on both sides of the listing"
    assert [f["data"]["t"] for f in streamed if f["data"]["s"] == "NEWUSDT"] == made
    assert [t["id"] for t in history] == made, "trades from before the listing never happened"
    assert [e["t"] for e in server.trades_made() if e["s"] == "NEWUSDT"] == made


def test_a_symbol_in_break_trades_no_more_and_a_delisted_one_leaves_exchange_info() -> None:
    events = trades(count=300)
    script = Script(status_changes={100: {"ETHUSDT": "BREAK"}, 200: {"BNBUSDT": None}})
    with BinanceStandIn(events, rate=300, script=script) as server:
        with ws(server, "/stream?streams=btcusdt@trade/ethusdt@trade/bnbusdt@trade") as connection:
            streamed = messages(connection, timeout=1)
        info = {s["symbol"]: s["status"] for s in get(server, "exchangeInfo").json()["symbols"]}
        in_break = get(server, "exchangeInfo", symbolStatus="BREAK").json()["symbols"]
        history = get(server, "historicalTrades", symbol="ETHUSDT", limit=1000).json()
        delisted = get(server, "historicalTrades", symbol="BNBUSDT")
    position = {(e["s"], e["t"]): n for n, e in enumerate(events)}
    last = {
        s: max(position[(f["data"]["s"], f["data"]["t"])] for f in streamed if f["data"]["s"] == s) for s in SYMBOLS
    }
    assert last["ETHUSDT"] <= 100 < last["BTCUSDT"] and last["BNBUSDT"] <= 200
    assert info == {"BTCUSDT": "TRADING", "ETHUSDT": "BREAK"} and [s["symbol"] for s in in_break] == ["ETHUSDT"]
    assert max(position[("ETHUSDT", t["id"])] for t in history) <= 100
    assert delisted.status_code == 400 and delisted.json()["code"] == -1121
    with pytest.raises(ValueError, match="PAUSED"):
        BinanceStandIn(events, script=Script(status_changes={5: {"BTCUSDT": "PAUSED"}}))


def test_agg_trades_by_id_and_by_the_time_each_trade_was_broadcast() -> None:
    events = trades(count=300)
    with BinanceStandIn(events, rate=300) as server:
        before = int(time.time() * 1000)
        play_all(server)
        fresh_window(server, unless_left=1.0)
        btc = [e for e in events if e["s"] == "BTCUSDT"]
        by_id = get(server, "aggTrades", symbol="BTCUSDT", fromId=btc[10]["t"], limit=3)
        by_time = get(server, "aggTrades", symbol="BTCUSDT", startTime=before, limit=2).json()
        latest = get(server, "aggTrades", symbol="BTCUSDT", limit=1).json()
        none_since = get(server, "aggTrades", symbol="BTCUSDT", startTime=int(time.time() * 1000) + 1000).json()
        too_long = get(server, "aggTrades", symbol="BTCUSDT", startTime=0, endTime=3_600_001)
    assert [(a["a"], a["f"], a["l"]) for a in by_id.json()] == [(e["t"], e["t"], e["t"]) for e in btc[10:13]]
    assert by_id.json()[0] == {
        "a": btc[10]["t"],
        "p": btc[10]["p"],
        "q": btc[10]["q"],
        "f": btc[10]["t"],
        "l": btc[10]["t"],
        "T": btc[10]["T"],
        "m": btc[10]["m"],
        "M": True,
    }
    assert by_id.headers["X-MBX-USED-WEIGHT-1M"] == "4", "aggTrades weighs 4"
    assert [a["f"] for a in by_time] == [e["t"] for e in btc[:2]] and latest[0]["f"] == btc[-1]["t"]
    assert none_since == []
    assert too_long.status_code == 400 and too_long.json()["code"] == -1127
