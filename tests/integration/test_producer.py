"""`k2 produce` against the real stack, fed by the Binance stand-in (Binance itself is unreachable here)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from k2.producer.binance_standin.script import Script
from k2.producer.binance_standin.server import BinanceStandIn

from .conftest import LocalStack, unique
from .helpers import (
    BAD_FRAMES,
    SYMBOLS,
    assert_exactly,
    consume,
    live_options,
    make_events,
    make_topics,
    produce_cmd,
    produce_summary,
    start_producer,
)

pytestmark = pytest.mark.integration


def test_disconnects_that_lose_and_repeat_frames_land_every_trade_exactly_once(local_stack: LocalStack) -> None:
    events = make_events(3000)
    topic, dlq = make_topics(local_stack)
    # First disconnect: frames sent while the client is away are lost (gap -> REST backfill).
    # Second: the next connection starts with 40 frames it already had (overlap -> duplicates).
    script = Script(disconnect_at={700, 1900}, overlap_on_reconnect=40)
    with BinanceStandIn(events, rate=1500, script=script) as server:
        done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "3000", "--duration", "120"))
        connections = server.connections
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert connections == 3
    assert summary["trades_acknowledged"] == 3000 and summary["unacknowledged"] == 0
    assert summary["gaps_detected"] >= 1 and summary["gaps_backfilled"] == summary["gaps_detected"]
    assert summary["trades_backfilled"] > 0 and summary["duplicates_dropped"] > 0
    assert summary["gaps_unrecovered"] == 0 and summary["lost_ranges"] == []
    assert_exactly(events, consume(local_stack, topic))


def test_bad_frames_go_to_the_dead_letter_topic_and_the_producer_keeps_going(local_stack: LocalStack) -> None:
    events = make_events(600, seed=12)
    topic, dlq = make_topics(local_stack)
    control = json.dumps({"result": None, "id": 1})  # a subscription ack: ignored silently
    script = Script(bad_frames={10: [control, *BAD_FRAMES.values()], 400: [BAD_FRAMES["invalid JSON"]]})
    with BinanceStandIn(events, rate=1000, script=script) as server:
        done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "600", "--duration", "60"))
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["dead_lettered"] == 6 and summary["dead_letters_acknowledged"] == 6
    assert summary["trades_acknowledged"] == 600
    dead = consume(local_stack, dlq, avro=False)
    reasons = sorted(r.headers["k2.error.reason"].decode() for r in dead)
    assert reasons == sorted([*BAD_FRAMES, "invalid JSON"])
    raw_by_reason = {r.headers["k2.error.reason"].decode(): r.value for r in dead}
    for reason, raw in BAD_FRAMES.items():
        assert raw_by_reason[reason] == raw.encode(), "dead letters keep the frame exactly as received"
    assert_exactly(events, consume(local_stack, topic))


def test_server_shutdown_rotates_the_connection_without_losing_anything(local_stack: LocalStack) -> None:
    events = make_events(1500, seed=13)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=500, script=Script(shutdown_at={500})) as server:
        done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "1500", "--duration", "60"))
    assert done.returncode == 0, done.stderr
    summary = produce_summary(done.stdout)
    assert summary["rotations"] == 1 and summary["reconnects"] == 0
    assert summary["gaps_detected"] == 0, "the new connection opened before the old one closed"
    assert_exactly(events, consume(local_stack, topic))


def test_sigterm_flushes_everything_in_flight_and_counts_it(local_stack: LocalStack) -> None:
    events = make_events(20000, seed=14)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=2000) as server:
        proc = start_producer(local_stack, produce_cmd(server, topic, dlq))
        time.sleep(4)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = produce_summary(out)
    assert 0 < summary["trades_sent"] < 20000, "SIGTERM should have arrived mid-run"
    assert summary["trades_acknowledged"] == summary["trades_sent"] and summary["unacknowledged"] == 0
    landed = consume(local_stack, topic)
    assert len(landed) == summary["trades_acknowledged"]
    # What landed is a gap-free prefix of each symbol's trades: nothing accepted was dropped.
    for symbol in SYMBOLS:
        ids = sorted(r.value["trade_id"] for r in landed if r.value["symbol"] == symbol)
        expected = sorted(e["t"] for e in events if e["s"] == symbol)[: len(ids)]
        assert ids == expected


def test_broker_restart_mid_run_loses_and_duplicates_nothing(local_stack: LocalStack) -> None:
    events = make_events(4000, seed=15)
    topic, dlq = make_topics(local_stack)
    status = json.loads(local_stack.k2("stack", "status", "--format", "json").stdout)
    kafka_pid = next(r["pid"] for r in status if r["service"] == "kafka")
    with BinanceStandIn(events, rate=400) as server:
        proc = start_producer(
            local_stack, produce_cmd(server, topic, dlq, "--max-messages", "4000", "--duration", "240")
        )
        time.sleep(3)
        subprocess.run(["kill", "-TERM", str(kafka_pid)], check=True)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{kafka_pid}/stat").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        restarted = local_stack.k2("stack", "up", "--timeout", "300")
        assert restarted.returncode == 0, restarted.stderr
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = produce_summary(out)
    assert summary["trades_acknowledged"] == 4000 and summary["delivery_failures"] == 0
    assert_exactly(events, consume(local_stack, topic))


def test_schema_compatibility_is_checked_before_registering(local_stack: LocalStack, tmp_path: Path) -> None:
    registered = local_stack.k2("schemas", "register", "--format", "json")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)[0]["action"] in ("registered", "unchanged")

    schema = json.loads((Path(__file__).parents[2] / "schemas" / "trade.avsc").read_text())
    incompatible = dict(schema, fields=[*schema["fields"], {"name": "venue", "type": "string"}])
    (tmp_path / "bad.avsc").write_text(json.dumps(incompatible))
    refused = local_stack.k2("schemas", "check", "trades", "--file", str(tmp_path / "bad.avsc"))
    assert refused.returncode == 1
    assert "is not BACKWARD-compatible with market.crypto.trades.binance-value" in refused.stderr
    also_refused = local_stack.k2("schemas", "register", "trades", "--file", str(tmp_path / "bad.avsc"))
    assert also_refused.returncode == 1 and "not BACKWARD-compatible" in also_refused.stderr

    compatible = dict(schema, fields=[*schema["fields"], {"name": "venue", "type": "string", "default": "spot"}])
    (tmp_path / "good.avsc").write_text(json.dumps(compatible))
    checked = local_stack.k2("schemas", "check", "trades", "--file", str(tmp_path / "good.avsc"), "--format", "json")
    assert checked.returncode == 0 and json.loads(checked.stdout)[0]["action"] == "compatible"
    evolved = local_stack.k2("schemas", "register", "trades", "--file", str(tmp_path / "good.avsc"), "--format", "json")
    assert evolved.returncode == 0, evolved.stderr
    row = json.loads(evolved.stdout)[0]
    assert row["action"] == "registered" and row["version"] == 2


def test_connections_rotate_by_age_without_losing_anything(local_stack: LocalStack) -> None:
    """The 24 h rotation, with the age limit shortened: new connection first, then the old one closes."""
    from k2.producer.app import run_live

    events = make_events(1500, seed=16)
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(events, rate=500) as server:
        options = live_options(local_stack, server, topic, dlq, max_messages=1500, duration=60, rotate_after=1.0)
        summary = run_live(options)
        connections = server.connections
    assert summary.rotations >= 2 and connections == summary.rotations + 1
    assert summary.gaps_detected == 0 and summary.trades_acknowledged == 1500
    assert_exactly(events, consume(local_stack, topic))


def test_producing_to_a_topic_that_does_not_exist_stops_before_reading_a_frame(local_stack: LocalStack) -> None:
    topic, dlq = make_topics(local_stack)
    undeclared = unique("undeclared")
    sample = Path(__file__).parents[2] / "producer" / "samples" / "binance-trades-sample.jsonl"
    replay = local_stack.k2("produce", "--replay", str(sample), "--topic", undeclared, "--dlq-topic", dlq, timeout=60)
    assert replay.returncode == 1
    assert replay.stderr.strip().splitlines() == [
        f"Error: topic {undeclared} does not exist on {local_stack.bootstrap_servers}: create the declared topics "
        "with `k2 topics apply`, or pass --topic / --dlq-topic naming existing ones"
    ]
    assert replay.stdout == ""
    with SchemaRegistryClient({"url": local_stack.registry_url}) as registry:
        subjects = registry.get_subjects()
    assert f"{undeclared}-value" not in subjects, "nothing is registered for a topic that does not exist"

    events = make_events(50, seed=3)
    with BinanceStandIn(events, rate=1000) as server:
        live = local_stack.k2(*produce_cmd(server, topic, undeclared), timeout=60)
        assert server.connections == 0, "no connection is opened before the topics are checked"
    assert live.returncode == 1
    assert len(live.stderr.strip().splitlines()) == 1 and f"topic {undeclared} does not exist" in live.stderr


def test_the_producer_registers_its_subject_with_the_declared_compatibility(local_stack: LocalStack) -> None:
    topic, dlq = make_topics(local_stack)
    with BinanceStandIn(make_events(30, seed=4), rate=1000) as server:
        done = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "30"))
    assert done.returncode == 0, done.stderr
    with SchemaRegistryClient({"url": local_stack.registry_url}) as registry:
        assert registry.get_compatibility(f"{topic}-value") == "BACKWARD"
        # A subject left without its own level (e.g. by an older producer) gets it on the next start.
        registry.delete_config(f"{topic}-value")
        # Another stand-in market (other trade ids) on the same topic: start at its first trade.
        with BinanceStandIn(make_events(30, seed=5), rate=1000) as server:
            again = local_stack.k2(*produce_cmd(server, topic, dlq, "--max-messages", "30", "--from-latest"))
        assert again.returncode == 0, again.stderr
        assert registry.get_compatibility(f"{topic}-value") == "BACKWARD"
