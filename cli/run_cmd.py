"""``k2 run``: the main job end to end: the other commands in order, then trades, then a look at Iceberg."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import connect_cmd, ksql_cmd, schemas_cmd, tables_cmd, topics_cmd
from .options import (
    DEMO_SYMBOLS,
    DURATION,
    POSITIVE_DURATION,
    live_symbols_option,
    market_mode,
    one_source_of_trades,
    producer_market_options,
    producer_metrics_options,
)
from .output import Progress, emit, emit_record, format_option, redact
from .settings import Settings, reachable, uses_local_stack

if TYPE_CHECKING:
    from k2.producer.app import ProduceOptions, Summary
    from k2.query.engine import Lake

SAMPLE = Path(__file__).resolve().parents[1] / "producer" / "samples" / "binance-trades-sample.jsonl"


def _step(message: str) -> None:
    click.secho(f"==> {message}", bold=True, err=True)


@dataclass
class Job:
    """What `k2 run` was asked to do (its options), and what the steps found on the way."""

    ctx: click.Context
    symbols: list[str]
    replay: Path | None
    standin: bool
    rate: float
    duration: float | None
    timeout: float
    quote: list[str]
    symbols_refresh: float
    redundancy: int
    metrics_port: int
    metrics_host: str
    dry_run: bool
    fmt: str
    progress: Progress = field(default_factory=Progress)
    started_ms: int = 0  # when producing started: this run's trades have a later ingest_time
    acknowledged: int = 0  # trades Kafka acknowledged
    candle_symbols: list[str] = field(default_factory=list)  # those streamed; with ALL, the newest trades'
    landed: int = 0  # of this run's trades, those queryable in Iceberg
    everything: bool = field(init=False)  # --symbols ALL

    def __post_init__(self) -> None:
        self.everything = market_mode(self.symbols, self.quote, self.replay is not None)

    @property
    def settings(self) -> Settings:
        settings: Settings = self.ctx.obj
        return settings

    @cached_property
    def lake(self) -> Lake:
        from k2.query.engine import Lake

        return Lake(self.settings.catalog_uri)  # extensions load once; each statement reads the newest snapshot

    @cached_property
    def table(self) -> str:
        from k2.connect.tables import load_table_specs

        return next(iter(load_table_specs()))

    @property
    def status(self) -> Progress | None:
        """The producer's progress line, on a terminal only."""
        return self.progress if self.progress.enabled else None

    def invoke(self, other: click.Command, **extra: Any) -> None:
        self.ctx.invoke(other, dry_run=self.dry_run, fmt=self.fmt, **extra)


Step = Callable[[Job], None]


class Stop(Exception):
    """Raised by a step after which the run ends without an error (a dry run), saying why."""


def services(job: Job) -> None:
    """Make sure the services answer: the local stack is started only when the URLs are its own and
    nothing else (Docker Compose) already serves them. A dry run that finds them not running stops."""
    from k2.stack.manager import Stack, default_cache
    from k2.stack.ports import stack_ports
    from k2.stack.services import Context

    _step("Services")
    settings, fmt = job.settings, job.fmt
    if not uses_local_stack(settings):
        rows = reachable(settings)
        emit(rows, fmt, ("service", "url", "state"))
        down = [row["service"] for row in rows if row["state"] != "answering"]
        if down:
            raise click.ClickException(
                f"{', '.join(down)} not answering at the given URL(s); `k2 run` starts the local stack only "
                "when no connection option or K2_*_URL / K2_BOOTSTRAP_SERVERS / K2_CATALOG_URI is set"
            )
        return
    stack = Stack(Context(settings.home, default_cache(), stack_ports(settings.home)))
    if all(state.pid is None for state in stack.states()):
        rows = reachable(settings)
        if all(row["state"] == "answering" for row in rows):  # e.g. Docker Compose on the same ports
            click.echo("Services already answer on the local ports (Docker Compose?): using them.", err=True)
            emit(rows, fmt, ("service", "url", "state"))
            return
    if job.dry_run:
        plan = stack.plan()
        emit(plan, fmt, ("service", "url", "state", "action"))
        failing = [str(row["service"]) for row in plan if str(row["action"]).startswith("would fail")]
        if failing:
            raise click.ClickException(f"`k2 stack up` would fail for {', '.join(failing)} (see above)")
        if not all(row["state"] in ("running", "skipped") for row in plan):
            raise Stop("The services are not running: the other steps' plans need them (`k2 stack up`).")
        return
    emit([s.as_dict() for s in stack.up(job.timeout, Progress())], fmt, ("service", "url", "state"))


def command(title: str, other: click.Command, timed: bool = False) -> Step:
    """A step that runs another `k2` command with this run's --dry-run and --format (and --timeout)."""

    def step(job: Job) -> None:
        _step(title)
        job.invoke(other, **({"timeout": job.timeout} if timed else {}))

    return step


def ksql_migrations(job: Job) -> None:
    _step("ksqlDB migrations: k2 ksql apply")
    from k2.ksql.client import KsqlClient, KsqlError

    try:
        KsqlClient(job.settings.ksql_url, timeout=10).info()
    except KsqlError:
        # ksqlDB exists only as a container image: it runs in Compose, never in the local stack.
        click.echo(
            redact(f"ksqlDB not reachable at {job.settings.ksql_url} (it runs in Compose only): skipped"), err=True
        )
    else:
        job.invoke(ksql_cmd.apply, timeout=job.timeout)


def stop_if_dry_run(job: Job) -> None:
    if job.dry_run:
        raise Stop("Dry run: nothing was changed and no trades were produced.")


def produce(job: Job) -> None:
    """Trades from live Binance, --replay or --standin, until the producer stops; prints its summary."""
    from k2.producer.app import ProduceOptions, run_live, run_replay
    from k2.schemas.contract import load_topics

    topics = load_topics()
    options = ProduceOptions(
        bootstrap_servers=job.settings.bootstrap_servers,
        registry_url=job.settings.registry_url,
        topic=topics["trades"].name,
        dlq_topic=topics["trades-dlq"].name,
        symbols=[] if job.everything else job.symbols,
        duration=job.duration,
        # Live: pick up after the last trade in Kafka. The stand-in's sample gets fresh ids every run,
        # so there is nothing to resume from.
        resume=not job.standin,
        metrics_port=job.metrics_port,
        metrics_host=job.metrics_host,
        all_symbols=job.everything,
        quotes=job.quote,
        symbols_refresh=job.symbols_refresh,
        redundancy=job.redundancy,
    )
    job.started_ms = int(time.time() * 1000)
    if job.standin:
        summary = _standin_trades(job, options)
    elif job.replay:
        _step(f"Producing: replaying {job.replay}")
        options.replay, options.rest_url = job.replay, None
        summary = run_replay(options, job.status)
    else:
        named = "every TRADING symbol" if job.everything else ", ".join(options.symbols)
        _step(f"Producing: live Binance trades for {named} (Ctrl-C to stop)")
        summary = run_live(options, job.status)
    job.progress("")
    job.acknowledged, job.candle_symbols = summary.trades_acknowledged, options.symbols
    shown = ["trades_acknowledged", "duplicates_dropped", "gaps_backfilled", "gaps_unrecovered", "dead_lettered"]
    if job.everything:
        shown += ["symbols_subscribed", "symbols_added", "symbols_removed"]
    emit_record({k: getattr(summary, k) for k in shown}, job.fmt)


def _standin_trades(job: Job, options: ProduceOptions) -> Summary:
    from k2.producer.app import run_live
    from k2.producer.binance_standin.script import Script
    from k2.producer.binance_standin.server import BinanceStandIn
    from k2.producer.binance_standin.tape import load_frames, rebase

    # Moved to "now" with fresh ids: each demo run adds new trades instead of repeating old ones.
    now_ms = int(time.time() * 1000)
    events = rebase(load_frames(SAMPLE), now_ms, id_offset=now_ms)
    _step(
        f"Producing: {len(events)} sample trades through the Binance stand-in (not Binance), which drops the "
        "connection halfway for a second: the producer reconnects and backfills the missed trades over REST"
    )
    # The stand-in keeps trading after the sample (loop_tape), as Binance would: trades missed at the
    # end of the sample then show up as a gap and are backfilled, instead of never being noticed.
    script = Script(disconnect_at={len(events) // 2}, refuse_after_disconnect_s=1.0)
    with BinanceStandIn(events, rate=job.rate, script=script, loop_tape=True) as server:
        options.ws_url, options.rest_url = server.ws_url, server.rest_url
        if not job.everything:  # with ALL the stand-in's exchangeInfo names the sample's symbols
            options.symbols = sorted({str(e["s"]) for e in events})
        options.max_messages = len(events)
        options.duration = options.duration or len(events) / job.rate + 120  # a bound, never a hang
        return run_live(options, job.status)


def wait_for_commit(job: Job) -> None:
    """Until Iceberg holds every acknowledged trade of this run, or --timeout."""
    _step("Waiting for the Iceberg sink's commit")
    deadline = time.monotonic() + job.timeout
    while True:
        # This run's trades: the producer stamped each with ingest_time after started_ms.
        landed = job.lake.query(
            f"select count(*) c from {job.table} where ingest_time >= make_timestamptz($since * 1000)",
            {"since": job.started_ms},
        )
        job.landed = int(landed["c"][0].as_py())
        if job.landed >= job.acknowledged or time.monotonic() > deadline:
            break
        job.progress(f"{job.landed:,} of {job.acknowledged:,} trades visible in {job.table}")
        time.sleep(1)
    job.progress("")
    click.echo(f"{job.landed:,} of this run's {job.acknowledged:,} trades queryable in {job.table}.", err=True)


def newest_trades(job: Job) -> None:
    _step(f"Newest trades in {job.table}")
    newest = job.lake.query(
        f"select symbol, trade_id, price, quantity, side, trade_time from {job.table} "
        "order by trade_time desc, trade_id desc limit 5"
    )
    emit(newest.to_pylist(), job.fmt, newest.column_names)
    # With ALL, candles of the symbols of the newest trades, not of every symbol of the market.
    job.candle_symbols = job.candle_symbols or sorted({str(row["symbol"]) for row in newest.to_pylist()})


def one_minute_candles(job: Job) -> None:
    from k2.query import BEGINNING, NO_END
    from k2.query.market import candles

    for symbol in sorted(job.candle_symbols):
        _step(f"1-minute candles for {symbol} (newest 3)")
        rows: list[dict[str, Any]] = candles(job.lake, symbol, "1m", BEGINNING, NO_END)
        columns = ("interval_start", "open", "high", "low", "close", "volume", "vwap", "trade_count")
        emit(rows[-3:], job.fmt, columns)


def every_trade_landed(job: Job) -> None:
    if job.landed < job.acknowledged:
        raise click.ClickException(
            f"only {job.landed} of {job.acknowledged} trades reached {job.table} within {job.timeout:.0f}s; "
            "see `k2 connectors status` and `k2 stack logs connect`"
        )


STEPS: tuple[Step, ...] = (
    services,
    command("Topics: k2 topics apply", topics_cmd.apply),
    command("Schemas: k2 schemas register", schemas_cmd.register),
    command("Tables: k2 tables apply", tables_cmd.apply),
    command("Connectors: k2 deploy-connectors", connect_cmd.deploy_connectors, timed=True),
    ksql_migrations,
    stop_if_dry_run,
    produce,
    wait_for_commit,
    newest_trades,
    one_minute_candles,
    every_trade_landed,
)


@click.command(name="run")
@live_symbols_option("Symbols to stream live.", default=DEMO_SYMBOLS, show_default=True)
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Replay recorded frames instead of streaming live.",
)
@click.option(
    "--standin",
    is_flag=True,
    help="Offline: stream the bundled sample through the Binance stand-in (WebSocket + REST backfill).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Stand-in frames per second.",
)
@click.option(
    "--duration", type=POSITIVE_DURATION, help="Stop producing after this long, e.g. 10m.  [live: until Ctrl-C]"
)
@click.option("--timeout", type=DURATION, default="300s", show_default=True, help="How long to wait for each stage.")
@producer_market_options
@producer_metrics_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what each step would change (stack, topics, schemas, tables, connectors, ksqlDB); produce nothing.",
)
@format_option()
@click.pass_context
def run(ctx: click.Context, **options: Any) -> None:
    """Run K2's main job end to end, then show what landed in Iceberg.

    The steps are the commands themselves, in order: the services (with the default URLs: `k2 stack
    up`, unless Docker Compose already serves the local ports; with connection options or K2_*
    variables: those services, never the local stack), `k2 topics apply`, `k2 schemas register`,
    `k2 tables apply`, `k2 deploy-connectors`, `k2 ksql apply` when ksqlDB answers (Compose), then
    trades (live Binance by default; --replay FILE or --standin offline) until Iceberg holds every
    acknowledged trade, and the newest rows and 1-minute candles.

    \b
    Examples:
      k2 run --standin                      # offline, the bundled 3-minute sample
      k2 run --replay my-frames.jsonl
      k2 run --symbols BTCUSDT,ETHUSDT --duration 5m      # live Binance
      k2 run --symbols ALL --quote USDT --symbols-refresh 5m --redundancy 2   # the USDT market, live
      k2 run --dry-run                      # what each step would change
      K2_BOOTSTRAP_SERVERS=kafka.example:9092 K2_REGISTRY_URL=http://registry.example:8081 \\
        K2_CONNECT_URL=http://connect.example:8083 K2_CATALOG_URI=http://catalog.example:8181 k2 run --standin
    """
    one_source_of_trades(ctx, options["symbols"], options["replay"], options["standin"])
    job = Job(ctx, **options)
    try:
        for step in STEPS:
            step(job)
    except Stop as stop:
        click.echo(str(stop), err=True)
