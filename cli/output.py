"""One output helper for every command: table for people, json/jsonl/csv for scripts."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import click

FORMATS = ("table", "json", "jsonl", "csv")


def format_option(default: str = "table") -> Any:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format: an aligned table, a JSON array, JSON lines, or CSV with a header.",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: never through float
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): _plain(v) for k, v in value}  # Arrow maps arrive as key/value pairs
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(_plain(value))


def render(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    """Render rows (dicts with the same keys) in one of FORMATS, without a trailing newline."""
    columns = list(columns or (rows[0].keys() if rows else []))
    if fmt == "json":
        return json.dumps([{c: _plain(r.get(c)) for c in columns} for r in rows], indent=2, default=str)
    if fmt == "jsonl":
        return "\n".join(json.dumps({c: _plain(r.get(c)) for c in columns}, default=str) for r in rows)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
        return buffer.getvalue().rstrip("\n")
    table = [[c.upper() for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table)


def emit(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> None:
    text = render(rows, fmt, columns)
    if text:
        click.echo(text)


class Progress:
    """A status line on stderr that rewrites itself on a terminal and stays quiet otherwise."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._width = 0

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        final = message.endswith("\n")
        text = message.rstrip("\n")
        pad = " " * max(0, self._width - len(text))
        click.echo(f"\r{text}{pad}", nl=final, err=True)
        self._width = 0 if final else len(text)
