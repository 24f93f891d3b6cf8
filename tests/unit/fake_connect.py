"""A stand-in for k2.connect.deploy.ConnectClient with the calls the supervisor makes (names, status,
restart_failed), over connector states a test sets; restarts are recorded, never performed."""

from __future__ import annotations

from typing import Any


class FakeConnectClient:
    """Connector states as Connect's REST API reports them (``/connectors/<name>/status``)."""

    def __init__(self, url: str = "http://connect.invalid:8083") -> None:
        self.url = url
        self.states: dict[str, dict[str, Any]] = {}
        self.restarts: list[str] = []  # names restarted, in order

    def set(self, name: str, connector: str = "RUNNING", *tasks: str, trace: str = "") -> None:
        self.states[name] = {
            "name": name,
            "connector": {"state": connector, "worker_id": "127.0.0.1:8083"},
            "tasks": [
                {"id": index, "state": state, **({"trace": trace} if state == "FAILED" else {})}
                for index, state in enumerate(tasks)
            ],
        }

    def names(self) -> list[str]:
        return list(self.states)

    def status(self, name: str) -> dict[str, Any] | None:
        return self.states.get(name)

    def restart_failed(self, name: str) -> bool:
        status = self.states.get(name)
        failed = status is not None and (
            status["connector"]["state"] == "FAILED" or any(t["state"] == "FAILED" for t in status["tasks"])
        )
        if failed:
            self.restarts.append(name)
        return failed
