"""The local stack's services as declared, and what `k2 stack up` decides before it starts anything."""

from __future__ import annotations

from pathlib import Path

from k2.stack.manager import Stack
from k2.stack.ports import Ports
from k2.stack.services import Context


def test_status_shows_each_service_at_its_client_url_and_the_maintainer_at_its_heartbeat(tmp_path: Path) -> None:
    the_stack = Stack(Context(tmp_path, tmp_path / "cache", Ports()))
    assert {state.service: state.url for state in the_stack.states()} == {
        "kafka": "127.0.0.1:9092",
        "registry": "http://127.0.0.1:8081/apis/ccompat/v7",
        "catalog": "http://127.0.0.1:8181",
        "connect": "http://127.0.0.1:8083",
        "maintainer": str(tmp_path / "run" / "maintainer.heartbeat"),
        "metrics": "http://127.0.0.1:8428",
        "alerts": "http://127.0.0.1:8880",
        "supervisor": "http://127.0.0.1:9465/metrics",
    }
