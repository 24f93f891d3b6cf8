"""`last_cycle_problem` reads the maintainer's heartbeat file: nothing to report without one, with a torn
one, or before a cycle has finished (the cycles themselves: tests/integration/test_maintainer_heartbeat.py);
`k2 status` shows a running maintainer whose last cycle failed as failing, with why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from k2.connect.maintainer import last_cycle_problem


def test_no_heartbeat_or_a_torn_one_is_no_problem_reported(tmp_path: Path) -> None:
    assert last_cycle_problem(tmp_path / "missing") is None
    torn = tmp_path / "torn"
    torn.write_text('{"cycle": 3, "last_cycle_prob')
    assert last_cycle_problem(torn) is None
    started = json.dumps({"cycle": 0, "at": time.time(), "tables": {}})
    (tmp_path / "started").write_text(started)
    assert last_cycle_problem(tmp_path / "started") is None


def test_the_problem_is_one_line_naming_the_first_failure_and_how_many_more(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    problems = {"b.trades": "commit failed", "a.trades": "no such file"}
    since = "2026-12-08T01:00:00+00:00"
    record = {"last_cycle_problems": problems, "failing_since": since, "failing_cycles": 1}
    heartbeat.write_text(json.dumps(record))
    assert last_cycle_problem(heartbeat) is None, "one failed cycle is a blip"
    heartbeat.write_text(json.dumps({**record, "failing_cycles": 3}))
    assert last_cycle_problem(heartbeat) == f"a.trades: no such file (and 1 more); failing since {since} (3 cycles)"


def test_k2_status_calls_a_running_maintainer_whose_cycles_fail_failing_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from k2.cli.settings import Settings
    from k2.cli.status_cmd import _services
    from k2.stack.manager import ServiceState, Stack
    from k2.stack.services import SERVICE_NAMES

    def all_running(self: Stack) -> list[ServiceState]:
        return [ServiceState(name, f"url-{name}", "running", 4242, "log") for name in SERVICE_NAMES]

    monkeypatch.setattr(Stack, "states", all_running)
    settings = Settings(tmp_path, "b", "r", "c", "k", "u", verbose=False)
    heartbeat = tmp_path / "run" / "maintainer.heartbeat"
    heartbeat.parent.mkdir(parents=True)
    heartbeat.write_text(json.dumps({"cycle": 9, "tables": {}, "last_cycle_problems": {}}))
    assert {row["name"]: row["state"] for row in _services(settings)}["maintainer"] == "running"
    problems = {"catalog": "unavailable: Connection refused"}
    failing = {"cycle": 10, "last_cycle_problems": problems, "failing_since": "t0", "failing_cycles": 2}
    heartbeat.write_text(json.dumps(failing))
    row = {row["name"]: row for row in _services(settings)}["maintainer"]
    assert row["state"] == "failing"
    assert row["problem"] == "catalog: unavailable: Connection refused; failing since t0 (2 cycles)"
