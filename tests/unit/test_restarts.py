"""The supervisor's decisions, without services: backoff, the hourly bound, giving up, hung workers, and
the plan of one check (stack/restarts.py, stack/supervisor.py plan and metrics)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from k2.stack.restarts import History, Probes, RestartPolicy, decide, probed, unresponsive
from k2.stack.supervisor import (
    CONNECTOR_REASONS,
    SERVICE_REASONS,
    ConnectorSeen,
    Observation,
    ServiceSeen,
    Stats,
    metric_families,
    plan,
)

POLICY = RestartPolicy(first_backoff_s=10, max_backoff_s=300, max_per_hour=10, healthy_reset_s=300)


def test_backoff_doubles_from_10s_up_to_5_minutes() -> None:
    assert [POLICY.backoff(n) for n in range(0, 9)] == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def run(failing_at: list[tuple[float, bool]], policy: RestartPolicy = POLICY) -> list[tuple[float, str]]:
    """Feed (time, failing) observations; the (time, verdict) of every one that is not "ok"."""
    history = History()
    seen: list[tuple[float, str]] = []
    for now, failing in failing_at:
        decision, history = decide(history, failing, now, policy)
        if decision.verdict != "ok":
            seen.append((now, decision.verdict))
    return seen


def test_a_target_that_keeps_failing_is_restarted_at_once_then_with_growing_waits() -> None:
    checks = [(float(t), True) for t in range(0, 400, 5)]
    restarts = [t for t, verdict in run(checks) if verdict == "restart"]
    assert restarts == [0, 10, 30, 70, 150, 310]  # waits 10, 20, 40, 80, 160 after each restart


def test_after_max_restarts_within_an_hour_it_gives_up_once_then_leaves_it_alone() -> None:
    checks = [(float(t), True) for t in range(0, 7200, 10)]
    verdicts = run(checks, replace(POLICY, max_per_hour=4))
    restarts = [t for t, v in verdicts if v == "restart"]
    assert restarts == [0, 10, 30, 70]
    give_ups = [t for t, v in verdicts if v == "give-up"]
    assert give_ups == [150]  # when the fifth restart would have been due
    assert {v for t, v in verdicts if t > 150} == {"given-up"}, "no restart after giving up, however long"


def test_given_up_is_watched_again_once_seen_healthy() -> None:
    policy = replace(POLICY, max_per_hour=1)
    history = History()
    decision, history = decide(history, True, 0, policy)
    assert decision.verdict == "restart"
    decision, history = decide(history, True, 20, policy)
    assert decision.verdict == "give-up" and history.given_up
    decision, history = decide(history, False, 30, policy)  # a person fixed it
    assert decision.verdict == "ok" and not history.given_up
    # The hourly bound still counts the restart at 0: failing again within the hour gives up again, at once.
    decision, history = decide(history, True, 40, policy)
    assert decision.verdict == "give-up"
    # An hour after that restart, it is restarted again.
    decision, history = decide(replace(history, given_up=False), True, 3601, policy)
    assert decision.verdict == "restart"


def test_health_for_healthy_reset_starts_the_backoff_over() -> None:
    history = History()
    for now in (0.0, 10.0, 30.0):  # three restarts in a row
        decision, history = decide(history, True, now, POLICY)
        assert decision.verdict == "restart"
    assert history.in_a_row == 3
    _, history = decide(history, False, 40, POLICY)
    _, history = decide(history, False, 200, POLICY)
    assert history.in_a_row == 3, "healthy for 160 s: not long enough to forget"
    _, history = decide(history, False, 340, POLICY)
    assert history.in_a_row == 0
    decision, history = decide(history, True, 341, POLICY)
    assert decision.verdict == "restart" and decision.attempt == 1


def test_a_short_health_between_failures_keeps_the_backoff_growing() -> None:
    history = History()
    decision, history = decide(history, True, 0, POLICY)
    _, history = decide(history, False, 5, POLICY)  # RUNNING for a moment after the restart
    decision, history = decide(history, True, 8, POLICY)
    assert decision.verdict == "wait" and decision.retry_in_s == pytest.approx(2)
    decision, history = decide(history, True, 10, POLICY)
    assert decision.verdict == "restart" and decision.attempt == 2


def test_a_worker_is_hung_only_after_enough_failed_probes_over_the_grace_period() -> None:
    probes = Probes()
    probes = probed(probes, pid=42, ok=True, now=0)
    hung = []
    for now in range(10, 100, 10):
        probes = probed(probes, 42, False, float(now))
        hung.append((now, unresponsive(probes, float(now), grace_s=60, min_failures=3, start_timeout_s=300)))
    assert [now for now, is_hung in hung if is_hung][0] == 70  # first failure at 10, + 60 s of grace
    # One answer resets it.
    probes = probed(probes, 42, True, 100)
    assert probes.failures == 0 and not unresponsive(probes, 100, 60, 3, 300)


def test_a_single_slow_answer_or_few_probes_are_not_a_hang() -> None:
    probes = probed(Probes(), 42, True, 0)
    probes = probed(probes, 42, False, 10)
    assert not unresponsive(probes, 500, grace_s=60, min_failures=3, start_timeout_s=300), "one failed probe"


def test_a_starting_worker_gets_the_start_timeout_and_a_new_pid_starts_over() -> None:
    probes = Probes()
    for now in range(0, 300, 10):
        probes = probed(probes, 7, False, float(now))
        assert not unresponsive(probes, float(now), 60, 3, 300), "never answered yet: still starting"
    probes = probed(probes, 7, False, 300)
    assert unresponsive(probes, 300, 60, 3, 300)
    probes = probed(probes, 8, False, 310)  # restarted: a new process
    assert probes.failures == 1 and not unresponsive(probes, 310, 60, 3, 300)


def observation(
    services: dict[str, str] | None = None, connectors: list[ConnectorSeen] | None = None, answering: bool = True
) -> Observation:
    return Observation(
        [ServiceSeen(name, state) for name, state in (services or {}).items()], answering, connectors or []
    )


def test_the_plan_restarts_dead_and_hung_services_in_start_order_and_failed_connectors() -> None:
    seen = observation(
        {"kafka": "exited", "catalog": "running", "connect": "unresponsive", "maintainer": "stopped"},
        [
            ConnectorSeen("k2-iceberg-trades", "RUNNING", tasks_failed=1, trace="task 0 FAILED: NoSuchTable"),
            ConnectorSeen("k2-other", "FAILED", connector_failed=True, trace="connector FAILED: boom"),
            ConnectorSeen("k2-fine", "RUNNING"),
        ],
    )
    actions, histories = plan(seen, {}, 0, POLICY)
    assert [(a.kind, a.target, a.verdict, a.reason) for a in actions] == [
        ("service", "kafka", "restart", "exited"),
        ("service", "connect", "restart", "unresponsive"),
        ("connector", "k2-iceberg-trades", "restart", "task-failed"),
        ("connector", "k2-other", "restart", "connector-failed"),
    ]
    assert "NoSuchTable" in actions[2].detail and "restart 1 in a row" in actions[2].detail
    assert set(histories) >= {"kafka", "connect", "k2-iceberg-trades", "k2-fine"}
    again, _ = plan(seen, histories, 5, POLICY)
    assert {a.verdict for a in again} == {"wait"}
    assert "next restart in 5s" in again[0].detail


def test_connectors_are_not_judged_while_the_worker_does_not_answer() -> None:
    seen = observation({"connect": "not answering"}, [ConnectorSeen("k2-iceberg-trades", "FAILED", True)], False)
    actions, histories = plan(seen, {}, 0, POLICY)
    assert actions == [] and "k2-iceberg-trades" not in histories


def _exported(stats: Stats) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    class Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return metric_families(stats)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_every_metric_is_exported_from_the_start_at_zero_and_counts_what_was_done() -> None:
    stats = Stats()
    stats.know("service", "catalog", ("exited",))
    stats.know("service", "connect", SERVICE_REASONS)
    stats.know("connector", "k2-iceberg-trades", CONNECTOR_REASONS)
    before = _exported(stats)
    assert set(before) == {
        "k2_supervisor_restarts_total",
        "k2_supervisor_restart_errors_total",
        "k2_connector_tasks_failed",
        "k2_connector_failed",
        "k2_connector_restarts_given_up",
        "k2_service_restarts_given_up",
        "k2_supervisor_connect_probe_failures",
        "k2_supervisor_checks_total",
        "k2_supervisor_last_check_timestamp_seconds",
    }
    assert before["k2_supervisor_restarts_total"] == {
        (("reason", "exited"), ("target", "catalog")): 0,
        (("reason", "exited"), ("target", "connect")): 0,
        (("reason", "unresponsive"), ("target", "connect")): 0,
        (("reason", "connector-failed"), ("target", "k2-iceberg-trades")): 0,
        (("reason", "task-failed"), ("target", "k2-iceberg-trades")): 0,
    }
    assert before["k2_connector_restarts_given_up"] == {(("connector", "k2-iceberg-trades"),): 0}
    assert set(before["k2_service_restarts_given_up"]) == {(("service", "catalog"),), (("service", "connect"),)}
    stats.restarts[("k2-iceberg-trades", "task-failed")] += 2
    stats.tasks_failed["k2-iceberg-trades"] = 1
    stats.given_up["k2-iceberg-trades"] = True
    after = _exported(stats)
    assert after["k2_supervisor_restarts_total"][(("reason", "task-failed"), ("target", "k2-iceberg-trades"))] == 2
    assert after["k2_connector_tasks_failed"] == {(("connector", "k2-iceberg-trades"),): 1}
    assert after["k2_connector_restarts_given_up"] == {(("connector", "k2-iceberg-trades"),): 1}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_supervisor_restarts_a_failed_k2_connector_with_backoff_gives_up_and_watches_it_again() -> None:
    from k2.stack.supervisor import Options, Supervisor

    from .fake_connect import FakeConnectClient

    client = FakeConnectClient()
    trace = "org.apache.kafka.connect.errors.ConnectException: Exiting\nCaused by: NoSuchTableException: t"
    client.set("k2-iceberg-trades", "RUNNING", "FAILED", trace=trace)
    client.set("other-team", "RUNNING", "FAILED", trace=trace)
    clock = Clock()
    policy = replace(POLICY, max_per_hour=3)
    supervisor = Supervisor(
        client,  # type: ignore[arg-type]
        lambda: ["k2-iceberg-trades"],
        Options(policy=policy, services=False),
        clock=clock,
        probe=lambda url: True,
    )
    verdicts = []
    for now in range(0, 200, 10):
        clock.now = float(now)
        verdicts += [(now, a.verdict) for a in supervisor.check()]
    assert [(t, v) for t, v in verdicts if v not in ("wait", "given-up")] == [
        (0, "restart"),
        (10, "restart"),
        (30, "restart"),
        (70, "give-up"),
    ]
    assert client.restarts == ["k2-iceberg-trades"] * 3, "never another team's connector"
    stats = supervisor.stats
    assert stats.restarts[("k2-iceberg-trades", "task-failed")] == 3
    assert stats.tasks_failed["k2-iceberg-trades"] == 1 and stats.given_up["k2-iceberg-trades"]
    assert "other-team" not in stats.kinds
    client.set("k2-iceberg-trades", "RUNNING", "RUNNING")  # a person fixed it
    clock.now = 300.0
    assert supervisor.check() == []
    assert not stats.given_up["k2-iceberg-trades"] and stats.tasks_failed["k2-iceberg-trades"] == 0


def test_connectors_are_left_alone_while_connect_does_not_answer() -> None:
    from k2.stack.supervisor import Options, Supervisor

    from .fake_connect import FakeConnectClient

    client = FakeConnectClient()
    client.set("k2-iceberg-trades", "FAILED", trace="boom")
    supervisor = Supervisor(
        client,  # type: ignore[arg-type]
        lambda: ["k2-iceberg-trades"],
        Options(services=False),
        clock=Clock(),
        probe=lambda url: False,
    )
    assert supervisor.check() == [] and client.restarts == []
    assert supervisor.stats.connect_probe_failures == 1
