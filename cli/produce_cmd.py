"""``k2 produce`` and ``k2 binance-standin``: the producer of producer/ and its offline stand-in."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from k2.connect.units import duration_text
from k2.producer.defaults import BINANCE_REST_URL, BINANCE_WS_URL, GAP_TIMEOUT_S, RESUME_BUDGET, SILENCE_TIMEOUT_S

from .options import (
    DEMO_SYMBOLS,
    DURATION,
    POSITIVE_DURATION,
    RATE,
    live_symbols_option,
    market_mode,
    one_source_of_trades,
    producer_market_options,
    producer_metrics_options,
    symbols_option,
)
from .output import Progress, emit_record, format_option
from .settings import Settings


@click.command()
@live_symbols_option("Binance symbols to stream (live mode).")
@click.option("--ws-url", default=BINANCE_WS_URL, show_default=True, help="WebSocket base URL.")
@click.option(
    "--rest-url",
    default=None,
    help=f"REST base URL for gap backfill.  [default: {BINANCE_REST_URL} live; none with --replay]",
)
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read recorded raw frames (one per line) instead of a socket.",
)
@click.option("--topic", default=None, help="Trades topic.  [default: from schemas/topics.toml]")
@click.option("--dlq-topic", default=None, help="Dead-letter topic.  [default: from schemas/topics.toml]")
@click.option(
    "--max-messages",
    type=click.IntRange(min=1),
    help="Stop once this many trades were sent (trades held behind a gap then are still sent, never dropped).",
)
@click.option(
    "--duration", type=POSITIVE_DURATION, help="Stop after this long, e.g. 90s or 10m.  [default: until Ctrl-C]"
)
@click.option(
    "--gap-timeout",
    type=POSITIVE_DURATION,
    default=duration_text(GAP_TIMEOUT_S),
    show_default=True,
    help="How long a gap may wait for backfill.",
)
@click.option(
    "--from-latest",
    is_flag=True,
    help="Start each symbol at its first live trade instead of after its last trade in the topic "
    "(trades made while no producer ran are then neither backfilled nor reported).",
)
@click.option(
    "--resume-budget",
    type=click.IntRange(min=1),
    default=RESUME_BUDGET,
    show_default=True,
    help="Records read back per partition to find each symbol's last trade; a symbol not found starts live.",
)
@click.option(
    "--silence-timeout",
    type=POSITIVE_DURATION,
    default=duration_text(SILENCE_TIMEOUT_S),
    show_default=True,
    help="Reconnect a connection that delivered no frame for this long (missed trades are backfilled).",
)
@producer_market_options
@producer_metrics_options
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the topics, the schema, the symbols (live; with ALL: how many would stream) or the replay's "
    "frames; send nothing.",
)
@format_option()
@click.pass_obj
def produce(
    settings: Settings,
    symbols: list[str] | None,
    ws_url: str,
    rest_url: str | None,
    replay: Path | None,
    topic: str | None,
    dlq_topic: str | None,
    max_messages: int | None,
    duration: float | None,
    gap_timeout: float,
    from_latest: bool,
    resume_budget: int,
    silence_timeout: float,
    quote: list[str],
    symbols_refresh: float,
    redundancy: int,
    metrics_port: int,
    metrics_host: str,
    dry_run: bool,
    fmt: str,
) -> None:
    """Stream Binance trades into Kafka as Avro, exactly once per (symbol, trade_id).

    Symbols are checked against /api/v3/exchangeInfo first: unknown or not TRADING ones are refused.
    Each symbol continues after its last trade in the topic, so trades made while no producer ran are
    backfilled (--from-latest starts at the first live trade instead). Duplicates from reconnect
    overlaps are dropped; gaps in a symbol's trade ids are backfilled from REST
    (/api/v3/historicalTrades) while that symbol's later trades wait; frames that are not valid trades
    go raw to the dead-letter topic with the reason in the k2.error.reason header. A connection silent
    for --silence-timeout is reopened. Durations are written 90s, 10m, 24h or 7d. SIGINT/SIGTERM flush
    everything in flight before exit.

    --symbols ALL streams every TRADING symbol (--quote keeps those quoted in the given assets).
    exchangeInfo is read again every --symbols-refresh: new listings are subscribed on open connections
    (their trades since listing backfilled), symbols that stop trading or disappear are unsubscribed,
    and the summary's symbols_added / symbols_removed say which and why. --redundancy 2 carries every
    stream on two connection sets, so one dropped connection needs no backfill.

    \b
    Examples:
      k2 produce --symbols BTCUSDT,ETHUSDT,BNBUSDT
      k2 produce --replay producer/samples/binance-trades-sample.jsonl --format json
      k2 produce --symbols BTCUSDT --ws-url ws://127.0.0.1:9443 --rest-url http://127.0.0.1:9443 --duration 1m
      k2 produce --symbols BTCUSDT,ETHUSDT --from-latest
      k2 produce --replay my-frames.jsonl --dry-run       # checks only; sends nothing
      k2 produce --symbols ALL --quote USDT,FDUSD --dry-run   # how many symbols would stream
      k2 produce --symbols ALL --symbols-refresh 2m --redundancy 2
    """
    from k2.producer.app import ProduceOptions, preflight, run_live, run_replay
    from k2.schemas.contract import load_topics

    declared = load_topics()
    one_source_of_trades(click.get_current_context(), symbols, replay, standin=False)
    if not replay and not symbols:
        raise click.UsageError("give --symbols BTCUSDT,ETHUSDT (or ALL) for live trades, or --replay FILE")
    everything = market_mode(symbols, quote, replay is not None)
    if replay and redundancy > 1:
        raise click.UsageError("--redundancy duplicates live connections: it cannot be used with --replay")
    options = ProduceOptions(
        bootstrap_servers=settings.bootstrap_servers,
        registry_url=settings.registry_url,
        topic=topic or declared["trades"].name,
        dlq_topic=dlq_topic or declared["trades-dlq"].name,
        symbols=[] if everything else symbols or [],
        ws_url=ws_url,
        rest_url=rest_url if (rest_url or replay) else BINANCE_REST_URL,
        replay=replay,
        max_messages=max_messages,
        duration=duration,
        gap_timeout=gap_timeout,
        resume=not from_latest,
        resume_budget=resume_budget,
        silence_timeout=silence_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        all_symbols=everything,
        quotes=quote,
        symbols_refresh=symbols_refresh,
        redundancy=redundancy,
    )
    if dry_run:
        emit_record(preflight(options), fmt)
        return
    # What a long-running producer reports about itself (resume, reconnects) goes to stderr.
    logging.getLogger("k2.producer").setLevel(logging.INFO)
    progress = Progress()
    status = progress if progress.enabled else None
    summary = run_replay(options, status) if replay else run_live(options, status)
    progress("")
    emit_record(asdict(summary), fmt)
    for lost in summary.lost_ranges:
        click.echo(f"Warning: trades {lost} were never received and could not be backfilled", err=True)
    if not summary.lossless:
        click.echo(
            f"Error: {summary.delivery_failures} deliveries failed and {summary.unacknowledged} were not "
            "acknowledged by Kafka before exit",
            err=True,
        )
        sys.exit(3)


@click.group(name="binance-standin")
def binance_standin() -> None:
    """A stand-in for Binance's WebSocket and REST APIs (NOT Binance), for offline demos and tests.

    \b
    Examples:
      k2 binance-standin generate --output /tmp/frames.jsonl --duration 3m
      k2 binance-standin serve --frames /tmp/frames.jsonl --port 9443 --rate 50
    """


@binance_standin.command()
@click.option(
    "--frames",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Recorded or generated trade frames, one JSON frame per line (see `generate`).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=9443, show_default=True, help="Port for both WebSocket and REST."
)
@click.option("--rate", type=RATE, default=50.0, show_default=True, help="Frames per second.")
@click.option("--loop/--no-loop", default=True, show_default=True, help="Replay again with new ids at the end.")
@click.option(
    "--disconnect-every", type=click.IntRange(min=0), default=0, help="Force a disconnect every N frames (0: never)."
)
@click.option(
    "--weight-limit",
    type=click.IntRange(min=1),
    default=6000,
    show_default=True,
    help="REST request weight per minute; past it 429, then 418 bans for clients that keep going.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Divide the weight window, Retry-After and ban lengths by this (60: a 'minute' lasts 1 s).",
)
@click.option(
    "--rest-lag",
    type=DURATION,
    default="0s",
    show_default=True,
    help="historicalTrades serves only trades broadcast at least this long ago, e.g. 2s.",
)
@click.option(
    "--symbol-status",
    multiple=True,
    metavar="SYMBOL=STATUS",
    help="exchangeInfo status of a symbol (TRADING, END_OF_DAY, HALT, BREAK, CANCEL_ONLY); repeatable.",
)
def serve(
    frames: Path,
    host: str,
    port: int,
    rate: float,
    loop: bool,
    disconnect_every: int,
    weight_limit: int,
    time_scale: float,
    rest_lag: float,
    symbol_status: tuple[str, ...],
) -> None:
    """Serve recorded frames as Binance would, limits included: combined and raw streams, live
    SUBSCRIBE, pings, REST historicalTrades and exchangeInfo with request weight, 429 and 418 bans.

    \b
    Examples:
      k2 binance-standin serve --frames producer/samples/binance-trades-sample.jsonl
      k2 binance-standin serve --frames f.jsonl --rate 500 --disconnect-every 2000
      k2 binance-standin serve --frames f.jsonl --weight-limit 100 --time-scale 60 --symbol-status BNBUSDT=HALT
    """
    from k2.producer.binance_standin.listings import SYMBOL_STATUSES
    from k2.producer.binance_standin.script import Script
    from k2.producer.binance_standin.server import BinanceStandIn
    from k2.producer.binance_standin.tape import load_frames

    try:
        events = load_frames(frames)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--frames") from None
    if not events:
        raise click.BadParameter(f"{frames} holds no trade frames", param_hint="--frames")
    statuses = dict(item.partition("=")[::2] for item in symbol_status)
    bad = [f"{k}={v}" for k, v in statuses.items() if not k or v not in SYMBOL_STATUSES]
    if bad:
        raise click.BadParameter(
            f"{', '.join(bad)}: expected SYMBOL=STATUS with STATUS one of {', '.join(SYMBOL_STATUSES)}",
            param_hint="--symbol-status",
        )
    script = Script(
        disconnect_at=set(range(disconnect_every - 1, 10**9, disconnect_every)) if disconnect_every else set()
    )
    server = BinanceStandIn(
        events,
        host=host,
        port=port,
        rate=rate,
        script=script,
        loop_tape=loop,
        weight_limit_per_min=weight_limit,
        time_scale=time_scale,
        rest_lag_s=rest_lag,
        symbol_status=statuses,
    )
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # The port it got (with --port 0, the one the system chose), once it listens.
    click.echo(
        f"Binance stand-in (not Binance) on ws://{host}:{server.port} and http://{host}:{server.port}: "
        f"{len(events)} trades; REST weight limit {weight_limit}/min (a minute lasts {60 / time_scale:g} s)",
        err=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


# generate says how much it will write past this many frames (a frame is about FRAME_BYTES on disk).
GENERATE_WARN_FRAMES = 1_000_000
FRAME_BYTES = 200


@binance_standin.command()
@click.option(
    "--output",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write the frames to (replaced if it exists); --out is the older name.",
)
@symbols_option(
    "Symbols to trade; non-ASCII ones (e.g. 币安人生USDT) are allowed, as on Binance since 2025-12.",
    default=DEMO_SYMBOLS,
    show_default=True,
)
@click.option(
    "--duration", type=POSITIVE_DURATION, default="3m", show_default=True, help="Span of trade time to generate."
)
@click.option("--rate", type=RATE, default=20.0, show_default=True, help="Trades per second over all symbols.")
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Random seed: the same seed writes the same frames."
)
def generate(out: Path, symbols: list[str], duration: float, rate: float, seed: int) -> None:
    """Write synthetic trades in Binance's frame format (seeded random walk; not market data).

    \b
    Examples:
      k2 binance-standin generate --output /tmp/frames.jsonl
      k2 binance-standin generate --output big.jsonl --duration 1h --rate 500 --symbols BTCUSDT,ETHUSDT
      k2 binance-standin generate --output unicode.jsonl --symbols 币安人生USDT,BTCUSDT
    """
    from k2.producer.sample import generate_events, write_frames

    start = int(time.time() * 1000) - int(duration * 1000)
    if start < 0:
        raise click.BadParameter("reaches back before 1970: trade times cannot be negative", param_hint="--duration")
    expected = duration * rate
    if expected < 1:
        raise click.UsageError(
            f"--rate {rate:g} for --duration {duration_text(duration)} is less than one trade: nothing to write"
        )
    size = expected * FRAME_BYTES
    free = shutil.disk_usage(out.resolve().parent if out.resolve().parent.exists() else Path.cwd()).free
    if size > free:
        raise click.UsageError(
            f"--duration {duration_text(duration)} at --rate {rate:g} is about {expected:,.0f} frames "
            f"(~{size / 1e9:,.1f} GB), more than the {free / 1e9:,.1f} GB free where {out} goes"
        )
    if expected > GENERATE_WARN_FRAMES:
        click.echo(f"Writing about {expected:,.0f} frames (~{size / 1e9:.1f} GB) to {out}", err=True)
    progress = Progress()
    written = write_frames(
        out,
        generate_events(symbols, duration, rate, start, seed),
        on_progress=lambda count: progress(f"{count:,} of about {expected:,.0f} frames written"),
    )
    progress("")
    click.echo(f"Wrote {written} trade frames to {out}")
