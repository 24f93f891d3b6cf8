"""The supervisor (`k2 stack supervise`, the stack's `supervisor` service): keeps the stack and K2's
connectors up, so that the sink never stays dead (issue 19).

Each check it observes, plans, then acts:

- a stack service whose process has exited is started again through the code `k2 stack up` uses;
- a Connect worker whose process runs but whose REST API has stopped answering (3 failed probes over a
  grace period; a JVM whose herder thread died of an OutOfMemoryError looked like this) is killed with
  SIGKILL and started again the same way;
- a connector defined in connect/*.json (never another team's) whose connector or tasks are FAILED is
  restarted through KIP-745 (``POST /connectors/<name>/restart?includeTasks=true&onlyFailed=true``):
  Connect never restarts a FAILED task by itself.

Every restart is bounded by ``restarts.py`` (backoff, at most N an hour, then it gives up and says so).
What it did is served as Prometheus metrics and written to a heartbeat file; `k2 status` reads them. In
Compose, Docker's restart policy restarts dead containers, so the supervisor there only restarts
connectors (``--no-services``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .exceptions import StackError
from .restarts import History, Probes, RestartPolicy, Verdict, decide, probed, unresponsive

if TYPE_CHECKING:
    from k2.connect.deploy import ConnectClient

    from .manager import Stack
    from .services import Service

log = logging.getLogger("k2.supervisor")

SELF = "supervisor"
# Why a target was restarted: the reason label of k2_supervisor_restarts_total (a small fixed set).
SERVICE_REASONS = ("exited", "unresponsive")
CONNECTOR_REASONS = ("connector-failed", "task-failed")
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Options:
    interval_s: float = 10.0
    connect_grace_s: float = 60.0  # REST silence of a running worker before it is killed
    connect_probe_failures: int = 3  # ... and at least this many failed probes in a row
    start_timeout_s: float = 300.0  # a (re)started service may take this long to answer
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    services: bool = True  # restart the local stack's processes too (not in Compose)


@dataclass(frozen=True)
class ServiceSeen:
    name: str
    state: str  # alive | running | exited | unresponsive | not answering | waiting for kafka | stopped | skipped
    pid: int | None = None

    @property
    def failing(self) -> bool:
        return self.state in SERVICE_REASONS


@dataclass(frozen=True)
class ConnectorSeen:
    name: str
    state: str  # the connector's state, or "not deployed"
    connector_failed: bool = False
    tasks_failed: int = 0
    trace: str = ""  # the first line of the first failed part's trace

    @property
    def failing(self) -> bool:
        return self.connector_failed or self.tasks_failed > 0

    @property
    def reason(self) -> str:
        return "connector-failed" if self.connector_failed else "task-failed"


@dataclass(frozen=True)
class Observation:
    services: list[ServiceSeen]
    connect_answering: bool
    connectors: list[ConnectorSeen]


@dataclass(frozen=True)
class Action:
    """One decision of a check about one target (what --dry-run prints, what ``act`` executes)."""

    kind: Literal["service", "connector"]
    target: str
    state: str
    verdict: Verdict
    reason: str = ""
    detail: str = ""

    def row(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "target": self.target,
            "state": self.state,
            "action": self.verdict,
            "reason": self.reason,
            "detail": self.detail,
        }


ACTION_COLUMNS = ("kind", "target", "state", "action", "reason", "detail")


def plan(
    seen: Observation, histories: dict[str, History], now: float, policy: RestartPolicy
) -> tuple[list[Action], dict[str, History]]:
    """What to do about each failing target, and the histories to keep: pure, so tested without services.

    Services come first, in start order (a dead broker is started before the worker that needs it);
    connectors are judged only while the worker answers (a status read from a hung worker says nothing).
    """
    actions: list[Action] = []
    kept = dict(histories)
    targets: list[tuple[Literal["service", "connector"], str, str, bool, str, str]] = [
        ("service", s.name, s.state, s.failing, s.state, "") for s in seen.services
    ]
    if seen.connect_answering:
        targets += [("connector", c.name, c.state, c.failing, c.reason, c.trace) for c in seen.connectors]
    for kind, name, state, failing, reason, detail in targets:
        decision, kept[name] = decide(histories.get(name, History()), failing, now, policy)
        if decision.verdict == "ok":
            continue
        if decision.verdict == "wait":
            detail = f"next restart in {decision.retry_in_s:.0f}s" + (f"; {detail}" if detail else "")
        elif decision.verdict == "restart":
            detail = f"restart {decision.attempt} in a row" + (f"; {detail}" if detail else "")
        elif decision.verdict == "give-up":
            detail = f"{policy.max_per_hour} restarts within an hour" + (f"; {detail}" if detail else "")
        actions.append(Action(kind, name, state, decision.verdict, reason, detail))
    return actions, kept


@dataclass
class Stats:
    """One model of what the supervisor saw and did, read by /metrics, the heartbeat and `k2 status`."""

    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target -> its restart reasons
    kinds: dict[str, str] = field(default_factory=dict)  # target -> service | connector
    restarts: dict[tuple[str, str], int] = field(default_factory=dict)
    restart_errors: dict[str, int] = field(default_factory=dict)
    tasks_failed: dict[str, int] = field(default_factory=dict)
    connector_failed: dict[str, int] = field(default_factory=dict)
    given_up: dict[str, bool] = field(default_factory=dict)
    connect_probe_failures: int = 0
    checks: int = 0
    last_check_at: float = 0.0

    def know(self, kind: str, target: str, reasons: Iterable[str]) -> None:
        """Every target's series exist from the start, at 0 (an alert's increase() then sees the first restart)."""
        self.kinds[target] = kind
        self.reasons[target] = tuple(dict.fromkeys((*self.reasons.get(target, ()), *reasons)))
        for reason in self.reasons[target]:
            self.restarts.setdefault((target, reason), 0)
        self.restart_errors.setdefault(target, 0)
        self.given_up.setdefault(target, False)
        if kind == "connector":
            self.tasks_failed.setdefault(target, 0)
            self.connector_failed.setdefault(target, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checks": self.checks,
            "last_check_at": self.last_check_at,
            "restarts": {f"{t}/{r}": n for (t, r), n in sorted(self.restarts.items()) if n},
            "restart_errors": {t: n for t, n in sorted(self.restart_errors.items()) if n},
            "given_up": sorted(t for t, gone in self.given_up.items() if gone),
            "tasks_failed": {t: n for t, n in sorted(self.tasks_failed.items()) if n},
            "connectors_failed": sorted(t for t, n in self.connector_failed.items() if n),
            "connect_probe_failures": self.connect_probe_failures,
        }


def metric_families(stats: Stats) -> Iterator[Any]:
    """The supervisor's metrics, built from ``stats`` at each scrape."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    restarts = CounterMetricFamily(
        "k2_supervisor_restarts", "Restarts the supervisor made, by target and reason.", labels=["target", "reason"]
    )
    for (target, reason), count in sorted(stats.restarts.items()):
        restarts.add_metric([target, reason], count)
    yield restarts
    errors = CounterMetricFamily(
        "k2_supervisor_restart_errors",
        "Restarts that failed themselves (did not start, or the REST call was refused).",
        labels=["target"],
    )
    for target, count in sorted(stats.restart_errors.items()):
        errors.add_metric([target], count)
    yield errors
    failed = GaugeMetricFamily(
        "k2_connector_tasks_failed", "Tasks FAILED at the last check, per K2 connector.", labels=["connector"]
    )
    for name, count in sorted(stats.tasks_failed.items()):
        failed.add_metric([name], count)
    yield failed
    instance = GaugeMetricFamily(
        "k2_connector_failed", "1 while the connector instance itself is FAILED.", labels=["connector"]
    )
    for name, count in sorted(stats.connector_failed.items()):
        instance.add_metric([name], count)
    yield instance
    for kind, label in (("connector", "connector"), ("service", "service")):
        gone = GaugeMetricFamily(
            f"k2_{kind}_restarts_given_up",
            f"1 once the supervisor stopped restarting this {kind} (too many restarts within an hour).",
            labels=[label],
        )
        for target, flag in sorted(stats.given_up.items()):
            if stats.kinds.get(target) == kind:
                gone.add_metric([target], 1.0 if flag else 0.0)
        yield gone
    yield GaugeMetricFamily(
        "k2_supervisor_connect_probe_failures",
        "Failed probes of Connect's REST API in a row.",
        value=stats.connect_probe_failures,
    )
    yield CounterMetricFamily("k2_supervisor_checks", "Checks the supervisor ran.", value=stats.checks)
    yield GaugeMetricFamily(
        "k2_supervisor_last_check_timestamp_seconds", "End of the last check.", value=stats.last_check_at
    )


def serve_metrics(stats: Stats, port: int, host: str) -> None:
    """``stats`` as Prometheus metrics on host:port (prometheus-client), read at scrape time."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.registry import Collector

    class SupervisorCollector(Collector):
        def collect(self) -> Iterator[Any]:
            return metric_families(stats)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector())
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise StackError(f"supervisor metrics port {host}:{port} is not free ({exc.strerror})") from exc
    log.info("metrics on http://%s:%d/metrics", host, port)


def connect_answers(url: str) -> bool:
    """Connect's REST API lists its connectors within PROBE_TIMEOUT_S (that call needs the herder thread)."""
    import requests

    try:
        return requests.get(f"{url.rstrip('/')}/connectors", timeout=PROBE_TIMEOUT_S).status_code == 200
    except requests.RequestException:
        return False


class Supervisor:
    """Observes, plans and acts once per check; ``run`` repeats that until stopped."""

    def __init__(
        self,
        client: ConnectClient,
        connectors: Callable[[], list[str]],
        options: Options,
        stack: Stack | None = None,
        heartbeat: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[str], bool] = connect_answers,
    ) -> None:
        self.client = client
        self.probe = probe
        self.connectors = connectors  # K2's connector names, read again at every check
        self.options = options
        self.stack = stack if options.services else None
        self.heartbeat = heartbeat
        self.clock = clock
        self.histories: dict[str, History] = {}
        self.probes = Probes()
        self.stats = Stats()
        self.last: list[Action] = []
        self.beaten = 0.0  # when a restart's progress last refreshed the heartbeat
        for svc in self._services():
            self.stats.know("service", svc.name, SERVICE_REASONS if svc.name == "connect" else ("exited",))

    def _services(self) -> list[Service]:
        if self.stack is None:
            return []
        from .services import SERVICES

        return [svc for svc in SERVICES if svc.name != SELF]

    # -- observe -----------------------------------------------------------------------------------
    def observe(self) -> Observation:
        now = self.clock()
        services, answering = self._observe_services(self.stack, now) if self.stack is not None else ([], False)
        if self.stack is None:  # no local worker (Compose): the REST answer alone is the probe
            answering = self.probe(self.client.url)
            self.probes = probed(self.probes, -1, answering, now)
        self.stats.connect_probe_failures = self.probes.failures
        connectors = self._connectors() if answering else []
        return Observation(services, answering, connectors)

    def _observe_services(self, stack: Stack, now: float) -> tuple[list[ServiceSeen], bool]:
        """Each service's process, and whether the local worker answers (probed once per check)."""
        services: list[ServiceSeen] = []
        answering = False
        alive: set[str] = set()
        for svc in self._services():
            state, pid = stack.process_state(svc)
            if state == "crashed":
                services.append(ServiceSeen(svc.name, "exited"))
                continue
            if state == "alive":
                alive.add(svc.name)
            if svc.name == "connect" and pid is not None and "kafka" not in alive:
                # A worker without its broker may stop answering; judge it again, from scratch, once the
                # broker (restarted first, in start order) runs.
                self.probes = Probes()
                state = "waiting for kafka"
            elif svc.name == "connect" and pid is not None:
                answering = self.probe(self.client.url)
                self.probes = probed(self.probes, pid, answering, now)
                o = self.options
                if answering:
                    state = "running"
                elif unresponsive(self.probes, now, o.connect_grace_s, o.connect_probe_failures, o.start_timeout_s):
                    state = "unresponsive"
                else:
                    state = "not answering"
            services.append(ServiceSeen(svc.name, state, pid))
        return services, answering

    def _connectors(self) -> list[ConnectorSeen]:
        from k2.connect.deploy import trace_summary
        from k2.connect.exceptions import ConnectError

        seen = []
        try:
            deployed = set(self.client.names())
            for name in self.connectors():
                self.stats.know("connector", name, CONNECTOR_REASONS)
                status = self.client.status(name) if name in deployed else None
                if status is None:
                    seen.append(ConnectorSeen(name, "not deployed"))
                    self.stats.tasks_failed[name] = self.stats.connector_failed[name] = 0
                    continue
                failed = [t for t in status.get("tasks", []) if t.get("state") == "FAILED"]
                connector_failed = status["connector"]["state"] == "FAILED"
                trace = status["connector"].get("trace", "") if connector_failed else ""
                trace = trace or next((t.get("trace", "") for t in failed if t.get("trace")), "")
                where = "connector" if connector_failed else ",".join(f"task {t['id']}" for t in failed)
                # The trace's first line and its root cause: a task's first line is mostly Connect's "Exiting
                # WorkerSinkTask due to unrecoverable exception", the cause (NoSuchTableException) says why.
                summary = f"{where} FAILED: {trace_summary(trace)[:400]}" if connector_failed or failed else ""
                seen.append(ConnectorSeen(name, status["connector"]["state"], connector_failed, len(failed), summary))
                self.stats.tasks_failed[name] = len(failed)
                self.stats.connector_failed[name] = int(connector_failed)
        except ConnectError as exc:  # the worker stopped answering between two calls: next check
            log.warning("reading connector states failed: %s", exc)
        return seen

    # -- plan and act ------------------------------------------------------------------------------
    def check(self, dry_run: bool = False) -> list[Action]:
        """One check: observe, plan and (unless ``dry_run``) act. Returns the actions planned."""
        seen = self.observe()
        actions, histories = plan(seen, self.histories, self.clock(), self.options.policy)
        if dry_run:
            return actions
        self.histories = histories
        for target, history in histories.items():  # a target seen healthy again is watched again
            if target in self.stats.given_up:
                self.stats.given_up[target] = history.given_up
        for action in actions:
            self.act(action)
        self.stats.checks += 1
        self.stats.last_check_at = time.time()
        self.last = actions
        self.beat()
        return actions

    def act(self, action: Action) -> None:
        if action.verdict == "give-up":
            self.stats.given_up[action.target] = True
            how = f"`k2 connectors restart {action.target}`" if action.kind == "connector" else "`k2 stack up`"
            log.error("giving up on %s %s (%s); fix the cause, then %s", action.kind, action.target, action.detail, how)
            return
        if action.verdict != "restart":
            return
        self.stats.given_up[action.target] = False
        log.warning("restarting %s %s (%s): %s", action.kind, action.target, action.reason, action.detail)
        try:
            if action.kind == "connector":
                restarted = self.client.restart_failed(action.target)
                if not restarted:
                    log.info("%s was no longer FAILED; nothing restarted", action.target)
                    return
            else:
                if not self._restart_service(action):
                    return
        except Exception as exc:  # StackError, ConnectError, OSError: counted, retried after the backoff
            self.stats.restart_errors[action.target] = self.stats.restart_errors.get(action.target, 0) + 1
            log.error("restarting %s %s failed: %s", action.kind, action.target, str(exc).splitlines()[0][:300])
            return
        key = (action.target, action.reason)
        self.stats.restarts[key] = self.stats.restarts.get(key, 0) + 1
        log.warning("restarted %s %s", action.kind, action.target)

    def _restart_service(self, action: Action) -> bool:
        """Kill a hung process (SIGKILL: a stopped or wedged JVM never handles SIGTERM), then start the
        service through `k2 stack up`'s own code, under its lock. False when someone else already did."""
        from .services import service

        assert self.stack is not None
        stack = self.stack
        svc = service(action.target)
        with stack.lock():
            state, pid = stack.process_state(svc)
            if action.reason == "unresponsive":
                if pid is None or pid != self.probes.pid:
                    log.info("%s was restarted meanwhile; nothing to kill", svc.name)
                    return False
                if self.probe(self.client.url):
                    log.info("%s answers again; not killed", svc.name)
                    return False
                stack.kill(svc, pid)
            elif state != "crashed":
                log.info("%s is %s now; nothing to restart", svc.name, state)
                return False
            stack.up(timeout=self.options.start_timeout_s, progress=self._progress, only=[svc.name])
        return True

    def _progress(self, message: str) -> None:
        """`k2 stack up`'s progress while a restart waits: the heartbeat stays fresh meanwhile."""
        now = time.monotonic()
        if now - self.beaten >= 5:
            self.beaten = now
            self.beat()

    # -- report ------------------------------------------------------------------------------------
    def beat(self) -> None:
        if self.heartbeat is None:
            return
        record = {
            "at": datetime.now(UTC).isoformat(),
            "pid": os.getpid(),
            "interval_s": self.options.interval_s,
            **self.stats.as_dict(),
            "last_actions": [action.row() for action in self.last],
        }
        self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.heartbeat.with_name(self.heartbeat.name + ".tmp")
        temporary.write_text(json.dumps(record) + "\n")
        temporary.replace(self.heartbeat)  # readers never see half a record

    def run(self, checks: int | None = None) -> None:
        """Check once per interval until stopped (SIGTERM or Ctrl-C); one failing check never ends it."""
        self.beat()
        done = 0
        while checks is None or done < checks:
            started = time.monotonic()
            try:
                self.check()
            except Exception as exc:  # the next check may see things differently; say what went wrong
                log.error("check failed: %s", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
                self.beat()
            reap_children()
            done += 1
            if checks is not None and done >= checks:
                break
            time.sleep(max(0.0, self.options.interval_s - (time.monotonic() - started)))


def reap_children() -> None:
    """Collect the exit status of services this process started that have exited since (no zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
