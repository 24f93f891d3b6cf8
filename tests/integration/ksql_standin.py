"""KsqlDbStandIn: a stand-in for ksqlDB 0.29's REST API, for tests. It is NOT ksqlDB.

ksqlDB ships only as a container image, and no container runs where K2 is built, so the `k2 ksql`
client is tested against this server. It answers the documented endpoints with the documented shapes
(docs/developer-guide/ksqldb-rest-api/ksql-endpoint.md, streaming-endpoint.md, info-endpoint.md, and
the "Errors" section of docs/developer-guide/api.md, at tag v0.29.0) and reproduces the behaviours the
client must cope with, each as ksqlDB 0.29's source has it:

* ``POST /ksql``: CREATE/DROP answer a list with one ``currentStatus`` entity (``commandStatus.status``
  SUCCESS, ``commandId`` ``table/`NAME`/create``); INSERT ... VALUES answers an empty list
  (CustomExecutors.insertValuesExecutor); a failure is HTTP 400 with a ``statement_error`` body
  (``error_code`` 40001, ``message``, ``statementText``, ``entities``).
* Topics outlive the objects over them unless dropped with DELETE TOPIC (TopicDeleteInjector): a stream
  created again over a topic reads the events already in it, from the earliest offset (Compose sets
  ``auto.offset.reset=earliest``), and so does the table built from it.
* DROP of a source that a table still reads is refused (MetaStoreImpl.deleteSource: "Cannot drop X. The
  following streams and/or tables read from this source: [Y]. You need to drop them before dropping X.").
* A pull query on a table created moments ago fails as KsLocator's MaterializationException does, HTTP
  400 ``statement_error`` "Error starting pull query: Cannot determine which host contains the required
  partitions ..." (QueryEndpoint, ServerUtils), for ``not_ready_queries`` attempts after the table's
  creation.
* ``POST /query-stream`` (``Accept: application/vnd.ksqlapi.delimited.v1``): a header object (``queryId``,
  ``columnNames``, ``columnTypes``) on the first line, then one JSON array per row. DECIMAL values are
  plain JSON numbers with every digit of their scale (ApiJsonMapper: WRITE_BIGDECIMAL_AS_PLAIN), DOUBLEs
  as Java's Double.toString writes them (``1.2345678E7``).
* ``GET /info``: ``{"KsqlServerInfo": {"version", "kafkaClusterId", "ksqlServiceId", "serverStatus"}}``,
  service id ``default_`` (ksqlDB's default ``ksql.service.id``).

It executes no query: a table built from a stream keeps, per key, the latest of each column of the rows
inserted into the stream (as the LATEST_BY_OFFSET table of the migration record does), and other tables
serve the canned rows a test puts in ``tables``. ``fail_when`` makes CREATE/DROP statements containing a
text fail.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAME = "k2-ksqldb-stand-in"
SERVICE_ID = "default_"
CREATE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
DROP = re.compile(r"^\s*DROP\s+(STREAM|TABLE)\s+(IF\s+EXISTS\s+)?(\w+)(\s+DELETE\s+TOPIC)?\s*;?\s*$", re.I)
INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\((.*)\)\s*;?\s*$", re.I | re.S)
TOPIC = re.compile(r"KAFKA_TOPIC\s*=\s*'([^']*)'", re.I)
SELECT_FROM = re.compile(r"\bFROM\s+(\w+)", re.I)
KEY_COLUMN = re.compile(r"\(\s*(\w+)\s+\w+\s+KEY\b", re.I)
COLUMNS = re.compile(r"\(\s*(.*?)\)\s*WITH\b", re.I | re.S)
NOT_READY = (
    "Error starting pull query: Cannot determine which host contains the required partitions to serve the pull "
    "query. The underlying persistent query may be restarting (e.g. as a result of ALTER SYSTEM) view the status "
    "of your by issuing <DESCRIBE {name}>."
)


@dataclass
class KsqlObject:
    kind: str
    name: str
    topic: str
    source: str | None = None  # the stream a CREATE ... AS SELECT reads
    key: str | None = None
    columns: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    pull_attempts: int = 0


def _values(text: str) -> list[str]:
    return [v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'", text)]


def java_double(value: float) -> str:
    """A finite double as Java's Double.toString writes it (what ksqlDB's JSON writer emits for DOUBLE):
    plain between 10^-3 and 10^7, else a mantissa with at least one decimal and an E exponent."""
    shortest = Decimal(repr(value))  # the shortest digits that read back as the same double
    sign, digits, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = format(shortest, "f")
        return text if "." in text else text + ".0"
    mantissa = "".join(map(str, digits)).rstrip("0") or "0"
    power = len(digits) - 1 + exponent
    return f"{'-' if sign else ''}{mantissa[0]}.{mantissa[1:] or '0'}E{power}"


def _json_value(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")  # plain, every digit
    if isinstance(value, float):
        return java_double(value)
    return json.dumps(value)


class KsqlDbStandIn:
    def __init__(self, not_ready_queries: int = 2) -> None:
        self.objects: dict[str, KsqlObject] = {}
        self.topics: dict[str, list[dict[str, str]]] = {}  # topic -> records in offset order
        self.deleted_topics: list[str] = []
        self.statements: list[str] = []
        self.tables: dict[str, tuple[list[str], list[str], list[list[Any]]]] = {}
        self.fail_when: dict[str, str] = {}  # text in a statement -> ksqlDB's error message
        self.not_ready_queries = not_ready_queries
        self._sequence = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def events(self, stream: str) -> list[dict[str, str]]:
        """The records in the topic of a stream (which outlive the stream unless dropped with DELETE TOPIC)."""
        return self.topics.get(self.objects[stream.upper()].topic, [])

    # -- /ksql -------------------------------------------------------------------------------------
    def ksql(self, statement: str) -> tuple[int, Any]:
        with self._lock:
            self.statements.append(statement)
            for text, message in self.fail_when.items():
                if text in statement and not INSERT.match(statement):
                    return 400, self._error(message, statement)
            if created := CREATE.match(statement):
                return self._create(statement, created)
            if dropped := DROP.match(statement):
                return self._drop(statement, dropped)
            if inserted := INSERT.match(statement):
                target = self.objects.get(inserted.group(1).upper())
                if target is None or target.kind != "STREAM":
                    message = f"Cannot insert values into an unknown stream: {inserted.group(1)}"
                    return 400, self._error(message, statement)
                columns = [c.strip().upper() for c in inserted.group(2).split(",")]
                unknown = [c for c in columns if c not in target.columns]
                if unknown:
                    return 400, self._error(f"Column name {unknown[0]} does not exist.", statement)
                values = _values(inserted.group(3))
                self.topics.setdefault(target.topic, []).append(dict(zip(columns, values, strict=True)))
                return 200, []
            return 400, self._error(f"{NAME} does not know this statement", statement)

    def _create(self, statement: str, created: re.Match[str]) -> tuple[int, Any]:
        kind, if_not_exists, name = created.group(1).upper(), created.group(2), created.group(3).upper()
        if name in self.objects:
            if if_not_exists:
                return 200, [self._status(statement, f"{kind.title()} {name} already exists", kind, name, "create")]
            message = f"Cannot add {kind.lower()} '{name}': A {kind.lower()} with the same name already exists"
            return 400, self._error(message, statement)
        topic_match = TOPIC.search(statement)
        derived = re.search(r"\bAS\s+SELECT\b", statement, re.I)
        source = SELECT_FROM.search(statement[derived.end() :]) if derived else None
        if source and source.group(1).upper() not in self.objects:
            return 400, self._error(f"{source.group(1).upper()} does not exist.", statement)
        topic = topic_match.group(1) if topic_match else name
        obj = KsqlObject(kind, name, topic, source.group(1).upper() if source else None)
        if not derived:
            key = KEY_COLUMN.search(statement)
            obj.key = key.group(1).upper() if key else None
            body = COLUMNS.search(statement)
            if body:
                obj.columns = [c.split()[0].upper() for c in body.group(1).split(",") if c.strip()]
        self.objects[name] = obj
        self.topics.setdefault(topic, [])
        return 200, [self._status(statement, f"{kind.title()} created", kind, name, "create")]

    def _drop(self, statement: str, dropped: re.Match[str]) -> tuple[int, Any]:
        kind, if_exists, delete = dropped.group(1).upper(), dropped.group(2), dropped.group(4)
        name = dropped.group(3).upper()
        obj = self.objects.get(name)
        if obj is None:
            if if_exists:
                return 200, [self._status(statement, f"Source {name} does not exist.", kind, name, "drop")]
            return 400, self._error(f"Source {name} does not exist.", statement)
        readers = sorted(o.name for o in self.objects.values() if o.source == name)
        if readers:
            message = (
                f"Cannot drop {name}.\nThe following streams and/or tables read from this source: "
                f"[{', '.join(readers)}].\nYou need to drop them before dropping {name}."
            )
            return 400, self._error(message, statement)
        del self.objects[name]
        if delete:
            self.topics.pop(obj.topic, None)
            self.deleted_topics.append(obj.topic)
        message = f"Source `{name}` (topic: {obj.topic}) was dropped."
        return 200, [self._status(statement, message, kind, name, "drop")]

    def _status(self, statement: str, message: str, kind: str, name: str, action: str) -> dict[str, Any]:
        self._sequence += 1
        return {
            "@type": "currentStatus",
            "statementText": statement,
            "commandId": f"{kind.lower()}/`{name}`/{action}",
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

    # -- /query-stream -------------------------------------------------------------------------------
    def query(self, sql: str) -> tuple[int, Any]:
        with self._lock:
            self.statements.append(sql)
            source = SELECT_FROM.search(sql)
            name = source.group(1).upper() if source else ""
            obj = self.objects.get(name)
            if obj is not None and obj.kind == "TABLE" and "EMIT CHANGES" not in sql.upper():
                obj.pull_attempts += 1
                if obj.pull_attempts <= self.not_ready_queries:
                    return 400, self._error(NOT_READY.format(name=name), sql)
            if obj is not None and obj.source is not None and obj.source in self.objects:
                return 200, self._latest_by_key(self.objects[obj.source])
            if name.lower() in self.tables:
                return 200, self.tables[name.lower()]
            return 400, self._error(f"{name} does not exist.", sql)

    def _latest_by_key(self, stream: KsqlObject) -> tuple[list[str], list[str], list[list[Any]]]:
        """GROUP BY the key with LATEST_BY_OFFSET of every other column (null values never replace one)."""
        latest: dict[str, dict[str, str]] = {}
        for record in self.topics.get(stream.topic, []):
            row = latest.setdefault(record.get(stream.key or "") or "", {})
            row.update({k: v for k, v in record.items() if v is not None})
        columns = stream.columns
        return (
            columns,
            ["STRING KEY" if c == stream.key else "STRING" for c in columns],
            [[row.get(c) for c in columns] for row in latest.values()],
        )

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

            def _not_found(self) -> None:
                error = {"@type": "generic_error", "error_code": 40400, "message": "not found"}
                self._send(404, json.dumps(error).encode())

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path != "/info":
                    self._not_found()
                    return
                info = {
                    "version": "0.29.0",
                    "kafkaClusterId": "stand-in",
                    "ksqlServiceId": SERVICE_ID,
                    "serverStatus": "RUNNING",
                }
                self._send(200, json.dumps({"KsqlServerInfo": info}).encode())

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
                    lines = [json.dumps(header)] + ["[" + ",".join(_json_value(v) for v in row) + "]" for row in rows]
                    self._send(200, ("\n".join(lines) + "\n").encode(), "application/vnd.ksqlapi.delimited.v1")
                else:
                    self._not_found()

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
