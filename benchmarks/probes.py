"""What the benchmarks read from a running stack and its processes: the clients' environment, `k2`
itself, a Prometheus page, and /proc. One copy for every benchmark, so that a figure means the same in each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stack_env() -> tuple[dict[str, str], dict[str, str]]:
    """(the addresses, an environment pointing `k2` at them) of the stack in K2_HOME (.k2 by default)."""
    from k2.stack.ports import default_home, stack_ports, urls

    where = urls(stack_ports(default_home()))
    env = {
        **os.environ,
        "K2_BOOTSTRAP_SERVERS": where["kafka"],
        "K2_REGISTRY_URL": where["registry"],
        "K2_CONNECT_URL": where["connect"],
        "K2_CATALOG_URI": where["catalog"],
    }
    return where, env


def k2(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`k2 ARGS` as a user runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "k2.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def scrape(url: str) -> dict[str, float]:
    """The samples of a Prometheus text page keyed by their full name with labels, as written
    (``jvm_memory_used_bytes{area="heap"}``); empty when the page does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return values


def proc_stats(pid: int | None) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a live process, from /proc; None once it has gone."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss = next(
            int(line.split()[1]) * 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    except (OSError, StopIteration):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK, rss


def rss_bytes(pid: int | None) -> int | None:
    """The resident memory of a live process."""
    stats = proc_stats(pid)
    return stats[1] if stats else None


def timed(env: dict[str, str], *args: str) -> float | None:
    """Seconds the whole `k2 ARGS` command took, as a user waits for it; None (and k2's message on
    stderr) when it failed."""
    started = time.monotonic()
    done = k2(env, *args)
    if done.returncode != 0:
        print(f"k2 {' '.join(args[:2])} failed: {done.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return round(time.monotonic() - started, 3)


def candles_today(env: dict[str, str], table: str, symbol: str) -> float | None:
    """Seconds `k2 candles` takes for one symbol's 1-minute candles of today."""
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    return timed(
        env, "candles", "--symbols", symbol, "--interval", "1m", "--since", today, "--table", table, "--format", "json"
    )


def produce_command(
    symbols: list[str], ws_url: str, rest_url: str, topic: str, dlq: str, trades: int, metrics_port: int, *extra: str
) -> list[str]:
    """`k2 produce` of ``trades`` trades of these symbols from a stand-in, JSON summary, metrics on the port."""
    return [
        sys.executable,
        "-m",
        "k2.cli",
        "produce",
        "--symbols",
        ",".join(symbols),
        "--ws-url",
        ws_url,
        "--rest-url",
        rest_url,
        "--topic",
        topic,
        "--dlq-topic",
        dlq,
        "--format",
        "json",
        "--max-messages",
        str(trades),
        "--metrics-port",
        str(metrics_port),
        *extra,
    ]
