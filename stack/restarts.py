"""When the supervisor restarts something: bounded retries with exponential backoff, and when a Connect
worker that is still running counts as hung. Pure functions over plain records, so every decision is
tested without a service (tests/unit/test_restarts.py); ``supervisor.py`` observes and acts on them.

Backoff, not a restart on every check: a sink task that fails on its input (a missing table, a catalog that
is down) fails again at once after a restart, and each restart re-reads its uncommitted records from Kafka.
Kafka Connect itself never restarts a FAILED task (KIP-745 added the REST call that does, and left when to
call it to operators), so the waits grow, 10 s doubling to 5 min, and after ``max_per_hour`` restarts within
an hour the supervisor stops and reports it instead: by then a person has something to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

HOUR = 3600.0

Verdict = Literal["ok", "restart", "wait", "give-up", "given-up"]


@dataclass(frozen=True)
class RestartPolicy:
    """How often one target (a service or a connector) may be restarted."""

    first_backoff_s: float = 10.0  # wait after the first restart in a row before the second
    max_backoff_s: float = 300.0  # the waits double up to this
    max_per_hour: int = 10  # restarts within any hour; one more failure and the supervisor gives up
    # Healthy this long after a restart: the next failure starts the backoff over from the first wait.
    healthy_reset_s: float = 300.0

    def backoff(self, restarts_in_a_row: int) -> float:
        """Seconds to wait after the n-th restart in a row before the next one: 10, 20, 40, ... 300."""
        if restarts_in_a_row <= 0:
            return 0.0
        return min(self.first_backoff_s * 2 ** (restarts_in_a_row - 1), self.max_backoff_s)


@dataclass(frozen=True)
class History:
    """What the supervisor remembers of one target."""

    restarts: tuple[float, ...] = ()  # times (monotonic seconds) of the restarts within the last hour
    in_a_row: int = 0  # restarts since the target was last healthy for healthy_reset_s
    healthy_since: float | None = None
    given_up: bool = False


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    retry_in_s: float = 0.0  # with "wait": how long until the next restart is allowed
    attempt: int = 0  # with "restart": its number in the current row (1 = the first)


def decide(history: History, failing: bool, now: float, policy: RestartPolicy) -> tuple[Decision, History]:
    """What to do about a target seen ``failing`` (or not) at ``now``, and what to remember.

    - healthy: nothing; after ``healthy_reset_s`` of health the backoff starts over, and a target the
      supervisor gave up on (fixed by a person meanwhile) is watched again;
    - failing for the first time in a row: restart at once;
    - failing after n restarts in a row: restart once ``backoff(n)`` has passed since the last one;
    - failing when the next restart is due but ``max_per_hour`` were made in the last hour: give up
      (reported once), then leave it alone until it is seen healthy again.
    """
    recent = tuple(moment for moment in history.restarts if now - moment < HOUR)
    if not failing:
        healthy_since = history.healthy_since if history.healthy_since is not None else now
        in_a_row = 0 if now - healthy_since >= policy.healthy_reset_s else history.in_a_row
        return Decision("ok"), History(recent, in_a_row, healthy_since, given_up=False)
    if history.given_up:
        return Decision("given-up"), History(recent, history.in_a_row, None, given_up=True)
    if history.in_a_row and recent:
        wait = policy.backoff(history.in_a_row) - (now - recent[-1])
        if wait > 0:  # the last restart gets its whole wait, even the last one allowed
            return Decision("wait", retry_in_s=wait), History(recent, history.in_a_row, None)
    if len(recent) >= policy.max_per_hour:
        return Decision("give-up"), History(recent, history.in_a_row, None, given_up=True)
    attempt = history.in_a_row + 1
    return Decision("restart", attempt=attempt), History((*recent, now), attempt, None)


@dataclass(frozen=True)
class Probes:
    """Consecutive answers of one Connect worker process to the supervisor's REST probes."""

    pid: int | None = None
    first_seen: float = 0.0  # when the supervisor first saw this process
    answered: bool = False  # it answered at least once since it started
    failures: int = 0  # failed probes in a row
    failing_since: float | None = None


def probed(probes: Probes, pid: int, ok: bool, now: float) -> Probes:
    """The probe record after one probe of process ``pid`` (a new pid starts a new record)."""
    if probes.pid != pid:
        probes = Probes(pid=pid, first_seen=now)
    if ok:
        return replace(probes, answered=True, failures=0, failing_since=None)
    since = probes.failing_since if probes.failing_since is not None else now
    return replace(probes, failures=probes.failures + 1, failing_since=since)


def unresponsive(probes: Probes, now: float, grace_s: float, min_failures: int, start_timeout_s: float) -> bool:
    """True when a running worker is hung: ``min_failures`` failed probes in a row spanning ``grace_s``
    since its last answer. A worker that has not answered once since it started is still starting (it
    joins its group and reads its config topic before the REST API answers) until ``start_timeout_s``.

    A worker whose herder thread died (an OutOfMemoryError, issue 19) or whose JVM is stopped keeps its
    port open, so only the REST answers tell; one slow answer (a long GC pause, a rebalance) is not enough.
    """
    if probes.failures < min_failures or probes.failing_since is None:
        return False
    if not probes.answered:
        return now - probes.first_seen >= start_timeout_s
    return now - probes.failing_since >= grace_s
