"""Soak: stream through the Binance stand-in for many minutes and watch the table's health (not in CI).

    K2_HOME=/tmp/k2-soak python benchmarks/soak.py --minutes 30                      # stack defaults
    K2_HOME=/tmp/k2-soak python benchmarks/soak.py --compressed --no-maintainer      # 1-s commits, 10 min

Each run uses its own topic, table and connector on the running stack (`k2 stack up` first), so runs
with and without the maintainer can share one stack. The maintainer here is `k2 tables maintain TABLE
--watch`, the same command the stack's `maintainer` service runs (that service maintains only the
tables of connect/tables.toml). Every --sample-every seconds it records: data files per partition (max),
snapshots, metadata.json bytes, manifests of the head, `k2 candles` (today, 1 m, one symbol) and
newest-100-trades latency through the CLI, producer RSS, Connect RSS, and the sink group's lag. At the
end every acknowledged trade must be in the table exactly once. Writes <out>/<run>.csv, .json and .png.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from k2.connect.lag import sink_lag
from k2.connect.maintenance import head_manifests, max_files_per_partition
from k2.connect.tables import apply_table, load_table_specs, rest_catalog
from k2.producer.binance_standin.server import BinanceStandIn
from k2.producer.defaults import METRICS_PORT
from k2.producer.sample import generate_events
from k2.stack.ports import default_home

from probes import candles_today, k2, produce_command, rss_bytes, stack_env, timed

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]


def total_lag(admin: AdminClient, connector: str, topic: str) -> int | None:
    """The sink's lag summed over the topic's partitions; None while Kafka does not answer (a missed sample)."""
    try:
        return sum(row.lag for row in sink_lag(admin, connector, [topic]))
    except KafkaException:
        return None


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[dev]'): no plot", file=sys.stderr)
        return
    keys = [
        ("max_files_per_partition", "files/partition (max)"),
        ("snapshots", "snapshots"),
        ("metadata_json_bytes", "metadata.json bytes"),
        ("manifests", "manifests"),
        ("candles_seconds", "k2 candles s"),
        ("newest_trades_seconds", "newest 100 s"),
        ("producer_rss_bytes", "producer RSS"),
        ("connect_rss_bytes", "Connect RSS"),
        ("consumer_lag", "sink lag (records)"),
    ]
    figure, axes = plt.subplots(3, 3, figsize=(14, 10))
    minutes = [s["elapsed_s"] / 60 for s in samples]
    for axis, (key, label) in zip(axes.flat, keys, strict=True):
        axis.plot(minutes, [s.get(key) for s in samples], marker=".")
        axis.set_title(label)
        axis.set_xlabel("minutes")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)


@click.command()
@click.option("--minutes", type=float, default=30, show_default=True)
@click.option("--compressed", is_flag=True, help="1-s commits for 10 minutes (about 600 commits).")
@click.option("--commit-interval-ms", type=int, default=10_000, show_default=True, help="The stack's default.")
@click.option("--rate", type=float, default=30, show_default=True, help="Trades per second (all symbols).")
@click.option("--maintainer/--no-maintainer", default=True, show_default=True)
@click.option(
    "--maintainer-interval",
    help="Maintainer cycle.  [default: 60s, the stack's; 10s with --compressed, a tenth of the 1-s commits' pile-up]",
)
@click.option(
    "--producer-metrics-port",
    type=int,
    default=0,
    show_default=True,
    help=f"The producer's metrics port ({METRICS_PORT}: the stack's k2-producer scrape job); 0 beside another soak.",
)
@click.option("--sample-every", type=float, default=60, show_default=True, help="Seconds between samples.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/results"), show_default=True)
def main(
    minutes: float,
    compressed: bool,
    commit_interval_ms: int,
    rate: float,
    maintainer: bool,
    maintainer_interval: str | None,
    producer_metrics_port: int,
    sample_every: float,
    out: Path,
) -> None:
    """Run one soak against the running stack of K2_HOME and check its goals."""
    if compressed:
        minutes, commit_interval_ms = 10, 1000
    maintainer_interval = maintainer_interval or ("10s" if compressed else "60s")
    home = default_home()
    where, env = stack_env()
    run = f"soak_{'c' if compressed else 'd'}_{'m' if maintainer else 'n'}_{uuid.uuid4().hex[:6]}"
    topic, dlq, control = f"{run}_trades", f"{run}_dlq", f"{run}_control"
    table_name = f"{run}.trades"
    admin = AdminClient({"bootstrap.servers": where["kafka"]})
    for future in admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq, 1, 1), NewTopic(control, 1, 1)]).values():
        future.result(timeout=30)
    catalog = rest_catalog(where["catalog"])
    from dataclasses import replace

    apply_table(catalog, replace(load_table_specs()["market_data.trades"], identifier=table_name))
    connector = json.loads((ROOT / "connect" / "k2-iceberg-trades.json").read_text())
    connector["name"] = run.replace("_", "-")
    tmp = Path(tempfile.mkdtemp())
    connector_file = tmp / f"{connector['name']}.json"
    connector_file.write_text(json.dumps(connector))
    sets = {"TRADES_TOPIC": topic, "ICEBERG_TABLE": table_name, "CONTROL_TOPIC": control}
    sets["COMMIT_INTERVAL_MS"] = str(commit_interval_ms)
    deployed = k2(
        env, "deploy-connectors", str(connector_file), *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    )
    if deployed.returncode != 0:
        raise SystemExit(f"deploy failed: {deployed.stderr.strip()}")

    count = int(rate * minutes * 60)
    start_ms = int(time.time() * 1000)
    events = list(generate_events(SYMBOLS, count / rate, rate, start_ms=start_ms, seed=5))
    out.mkdir(parents=True, exist_ok=True)
    connect_pid = json.loads((home / "run" / "connect.json").read_text())["pid"]
    samples: list[dict[str, Any]] = []
    maintainer_proc = None
    log_file = (out / f"{run}.maintainer.log").open("w")
    if maintainer:
        maintainer_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "k2.cli",
                "tables",
                "maintain",
                table_name,
                "--watch",
                "--interval",
                maintainer_interval,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    started = time.monotonic()
    print(f"{run}: {count} trades at {rate}/s for {minutes} min, commits every {commit_interval_ms} ms", flush=True)
    try:
        with BinanceStandIn(events, rate=rate) as server:
            producer = subprocess.Popen(
                produce_command(SYMBOLS, server.ws_url, server.rest_url, topic, dlq, count, producer_metrics_port),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            next_sample = time.monotonic() + sample_every
            while producer.poll() is None:
                if time.monotonic() < next_sample:
                    time.sleep(1)
                    continue
                next_sample += sample_every
                table = catalog.load_table(table_name)
                metadata_path = table.metadata_location.removeprefix("file:")
                sample = {
                    "elapsed_s": round(time.monotonic() - started, 1),
                    "max_files_per_partition": max_files_per_partition(table),
                    "snapshots": len(table.metadata.snapshots),
                    "metadata_json_bytes": os.path.getsize(metadata_path) if os.path.exists(metadata_path) else None,
                    "manifests": head_manifests(table),
                    "candles_seconds": candles_today(env, table_name, "BTCUSDT"),
                    "newest_trades_seconds": timed(
                        env,
                        "query",
                        f"select * from {table_name} order by trade_time desc limit 100",
                        "--format",
                        "json",
                    ),
                    "producer_rss_bytes": rss_bytes(producer.pid),
                    "connect_rss_bytes": rss_bytes(connect_pid),
                    "consumer_lag": total_lag(admin, connector["name"], topic),
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)
            produced, err = producer.communicate(timeout=120)
        if producer.returncode != 0:
            raise SystemExit(f"producer failed: {err.strip()[-500:]}")
        acknowledged = json.loads(produced)[0]["trades_acknowledged"]
        deadline = time.monotonic() + 300
        landed: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            done = k2(env, "query", f"select symbol, trade_id from {table_name}", "--format", "json")
            landed = json.loads(done.stdout) if done.returncode == 0 else []
            if len(landed) >= acknowledged:
                time.sleep(2 * commit_interval_ms / 1000)
                done = k2(env, "query", f"select symbol, trade_id from {table_name}", "--format", "json")
                landed = json.loads(done.stdout)
                break
            time.sleep(5)
    finally:
        if maintainer_proc is not None:
            maintainer_proc.terminate()
            maintainer_proc.wait(timeout=60)
        log_file.close()
        k2(env, "connectors", "delete", connector["name"], "--yes")
    keys = [(row["symbol"], row["trade_id"]) for row in landed]
    sent = {(e["s"], e["t"]) for e in events}
    exact = len(keys) == len(set(keys)) == acknowledged and set(keys) == sent
    first = samples[0] if samples else {}
    warm = samples[min(2, len(samples) - 1)] if samples else {}

    def within(key: str, factor: float, base: dict[str, Any]) -> bool | None:
        """The last sample that has the value (the producer may have exited by the final one)."""
        latest = next((sample[key] for sample in reversed(samples) if sample.get(key)), None)
        if not base.get(key) or latest is None:
            return None
        return bool(latest <= base[key] * factor)

    goals = {
        "max_files_per_partition_max": max((s["max_files_per_partition"] for s in samples), default=None),
        "metadata_json_bytes_max": max((s["metadata_json_bytes"] or 0 for s in samples), default=None),
        "metadata_under_1mb": all((s["metadata_json_bytes"] or 0) < 1_000_000 for s in samples),
        "candles_latency_flat_1_5x": within("candles_seconds", 1.5, first),
        "newest_trades_latency_flat_1_5x": within("newest_trades_seconds", 1.5, first),
        "producer_rss_flat_10pct_after_warmup": within("producer_rss_bytes", 1.10, warm),
        "every_acknowledged_trade_exactly_once": exact,
        "acknowledged": acknowledged,
        "rows": len(keys),
        "distinct_rows": len(set(keys)),
    }
    result = {
        "run": run,
        "maintainer": maintainer,
        "minutes": minutes,
        "commit_interval_ms": commit_interval_ms,
        "rate": rate,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "goals": goals,
        "samples": samples,
    }
    (out / f"{run}.json").write_text(json.dumps(result, indent=2))
    if samples:
        with (out / f"{run}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
        plot(
            samples,
            out / f"{run}.png",
            f"{run}: {minutes} min, {commit_interval_ms} ms commits, maintainer={maintainer}",
        )
    print(json.dumps(goals, indent=2))


if __name__ == "__main__":
    main()
