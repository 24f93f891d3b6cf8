"""The Binance stand-in's parts on their own, without a server or a socket: control messages, request
weight and bans at chosen instants, listings along the tape, and the REST answers no other test reaches
(binance/binance-spot-api-docs, the sections each part cites)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from k2.producer.binance_standin.counters import Counters
from k2.producer.binance_standin.exchange_info import exchange_info
from k2.producer.binance_standin.listings import Listings
from k2.producer.binance_standin.rest_params import symbol_param
from k2.producer.binance_standin.tape import Tape
from k2.producer.binance_standin.trade_lookups import agg_trades, historical_trades
from k2.producer.binance_standin.weights import RequestWeights
from k2.producer.binance_standin.ws_control import Subscriber, answer_control, requested_streams


def trade(symbol: str, trade_id: int) -> dict[str, Any]:
    return {"e": "trade", "E": 1_790_000_000_000 + trade_id, "s": symbol, "t": trade_id, "p": "2.5", "q": "4",
            "T": 1_790_000_000_000 + trade_id, "m": False, "M": True}  # fmt: skip


def control(subscriber: Subscriber, message: Any, log: list[tuple[str, list[str]]] | None = None) -> dict[str, Any]:
    text = message if isinstance(message, str) else json.dumps(message)
    return answer_control(subscriber, text, [] if log is None else log)


def test_the_url_names_the_streams_and_the_kind_of_stream() -> None:
    assert requested_streams("/stream?streams=btcusdt@trade/ethusdt@trade") == (
        True,
        ["btcusdt@trade", "ethusdt@trade"],
    )
    assert requested_streams("/ws/btcusdt@trade") == (False, ["btcusdt@trade"])
    assert requested_streams("/stream?streams=%E5%B8%81%E5%AE%89usdt@trade") == (True, ["币安usdt@trade"])
    assert requested_streams("/ws") == (False, []) and requested_streams("/stream") == (True, [])


def test_control_messages_subscribe_list_and_set_properties_as_documented() -> None:
    subscriber = Subscriber({}, combined=True)
    log: list[tuple[str, list[str]]] = []
    assert control(subscriber, {"method": "SUBSCRIBE", "params": ["a@trade", "b@trade", "a@trade"], "id": 1}, log) == {
        "result": None,
        "id": 1,
    }
    assert control(subscriber, {"method": "LIST_SUBSCRIPTIONS", "id": None}) == {
        "result": ["a@trade", "b@trade"],
        "id": None,
    }
    assert control(subscriber, {"method": "UNSUBSCRIBE", "params": ["a@trade"], "id": "x9"}, log)["id"] == "x9"
    assert list(subscriber.streams) == ["b@trade"]
    assert log == [("SUBSCRIBE", ["a@trade", "b@trade", "a@trade"]), ("UNSUBSCRIBE", ["a@trade"])]
    assert control(subscriber, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 2}) == {
        "result": None,
        "id": 2,
    }
    assert subscriber.combined is False
    assert control(subscriber, {"method": "GET_PROPERTY", "params": ["colour"], "id": 3}) == {
        "code": 0,
        "msg": "Unknown property",
        "id": 3,
    }
    assert control(subscriber, {"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 4}) == {
        "code": 1,
        "msg": "Invalid value type: expected Boolean",
    }


@pytest.mark.parametrize(
    ("message", "msg"),
    [
        ({"params": []}, "Invalid request: missing field `method` at line 1 column 14"),
        ({"method": "SUBSCRIBE", "params": []}, "Invalid request: request ID must be an unsigned integer"),
        (
            {"method": "SUBSCRIBE", "params": [], "id": "x" * 37},
            "Invalid request: request ID must be an unsigned integer",
        ),
        ({"method": "SUBSCRIBE", "params": [], "id": 2**63}, "Invalid request: request ID must be an unsigned integer"),
        ({"method": "SUBSCRIBE", "params": "a@trade", "id": 1}, "Invalid request: params must be a list"),
        ({"method": "SUBSCRIBE", "params": [1], "id": 1}, "Invalid request: stream names must be strings"),
        ({"method": "LIST_SUBSCRIPTIONS", "params": ["a"], "id": 1}, "Invalid request: too many parameters"),
    ],
)
def test_malformed_control_messages_get_error_2_and_change_nothing(message: dict[str, Any], msg: str) -> None:
    subscriber = Subscriber({"a@trade": None}, combined=True)
    assert control(subscriber, message) == {"code": 2, "msg": msg}
    assert list(subscriber.streams) == ["a@trade"] and subscriber.combined


def test_weight_429_then_a_ban_within_the_window_and_none_in_the_next() -> None:
    counters = Counters()
    weights = RequestWeights(limit_per_min=50, time_scale=1.0, counters=counters)
    window = 1_800_000_000.0  # a minute boundary (divisible by 60)
    assert weights.charge(25, window + 1) is None and weights.charge(25, window + 2) is None
    limited = weights.charge(1, window + 50.5)
    assert limited is not None and limited.status_code == 429
    assert limited.headers["Retry-After"] == "10", "whole seconds to the window's end, rounded up"
    assert weights.charge(1, window + 61) is None, "a client that waited for the next window is not banned"
    assert weights.charge(60, window + 62) is not None and counters.rest_429 == 2
    banned = weights.charge(1, window + 63)
    assert banned is not None and banned.status_code == 418 and weights.banned_until == window + 63 + 120
    assert orjson.loads(banned.body)["msg"].startswith(
        f"Way too much request weight used; IP banned until {int((window + 183) * 1000)}."
    )
    assert (counters.weight_used, counters.peak_window_weight, counters.rest_418) == (113, 62, 1)


def test_time_scale_shortens_binances_durations_but_retry_after_stays_whole_seconds() -> None:
    weights = RequestWeights(limit_per_min=1, time_scale=60.0, counters=Counters())  # a minute lasts 1 s
    assert weights.window_s == 1.0
    assert weights.charge(1, 1000.0) is None
    limited = weights.charge(1, 1000.2)
    assert limited is not None and limited.headers["Retry-After"] == "1"
    banned = weights.charge(1, 1000.3)
    assert banned is not None and banned.headers["Retry-After"] == "2" and weights.banned_until == pytest.approx(1002.3)


def test_listings_change_along_the_tape_and_void_the_trades_of_a_symbol_not_trading() -> None:
    listings = Listings(["BTCUSDT", "NEWUSDT"], {"NEWUSDT": None}, {1: {"NEWUSDT": "TRADING"}, 3: {"BTCUSDT": "HALT"}})
    assert [listings.status_at("NEWUSDT", p) for p in range(4)] == [None, None, "TRADING", "TRADING"]
    assert [listings.status_at("BTCUSDT", p) for p in (3, 4)] == ["TRADING", "HALT"]
    assert listings.status_at("DOGEUSDT", 0) is None and listings.symbols == ["BTCUSDT", "NEWUSDT"]
    events = [trade("NEWUSDT", 1), trade("BTCUSDT", 1), trade("NEWUSDT", 2), trade("BTCUSDT", 2), trade("BTCUSDT", 3)]
    tape = Tape(events, listings)
    assert [f.void for f in tape.frames] == [True, False, False, False, True]
    assert [(t["s"], t["t"]) for t in tape.trades_made()] == [("BTCUSDT", 1), ("NEWUSDT", 2), ("BTCUSDT", 2)]
    with pytest.raises(ValueError, match="'BTCUSDT': 'PAUSED'"):
        Listings(["BTCUSDT"], None, {0: {"BTCUSDT": "PAUSED"}})


def test_rest_sees_only_the_trades_broadcast_so_far_and_a_looping_tape_makes_new_ids() -> None:
    events = [trade("BTCUSDT", n) for n in (1, 2, 3)]
    tape = Tape(events, Listings(["BTCUSDT"], None, {}))
    assert historical_trades({"symbol": ["BTCUSDT"]}, tape, 0.0) == (200, [])
    tape.broadcast_one()
    tape.broadcast_one()
    status, page = historical_trades({"symbol": ["BTCUSDT"], "fromId": ["0"]}, tape, 0.0)
    assert status == 200 and [(t["id"], t["quoteQty"]) for t in page] == [(1, "10"), (2, "10")]
    assert [a["a"] for a in agg_trades({"symbol": ["BTCUSDT"], "limit": ["1"]}, tape, 0.0)[1]] == [2]
    assert historical_trades({"symbol": ["BTCUSDT"]}, tape, 3600.0) == (200, []), "none broadcast an hour ago"
    tape.play_again()
    assert [f.trade["t"] for f in tape.frames if f.trade] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"symbol": ["BTCUSDT"], "symbols": ['["BTCUSDT"]']}, -1128),
        ({"symbol": ["BTCUSDT"], "symbolStatus": ["TRADING"]}, -1128),
        ({"symbolStatus": ["END_OF_DAY"]}, -1122),
        ({"symbols": ["BTCUSDT"]}, -1100),
        ({"symbols": ['["btcusdt"]']}, -1100),
        ({"symbol": [""]}, -1105),
    ],
)
def test_exchange_info_refuses_what_the_docs_forbid(query: dict[str, list[str]], code: int) -> None:
    tape = Tape([trade("BTCUSDT", 1)], Listings(["BTCUSDT"], None, {}))
    status, body = exchange_info(query, tape, 6000)
    assert status == 400 and body["code"] == code


def test_a_missing_symbol_parameter_is_minus_1102() -> None:
    assert symbol_param({}, "symbol") == (
        None,
        {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."},
    )
