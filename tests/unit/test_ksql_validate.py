"""`k2 ksql validate`: offline checks of ksql/migrations against schemas/ and topics.toml."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.ksql.migrations import MIGRATIONS_DIR, MigrationError, load_migrations, resolve, split_statements
from k2.ksql.rules import FUNCTIONS, UNKNOWN, Function
from k2.ksql.validate import Problem, Validator, arithmetic_type, validate

TOPICS = {"trades_topic": "market.crypto.trades.binance"}
BAD = Path(__file__).parent / "ksql_bad"


def test_the_shipped_migrations_validate_clean() -> None:
    assert validate(load_migrations(), TOPICS) == []
    result = CliRunner().invoke(cli, ["ksql", "validate"])
    assert result.exit_code == 0, result.output
    assert "5 migrations, 8 statements: valid" in result.output


def test_derived_columns_carry_ksqldb_types() -> None:
    validator = Validator()
    assert validator.check(load_migrations(), TOPICS) == []
    columns = validator.sources["candles_1m"].columns
    assert columns["symbol"] == "STRING"  # symbol_key AS symbol: the key's type
    assert (columns["open"], columns["interval_start"], columns["trade_count"]) == (
        "DECIMAL(28, 8)",
        "BIGINT",
        "BIGINT",
    )
    assert (columns["volume"], columns["quote_volume"], columns["vwap"]) == (
        "DECIMAL(38, 8)",
        "DECIMAL(38, 16)",
        "DOUBLE",
    )


def test_decimal_result_types_follow_ksqldb() -> None:
    """SqlDecimal.add/multiply/divide in ksqlDB 0.29; an INTEGER or BIGINT next to a DECIMAL is widened first."""
    price = "DECIMAL(28, 8)"
    assert arithmetic_type("*", price, price) == "DECIMAL(57, 16)"
    assert arithmetic_type("+", price, "DECIMAL(38, 16)") == "DECIMAL(39, 16)"
    assert arithmetic_type("/", price, price) == "DECIMAL(65, 37)"
    assert arithmetic_type("-", price, "BIGINT") == "DECIMAL(29, 8)"
    assert arithmetic_type("/", price, "DOUBLE") == "DOUBLE"
    assert arithmetic_type("/", "BIGINT", "INTEGER") == "BIGINT"


def test_migrations_are_in_version_order_with_the_tool_naming() -> None:
    names = [m.path.name for m in load_migrations()]
    assert names == sorted(names) and names[0] == "V000001__create_trades_stream.sql"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _edit(directory: Path, name: str, old: str, new: str) -> None:
    path = directory / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _line(directory: Path, name: str, text: str) -> int:
    """The first line of a migration holding text: the migrations' comments change, their statements stay."""
    lines = (directory / name).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_an_unknown_column_is_named_with_file_and_line(copy: Path) -> None:
    _edit(copy, "V000002__create_candles_1m.sql", "MAX(price) AS high", "MAX(best_price) AS high")
    line = _line(copy, "V000002__create_candles_1m.sql", "MAX(best_price) AS high")
    problems = [str(p) for p in validate(load_migrations(copy), TOPICS)]
    assert problems == [
        f"V000002__create_candles_1m.sql:{line}: column best_price: unknown column in trades_stream (it has: "
        "event_time, exchange, ingest_time, is_buyer_maker, price, quantity, side, symbol, symbol_key, trade_id, "
        "trade_time, vendor_data)"
    ]


def test_columns_are_checked_in_expressions_the_type_checker_cannot_read(copy: Path) -> None:
    case = "MAX(CASE WHEN side = 'BUY' THEN price ELSE best_price END) AS high"
    _edit(copy, "V000002__create_candles_1m.sql", "MAX(price) AS high", case)
    line = _line(copy, "V000002__create_candles_1m.sql", case)
    problems = [(p.file, p.line, p.item) for p in validate(load_migrations(copy), TOPICS)]
    assert problems == [("V000002__create_candles_1m.sql", line, "column best_price")]


def test_a_renamed_avro_field_is_caught(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from k2.schemas import contract

    schema = dict(contract.parsed_schema("trade.avsc"))
    schema["fields"] = [dict(f, name="qty") if f["name"] == "quantity" else f for f in schema["fields"]]
    monkeypatch.setattr("k2.ksql.validate.parsed_schema", lambda _name: schema)
    problems = validate(load_migrations(copy), TOPICS)
    assert problems and all(p.item == "column quantity" for p in problems)


def test_an_aggregate_on_the_wrong_type_is_refused(copy: Path) -> None:
    _edit(copy, "V000003__create_candles_5m.sql", "LATEST_BY_OFFSET(price) AS close", "SUM(side) AS close")
    line = _line(copy, "V000003__create_candles_5m.sql", "SUM(side) AS close")
    problems = [str(p) for p in validate(load_migrations(copy), TOPICS)]
    assert problems == [f"V000003__create_candles_5m.sql:{line}: SUM(side): needs a numeric argument, side is STRING"]


def _bad(tmp_path: Path, name: str) -> list[str]:
    """Problems of the real trades stream followed by one purpose-written bad migration from ksql_bad/."""
    shutil.copy(MIGRATIONS_DIR / "V000001__create_trades_stream.sql", tmp_path)
    shutil.copy(BAD / name, tmp_path)
    return [str(p) for p in validate(load_migrations(tmp_path), TOPICS)]


def test_exact_decimal_division_is_refused(tmp_path: Path) -> None:
    rule = (
        "with rounding forbidden: ksqlDB 0.29 divides DECIMALs with RoundingMode.UNNECESSARY (SqlToJavaVisitor), "
        'so a quotient that does not terminate throws "Rounding necessary" and the column is NULL '
        "(confluentinc/ksql#9874); cast both sides to DOUBLE: CAST(x AS DOUBLE) / CAST(y AS DOUBLE)"
    )
    assert _bad(tmp_path, "V000002__decimal_division.sql") == [
        "V000002__decimal_division.sql:11: "
        "SUM(CAST(price * quantity AS DECIMAL(38, 16))) / SUM(CAST(quantity AS DECIMAL(38, 8))): "
        f"divides DECIMAL(38, 16) by DECIMAL(38, 8) {rule}",
        "V000002__decimal_division.sql:12: SUM(CAST(price AS DECIMAL(38, 8))) / COUNT(*): "
        f"divides DECIMAL(38, 8) by BIGINT (as DECIMAL(19, 0)) {rule}",
    ]


def test_a_window_without_retention_is_refused(tmp_path: Path) -> None:
    assert _bad(tmp_path, "V000002__window_without_retention.sql") == [
        "V000002__window_without_retention.sql:11: WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS): "
        "no RETENTION: the window store keeps only size + grace (70 SECONDS), so pull queries see only the last "
        "windows; add RETENTION n DAYS after SIZE (ksqlDB 0.29: SIZE, [ADVANCE BY,] RETENTION, GRACE PERIOD)"
    ]


def test_retention_below_size_plus_grace_is_refused(tmp_path: Path) -> None:
    refused = (
        'Kafka Streams refuses the window store ("must be no smaller than its window size plus the grace period") '
        "and the query fails"
    )
    assert _bad(tmp_path, "V000002__retention_below_size_plus_grace.sql") == [
        "V000002__retention_below_size_plus_grace.sql:14: "
        "WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 1 MINUTE, RETENTION 1 HOUR, GRACE PERIOD 2 MINUTES): "
        f"RETENTION 1 HOUR is less than size + grace (62 MINUTES): {refused}; use RETENTION of at least 62 MINUTES",
        "V000002__retention_below_size_plus_grace.sql:24: WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 12 HOURS): "
        "RETENTION 12 HOURS is less than size + grace (1 DAY), grace being ksqlDB 0.29's default when GRACE PERIOD "
        f"is missing, 24 hours minus the size (1439 MINUTES): {refused}; add GRACE PERIOD n unit after RETENTION, "
        "or use RETENTION of at least 1 DAY",
    ]


def test_window_clauses_follow_the_grammar_order(tmp_path: Path) -> None:
    assert _bad(tmp_path, "V000002__window_clauses_out_of_order.sql") == [
        "V000002__window_clauses_out_of_order.sql:10: "
        "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS, RETENTION 7 DAYS): "
        "not ksqlDB 0.29 window syntax: TUMBLING (SIZE n unit[, RETENTION n unit][, GRACE PERIOD n unit]), "
        "in that order, unit one of MILLISECOND(S), SECOND(S), MINUTE(S), HOUR(S), DAY(S)"
    ]


def test_a_sum_that_can_overflow_its_type_is_refused(tmp_path: Path) -> None:
    assert _bad(tmp_path, "V000002__sum_that_can_overflow.sql") == [
        "V000002__sum_that_can_overflow.sql:12: SUM(quantity): can overflow: ksqlDB keeps SUM in its argument's "
        'type, DECIMAL(28, 8), and throws "Numeric field overflow" once |sum| reaches 10^20 (DecimalSumKudaf), '
        "which stops the query (its stream thread dies on the same record at every restart); "
        "use SUM(CAST(quantity AS DECIMAL(38, 8)))",
        "V000002__sum_that_can_overflow.sql:13: SUM(price * quantity): too wide: ksqlDB keeps SUM in its "
        "argument's type, DECIMAL(57, 16), and publishes 57 digits, more than the 38 an Iceberg decimal holds; "
        "use SUM(CAST(price * quantity AS DECIMAL(38, 16)))",
    ]


def test_an_undeclared_topic_is_refused(copy: Path) -> None:
    problems = [str(p) for p in validate(load_migrations(copy), {"trades_topic": "market.crypto.trades.bianance"})]
    assert problems == [
        "V000001__create_trades_stream.sql:10: topic market.crypto.trades.bianance: not declared in schemas/topics.toml"
    ]


def test_a_missing_variable_is_named(copy: Path) -> None:
    _edit(copy, "V000005__create_rolling_volume.sql", "DEFINE volume_topic = 'market.crypto.volume.binance.1h';", "")
    line = _line(copy, "V000005__create_rolling_volume.sql", "CREATE TABLE IF NOT EXISTS volume_1h_rolling")
    problems = validate(load_migrations(copy), TOPICS)
    assert [(p.file, p.line, p.item) for p in problems] == [
        ("V000005__create_rolling_volume.sql", line, "variable volume_topic")
    ]


def test_timestamp_must_name_a_time_column(copy: Path) -> None:
    _edit(copy, "V000001__create_trades_stream.sql", "TIMESTAMP = 'trade_time'", "TIMESTAMP = 'side'")
    problems = [str(p) for p in validate(load_migrations(copy), TOPICS)]
    assert problems == [
        "V000001__create_trades_stream.sql:13: column side: TIMESTAMP needs TIMESTAMP or BIGINT, is STRING"
    ]


def test_statement_splitting_respects_quotes_and_comments() -> None:
    text = "-- a; comment\nCREATE STREAM a (x STRING KEY) WITH (KAFKA_TOPIC='t;1');\n/* ; */ DROP STREAM a;\n"
    statements = split_statements(text)
    assert [s.text for s in statements] == [
        "CREATE STREAM a (x STRING KEY) WITH (KAFKA_TOPIC='t;1');",
        "DROP STREAM a;",
    ]
    assert [s.line for s in statements] == [2, 3]
    with pytest.raises(MigrationError, match="does not end with ';'"):
        split_statements("CREATE STREAM a")


def test_command_line_variables_win_over_defines() -> None:
    first = load_migrations()[0]
    resolved = resolve(first, {"trades_topic": "other.topic"})
    assert "KAFKA_TOPIC = 'other.topic'" in resolved[0].text


def test_every_aggregate_groups_by_its_sources_key_so_ksqldb_adds_no_repartition_topic() -> None:
    """ksqlDB 0.29 repartitions unless the GROUP BY is exactly the source's key column
    (Repartitioning.repartitionNeeded); the candle and volume tables keep their output column names by
    aliasing the key (`symbol_key AS symbol`)."""
    keys: dict[str, str] = {}
    grouped = []
    for migration in load_migrations():
        for statement in migration.statements:
            text = " ".join(statement.text.split())
            stream = re.match(r"CREATE STREAM (?:IF NOT EXISTS )?(\w+) \( ?(\w+) \w+ KEY", text, re.I)
            if stream:
                keys[stream.group(1).lower()] = stream.group(2).lower()
            aggregate = re.search(r"\bFROM (\w+) .*\bGROUP BY (.+?) EMIT\b", text, re.I)
            if aggregate:
                grouped.append((migration.path.name, aggregate.group(1).lower(), aggregate.group(2).strip().lower()))
                assert re.search(rf"\b{aggregate.group(2).strip()} AS symbol\b", text), text[:80]
    assert len(grouped) == 7
    for name, source, group_by in grouped:
        assert group_by == keys[source], f"{name} groups by {group_by}, not {source}'s key {keys[source]}"


def _check(tmp_path: Path, sql: str) -> tuple[Validator, list[Problem]]:
    """The real trades stream, then sql as a second migration: the validator (its sources) and its problems."""
    shutil.copy(MIGRATIONS_DIR / "V000001__create_trades_stream.sql", tmp_path)
    (tmp_path / "V000002__under_test.sql").write_text(sql)
    validator = Validator()
    return validator, validator.check(load_migrations(tmp_path), TOPICS)


def _select(tmp_path: Path, expression: str) -> tuple[str, list[str]]:
    """The type of one aggregated SELECT item over the trades stream, and the problems' messages."""
    sql = (
        f"CREATE TABLE t WITH (KAFKA_TOPIC = 'x', VALUE_FORMAT = 'AVRO') AS\nSELECT symbol_key, {expression} AS x\n"
        "FROM trades_stream GROUP BY symbol_key EMIT CHANGES;\n"
    )
    validator, problems = _check(tmp_path, sql)
    return validator.sources["t"].columns["x"], [p.message for p in problems]


@pytest.mark.parametrize(
    ("expression", "result", "problem"),
    [
        ("COUNT(*)", "BIGINT", None),
        ("COUNT(side)", "BIGINT", None),
        ("SUM(trade_id)", "BIGINT", None),
        ("SUM(CAST(price AS DECIMAL(38, 8)))", "DECIMAL(38, 8)", None),
        ("SUM(side)", UNKNOWN, "needs a numeric argument, side is STRING"),
        ("SUM(price)", "DECIMAL(28, 8)", "can overflow: ksqlDB keeps SUM in its argument's type, DECIMAL(28, 8)"),
        ("AVG(trade_id)", "DOUBLE", None),
        ("AVG(CAST(price AS DOUBLE))", "DOUBLE", None),
        (
            "AVG(price)",
            UNKNOWN,
            "needs an INTEGER, BIGINT or DOUBLE argument, price is DECIMAL(28, 8) (AverageUdaf has no DECIMAL "
            "form); use AVG(CAST(price AS DOUBLE))",
        ),
        ("MIN(price)", "DECIMAL(28, 8)", None),
        ("MAX(side)", "STRING", None),  # MaxKudaf takes strings too
        ("MIN(trade_time)", "TIMESTAMP", None),
        ("MAX(vendor_data)", UNKNOWN, "needs a number, DATE, TIME, TIMESTAMP, STRING or BYTES argument"),
        ("EARLIEST_BY_OFFSET(vendor_data)", "MAP<STRING, STRING>", None),
        ("LATEST_BY_OFFSET(price)", "DECIMAL(28, 8)", None),
        ("LATEST_BY_OFFSET(price, 3)", UNKNOWN, None),  # other forms are not typed
        ("UCASE(side)", UNKNOWN, None),  # a function without a row is not typed
    ],
)
def test_function_rules_come_from_one_table(tmp_path: Path, expression: str, result: str, problem: str | None) -> None:
    column_type, messages = _select(tmp_path, expression)
    assert column_type == result
    if problem is None:
        assert messages == []
    else:
        assert [m[: len(problem)] for m in messages] == [problem]


def test_an_aggregate_is_one_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _select(tmp_path, "STDDEV_SAMPLE(price)") == (UNKNOWN, [])
    doubles = frozenset({"INTEGER", "BIGINT", "DOUBLE"})
    monkeypatch.setitem(FUNCTIONS, "STDDEV_SAMPLE", Function(doubles, "DOUBLE", "an INTEGER, BIGINT or DOUBLE"))
    assert _select(tmp_path, "STDDEV_SAMPLE(trade_id)") == ("DOUBLE", [])
    assert _select(tmp_path, "STDDEV_SAMPLE(price)")[1] == [
        "needs an INTEGER, BIGINT or DOUBLE argument, price is DECIMAL(28, 8)"
    ]


def test_dividing_a_decimal_by_a_power_of_two_or_five_is_exact(tmp_path: Path) -> None:
    assert _select(tmp_path, "LATEST_BY_OFFSET((price + price) / 2)") == ("DECIMAL(40, 19)", [])
    assert _select(tmp_path, "LATEST_BY_OFFSET(price / 100)") == ("DECIMAL(39, 19)", [])
    column_type, messages = _select(tmp_path, "LATEST_BY_OFFSET(price / 3)")
    assert column_type == "DECIMAL(39, 19)" and messages[0].startswith("divides DECIMAL(28, 8) by INTEGER")


QUOTE = {
    "type": "record",
    "name": "Quote",
    "fields": [
        {"name": "symbol", "type": "string"},
        {"name": "bid", "type": {"type": "bytes", "logicalType": "decimal", "precision": 28, "scale": 8}},
        {"name": "ask", "type": {"type": "bytes", "logicalType": "decimal", "precision": 28, "scale": 8}},
        {"name": "quoteTime", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
QUOTES = """DEFINE quotes_topic = 'market.crypto.quotes.binance';

CREATE STREAM IF NOT EXISTS quotes_stream (symbol_key STRING KEY)
WITH (KAFKA_TOPIC = '${quotes_topic}', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO', TIMESTAMP = 'quotetime');

CREATE TABLE IF NOT EXISTS quotes_1m
WITH (KAFKA_TOPIC = 'market.crypto.quotes.binance.1m', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT
    symbol_key AS symbol,
    WINDOWSTART AS interval_start,
    LATEST_BY_OFFSET(ask - bid) AS spread,
    LATEST_BY_OFFSET((ask + bid) / 2) AS mid,
    AVG(CAST(ask - bid AS DOUBLE)) AS mean_spread,
    MIN(bid) AS low_bid,
    MAX(ask) AS high_ask,
    COUNT(*) AS quote_count
FROM quotes_stream
WHERE bid IS NOT NULL AND ask > bid
WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 7 DAYS, GRACE PERIOD 10 SECONDS)
GROUP BY symbol_key
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS quotes_latest
WITH (KAFKA_TOPIC = 'market.crypto.quotes.binance.latest', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT symbol_key AS symbol, LATEST_BY_OFFSET(bid) AS bid, LATEST_BY_OFFSET(ask) AS ask
FROM quotes_stream
GROUP BY symbol_key
EMIT CHANGES;

CREATE STREAM IF NOT EXISTS trades_quoted
WITH (KAFKA_TOPIC = 'market.crypto.trades.binance.quoted', KEY_FORMAT = 'KAFKA', VALUE_FORMAT = 'AVRO') AS
SELECT t.symbol_key AS symbol, t.price, q.bid, q.ask, t.price - q.bid AS above_bid
FROM trades_stream t
LEFT JOIN quotes_latest AS q ON t.symbol_key = q.symbol
EMIT CHANGES;
"""


@pytest.fixture
def quotes_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second topic with its own Avro contract, as schemas/topics.toml and schemas/quote.avsc would declare it."""
    from k2.schemas import contract

    topics = contract.load_topics()
    topics["quotes"] = contract.TopicSpec("quotes", "market.crypto.quotes.binance", 6, value_schema="quote.avsc")
    monkeypatch.setattr("k2.ksql.validate.load_topics", lambda: topics)
    real = contract.parsed_schema
    monkeypatch.setattr("k2.ksql.validate.parsed_schema", lambda name: QUOTE if name == "quote.avsc" else real(name))


def test_a_second_stream_and_table_over_another_contract_and_a_join_validate(
    tmp_path: Path, quotes_declared: None
) -> None:
    validator, problems = _check(tmp_path, QUOTES)
    assert problems == []
    assert validator.sources["quotes_1m"].columns == {
        "symbol": "STRING",
        "interval_start": "BIGINT",
        "spread": "DECIMAL(29, 8)",
        "mid": "DECIMAL(40, 19)",
        "mean_spread": "DOUBLE",
        "low_bid": "DECIMAL(28, 8)",
        "high_ask": "DECIMAL(28, 8)",
        "quote_count": "BIGINT",
    }
    joined = validator.sources["trades_quoted"].columns
    assert (joined["price"], joined["bid"], joined["above_bid"]) == (
        "DECIMAL(28, 8)",
        "DECIMAL(28, 8)",
        "DECIMAL(29, 8)",
    )


def test_a_join_resolves_columns_through_its_aliases(tmp_path: Path, quotes_declared: None) -> None:
    bad = QUOTES.replace("q.bid, q.ask", "q.bid, q.price, z.ask").replace("q.symbol\n", "q.symbol AND spread > 0\n")
    problems = [(p.line, p.item, p.message) for p in _check(tmp_path, bad)[1]]
    has = "ask, bid, symbol"
    assert problems == [
        (32, "column price", f"unknown column in quotes_latest (it has: {has})"),
        (32, "source z", "not in FROM (t, q)"),
        (34, "column spread", "unknown column in trades_stream or quotes_latest (it has: ask, bid, event_time, "
         "exchange, ingest_time, is_buyer_maker, price, quantity, side, symbol, symbol_key, trade_id, trade_time, "
         "vendor_data)"),
    ]  # fmt: skip


def test_what_the_validator_does_not_read_is_reported_where_it_stops(tmp_path: Path) -> None:
    sql = "CREATE STREAM s AS SELECT\n  TRANSFORM(ARRAY[1], x => x + 1) AS y\nFROM trades_stream EMIT CHANGES;\n"
    (problem,) = _check(tmp_path, sql)[1]
    assert (problem.line, problem.column, problem.item) == (2, 13, "TRANSFORM(ARRAY[1], x => x + 1) AS y")
    assert problem.message.startswith("not read by k2 ksql validate (it reads ksqlDB 0.29's grammar but for lambdas")
    assert problem.message.endswith("expected an expression at line 2, column 13")


def test_problems_point_at_the_line_and_column_of_their_token(copy: Path) -> None:
    _edit(copy, "V000002__create_candles_1m.sql", "MAX(price) AS high", "MAX(best_price) AS high")
    (problem,) = validate(load_migrations(copy), TOPICS)
    line = (copy / "V000002__create_candles_1m.sql").read_text().splitlines()[problem.line - 1]
    assert line[problem.column - 1 :].startswith("best_price) AS high")
    _edit(copy, "V000002__create_candles_1m.sql", "MAX(best_price) AS high", "MAX(price) AS high")
    _edit(copy, "V000001__create_trades_stream.sql", "TIMESTAMP = 'trade_time'", "TIMESTAMP = 'side'")
    (problem,) = validate(load_migrations(copy), TOPICS)
    assert (problem.line, problem.column) == (13, 17)
