"""K2's maintainer against Iceberg's own Spark procedures, on identical tables in one run (not in CI).

    pip install -e '.[spark]'               # pyspark 3.5.9 (~320 MB): never in the default or dev install
    k2 stack up catalog                      # only the REST catalog is needed
    python benchmarks/maintainer_engines.py run                          # 40 min of the whole market
    python benchmarks/maintainer_engines.py run --appends 60 --cycles 2  # a short look

The Iceberg Spark runtime (``RUNTIME`` below, the Iceberg 1.10 line of the stack's REST catalog, built for
Spark 3.5 / Scala 2.12) is copied once from Maven Central into K2_CACHE_DIR/spark by
``mvn dependency:copy`` (the same Maven and cache as `k2 stack up`). Java 17 runs Spark 3.5. Spark runs
local[*] with its default 1 GB driver heap, its UI off, 4 shuffle partitions instead of 200 and the
catalog's table cache off (both explained where they are set).

Tables: the declared ``market_data.trades`` (day(trade_time) + bucket[16](symbol), sorted by symbol,
trade_time; its properties and maintenance policy), created three times in a namespace of its own and
given the same appends: one UTC day (today's, so that `k2 tables maintain` takes it as the open day) of
Zipf-like trades over --symbols symbols at --rate trades/s, cut into one append per --commit-seconds (a
sink commit round: a small file in every bucket it touches), made by benchmarks/layouts.py. --appends of
them, never maintained, are the backlog; then every pass below starts from the same table state on each
engine, and each engine keeps its own table from then on.

Measured, each pass as a process of its own (wall seconds, CPU seconds of the process and every
descendant, from wait4's rusage once the tree has exited; peak RSS: the largest VmHWM in the tree, the
JVM for Spark) or, warm, as a request to a long-lived process (CPU from /proc of the tree before and
after, peak RSS the largest VmHWM so far):

- full pass on the backlog: `k2 tables maintain TABLE` as a user runs it (tier merges of the open day,
  expiry, orphans) against one Spark application that runs ``rewrite_data_files`` (sort, the table's
  order, min-input-files 2), ``expire_snapshots``, ``remove_orphan_files`` and ``rewrite_manifests``;
- compaction, same output: K2's day-closing compaction (today = the next day: every partition into
  sorted files of the target size) on the third table, which is what Spark's sort rewrite makes of
  the open day;
- cycles: one new 10-s commit, then a pass; --cycles times as processes (the JVM and session start
  once per pass; K2 the CLI, orphans included) and --cycles times warm, as the daemon runs every 60 s
  (K2 ``maintain(orphans=False)`` in one process; Spark rewrite + expire in one session).

After every pass: data files, the fullest partition against K2's bound (max_small_files_per_partition,
30), snapshots, manifests, files on disk. At the end: each table's rows (count, and the sum of DuckDB's
hash of (symbol, trade_id)) against the rows appended. Spark's procedures keep what Iceberg allows:
``remove_orphan_files`` refuses an ``older_than`` under 24 h, so neither engine deletes the run's
young orphans; ``expire_snapshots`` gets older_than = now and retain_last = max_snapshots, which keeps
what K2's policy keeps while every snapshot is younger than its 24-h retention.

Printed as JSON and a table; written to benchmarks/results/maintainer-engines-<time>.json, with every
process's stderr beside it. benchmarks/figures/maintainer-engines-2026-12-08.json is the summary of
`run --appends 240 --cycles 5` on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click

from probes import CLK_TCK, stack_env

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
# One place for the Spark side's versions: pyspark in pyproject.toml's `spark` extra, the runtime here.
RUNTIME = "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.1"
CATALOG = "k2"  # the Spark catalog name the procedures are called through
TRADES = "market_data.trades"
REPLY = "k2_bench_reply"  # marks the serving processes' answers on stdout (the JVM shares that stream)
FULL_PASS = ("rewrite", "expire", "orphans", "manifests")
DAEMON_CYCLE = ("rewrite", "expire")


# --- measuring processes ------------------------------------------------------------------------------


@dataclass
class Cost:
    """What one pass cost: wall and CPU seconds, the largest resident set of the processes that ran it."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float


def run_process(cmd: list[str], env: dict[str, str], log: IO[bytes], stdin: str = "") -> tuple[Cost, str]:
    """Run a process to its end; its cost and its stdout. CPU from wait4 (the process and every descendant
    it waited for); peak RSS from the largest VmHWM in its tree, read every 0.2 s: wait4's ru_maxrss would
    count this benchmark's own resident set, which the child's exec took over (vfork)."""
    started = time.monotonic()
    peak = 0.0
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=log)
        assert process.stdin is not None
        process.stdin.write(stdin.encode())
        process.stdin.close()
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, tree_peak_rss_mb(process.pid))
            time.sleep(0.2)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0:
        raise click.ClickException(f"{' '.join(cmd[:6])} ... exited {process.returncode}; see {log.name}")
    return Cost(round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2), peak), text


def tree(root: int) -> list[int]:
    """The process and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of a live process tree: each process's own and its reaped children's."""
    total = 0
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def tree_peak_rss_mb(root: int) -> float:
    """The largest peak resident set (VmHWM) among a live process tree."""
    peaks = [0]
    for pid in tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
    return round(max(peaks) / 1024, 1)


def read_reply(stream: IO[bytes]) -> dict[str, Any]:
    """The next answer of a serving process, skipping anything else its stdout carries."""
    while True:
        line = stream.readline()
        if not line:
            raise click.ClickException("a serving process ended before answering; see its log in benchmarks/results")
        if line.startswith(b'{"' + REPLY.encode()):
            reply: dict[str, Any] = json.loads(line)[REPLY]
            if "error" in reply:
                raise click.ClickException(f"a serving process failed: {reply['error']}")
            return reply


class Server:
    """A long-lived pass server (this file's ``spark-serve`` or ``k2-serve``): one JSON request a line."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: IO[bytes]) -> None:
        started = time.monotonic()
        self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.ready = read_reply(self._out)
        self.start_s = round(time.monotonic() - started, 2)

    @property
    def _out(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    def ask(self, request: dict[str, Any]) -> tuple[Cost, dict[str, Any]]:
        assert self.process.stdin is not None
        cpu, started = tree_cpu(self.process.pid), time.monotonic()
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        reply = read_reply(self._out)
        wall = time.monotonic() - started
        cpu = tree_cpu(self.process.pid) - cpu
        return Cost(round(wall, 2), round(cpu, 2), tree_peak_rss_mb(self.process.pid)), reply

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=120)


# --- the two engines ----------------------------------------------------------------------------------


def runtime_jar() -> Path:
    """The Iceberg Spark runtime jar in K2_CACHE_DIR/spark, copied from Maven Central on first use."""
    from k2.stack.manager import default_cache

    cache = default_cache()
    group, artifact, version = RUNTIME.split(":")
    jar = cache / "spark" / f"{artifact}-{version}.jar"
    if jar.is_file():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise click.ClickException(f"{jar} is missing and Maven (mvn) was not found to fetch {RUNTIME}")
    done = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={RUNTIME}", f"-DoutputDirectory={jar.parent}"]
        + [f"-Dmaven.repo.local={cache / 'm2'}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not jar.is_file():
        raise click.ClickException(f"fetching {RUNTIME} failed: {(done.stdout + done.stderr).strip()[-400:]}")
    return jar


def spark_calls(table: str, steps: tuple[str, ...], now: datetime, max_snapshots: int, sort: str) -> list[str]:
    """The Spark procedure calls of one pass, in order (Iceberg docs, "Spark Procedures")."""
    quoted = f"'{table}'"
    stamp = f"TIMESTAMP '{now.strftime('%Y-%m-%d %H:%M:%S')}'"
    # remove_orphan_files refuses anything younger than 24 h (RemoveOrphanFilesProcedure).
    orphan_stamp = f"TIMESTAMP '{(now - timedelta(hours=24)).strftime('%Y-%m-%d %H:%M:%S')}'"
    calls = {
        "rewrite": f"CALL {CATALOG}.system.rewrite_data_files(table => {quoted}, strategy => 'sort', "
        f"sort_order => '{sort}', options => map('min-input-files', '2'))",
        "expire": f"CALL {CATALOG}.system.expire_snapshots(table => {quoted}, older_than => {stamp}, "
        f"retain_last => {max_snapshots})",
        "orphans": f"CALL {CATALOG}.system.remove_orphan_files(table => {quoted}, older_than => {orphan_stamp})",
        "manifests": f"CALL {CATALOG}.system.rewrite_manifests(table => {quoted})",
    }
    return [calls[step] for step in steps]


def reply_line(payload: dict[str, Any]) -> None:
    print(json.dumps({REPLY: payload}, default=str), flush=True)


@click.group()
def main() -> None:
    """K2's maintainer against Iceberg's Spark procedures (see the module docstring)."""


@main.command("spark-serve")
@click.option("--catalog-uri", required=True)
@click.option("--jar", type=click.Path(exists=True, dir_okay=False), required=True, help="The Iceberg runtime.")
@click.option("--driver-memory", default="1g", show_default=True)
@click.option("--shuffle-partitions", type=click.IntRange(min=1), default=4, show_default=True)
def spark_serve(catalog_uri: str, jar: str, driver_memory: str, shuffle_partitions: int) -> None:
    """A Spark session with the Iceberg runtime and the REST catalog; one pass per request line
    {"table": ns.t, "steps": [...], "max_snapshots": N, "sort": "..."} on stdin, until stdin closes."""
    started = time.monotonic()
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[*]")
        .appName("k2-maintainer-engines")
        .config("spark.jars", jar)
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Spark's default of 200 shuffle partitions makes every expire/orphan join 200 tasks of
        # nothing on 2 cores (seen here: 122 s to expire nothing on a 20-commit table).
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .config(f"spark.sql.catalog.{CATALOG}", "org.apache.iceberg.spark.SparkCatalog")
        .config(f"spark.sql.catalog.{CATALOG}.type", "rest")
        .config(f"spark.sql.catalog.{CATALOG}.uri", catalog_uri)
        # Spark's catalog caches a loaded table (30 s by default): a warm session then rewrote the table
        # as it was before the sink's latest commit (seen here: nothing rewritten, or a partition left
        # with 2 files). A maintainer beside a writer has to read the head every pass.
        .config(f"spark.sql.catalog.{CATALOG}.cache-enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    gateway: Any = spark.sparkContext._gateway
    jvm = gateway.proc  # launch_gateway keeps the JVM's Popen here
    reply_line({"ready_s": round(time.monotonic() - started, 2), "spark": spark.version})
    for line in sys.stdin:
        request = json.loads(line)
        now = datetime.now(UTC)
        seconds: dict[str, float] = {}
        results: dict[str, Any] = {}
        try:
            calls = spark_calls(
                request["table"], tuple(request["steps"]), now, request["max_snapshots"], request["sort"]
            )
            for step, call in zip(request["steps"], calls, strict=True):
                begun = time.monotonic()
                rows = spark.sql(call).collect()
                seconds[step] = round(time.monotonic() - begun, 2)
                results[step] = rows[0].asDict() if len(rows) == 1 else {"rows": len(rows)}
        except Exception as exc:  # the parent reports it and stops: a failed procedure is a result here
            reply_line({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"})
            continue
        reply_line({"seconds": seconds, "results": results})
    spark.stop()
    # The JVM leaves when its stdin closes; waiting for it here puts its CPU and peak RSS in this
    # process's rusage, which is what the parent reads with wait4.
    jvm.stdin.close()
    jvm.wait()


@main.command("k2-serve")
@click.option("--catalog-uri", required=True)
def k2_serve(catalog_uri: str) -> None:
    """K2's maintain() in one process, as the daemon runs it; one pass per request line
    {"table": ns.t, "orphans": bool, "today": "YYYY-MM-DD" or null} on stdin, until stdin closes."""
    started = time.monotonic()
    from k2.connect.maintenance import maintain, policy_for
    from k2.connect.tables import rest_catalog

    catalog = rest_catalog(catalog_uri)
    policy = policy_for(TRADES)
    reply_line({"ready_s": round(time.monotonic() - started, 2)})
    for line in sys.stdin:
        request = json.loads(line)
        today = date.fromisoformat(request["today"]) if request.get("today") else None
        begun = time.monotonic()
        try:
            report = maintain(catalog, request["table"], today=today, policy=policy, orphans=request["orphans"])
        except Exception as exc:
            reply_line({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"})
            continue
        reply_line({"seconds": {"maintain": round(time.monotonic() - begun, 2)}, "results": report.as_dict()})


# --- the run ------------------------------------------------------------------------------------------


@dataclass
class Pass:
    """One maintenance pass of one engine and what the table was like after it."""

    engine: str
    kind: str
    cost: Cost
    steps_s: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


def table_state(catalog: Any, identifier: str) -> dict[str, Any]:
    """Live data files, the fullest partition, snapshots, manifests and files on disk of a table."""
    from k2.connect.maintenance import head_manifests, live_files, max_files_per_partition
    from k2.connect.storage import list_files

    table = catalog.load_table(identifier)
    files = live_files(table)
    stored = list_files(table.io, table.location())
    return {
        "data_files": len(files),
        "data_mb": round(sum(f.size for f in files) / 2**20, 1),
        "max_files_per_partition": max_files_per_partition(table),
        "snapshots": len(table.metadata.snapshots),
        "manifests": head_manifests(table),
        "disk_files": len(stored),
        "disk_mb": round(sum(f.size for f in stored) / 2**20, 1),
    }


def rows_checksum(lake: Any, relation: str) -> dict[str, int]:
    count, checksum = lake.con.execute(f"select count(*), sum(hash(symbol, trade_id)) from {relation}").fetchone()
    return {"rows": int(count), "checksum": int(checksum or 0)}


def summary(passes: list[Pass]) -> dict[str, Any]:
    """Median and max of the passes' costs, and the fullest partition any of them left."""
    if not passes:
        return {}
    return {
        "passes": len(passes),
        "wall_s_median": round(statistics.median(p.cost.wall_s for p in passes), 2),
        "wall_s_max": max(p.cost.wall_s for p in passes),
        "cpu_s_median": round(statistics.median(p.cost.cpu_s for p in passes), 2),
        # K2 merges a tier once it holds tier_fanout files: most cycles only plan, every 4th merges.
        "cpu_s_mean": round(statistics.mean(p.cost.cpu_s for p in passes), 2),
        "cpu_s_max": max(p.cost.cpu_s for p in passes),
        "peak_rss_mb": max(p.cost.peak_rss_mb for p in passes),
        "max_files_per_partition": max(p.after.get("max_files_per_partition", 0) for p in passes),
    }


@main.command()
@click.option("--symbols", "symbol_count", type=click.IntRange(min=16), default=1600, show_default=True)
@click.option("--rate", type=click.IntRange(min=1), default=600, show_default=True, help="Trades per second.")
@click.option("--commit-seconds", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--appends", type=click.IntRange(min=2), default=240, show_default=True, help="Backlog commits.")
@click.option("--cycles", type=click.IntRange(min=1), default=5, show_default=True, help="Per kind of cycle.")
@click.option("--driver-memory", default="1g", show_default=True, help="Spark's driver heap (its default).")
@click.option(
    "--shuffle-partitions", type=click.IntRange(min=1), default=4, show_default=True, help="Spark's (default 200)."
)
@click.option("--compare-compaction/--no-compare-compaction", default=True, show_default=True)
def run(
    symbol_count: int,
    rate: int,
    commit_seconds: int,
    appends: int,
    cycles: int,
    driver_memory: str,
    shuffle_partitions: int,
    compare_compaction: bool,
) -> None:
    """Build the tables, run every pass of both engines, check the rows, print and save the figures."""
    import importlib.util

    import pyarrow as pa

    from k2.connect.maintenance import policy_for
    from k2.connect.tables import apply_table, load_table_specs, rest_catalog
    from k2.producer.sample import market_symbols
    from k2.query.engine import Lake

    import layouts

    if importlib.util.find_spec("pyspark") is None:
        raise click.ClickException("pyspark is not installed: pip install -e '.[spark]'")
    jar = runtime_jar()
    where, env = stack_env()
    catalog_uri = where["catalog"]
    catalog = rest_catalog(catalog_uri)
    policy = policy_for(TRADES)
    declared = load_table_specs()[TRADES]
    sort = ", ".join(f"{column} ASC NULLS FIRST" for column in declared.sort)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / f"maintainer-engines-{stamp}"
    logs.mkdir()
    # day_of_trades writes layouts.DAY; the open day must be today's for `k2 tables maintain`, which
    # takes today from the clock.
    day = datetime.now(UTC).date()
    layouts.DAY = day
    total = appends + 2 * cycles
    trades = rate * commit_seconds * total
    started = time.monotonic()
    batches = layouts.day_of_trades(trades, market_symbols(symbol_count), total)
    load = [loadavg()]
    partial = logs / "passes.json"  # every pass so far, should the run stop early
    say(f"generated {trades:,} trades in {total} commits in {time.monotonic() - started:.0f}s")

    namespace = f"bench_engines_{uuid.uuid4().hex[:6]}"
    names = {"k2": f"{namespace}.k2_trades", "spark": f"{namespace}.spark_trades"}
    if compare_compaction:
        names["k2_compact"] = f"{namespace}.k2_compact_trades"
    for identifier in names.values():
        apply_table(catalog, replace(declared, identifier=identifier))
    appended = 0
    append_s = 0.0

    def append(batch: pa.Table, tables: list[str]) -> None:
        nonlocal append_s
        begun = time.monotonic()
        for identifier in tables:
            catalog.load_table(identifier).append(batch)
        append_s += time.monotonic() - begun

    for index, batch in enumerate(batches[:appends], 1):
        append(batch, list(names.values()))
        appended += 1
        if index % 50 == 0:
            say(f"backlog: {index}/{appends} commits into {len(names)} tables ({append_s:.0f}s)")
    before = table_state(catalog, names["k2"])
    say(f"backlog: {json.dumps(before)}")

    k2_cli = [sys.executable, "-m", "k2.cli", "tables", "maintain"]
    spark_cmd = [
        sys.executable,
        __file__,
        "spark-serve",
        "--catalog-uri",
        catalog_uri,
        "--jar",
        str(jar),
        "--driver-memory",
        driver_memory,
        "--shuffle-partitions",
        str(shuffle_partitions),
    ]
    k2_serve_cmd = [sys.executable, __file__, "k2-serve", "--catalog-uri", catalog_uri]
    passes: list[Pass] = []

    def k2_process(identifier: str, kind: str, log: IO[bytes]) -> Pass:
        cost, out = run_process([*k2_cli, identifier, "--format", "json"], env, log)
        report = json.loads(out)
        return record(Pass("k2", kind, cost, results=report), identifier)

    def spark_process(identifier: str, kind: str, steps: tuple[str, ...], log: IO[bytes]) -> Pass:
        request = {"table": identifier, "steps": steps, "max_snapshots": policy.max_snapshots, "sort": sort}
        cost, out = run_process(spark_cmd, env, log, json.dumps(request) + "\n")
        replies = [json.loads(line)[REPLY] for line in out.splitlines() if line.startswith('{"' + REPLY)]
        if len(replies) != 2 or "error" in replies[1]:
            raise click.ClickException(f"the Spark pass failed: {replies[-1:] or 'no answer'}; see {log.name}")
        found = replies[1]
        return record(Pass("spark", kind, cost, found["seconds"], found["results"]), identifier)

    def record(done: Pass, identifier: str) -> Pass:
        done.after = table_state(catalog, identifier)
        load.append(loadavg())
        partial.write_text(json.dumps([asdict(p) for p in passes], indent=1, default=str) + "\n")
        passes.append(done)
        say(f"{done.engine} {done.kind}: {asdict(done.cost)} steps={done.steps_s} after={done.after}")
        return done

    with (logs / "k2.log").open("ab") as k2_log, (logs / "spark.log").open("ab") as spark_log:
        k2_process(names["k2"], "full pass on the backlog", k2_log)
        spark_process(names["spark"], "full pass on the backlog", FULL_PASS, spark_log)
        if compare_compaction:
            # The day closes: K2 compacts each partition into sorted files of the target size, which is
            # what Spark's sort rewrite makes of the open day. A k2-serve process, since only
            # maintain(today=...) can name the day.
            request = json.dumps({"table": names["k2_compact"], "orphans": True, "today": str(day + timedelta(1))})
            cost, out = run_process(k2_serve_cmd, env, k2_log, request + "\n")
            found = [json.loads(line)[REPLY] for line in out.splitlines() if line.startswith('{"' + REPLY)][-1]
            if "error" in found:
                raise click.ClickException(f"K2's compaction failed: {found['error']}")
            record(Pass("k2", "full pass, day closed", cost, found["seconds"], found["results"]), names["k2_compact"])

        for _ in range(cycles):
            append(batches[appended], [names["k2"], names["spark"]])
            appended += 1
            k2_process(names["k2"], "cycle, process", k2_log)
            spark_process(names["spark"], "cycle, process", FULL_PASS, spark_log)

        k2_server = Server(k2_serve_cmd, env, k2_log)
        spark_server = Server(spark_cmd, env, spark_log)
        warm_up = {"k2": k2_server.ask({"table": names["k2"], "orphans": False})[0]}
        spark_request = {"table": names["spark"], "max_snapshots": policy.max_snapshots, "sort": sort}
        warm_up["spark"] = spark_server.ask({**spark_request, "steps": DAEMON_CYCLE})[0]
        for _ in range(cycles):
            append(batches[appended], [names["k2"], names["spark"]])
            appended += 1
            cost, reply = k2_server.ask({"table": names["k2"], "orphans": False})
            record(Pass("k2", "cycle, warm", cost, reply["seconds"], reply["results"]), names["k2"])
            cost, reply = spark_server.ask({**spark_request, "steps": DAEMON_CYCLE})
            record(Pass("spark", "cycle, warm", cost, reply["seconds"], reply["results"]), names["spark"])
        k2_server.close()
        spark_server.close()

    # Each table against the rows appended to it (the compaction table got the backlog only).
    lake = Lake(catalog_uri)
    checks: dict[str, dict[str, Any]] = {}
    for engine, identifier in names.items():
        count = appends if engine == "k2_compact" else appended
        lake.con.register("appended_rows", pa.concat_tables(batches[:count]).select(["symbol", "trade_id"]))
        expected = rows_checksum(lake, "appended_rows")
        found = rows_checksum(lake, f"lake.{identifier}")
        checks[engine] = {**found, "appended_rows": expected["rows"], "identical": found == expected}
        lake.con.unregister("appended_rows")
    identical = all(check["identical"] for check in checks.values())
    bound = policy.max_small_files_per_partition
    kinds = list(dict.fromkeys(p.kind for p in passes))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "versions": {"spark": spark_server.ready.get("spark"), "iceberg_spark_runtime": RUNTIME, "jar": str(jar)},
        "workload": {
            "symbols": symbol_count,
            "trades": trades,
            "rate_per_s": rate,
            "commit_seconds": commit_seconds,
            "backlog_commits": appends,
            "cycles": cycles,
            "append_seconds": round(append_s, 1),
            "spark_driver_memory": driver_memory,
            "spark_shuffle_partitions": shuffle_partitions,
        },
        # Other work on the machine stretches wall seconds (CPU seconds much less): the 1-minute load
        # average when the run started and after every pass.
        "load_average_1m": {"min": min(load), "max": max(load), "samples": load},
        "bound_max_files_per_partition": bound,
        "backlog": before,
        "start_s": {
            "spark_session": spark_server.ready.get("ready_s"),
            "spark_process_to_ready": spark_server.start_s,
            "k2_process_to_ready": k2_server.start_s,
        },
        "warm_up": {engine: asdict(cost) for engine, cost in warm_up.items()},
        "summary": {
            kind: {
                engine: summary([p for p in passes if p.kind == kind and p.engine == engine])
                for engine in ("k2", "spark")
            }
            for kind in kinds
        },
        "bound_held": {
            engine: all(p.after["max_files_per_partition"] <= bound for p in passes if p.engine == engine)
            for engine in ("k2", "spark")
        },
        "rows": checks,
        "rows_identical": identical,
        "passes": [asdict(p) for p in passes],
    }
    path = RESULTS / f"maintainer-engines-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result, indent=2, default=str))
    print(table_text(result), file=sys.stderr)
    say(f"written to {path}")
    if not identical:
        raise click.ClickException(f"rows differ after maintenance: {checks}")


def table_text(result: dict[str, Any]) -> str:
    """The summary as a plain-text table: one row per kind of pass and engine."""
    lines = [
        f"{'pass':<28} {'engine':<6} {'n':>2} {'wall s':>8} {'cpu s':>8} {'cpu mean':>8} {'peak MB':>8} "
        f"{'max files/part':>15}",
    ]
    for kind, engines in result["summary"].items():
        for engine, found in engines.items():
            if found:
                lines.append(
                    f"{kind:<28} {engine:<6} {found['passes']:>2} {found['wall_s_median']:>8} "
                    f"{found['cpu_s_median']:>8} {found['cpu_s_mean']:>8} {found['peak_rss_mb']:>8} "
                    f"{found['max_files_per_partition']:>15}"
                )
    lines.append(f"bound {result['bound_max_files_per_partition']}; held: {result['bound_held']}")
    lines.append(f"rows identical: {result['rows_identical']} {result['rows']}")
    return "\n".join(lines)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def say(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
