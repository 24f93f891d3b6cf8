"""KsqlDbStandIn: a stand-in for ksqlDB's REST API, for tests. It is NOT ksqlDB.

ksqlDB ships only as a container image, and no container runs where K2 is built, so the `k2 ksql`
client is tested against this server, which answers the documented endpoints with the documented
response shapes (docs.ksqldb.io, "REST API"):

* ``POST /ksql`` with ``{"ksql": ..., "streamsProperties": {...}}``: for CREATE/DROP a list with one
  ``currentStatus`` entity (``commandStatus.status`` SUCCESS); for INSERT ... VALUES an empty list; on a
  failure HTTP 400 with a ``statement_error`` body (``error_code``, ``message``, ``statementText``).
* ``POST /query-stream`` with ``{"sql": ...}`` and ``Accept: application/vnd.ksqlapi.delimited.v1``:
  a header object (``queryId``, ``columnNames``, ``columnTypes``) on the first line, then one JSON array
  per row.
* ``GET /info``: ``{"KsqlServerInfo": {"version", "kafkaClusterId", "ksqlServiceId", "serverStatus"}}``.

It executes nothing: it remembers created objects, the rows inserted into K2_MIGRATION_EVENTS (served
back as K2_MIGRATION_VERSIONS), and serves canned rows for other queries (``tables``), which is all the
client's behaviour depends on. ``fail_when`` makes statements containing a text fail as ksqlDB would.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAME = "k2-ksqldb-stand-in"
CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
DROP = re.compile(r"^\s*DROP\s+(STREAM|TABLE)\s+(IF\s+EXISTS\s+)?(\w+)", re.I)
INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\((.*)\)\s*;?\s*$", re.I | re.S)
SELECT_FROM = re.compile(r"\bFROM\s+(\w+)", re.I)
VERSION_COLUMNS = ["VERSION_KEY", "VERSION", "NAME", "CHECKSUM", "STATE", "APPLIED_AT"]


def _values(text: str) -> list[str]:
    return [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", text)]


class KsqlDbStandIn:
    def __init__(self) -> None:
        self.objects: dict[str, str] = {}
        self.events: list[dict[str, str]] = []
        self.statements: list[str] = []
        self.tables: dict[str, tuple[list[str], list[str], list[list[Any]]]] = {}
        self.fail_when: dict[str, str] = {}  # text in a statement -> ksqlDB's error message
        self._sequence = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- behaviour ---------------------------------------------------------------------------------
    def ksql(self, statement: str) -> tuple[int, Any]:
        self.statements.append(statement)
        for text, message in self.fail_when.items():
            if text in statement:
                return 400, self._error(message, statement)
        created = CREATE.match(statement)
        if created:
            kind, if_not_exists, name = created.group(1).upper(), created.group(2), created.group(3).upper()
            if name in self.objects:
                if if_not_exists:
                    return 200, [self._status(statement, f"{kind.title()} {name} already exists", kind, name)]
                return 400, self._error(
                    f"Cannot add {kind.lower()} '{name}': A {kind.lower()} with the same name already exists", statement
                )
            self.objects[name] = kind
            return 200, [self._status(statement, f"{kind.title()} created", kind, name)]
        dropped = DROP.match(statement)
        if dropped:
            name = dropped.group(3).upper()
            if name not in self.objects and not dropped.group(2):
                return 400, self._error(f"{dropped.group(1).title()} {name} does not exist.", statement)
            self.objects.pop(name, None)
            return 200, [self._status(statement, "Source dropped", dropped.group(1).upper(), name)]
        inserted = INSERT.match(statement)
        if inserted:
            target = inserted.group(1).upper()
            if target not in self.objects:
                return 400, self._error(f"Cannot insert values into an unknown stream/table: {target}", statement)
            columns = [c.strip().upper() for c in inserted.group(2).split(",")]
            self.events.append(dict(zip(columns, _values(inserted.group(3)), strict=False)))
            return 200, []
        return 400, self._error(f"{NAME} does not know this statement", statement)

    def _status(self, statement: str, message: str, kind: str, name: str) -> dict[str, Any]:
        self._sequence += 1
        return {
            "@type": "currentStatus",
            "statementText": statement,
            "commandId": f"{kind.lower()}/`{name}`/create",
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": None},
            "commandSequenceNumber": self._sequence,
            "warnings": [],
        }

    @staticmethod
    def _error(message: str, statement: str) -> dict[str, Any]:
        return {
            "@type": "statement_error",
            "error_code": 40001,
            "message": message,
            "statementText": statement,
            "entities": [],
        }

    def query(self, sql: str) -> tuple[int, Any]:
        self.statements.append(sql)
        source = SELECT_FROM.search(sql)
        name = source.group(1).upper() if source else ""
        if name == "K2_MIGRATION_VERSIONS":
            if name not in self.objects:
                return 400, self._error(f"{name} does not exist.", sql)
            latest: dict[str, dict[str, str]] = {}
            for event in self.events:
                latest[event["VERSION_KEY"]] = event
            rows = [[e.get(c) for c in VERSION_COLUMNS] for e in latest.values()]
            return 200, (VERSION_COLUMNS, ["STRING"] * len(VERSION_COLUMNS), rows)
        if name.lower() in self.tables:
            columns, types, rows = self.tables[name.lower()]
            return 200, (columns, types, rows)
        return 400, self._error(f"{name} does not exist.", sql)

    # -- HTTP ----------------------------------------------------------------------------------------
    def start(self) -> KsqlDbStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            server_version = NAME

            def log_message(self, *_args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/info":
                    info = {
                        "version": "0.29.0",
                        "kafkaClusterId": "stand-in",
                        "ksqlServiceId": "k2_",
                        "serverStatus": "RUNNING",
                    }
                    self._send(200, json.dumps({"KsqlServerInfo": info}).encode())
                else:
                    self._send(
                        404,
                        json.dumps({"@type": "generic_error", "error_code": 40400, "message": "not found"}).encode(),
                    )

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/ksql":
                    status, payload = stand_in.ksql(body.get("ksql", ""))
                    self._send(status, json.dumps(payload).encode(), "application/vnd.ksql.v1+json")
                elif self.path == "/query-stream":
                    status, payload = stand_in.query(body.get("sql", ""))
                    if status != 200:
                        self._send(status, json.dumps(payload).encode())
                        return
                    columns, types, rows = payload
                    header = {"queryId": str(uuid.uuid4()), "columnNames": columns, "columnTypes": types}
                    lines = [json.dumps(header)] + [json.dumps(row) for row in rows]
                    self._send(200, ("\n".join(lines) + "\n").encode(), "application/vnd.ksqlapi.delimited.v1")
                else:
                    self._send(
                        404,
                        json.dumps({"@type": "generic_error", "error_code": 40400, "message": "not found"}).encode(),
                    )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=NAME, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> KsqlDbStandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
