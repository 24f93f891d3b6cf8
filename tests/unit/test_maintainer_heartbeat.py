"""`last_cycle_problem` reads the maintainer's heartbeat file: nothing to report without one, with a torn
one, or before a cycle has finished (the cycles themselves: tests/integration/test_maintainer_heartbeat.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
    heartbeat.write_text(json.dumps({"last_cycle_problems": problems, "failing_since": "2026-12-08T01:00:00+00:00"}))
    assert last_cycle_problem(heartbeat) == (
        "a.trades: no such file (and 1 more); failing since 2026-12-08T01:00:00+00:00"
    )
