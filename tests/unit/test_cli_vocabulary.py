"""One CLI vocabulary, checked on every command the `k2` tree has (a new command is checked too):

- a command that prints records takes the shared --format (table|json|jsonl|csv; plus parquet for row
  results) and --output FILE;
- a duration is always written 90s / 10m / 24h / 7d (the shared DURATION type);
- symbols are always passed as --symbols A,B (the shared SYMBOLS type), never as arguments;
- a command that changes state has --dry-run;
- every option has help text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from k2.cli.main import cli
from k2.cli.options import Duration, Symbols
from k2.cli.output import FORMATS, ROW_FORMATS

from .cli_tree import COMMANDS

IDS = [" ".join(path) for path in COMMANDS]

# Commands that print no records, and why.
NO_RECORDS = {
    ("stack", "logs"): "prints log lines as the services wrote them",
    ("binance-standin", "serve"): "a server: prints one line on stderr, then serves",
    ("binance-standin", "generate"): "writes frames to --out; prints one line",
    ("kafka-ui",): "a terminal UI (kaskade) takes over the terminal",
}
# Commands whose records are query results (rows): parquet too.
ROW_RESULTS = {("query",), ("candles",), ("volume",), ("ksql", "query")}
# Commands that change nothing outside the process, and so need no --dry-run.
READ_ONLY = {
    ("status",),
    ("kafka-ui",),
    ("stack", "status"),
    ("stack", "logs"),
    ("topics", "list"),
    ("schemas", "check"),
    ("schemas", "list"),
    ("binance-standin", "serve"),
    ("binance-standin", "generate"),
    ("tables", "snapshots"),
    ("connectors", "status"),
    ("query",),
    ("candles",),
    ("volume",),
    ("ksql", "list"),
    ("ksql", "query"),
    ("ksql", "validate"),
    ("ksql", "info"),
    ("ksql", "reconcile"),
}
# Option names that take a length of time, and the few that are choices of candle length instead.
DURATION_NAME = re.compile(r"(duration|timeout|interval|retain|age|last|lag)$")
CANDLE_LENGTHS = {(("candles",), "interval"), (("ksql", "reconcile"), "interval")}
NOT_DURATIONS = {(("status",), "max_lag")}  # a number of records


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}


def test_the_walk_sees_every_command() -> None:
    assert len(COMMANDS) >= 30 and ("run",) in COMMANDS and ("ksql", "query") in COMMANDS
    listed = set(NO_RECORDS) | ROW_RESULTS | READ_ONLY
    assert listed <= set(COMMANDS), f"exemptions name commands that do not exist: {listed - set(COMMANDS)}"


@pytest.mark.parametrize(("path", "command"), COMMANDS.items(), ids=IDS)
def test_records_go_through_the_shared_format_and_output_options(path: tuple[str, ...], command: click.Command) -> None:
    options = _options(command)
    if path in NO_RECORDS:
        assert "fmt" not in options, f"{NO_RECORDS[path]}, yet it has --format: drop it from NO_RECORDS"
        return
    fmt, output = options.get("fmt"), options.get("output")
    assert fmt is not None and output is not None, "a command that prints records takes --format and --output"
    assert isinstance(fmt.type, click.Choice) and fmt.opts == ["--format"]
    assert tuple(fmt.type.choices) == (ROW_FORMATS if path in ROW_RESULTS else FORMATS)
    assert output.opts == ["--output"] and isinstance(output.type, click.Path)


@pytest.mark.parametrize(("path", "command"), COMMANDS.items(), ids=IDS)
def test_durations_symbols_dry_run_and_help(path: tuple[str, ...], command: click.Command) -> None:
    for name, option in _options(command).items():
        assert option.help, f"{option.opts[0]} has no help text"
        if (path, name) in CANDLE_LENGTHS:
            assert isinstance(option.type, click.Choice)
            assert all(Duration().convert(choice, None, None) > 0 for choice in option.type.choices)
        elif DURATION_NAME.search(name) and (path, name) not in NOT_DURATIONS:
            assert isinstance(option.type, Duration), f"{option.opts[0]} takes a duration: use the shared DURATION"
        if name in ("symbol", "symbols"):
            assert name == "symbols" and isinstance(option.type, Symbols), f"{option.opts[0]}: use --symbols"
    arguments = [p.name for p in command.params if isinstance(p, click.Argument)]
    assert not any("symbol" in (name or "") for name in arguments), "symbols are passed with --symbols"
    if path not in READ_ONLY:
        dry_run = _options(command).get("dry_run")
        assert dry_run is not None and dry_run.is_flag, "a command that changes state has --dry-run"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("24h", 86400), ("7d", 604800), ("1.5h", 5400), ("45", 45)]
)
def test_one_duration_syntax(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("args", [["produce", "--duration", "ten"], ["stack", "up", "--timeout", "5 minutes"]])
def test_a_bad_duration_is_one_usage_line(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert result.exit_code == 2
    assert "is not a duration like 90s, 10m, 24h or 7d" in result.output


def test_output_writes_every_format_and_parquet_needs_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    for fmt in ("json", "jsonl", "csv"):
        out = tmp_path / f"validate.{fmt}"
        result = runner.invoke(cli, ["ksql", "validate", "--format", fmt, "--output", str(out)])
        assert result.exit_code == 0, result.output
        assert out.is_file() and "Wrote 0 rows to" in result.output
    assert json.loads((tmp_path / "validate.json").read_text()) == []
    refused = runner.invoke(cli, ["query", "select 1", "--format", "parquet"])
    assert refused.exit_code == 2 and "--format parquet needs --output FILE" in refused.output


def test_emit_to_parquet_keeps_exact_decimals(tmp_path: Path) -> None:
    from decimal import Decimal

    from k2.cli.output import format_option

    @click.command()
    @format_option(rows=True)
    def rows(fmt: str) -> None:
        from k2.cli.output import emit

        emit([{"symbol": "BTCUSDT", "price": Decimal("91234.12345678")}], fmt)

    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(rows, ["--format", "parquet", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist() == [{"symbol": "BTCUSDT", "price": Decimal("91234.12345678")}]
