from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from k2.cli.output import render

ROWS: list[dict[str, Any]] = [
    {"symbol": "BTCUSDT", "price": Decimal("34188.03000000"), "n": 3},
    {"symbol": "ETHUSDT", "price": None, "n": 1},
]


def test_json_keeps_decimals_exact() -> None:
    assert json.loads(render(ROWS, "json")) == [
        {"symbol": "BTCUSDT", "price": "34188.03000000", "n": 3},
        {"symbol": "ETHUSDT", "price": None, "n": 1},
    ]


def test_jsonl_is_one_object_per_line() -> None:
    lines = render(ROWS, "jsonl").splitlines()
    assert [json.loads(line)["symbol"] for line in lines] == ["BTCUSDT", "ETHUSDT"]


def test_csv_has_a_header_and_empty_nulls() -> None:
    assert render(ROWS, "csv").splitlines() == ["symbol,price,n", "BTCUSDT,34188.03000000,3", "ETHUSDT,,1"]


def test_table_aligns_columns() -> None:
    lines = render(ROWS, "table", ["symbol", "n"]).splitlines()
    assert lines == ["SYMBOL   N", "BTCUSDT  3", "ETHUSDT  1"]
