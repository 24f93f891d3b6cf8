"""Connect's heap while the Iceberg sink lands a whole-market backlog (issue 19: the sink must never die of
its input). Not in CI: it needs minutes and a running local stack (`k2 stack up`).

    python benchmarks/sink_memory.py                                    # 1,000 symbols x 3,000 trades, 2 days
    python benchmarks/sink_memory.py --row-group-size 134217728         # Iceberg's default row group (128 MB)
    python benchmarks/sink_memory.py --symbols 1600 --trades-per-symbol 5000 --tasks-max 2
    python benchmarks/sink_memory.py --trades-per-symbol 10000 --commit-interval-ms 600000 --keep   # stalled commits
    python benchmarks/sink_memory.py --topic bench.mem.<id> --row-group-size 8388608 ...           # same backlog again

A backlog of N symbols x M trades whose trade times span --days UTC days is written to a fresh topic
(the declared partition count) with `k2 produce --replay`; then a copy of the shipped sink is deployed
on a fresh table of the declared layout (day x bucket[16](symbol), so one open Parquet writer per day
and bucket: 16 x days) and timed until every trade is committed. Meanwhile Connect's JMX exporter is
read every --sample seconds: heap used (jvm_memory_used_bytes{area="heap"}), GC time, and the worker's
RSS; a worker that died (pid gone) or a task that FAILED ends the run.

Heap used, and even the old generation after a young collection, count garbage G1 has not collected yet
(it starts marking only at 45% of the heap), so the live set is measured apart: every --live-every
seconds, and once when the sink has read the whole backlog (before a long commit interval commits it),
`jcmd <pid> GC.run` forces a full collection and the heap used right after it is what is really held.
Printed as one JSON object; the scratch topic, connector and table are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from k2.producer.defaults import METRICS_PORT_ENV

from probes import k2, rss_bytes, scrape

ROOT = Path(__file__).resolve().parents[1]


def k2_ok(*args: str) -> str:
    """The output of `k2 ARGS`; a failure ends the benchmark with k2's own message."""
    done = k2(dict(os.environ), *args, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"k2 {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def live_heap(pid: int, url: str) -> int | None:
    """The heap used right after a full collection that `jcmd GC.run` forces: what the worker really holds."""
    done = subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return None
    value = scrape(url).get('jvm_memory_used_bytes{area="heap"}')
    return int(value) if value is not None else None


@dataclass
class HeapWatch:
    """Samples Connect's JVM through its JMX exporter until stopped (and its live set, if asked)."""

    url: str
    pid: int
    every: float
    live_every: float = 0.0
    samples: list[dict[str, float]] = field(default_factory=list)
    live: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes after full GC)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        started = time.monotonic()
        last_live = started
        while not self.stop.is_set():
            if self.live_every and time.monotonic() - last_live >= self.live_every:
                last_live = time.monotonic()
                held = live_heap(self.pid, self.url)
                if held is not None:
                    self.live.append((round(last_live - started, 1), held))
            page = scrape(self.url)
            if page:
                self.samples.append(
                    {
                        "t": round(time.monotonic() - started, 1),
                        "heap_used": page.get('jvm_memory_used_bytes{area="heap"}', 0.0),
                        "heap_max": page.get('jvm_memory_max_bytes{area="heap"}', 0.0),
                        "old_after_gc": page.get('jvm_memory_pool_collection_used_bytes{pool="G1 Old Gen"}', 0.0),
                        "gc_s": sum(v for k, v in page.items() if k.startswith("jvm_gc_collection_seconds_sum")),
                        "old_gcs": page.get('jvm_gc_collection_seconds_count{gc="G1 Old Generation"}', 0.0),
                        "rss": float(rss_bytes(self.pid) or 0),
                    }
                )
            self.stop.wait(self.every)


def connect_pid(home: Path) -> int:
    return int(json.loads((home / "run" / "connect.json").read_text())["pid"])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def committed_records(catalog: Any, table: str) -> int:
    snapshot = catalog.load_table(table).current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.additional_properties.get("total-records", 0))


def row_groups(catalog: Any, table: str, limit: int = 40) -> dict[str, float]:
    """Row groups per data file and their compressed size, over up to ``limit`` files (local warehouse)."""
    import pyarrow.parquet as pq

    paths = catalog.load_table(table).inspect.data_files()["file_path"].to_pylist()
    groups, sizes = [], []
    for path in paths[:limit]:
        meta = pq.ParquetFile(path.removeprefix("file:")).metadata
        groups.append(meta.num_row_groups)
        sizes += [
            sum(meta.row_group(i).column(c).total_compressed_size for c in range(meta.num_columns))
            for i in range(meta.num_row_groups)
        ]
    return {
        "data_files": len(paths),
        "max_row_groups_per_file": max(groups, default=0),
        "max_row_group_compressed_bytes": max(sizes, default=0),
    }


@click.command()
@click.option("--symbols", "symbol_count", type=int, default=1000, show_default=True, help="Symbols in the backlog.")
@click.option("--trades-per-symbol", type=int, default=3000, show_default=True, help="Trades per symbol (average).")
@click.option("--days", type=int, default=2, show_default=True, help="UTC days the trade times span.")
@click.option("--row-group-size", help="PARQUET_ROW_GROUP_BYTES of the sink  [default: connect/variables.toml]")
@click.option("--commit-interval-ms", help="COMMIT_INTERVAL_MS  [default: connect/variables.toml]")
@click.option("--tasks-max", help="TASKS_MAX  [default: connect/variables.toml]")
@click.option("--sample", type=float, default=0.5, show_default=True, help="Seconds between heap samples.")
@click.option("--live-every", type=float, default=0.0, help="Seconds between forced full GCs (live set); 0: off.")
@click.option("--keep", is_flag=True, help="Keep the scratch topic, connector and table.")
@click.option("--topic", "reuse", help="Land this topic (a backlog an earlier --keep run left) instead of a new one.")
def main(
    symbol_count: int,
    trades_per_symbol: int,
    days: int,
    row_group_size: str | None,
    commit_interval_ms: str | None,
    tasks_max: str | None,
    sample: float,
    live_every: float,
    keep: bool,
    reuse: str | None,
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from k2.connect.tables import apply_table, load_table_specs, rest_catalog
    from k2.producer.sample import generate_events, market_symbols, write_frames
    from k2.schemas.contract import load_topics
    from k2.stack.ports import default_home, stack_ports, urls

    home = default_home()
    local = urls(stack_ports(home))
    bootstrap, catalog_uri = local["kafka"], local["catalog"]
    suffix = uuid.uuid4().hex[:8]
    topic, control, table = f"bench.mem.{suffix}", f"bench.mem.control.{suffix}", f"bench_mem_{suffix}.trades"
    topic = reuse or topic
    name = f"bench-mem-{suffix}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = load_topics()["trades"].partitions
    new = [NewTopic(control, 1, 1)]
    if not reuse:
        new += [NewTopic(topic, partitions, 1), NewTopic(f"{topic}.dlq", 1, 1)]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)
    spec = replace(load_table_specs()["market_data.trades"], identifier=table)
    catalog = rest_catalog(catalog_uri)
    apply_table(catalog, spec)
    total = symbol_count * trades_per_symbol
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=days)
    seconds = days * 86400 - 1
    result: dict[str, Any] = {
        "symbols": symbol_count,
        "trades": total,
        "days": days,
        "topic": topic,
        "row_group_size_bytes": row_group_size or "as connect/variables.toml says",
        "target_file_size_bytes": spec.properties.get("write.target-file-size-bytes"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if not reuse:
            frames = Path(tmp) / "backlog.jsonl"
            events = generate_events(
                market_symbols(symbol_count), seconds, total / seconds, int(start.timestamp() * 1000), seed=19
            )
            write_frames(frames, events)
            began = time.monotonic()
            produce = ["--replay", str(frames), "--topic", topic, "--dlq-topic", f"{topic}.dlq", "--metrics-port", "0"]
            k2_ok("produce", *produce)
            frames.unlink()
            result["produce_s"] = round(time.monotonic() - began, 1)
        data = json.loads((ROOT / "connect" / "k2-iceberg-trades.json").read_text())
        data["name"] = name
        path = Path(tmp) / f"{name}.json"
        path.write_text(json.dumps(data))
        sets = [
            "--set",
            f"TRADES_TOPIC={topic}",
            "--set",
            f"ICEBERG_TABLE={table}",
            "--set",
            f"CONTROL_TOPIC={control}",
        ]
        if commit_interval_ms:
            sets += ["--set", f"COMMIT_INTERVAL_MS={commit_interval_ms}"]
        if tasks_max:
            sets += ["--set", f"TASKS_MAX={tasks_max}"]
        if row_group_size:
            sets += ["--set", f"PARQUET_ROW_GROUP_BYTES={row_group_size}"]
        pid = connect_pid(home)
        watch = HeapWatch(local["connect_jmx"], pid, sample, live_every)
        sampler = threading.Thread(target=watch.run, daemon=True)
        sampler.start()
        began = time.monotonic()
        k2_ok("deploy-connectors", str(path), *sets)
        landed, ended = 0, "landed"
        connect = local["connect"]
        read_all: int | None = None
        while landed < total:
            time.sleep(2)
            if not alive(pid):
                ended = "the Connect worker died"
                break
            try:
                with urllib.request.urlopen(f"{connect}/connectors/{name}/status", timeout=10) as response:
                    status = json.loads(response.read())
            except OSError:
                status = {}
            failed = [t for t in status.get("tasks", []) if t.get("state") == "FAILED"]
            if failed:
                ended = "task FAILED: " + str(failed[0].get("trace", "")).splitlines()[0][:300]
                break
            landed = committed_records(catalog, table)
            if read_all is None and landed < total:
                page = scrape(local["connect_jmx"])
                read = sum(
                    v for k, v in page.items() if k.startswith("kafka_connect_sink_record_read_total") and name in k
                )
                if read >= total:  # every trade is in an open writer, none committed yet (with a long interval)
                    read_all = live_heap(pid, local["connect_jmx"]) or 0
                    result["read_all_s"] = round(time.monotonic() - began, 1)
            if time.monotonic() - began > 3600:
                ended = "not landed within an hour"
                break
        elapsed = time.monotonic() - began
        watch.stop.set()
        sampler.join()
    samples = watch.samples
    result |= {
        "ended": ended,
        "landed": landed,
        "land_s": round(elapsed, 1),
        "trades_per_s": round(landed / elapsed),
        "heap_max_bytes": int(max((s["heap_max"] for s in samples), default=0)),
        "heap_used_peak_bytes": int(max((s["heap_used"] for s in samples), default=0)),
        "old_gen_after_gc_peak_bytes": int(max((s["old_after_gc"] for s in samples), default=0)),
        "gc_seconds": round(samples[-1]["gc_s"] - samples[0]["gc_s"], 1) if samples else None,
        "old_gcs": int(samples[-1]["old_gcs"] - samples[0]["old_gcs"]) if samples else None,
        "rss_peak_bytes": int(max((s["rss"] for s in samples), default=0)),
        "heap_samples": len(samples),
        "live_after_all_read_bytes": read_all,
        "live_peak_bytes": max((held for _, held in watch.live), default=None),
        "live_samples": watch.live,
    }
    if ended == "landed":
        result |= row_groups(catalog, table)
    if not keep:
        subprocess.run([sys.executable, "-m", "k2.cli", "connectors", "delete", name, "--yes"], capture_output=True)
        try:
            catalog.purge_table(table)
            catalog.drop_namespace(table.split(".")[0])
        except Exception as exc:  # scratch cleanup: say so, the numbers stand
            print(f"could not drop {table}: {exc}", file=sys.stderr)
        admin.delete_topics([control] + ([] if reuse else [topic, f"{topic}.dlq"]))
    print(json.dumps(result, indent=2))
    sys.exit(0 if ended == "landed" else 1)


if __name__ == "__main__":
    os.environ.setdefault(METRICS_PORT_ENV, "0")
    main()
