"""The whole Binance spot market on one machine: N symbols, a burst and a mass disconnect (not in CI).

    k2 stack up && python benchmarks/whole_market.py                       # 1,600 symbols, 700/s, 10 min
    python benchmarks/whole_market.py --layout day --minutes 10            # another table layout, same run
    python benchmarks/whole_market.py --minutes 2 --symbols 400            # a short look

Against the running stack of K2_HOME at its default settings: its own topic (the declared partition
count), table (the declared one, or another --layout), connector (the shipped file, default commit
interval) and a maintainer (`k2 tables maintain TABLE --watch` at the stack's interval) beside it.
The Binance stand-in runs in its own process over a tape of N symbols with Zipf-like rates: R trades/s,
--burst times R for --burst-minutes from 30% of the run, and every connection dropped at once halfway.

Reported (printed as JSON, written to <out>/<run>.json and a plot <run>.png):
- trades generated vs landed, duplicates and missing (every generated trade exactly once);
- freshness of every landed trade: the commit that made it visible (the sink's append snapshot time)
  minus its ingest_time (Kafka to Iceberg), and minus the moment the stand-in broadcast it (trade to
  queryable: time held behind a gap or missed in a disconnect included), p50 / p95 / max, and in the burst;
- files per partition (max) and data files written per day; snapshots and metadata.json size;
- peak RSS and CPU seconds of each JVM, the producer, the maintainer and the stand-in; Connect's heap;
- REST requests and weight used, 429s and 418s, and the time from the mass disconnect until no trade
  was held behind a gap (the producer's k2_trades_held back to 0 and every gap closed);
- the REST requests caused by dropping one connection (the oldest) at --drop-one-at of the tape: with
  --redundancy 2 its symbols keep flowing on the other connection set, so there should be none;
- one-symbol candles and group-by-symbol latency through `k2` at the end, before and after one more
  maintenance run, and how many data files a one-symbol scan plans (Iceberg's own planning).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from probes import CLK_TCK, candles_today, k2, proc_stats, produce_command, scrape, stack_env, timed

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS: dict[str, list[tuple[str, str, str]] | None] = {
    "declared": None,  # connect/tables.toml as shipped
    "day": [("trade_time", "day", "trade_day")],
    "day-bucket8": [("trade_time", "day", "trade_day"), ("symbol", "bucket[8]", "symbol_bucket")],
    "day-bucket16": [("trade_time", "day", "trade_day"), ("symbol", "bucket[16]", "symbol_bucket")],
    "day-symbol": [("trade_time", "day", "trade_day"), ("symbol", "identity", "symbol")],
}


def zombie_cpu(pid: int) -> float | None:
    """CPU seconds of a child that has exited but not been reaped (a zombie keeps its final counts)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields[0] == "Z" else None


def gap_state(moment: float, metrics: dict[str, float]) -> tuple[float, float | None, float]:
    """(moment, trades held behind gaps, gaps open) from the producer's metrics page."""
    opened = metrics.get("k2_gaps_detected_total", 0.0)
    closed = sum(metrics.get(f"k2_gaps_{how}_total", 0.0) for how in ("backfilled", "unrecovered", "filled_live"))
    return moment, metrics.get("k2_trades_held"), opened - closed


def recovery(timeline: list[tuple[float, float | None, float]], disconnects: list[float]) -> dict[str, Any]:
    """Seconds from the mass disconnect until no trade was held and no gap open (sampled every second),
    and the most gaps open at once (each costs one historicalTrades request, weight 25)."""
    if not disconnects:
        return {"seconds": None, "gaps_open_max": None}
    after = [(t, held, gaps) for t, held, gaps in timeline if t >= disconnects[0]]
    peak = max((gaps for _, _, gaps in after), default=0.0)
    opened = next((t for t, _, gaps in after if gaps > 0), None)
    done = next((t for t, held, gaps in after if opened and t > opened and held == 0 and gaps <= 0), None)
    return {
        "seconds": round(done - disconnects[0], 1) if done else None,
        "gaps_open_max": peak,
        # Binance's floor: one request of weight 25 per gap within 6,000 a minute.
        "weight_floor_seconds": round(peak * 25 / 6000 * 60, 1),
    }


def after_one_drop(requests: list[tuple[float, float]], drops: list[float]) -> dict[str, Any]:
    """REST backfill requests the producer made after one connection (of many) was dropped: with
    --redundancy 2 its symbols keep flowing on the other set, so none are needed."""
    if not drops or not requests:
        return {"at": None, "rest_requests_after": None}
    before = max((count for moment, count in requests if moment <= drops[0]), default=0.0)
    after = max((count for moment, count in requests if moment > drops[0]), default=before)
    return {"at": drops[0], "rest_requests_after": after - before}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closing_trades(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One more trade per symbol after the tape: the market goes on, so a trade a disconnect took from a
    symbol's tail shows up as a gap in its ids (a producer can find a missed trade only by a later one)."""
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        last[str(event["s"])] = event
    end = max(int(e["T"]) for e in events)
    return [dict(e, t=int(e["t"]) + 1, T=end + 1, E=end + 2) for e in last.values()]


def standin_main(spec_path: Path) -> None:
    """The stand-in's own process: play the tape of ``spec_path`` and print its counters when stopped."""
    from k2.producer.binance_standin.script import Script
    from k2.producer.binance_standin.server import BinanceStandIn
    from k2.producer.sample import generate_events

    spec = json.loads(spec_path.read_text())
    events = list(
        generate_events(
            spec["symbols"], spec["seconds"], spec["rate"], spec["start_ms"], seed=11, weights=spec["weights"]
        )
    )
    events += closing_trades(events)
    script = Script(
        disconnect_at={spec["disconnect_at"]},
        disconnect_some_at={spec["drop_one_at"]: 1} if spec["drop_one_at"] else {},
        refuse_after_disconnect_s=spec["refuse_s"],
        rate_changes={int(k): v for k, v in spec["rate_changes"].items()},
    )
    server = BinanceStandIn(events, port=spec["port"], rate=spec["rate"], script=script)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    server.start()
    print(json.dumps({"ready": True, "trades": len(events)}), flush=True)
    while not stop["now"]:
        time.sleep(0.2)
    with open(spec["broadcast_out"], "w") as handle:
        for symbol, trade_id, moment in server.broadcast_times():
            handle.write(f"{symbol}\t{trade_id}\t{moment:.3f}\n")
    print(
        json.dumps(
            {
                "played": server.position,
                "trades": len(events),
                "rest_requests": server.rest_requests,
                "rest_429": server.rest_429,
                "rest_418": server.rest_418,
                "rest_weight": server.weight_used,
                "rest_peak_window_weight": server.peak_window_weight,
                "connections": server.connections,
                "mass_disconnects": server.mass_disconnects,
                "one_connection_drops": server.partial_disconnect_times,
            }
        ),
        flush=True,
    )
    server.stop()


def added_files(table: Any, snapshot: Any) -> list[str]:
    """Data files an append snapshot added (its own manifest entries with status ADDED)."""
    from pyiceberg.manifest import ManifestEntryStatus

    paths = []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot.snapshot_id:
                paths.append(entry.data_file.file_path)
    return paths


class Freshness:
    """Each landed trade's freshness: the time of the append commit that made it visible minus its
    ingest_time (when the producer handed it to Kafka), and minus the moment the market made it (the
    stand-in's broadcast: time held behind a gap and time away during a disconnect included)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.samples: list[tuple[float, float]] = []  # (commit time, freshness s)
        self.visible: list[tuple[float, str, int]] = []  # (commit time, symbol, trade id)
        self.files_added = 0

    def end_to_end(self, broadcast: dict[tuple[str, int], float]) -> list[tuple[float, float]]:
        """(time the trade happened, seconds until it was queryable) of every landed trade."""
        found = []
        for commit_s, symbol, trade_id in self.visible:
            happened = broadcast.get((symbol, trade_id))
            if happened is not None:
                found.append((happened, commit_s - happened))
        return found

    def update(self, table: Any) -> None:
        import pyarrow.parquet as pq

        for snapshot in table.metadata.snapshots:
            if snapshot.snapshot_id in self.seen:
                continue
            self.seen.add(snapshot.snapshot_id)
            operation = snapshot.summary.operation.value if snapshot.summary else ""
            if operation != "append":
                continue  # the maintainer's rewrites make nothing newly visible
            commit_s = snapshot.timestamp_ms / 1000
            for path in added_files(table, snapshot):
                self.files_added += 1
                rows = pq.read_table(path.removeprefix("file:"), columns=["ingest_time", "symbol", "trade_id"])
                ingests, symbols, ids = (rows.column(name).to_pylist() for name in rows.column_names)
                for ingest, symbol, trade_id in zip(ingests, symbols, ids, strict=True):
                    self.samples.append((commit_s, commit_s - ingest.timestamp()))
                    self.visible.append((commit_s, symbol, trade_id))


def data_file_stats(table: Any) -> tuple[int, int, dict[str, int]]:
    """(live data files, max files in one partition, live files per day) of the current snapshot."""
    per_partition: dict[str, int] = {}
    per_day: dict[str, int] = {}
    scan = table.scan()
    files = list(scan.plan_files())
    for task in files:
        record = task.file.partition
        key = json.dumps([str(v) for v in record], sort_keys=True)
        per_partition[key] = per_partition.get(key, 0) + 1
        day = str(record[0])
        per_day[day] = per_day.get(day, 0) + 1
    return len(files), max(per_partition.values(), default=0), per_day


def one_symbol_files(catalog_uri: str, table_name: str, symbol: str) -> dict[str, int]:
    """Data files DuckDB opens for one symbol and for a full scan (its EXPLAIN ANALYZE profile)."""
    import re

    from k2.query.engine import Lake

    lake = Lake(catalog_uri)

    def read(where: str) -> int:
        sql = f"EXPLAIN ANALYZE SELECT count(*) FROM lake.{table_name} WHERE {where}"
        found = re.search(r"Total Files Read:\s*(\d+)", lake.con.execute(sql).fetchall()[0][1])
        return int(found.group(1)) if found else -1

    return {"one_symbol": read(f"symbol = '{symbol}'"), "full_scan": read("price > 0")}


def query_latencies(env: dict[str, str], table_name: str, symbol: str) -> dict[str, float | None]:
    return {
        "candles_one_symbol_s": candles_today(env, table_name, symbol),
        "group_by_symbol_s": timed(
            env, "query", f"select symbol, count(*) as trades from {table_name} group by symbol", "--format", "json"
        ),
    }


CLOSE_THE_DAY = """
import json, resource, sys, time
from datetime import UTC, datetime, timedelta
from k2.connect.maintenance import maintain
from k2.connect.tables import rest_catalog
started = time.monotonic()
report = maintain(rest_catalog(sys.argv[1]), sys.argv[2], today=datetime.now(UTC).date() + timedelta(days=1))
print(json.dumps({"seconds": round(time.monotonic() - started, 1),
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "data_files_before": report.data_files_before, "data_files_after": report.data_files_after,
                  "partitions_compacted": report.partitions_compacted}))
"""


def close_the_day(env: dict[str, str], catalog_uri: str, table_name: str) -> dict[str, Any]:
    """Compact today's partitions as the maintainer does once the day has ended; what it took."""
    done = subprocess.run(
        [sys.executable, "-c", CLOSE_THE_DAY, catalog_uri, table_name], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        return {"failed": done.stderr.strip()[-300:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def plot(
    samples: list[dict[str, Any]], fresh: list[tuple[float, float]], started: float, path: Path, title: str
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[dev]'): no plot", file=sys.stderr)
        return
    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    minutes = [s["elapsed_s"] / 60 for s in samples]
    axes[0][0].scatter([(t - started) / 60 for t, _ in fresh[::25]], [f for _, f in fresh[::25]], s=1)
    axes[0][0].set_title("trade to queryable, s (every 25th trade)")
    series = [
        ("trades_held", "trades held behind gaps"),
        ("max_files_per_partition", "files/partition (max)"),
        ("connect_heap_used_bytes", "Connect heap used"),
        ("connect_rss_bytes", "Connect RSS"),
        ("producer_cpu_share", "producer CPU (cores)"),
    ]
    for axis, (key, label) in zip(list(axes.flat)[1:], series, strict=True):
        axis.plot(minutes, [s.get(key) for s in samples], marker=".")
        axis.set_title(label)
    for axis in axes.flat:
        axis.set_xlabel("minutes")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--symbols", "symbol_count", type=click.IntRange(min=3), default=1600, show_default=True)
@click.option("--rate", type=click.FloatRange(min=1), default=700, show_default=True, help="Trades/s, all symbols.")
@click.option("--minutes", type=click.FloatRange(min=1), default=10, show_default=True)
@click.option("--burst", type=click.FloatRange(min=1), default=4, show_default=True, help="Rate multiple of the burst.")
@click.option("--burst-minutes", type=click.FloatRange(min=0), default=1, show_default=True)
@click.option("--layout", type=click.Choice(sorted(LAYOUTS)), default="declared", show_default=True)
@click.option(
    "--redundancy",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="The producer's --redundancy: connection sets carrying every stream.",
)
@click.option(
    "--drop-one-at",
    type=click.FloatRange(0, 0.99),
    default=0.85,
    show_default=True,
    help="Where in the tape one connection (the oldest) is dropped; 0: never.",
)
@click.option("--zipf", type=float, default=1.0, show_default=True, help="Exponent of the symbols' rate ranks.")
@click.option("--refuse-after-disconnect", type=float, default=2.0, show_default=True, help="Seconds of outage.")
@click.option("--sample-every", type=float, default=10, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results"), show_default=True)
@click.option("--standin-spec", type=click.Path(path_type=Path), hidden=True)
def main(
    symbol_count: int,
    rate: float,
    minutes: float,
    burst: float,
    burst_minutes: float,
    layout: str,
    redundancy: int,
    drop_one_at: float,
    zipf: float,
    refuse_after_disconnect: float,
    sample_every: float,
    out: Path,
    standin_spec: Path | None,
) -> None:
    """One whole-market run against the running stack of K2_HOME, reported as JSON and a plot."""
    if standin_spec is not None:
        standin_main(standin_spec)
        return
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2.connect.maintenance import policy_for
    from k2.connect.tables import apply_table, load_table_specs, rest_catalog
    from k2.producer.sample import market_symbols, zipf_weights
    from k2.schemas.contract import load_topics
    from k2.stack.ports import default_home, stack_ports

    home = default_home()
    ports = stack_ports(home)
    where, env = stack_env()
    run = f"wm_{layout.replace('-', '')}_r{redundancy}_{uuid.uuid4().hex[:6]}"
    topic, dlq, control = f"{run}_trades", f"{run}_dlq", f"{run}_control"
    table_name = f"{run}.trades"
    declared_topic = load_topics()["trades"]
    admin = AdminClient({"bootstrap.servers": where["kafka"]})
    new_topics = [NewTopic(topic, declared_topic.partitions, 1), NewTopic(dlq, 1, 1), NewTopic(control, 1, 1)]
    for future in admin.create_topics(new_topics).values():
        future.result(timeout=30)
    catalog = rest_catalog(where["catalog"])
    declared = load_table_specs()["market_data.trades"]
    partition = LAYOUTS[layout]
    spec = replace(
        declared, identifier=table_name, partition=partition if partition is not None else declared.partition
    )
    apply_table(catalog, spec)
    connector = json.loads((ROOT / "connect" / "k2-iceberg-trades.json").read_text())
    connector["name"] = run.replace("_", "-")
    tmp = Path(tempfile.mkdtemp(prefix="k2-wm-"))
    connector_file = tmp / f"{connector['name']}.json"
    connector_file.write_text(json.dumps(connector))
    sets = {"TRADES_TOPIC": topic, "ICEBERG_TABLE": table_name, "CONTROL_TOPIC": control}
    deployed = k2(
        env, "deploy-connectors", str(connector_file), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    )
    if deployed.returncode != 0:
        raise SystemExit(f"deploy failed: {deployed.stderr.strip()}")

    # The tape: R/s for the run, with the burst's extra trades; the burst starts at 30% of the run.
    symbols = market_symbols(symbol_count)
    seconds = minutes * 60
    burst_s = min(burst_minutes * 60, seconds * 0.4)
    total = int(rate * (seconds - burst_s) + rate * burst * burst_s)
    burst_from = int(rate * seconds * 0.3)
    burst_to = burst_from + int(rate * burst * burst_s)
    half_time = seconds / 2
    disconnect_at = burst_to + int(rate * max(0.0, half_time - seconds * 0.3 - burst_s)) if burst_s else int(total / 2)
    standin_port = free_port()
    spec_path = tmp / "standin.json"
    spec_path.write_text(
        json.dumps(
            {
                "symbols": symbols,
                "weights": zipf_weights(symbol_count, zipf),
                "seconds": total / rate,
                "rate": rate,
                "start_ms": int(time.time() * 1000),
                "disconnect_at": disconnect_at,
                "drop_one_at": int(total * drop_one_at) if drop_one_at else 0,
                "refuse_s": refuse_after_disconnect,
                "rate_changes": {str(burst_from): rate * burst, str(burst_to): rate} if burst_s else {},
                "port": standin_port,
                "broadcast_out": str(tmp / "broadcast.tsv"),
            }
        )
    )
    print(
        f"{run}: {symbol_count} symbols, {total:,} trades at {rate:g}/s ({burst:g}x for {burst_s:.0f} s from trade "
        f"{burst_from:,}), every connection dropped after trade {disconnect_at:,}, layout {layout}",
        flush=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    standin = subprocess.Popen(
        [sys.executable, __file__, "--standin-spec", str(spec_path)], stdout=subprocess.PIPE, text=True
    )
    assert standin.stdout is not None
    ready = json.loads(standin.stdout.readline() or "{}")
    if not ready.get("ready"):
        raise SystemExit("the stand-in did not start")
    total = int(ready["trades"])  # the tape as generated, closing trades included
    pids = {
        name: json.loads((home / "run" / f"{name}.json").read_text())["pid"]
        for name in ("kafka", "connect", "registry", "catalog")
    }
    policy_interval = os.environ.get("K2_MAINTAINER_INTERVAL", "60s")
    maintainer_log = (out / f"{run}.maintainer.log").open("w")
    maintainer_metrics = free_port()
    maintainer = subprocess.Popen(
        [
            *(sys.executable, "-m", "k2.cli", "tables", "maintain", table_name, "--watch"),
            *("--interval", policy_interval, "--metrics-port", str(maintainer_metrics)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=maintainer_log,
    )
    producer_metrics = free_port()
    producer_log = (out / f"{run}.producer.log").open("w")
    ws_url = f"ws://127.0.0.1:{standin_port}"
    producer = subprocess.Popen(
        produce_command(
            symbols,
            ws_url,
            f"http://127.0.0.1:{standin_port}",
            topic,
            dlq,
            total,
            producer_metrics,
            "--redundancy",
            str(redundancy),
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=producer_log,
        text=True,
    )
    pids |= {"producer": producer.pid, "maintainer": maintainer.pid, "standin": standin.pid}
    cpu0 = {name: (proc_stats(pid) or (0.0, 0))[0] for name, pid in pids.items()}
    peak_rss: dict[str, int] = {}
    peak_heap = 0
    fresh = Freshness()
    samples: list[dict[str, Any]] = []
    started = time.time()
    timeline: list[tuple[float, float | None, float]] = []  # (time, trades held, gaps open), every second
    requests: list[tuple[float, float]] = []  # (time, REST backfill requests so far), every second
    last_cpu = dict(cpu0)
    last_time = time.monotonic()
    try:
        producer_cpu: float | None = None
        while True:
            waited = 0.0
            while waited < sample_every and producer_cpu is None:
                time.sleep(1.0)
                waited += 1.0
                producer_cpu = zombie_cpu(producer.pid)
                if producer_cpu is None:
                    page = scrape(f"http://127.0.0.1:{producer_metrics}/metrics")
                    timeline.append(gap_state(time.time(), page))
                    if "k2_backfill_requests_total" in page:
                        requests.append((time.time(), page["k2_backfill_requests_total"]))
            if producer_cpu is not None:
                break
            now = time.monotonic()
            stats = {name: proc_stats(pid) for name, pid in pids.items()}
            for name, found in stats.items():
                if found:
                    peak_rss[name] = max(peak_rss.get(name, 0), found[1])
            jvm = scrape(f"http://127.0.0.1:{ports.connect_jmx}/metrics")
            heap = sum(v for k, v in jvm.items() if k.startswith("jvm_memory_used_bytes") and 'area="heap"' in k)
            peak_heap = max(peak_heap, int(heap))
            maintained = scrape(f"http://127.0.0.1:{maintainer_metrics}/metrics")
            metrics = scrape(f"http://127.0.0.1:{producer_metrics}/metrics")
            _, held, gaps_open = gap_state(0, metrics)
            table = catalog.load_table(table_name)
            fresh.update(table)
            _, max_files, _ = data_file_stats(table)
            cpu_now = {name: found[0] for name, found in stats.items() if found}
            sample = {
                "elapsed_s": round(time.time() - started, 1),
                "trades_acknowledged": metrics.get("k2_trades_acknowledged_total"),
                "trades_held": held,
                "gaps_open": gaps_open,
                "max_files_per_partition": max_files,
                "snapshots": len(table.metadata.snapshots),
                "connect_heap_used_bytes": int(heap),
                "connect_rss_bytes": (stats.get("connect") or (0.0, None))[1],
                "producer_cpu_share": round(
                    (cpu_now.get("producer", 0) - last_cpu.get("producer", 0)) / max(now - last_time, 1e-9), 3
                ),
                "connect_cpu_share": round(
                    (cpu_now.get("connect", 0) - last_cpu.get("connect", 0)) / max(now - last_time, 1e-9), 3
                ),
                "freshness_p95_so_far_s": percentile([f for _, f in fresh.samples], 0.95),
                "maintainer_cycle_s": maintained.get("k2_maintainer_last_cycle_duration_seconds"),
                "maintainer_rss_bytes": (stats.get("maintainer") or (0.0, None))[1],
            }
            last_cpu, last_time = {**last_cpu, **cpu_now}, now
            samples.append(sample)
            print(json.dumps(sample), flush=True)
        cpu_end = {name: (proc_stats(pid) or (0.0, 0))[0] for name, pid in pids.items() if name != "producer"}
        produced, _ = producer.communicate(timeout=120)
        summary = json.loads(produced)[0] if producer.returncode == 0 else {}
        if producer.returncode != 0:
            print(f"producer exited {producer.returncode}; see {out / (run + '.producer.log')}", file=sys.stderr)
        # Wait until every acknowledged trade is visible (the sink commits on its interval).
        acknowledged = int(summary.get("trades_acknowledged", 0))
        deadline = time.monotonic() + 600
        landed_rows = 0
        while time.monotonic() < deadline:
            done = k2(env, "query", f"select count(*) as n from {table_name}", "--format", "json")
            landed_rows = json.loads(done.stdout)[0]["n"] if done.returncode == 0 else 0
            if landed_rows >= acknowledged:
                break
            time.sleep(5)
        table = catalog.load_table(table_name)
        fresh.update(table)
        check = k2(
            env,
            "query",
            f"select count(*) as rows, count(distinct (symbol, trade_id)) as distinct_rows, "
            f"count(distinct symbol) as symbols from {table_name}",
            "--format",
            "json",
        )
        counted = json.loads(check.stdout)[0] if check.returncode == 0 else {}
        standin.send_signal(signal.SIGTERM)
        standin_report = json.loads(standin.communicate(timeout=60)[0].strip().splitlines()[-1])
        files_live, max_files, per_day = data_file_stats(table)
        probe_symbol = symbols[len(symbols) // 2]
        before = query_latencies(env, table_name, "BTCUSDT") | {
            "duckdb_files_read": one_symbol_files(where["catalog"], table_name, probe_symbol)
        }
        maintainer.terminate()
        maintainer.wait(timeout=120)
        cpu_end["maintainer_final"] = cpu_end.get("maintainer", 0.0)
        # The day closes: maintain as the maintainer will after midnight UTC, when today's partitions are
        # finished and each is compacted into files sorted by symbol (a process of its own, for its RSS).
        closed = close_the_day(env, where["catalog"], table_name)
        table = catalog.load_table(table_name)
        after = query_latencies(env, table_name, "BTCUSDT") | {
            "duckdb_files_read": one_symbol_files(where["catalog"], table_name, probe_symbol),
            "day_closed": closed,
        }
        metadata_path = table.metadata_location.removeprefix("file:")
    finally:
        for child in (producer, maintainer, standin):
            if child.poll() is None:
                child.kill()
        maintainer_log.close()
        producer_log.close()
        k2(env, "connectors", "delete", connector["name"], "--yes")

    broadcast_order = [line.split("\t") for line in (tmp / "broadcast.tsv").read_text().splitlines()]
    broadcast = {(symbol, int(trade_id)): float(moment) for symbol, trade_id, moment in broadcast_order}
    end_to_end = fresh.end_to_end(broadcast)
    freshness = [f for _, f in fresh.samples]
    burst_start = started + (burst_from / rate)
    burst_end = burst_start + burst_s
    if burst_s and len(broadcast_order) > burst_to:  # when the stand-in really played the burst
        burst_start, burst_end = float(broadcast_order[burst_from][2]), float(broadcast_order[burst_to - 1][2])
    in_burst = [f for c, f in fresh.samples if burst_start <= c - f <= burst_end]
    seconds_e2e = [f for _, f in end_to_end]
    result = {
        "run": run,
        "layout": layout,
        "redundancy": redundancy,
        "partition": [list(p) for p in spec.partition],
        "symbols": symbol_count,
        "rate": rate,
        "burst": {"multiple": burst, "seconds": burst_s},
        "minutes": minutes,
        "cpus": os.cpu_count(),
        "trades": {
            "generated": total,
            "acknowledged": acknowledged,
            "landed_rows": counted.get("rows"),
            "distinct_rows": counted.get("distinct_rows"),
            "exactly_once": counted.get("rows") == counted.get("distinct_rows") == total == acknowledged,
            "symbols_landed": counted.get("symbols"),
            "unrecovered": summary.get("trades_unrecovered"),
        },
        "freshness_s": {
            "p50": percentile(freshness, 0.5),
            "p95": percentile(freshness, 0.95),
            "max": round(max(freshness), 3) if freshness else None,
            "burst_p95": percentile(in_burst, 0.95),
            "mean": round(statistics.fmean(freshness), 3) if freshness else None,
            "trades_measured": len(freshness),
        },
        # From the moment the market made the trade to the commit that made it queryable: what the
        # producer held behind a gap, or missed while disconnected and backfilled, counts here.
        "trade_to_queryable_s": {
            "p50": percentile(seconds_e2e, 0.5),
            "p95": percentile(seconds_e2e, 0.95),
            "p99": percentile(seconds_e2e, 0.99),
            "max": round(max(seconds_e2e), 3) if seconds_e2e else None,
            "burst_p95": percentile([f for t, f in end_to_end if burst_start <= t <= burst_end], 0.95),
            "share_over_15s": round(sum(f > 15 for f in seconds_e2e) / len(seconds_e2e), 4) if seconds_e2e else None,
            "trades_measured": len(seconds_e2e),
        },
        "files": {
            "written_by_sink": fresh.files_added,
            "live_at_end": files_live,
            "max_per_partition_during_run": max((s["max_files_per_partition"] for s in samples), default=None),
            "max_per_partition_at_end": max_files,
            "live_per_day_at_end": per_day,
            "written_per_day_projected": round(fresh.files_added * 86400 / max(time.time() - started, 1)),
        },
        "snapshots": len(table.metadata.snapshots),
        "metadata_json_bytes": os.path.getsize(metadata_path) if os.path.exists(metadata_path) else None,
        "peak_rss_bytes": peak_rss,
        "cpu_seconds": {name: round(cpu_end.get(name, 0.0) - cpu0.get(name, 0.0), 1) for name in cpu_end}
        | {"producer": round(producer_cpu - cpu0["producer"], 1) if producer_cpu is not None else None},
        "connect_heap_peak_bytes": peak_heap,
        "connect_heap_max_bytes": next(
            (
                int(v)
                for k, v in scrape(f"http://127.0.0.1:{ports.connect_jmx}/metrics").items()
                if k.startswith("jvm_memory_max_bytes") and 'area="heap"' in k
            ),
            None,
        ),
        "rest": standin_report
        | {
            "producer_backfill_requests": summary.get("backfill_requests"),
            "gaps_backfilled": summary.get("gaps_backfilled"),
        },
        "recovery": recovery(timeline, standin_report.get("mass_disconnects", [])),
        "one_connection_drop": after_one_drop(requests, standin_report.get("one_connection_drops", [])),
        "queries_before_maintain": before,
        "queries_after_maintain": after,
        "maintainer_policy": {
            "interval": policy_interval,
            "bound": policy_for("market_data.trades").max_small_files_per_partition,
            "cycle_seconds_max": max((s["maintainer_cycle_s"] or 0.0 for s in samples), default=None),
        },
        "producer_summary": summary,
        "load_average_at_end": os.getloadavg(),
        "samples": samples,
    }
    (out / f"{run}.json").write_text(json.dumps(result, indent=2, default=str))
    plot(samples, end_to_end, started, out / f"{run}.png", f"{run}: {symbol_count} symbols, {rate:g}/s, {layout}")
    shown = {k: v for k, v in result.items() if k not in ("samples", "producer_summary")}
    print(json.dumps(shown, indent=2, default=str))


if __name__ == "__main__":
    main()
