"""One output helper for every command: table for people, json/jsonl/csv (and parquet for rows) for scripts.

A command that prints records takes ``@format_option()`` (``rows=True`` for query results, which adds
parquet): it adds ``--format`` and ``--output FILE``, and every ``emit`` the command makes goes where
they say. Commands that run other commands (``k2 run``) pass their ``fmt`` on; the outermost
``--output`` holds for all of them.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("table", "json", "jsonl", "csv")
# user:password@ in a URL (a connection option may carry one): never printed, in records or errors.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]+):[^/\s@]+@")


def redact(text: str) -> str:
    """The text with every URL's password replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


ROW_FORMATS = (*FORMATS, "parquet")


@dataclass
class _Destination:
    path: Path
    rows: int = 0
    opened: bool = False


_destination: ContextVar[_Destination | None] = ContextVar("k2_output", default=None)


def format_option(default: str = "table", rows: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """``--format`` and ``--output FILE`` on a command that prints records (``rows``: parquet too)."""

    def decorate(command: Callable[..., Any]) -> Any:
        @functools.wraps(command)
        def wrapper(*args: Any, output: Path | None = None, **kwargs: Any) -> Any:
            if output is None:  # stdout, or the --output of a command that runs this one
                if kwargs.get("fmt") == "parquet" and _destination.get() is None:
                    raise click.UsageError("--format parquet needs --output FILE")
                return command(*args, **kwargs)
            destination = _Destination(output)
            token = _destination.set(destination)
            try:
                result = command(*args, **kwargs)
            except SystemExit as exit_:  # a command that exits non-zero after emitting (status, reconcile)
                if destination.opened:
                    click.echo(f"Wrote {destination.rows} rows to {output}", err=True)
                raise exit_
            finally:
                _destination.reset(token)
            if not destination.opened:
                _open(output, "w").close()  # no records: an empty file, not a stale one
            click.echo(f"Wrote {destination.rows} rows to {output}", err=True)  # said only when it is true
            return result

        click.option(
            "--output",
            type=click.Path(dir_okay=False, writable=True, path_type=Path),
            help="Write the records to this file instead of stdout (replaced if it exists).",
        )(wrapper)
        click.option(
            "--format",
            "fmt",
            type=click.Choice(ROW_FORMATS if rows else FORMATS),
            default=default,
            show_default=True,
            help="Output format: an aligned table, a JSON array, JSON lines, CSV with a header"
            + (", or Parquet (with --output)." if rows else "."),
        )(wrapper)
        return wrapper

    return decorate


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
    """Print records to stdout, or add them to the command's --output file."""
    if fmt == "parquet":
        import pyarrow as pa

        columns = list(columns or (rows[0].keys() if rows else []))
        emit_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), fmt)
        return
    text = redact(render(rows, fmt, columns))
    destination = _destination.get()
    if destination is None:
        if text:
            click.echo(text)
        return
    try:
        with _open(destination.path, "a" if destination.opened else "w") as out:
            out.write(text + "\n" if text else "")
    except OSError as exc:  # a full disk shows at write or close, not at open
        raise click.ClickException(f"cannot write --output {destination.path}: {exc.strerror}") from None
    destination.opened = True
    destination.rows += len(rows)


def _open(path: Path, mode: str) -> io.TextIOWrapper:
    try:
        return path.open(mode)  # type: ignore[return-value]
    except OSError as exc:
        raise click.ClickException(f"cannot write --output {path}: {exc.strerror}") from None


def emit_table(table: pa.Table, fmt: str) -> None:
    """An Arrow result: Parquet keeps its types exactly; other formats go through emit."""
    if fmt != "parquet":
        emit(table.to_pylist(), fmt, table.column_names)
        return
    destination = _destination.get()
    if destination is None:
        raise click.UsageError("--format parquet needs --output FILE")
    if destination.opened:
        raise click.UsageError("--format parquet writes one result; this command has several")
    import pyarrow.parquet as pq

    try:
        pq.write_table(table, destination.path)
    except OSError as exc:
        raise click.ClickException(f"cannot write --output {destination.path}: {exc}") from None
    destination.opened = True
    destination.rows += table.num_rows


def emit_record(record: Mapping[str, Any], fmt: str) -> None:
    """One record (a summary): a metric/value table for people, a one-element array or line for scripts."""
    if fmt == "table":
        emit([{"metric": key, "value": value} for key, value in record.items()], fmt)
    else:
        emit([record], fmt)


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
