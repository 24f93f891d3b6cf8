"""`k2 ksql validate`: offline checks of ksql/migrations against schemas/ and topics.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.ksql.migrations import MIGRATIONS_DIR, MigrationError, load_migrations, resolve, split_statements
from k2.ksql.validate import validate

TOPICS = {"trades_topic": "market.crypto.trades.binance"}


def test_the_shipped_migrations_validate_clean() -> None:
    assert validate(load_migrations(), TOPICS) == []
    result = CliRunner().invoke(cli, ["ksql", "validate"])
    assert result.exit_code == 0, result.output
    assert "5 migrations, 8 statements: valid" in result.output


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


def test_an_unknown_column_is_named_with_file_and_line(copy: Path) -> None:
    _edit(copy, "V000002__create_candles_1m.sql", "MAX(price) AS high", "MAX(best_price) AS high")
    problems = [str(p) for p in validate(load_migrations(copy), TOPICS)]
    assert problems[0].startswith(
        "V000002__create_candles_1m.sql:25: column best_price: unknown column in trades_stream"
    )


def test_a_renamed_avro_field_is_caught(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from k2.schemas import contract

    schema = dict(contract.parsed_schema("trade.avsc"))
    schema["fields"] = [dict(f, name="qty") if f["name"] == "quantity" else f for f in schema["fields"]]
    monkeypatch.setattr("k2.ksql.validate.parsed_schema", lambda _name: schema)
    problems = validate(load_migrations(copy), TOPICS)
    assert problems and all(p.item == "column quantity" for p in problems)


def test_an_aggregate_on_the_wrong_type_is_refused(copy: Path) -> None:
    _edit(copy, "V000003__create_candles_5m.sql", "LATEST_BY_OFFSET(price) AS close", "SUM(side) AS close")
    problems = [str(p) for p in validate(load_migrations(copy), TOPICS)]
    assert "V000003__create_candles_5m.sql:27: SUM(side): needs a numeric argument, side is STRING" in problems


def test_an_undeclared_topic_is_refused(copy: Path) -> None:
    problems = [str(p) for p in validate(load_migrations(copy), {"trades_topic": "market.crypto.trades.bianance"})]
    assert problems == [
        "V000001__create_trades_stream.sql:10: topic market.crypto.trades.bianance: not declared in schemas/topics.toml"
    ]


def test_a_missing_variable_is_named(copy: Path) -> None:
    _edit(copy, "V000005__create_rolling_volume.sql", "DEFINE volume_topic = 'market.crypto.volume.binance.1h';", "")
    problems = validate(load_migrations(copy), TOPICS)
    assert [(p.file, p.line, p.item) for p in problems] == [
        ("V000005__create_rolling_volume.sql", 9, "variable volume_topic")
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
