"""Option types and parsing shared by every command: one syntax for durations, one for symbols."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from k2.connect.units import duration_text
from k2.producer.defaults import METRICS_PORT, METRICS_PORT_ENV, SYMBOLS_REFRESH_S
from k2.stack.ports import HOST


def assignments(values: tuple[str, ...], param_hint: str) -> dict[str, str]:
    """NAME=VALUE pairs from a repeatable option (--set, -d), with a usage error naming the bad one."""
    parsed = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=param_hint)
        parsed[name.strip()] = value
    return parsed


# A century: longer than any history, retention or run, and far inside what datetime and DuckDB can add
# (99999999999d overflowed a C int deep inside a query instead of being refused here).
MAX_DURATION_S = 36_500 * 86_400.0


class Duration(click.ParamType):
    """``90s``, ``10m``, ``24h``, ``7d`` (a bare number is seconds), as float seconds."""

    name = "duration"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "DURATION"  # 90s, 10m, 24h, 7d; a bare number is seconds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            from k2.connect.exceptions import ConnectError
            from k2.connect.units import duration_seconds

            try:
                seconds = duration_seconds(value)
            except ConnectError as exc:
                self.fail(str(exc), param, ctx)
        if self.positive and seconds <= 0:
            self.fail(f"{value!r} must be longer than 0s", param, ctx)
        if not seconds <= MAX_DURATION_S:  # NaN too: what no clock, date or query can add
            self.fail(
                f"{value!r} is longer than {MAX_DURATION_S // 86400:.0f}d, the longest duration K2 takes", param, ctx
            )
        return seconds


DURATION = Duration()
POSITIVE_DURATION = Duration(positive=True)


class ServiceUrl(click.ParamType):
    """A service's address as ``http(s)://host:port[/path]``, checked before anything is reached: a URL
    without its scheme is not a service that is down, and an empty one is not the local stack."""

    name = "url"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from urllib.parse import urlsplit

        from click.core import ParameterSource

        origin = ""  # click names only the flag: say when the value came from the environment
        if ctx is not None and param is not None and param.name:
            if ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
                origin = f" (from {param.envvar})"
        text = str(value).strip()
        if not text:
            self.fail(
                f"is empty{origin}: give a URL like http://127.0.0.1:8081, or leave it unset for the local stack",
                param,
                ctx,
            )
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018  # raises on a port that is not a number
        except ValueError as exc:
            self.fail(f"{text!r}{origin} is not a URL ({exc})", param, ctx)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            example = f"http://{text}" if "//" not in text else "http://host:port"
            self.fail(f"{text!r}{origin} is not a URL like {example}", param, ctx)
        return text


SERVICE_URL = ServiceUrl()


class Rate(click.ParamType):
    """Events per second: a finite number above 0 and at most MAX_RATE (``inf`` and ``nan`` parse as
    floats, and no clock can pace them)."""

    name = "rate"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "PER_SECOND"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            rate = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of events per second", param, ctx)
        if not 0 < rate <= MAX_RATE:  # NaN fails both
            self.fail(f"{value!r} is not a rate above 0 and at most {MAX_RATE:,.0f} per second", param, ctx)
        return rate


MAX_RATE = 1_000_000.0
RATE = Rate()


class Moment(click.ParamType):
    """An ISO-8601 time, UTC unless it says otherwise (2026-11-27T12:00:00Z), checked before any query."""

    name = "time"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from datetime import UTC, datetime

        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not a time like 2026-11-27T12:00:00Z (ISO-8601, UTC by default)", param, ctx)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


MOMENT = Moment()


class Symbols(click.ParamType):
    """``BTCUSDT,ETHUSDT``: distinct Binance symbols as Binance writes them (Unicode ones included)."""

    name = "symbols"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SYMBOL[,SYMBOL...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        from k2.producer.exchange import is_symbol, normalize_symbol

        symbols = [normalize_symbol(s) for s in str(value).split(",") if s.strip()]
        bad = [s for s in symbols if not is_symbol(s)]
        if bad or not symbols:
            shown = ", ".join(bad) or "(none given)"
            self.fail(f"not a Binance symbol: {shown} (expected e.g. BTCUSDT,ETHUSDT,币安人生USDT)", param, ctx)
        return list(dict.fromkeys(symbols))


SYMBOLS = Symbols()
DEMO_SYMBOLS = "BTCUSDT,ETHUSDT,BNBUSDT"  # what `k2 run` streams and `k2 binance-standin generate` trades by default


def symbols_option(help: str, **kwargs: Any) -> Any:
    """``--symbols``, the one way every command takes symbols."""
    return click.option("--symbols", type=SYMBOLS, help=help + " Comma-separated, e.g. BTCUSDT,ETHUSDT.", **kwargs)


def live_symbols_option(help: str, **kwargs: Any) -> Any:
    """``--symbols`` of the live producer, which also takes ALL (every TRADING symbol)."""
    return symbols_option(help + " ALL: every TRADING symbol of exchangeInfo (see --quote).", **kwargs)


def market_mode(symbols: list[str] | None, quotes: list[str], replay: bool) -> bool:
    """True for ``--symbols ALL``; a usage error for ALL among other symbols, ALL with --replay, or --quote
    without ALL."""
    from k2.producer.universe import ALL

    everything = bool(symbols) and ALL in (symbols or [])
    if everything and len(symbols or []) > 1:
        raise click.UsageError("--symbols ALL stands alone: the whole market, or a list of symbols, not both")
    if everything and replay:
        raise click.UsageError("--symbols ALL streams live Binance symbols: it cannot be used with --replay")
    if quotes and not everything:
        raise click.UsageError("--quote filters --symbols ALL; with a list of symbols, name only those you want")
    return everything


def one_source_of_trades(ctx: click.Context, symbols: list[str] | None, replay: Path | None, standin: bool) -> None:
    """A usage error when the options name two sources of trades, or symbols a source ignores: --replay
    streams the file's symbols and --standin the bundled sample's, so a --symbols list given with either
    would be silently dropped (--symbols ALL with --standin subscribes through the stand-in's exchangeInfo)."""
    from click.core import ParameterSource

    from k2.producer.universe import ALL

    if replay and standin:
        raise click.UsageError("--replay and --standin are two sources of trades: give one")
    named = ctx.get_parameter_source("symbols") not in (None, ParameterSource.DEFAULT)
    if named and symbols and ALL not in symbols and (replay or standin):
        source = "--replay streams the file's own symbols" if replay else "--standin streams the sample's symbols"
        raise click.UsageError(f"--symbols chooses live symbols; {source}: drop --symbols")


def _quotes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str]:
    from k2.producer.exchange import is_symbol, normalize_symbol

    quotes = [normalize_symbol(q) for q in (value or "").split(",") if q.strip()]
    bad = [q for q in quotes if not is_symbol(q)]
    if bad or (value is not None and not quotes):
        raise click.BadParameter(f"not a quote asset: {', '.join(bad) or '(none given)'} (e.g. USDT,FDUSD)")
    return list(dict.fromkeys(quotes))


def producer_market_options(command: Any) -> Any:
    """``--quote``, ``--symbols-refresh`` and ``--redundancy`` of the live producer (`k2 produce`, `k2 run`)."""
    command = click.option(
        "--redundancy",
        type=click.IntRange(1, 3),
        default=1,
        show_default=True,
        help="Independent connection sets carrying every stream (2: a dropped connection costs no gap and no "
        "REST request; each trade is still sent once).",
    )(command)
    command = click.option(
        "--symbols-refresh",
        type=DURATION,
        default=duration_text(SYMBOLS_REFRESH_S),
        show_default=True,
        help="Read /api/v3/exchangeInfo again this often: new TRADING symbols are subscribed, symbols that "
        "stop trading (BREAK, HALT, ...) or disappear are unsubscribed; 0s: never.",
    )(command)
    return click.option(
        "--quote",
        metavar="ASSET[,ASSET...]",
        callback=_quotes,
        help="With --symbols ALL: only symbols quoted in these assets (exchangeInfo quoteAsset), e.g. USDT,FDUSD.",
    )(command)


def metrics_host_option(command: Any) -> Any:
    """``--metrics-host``: one option, one variable, for every process that serves metrics."""
    return click.option(
        "--metrics-host",
        default=HOST,
        show_default=True,
        envvar="K2_METRICS_HOST",
        help="With --metrics-port: the address to listen on (0.0.0.0 in a container, for Compose's metrics "
        "server).  [env: K2_METRICS_HOST]",
    )(command)


def metrics_options(whose: str, envvar: str, default: int = 0) -> Callable[[Any], Any]:
    """``--metrics-port`` (whose metrics, on which variable) and ``--metrics-host`` of a process that
    serves Prometheus metrics: the producer, the maintainer, the supervisor."""

    def decorate(command: Any) -> Any:
        command = metrics_host_option(command)
        return click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            default=default,
            show_default=bool(default),
            envvar=envvar,
            help=f"{whose} Prometheus metrics on HOST:PORT/metrics; 0: off.  [env: {envvar}]",
        )(command)

    return decorate


# `k2 produce`, `k2 run`.
producer_metrics_options = metrics_options("The producer's", METRICS_PORT_ENV, METRICS_PORT)
