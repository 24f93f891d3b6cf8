"""Offline validation of ksql/ migrations against schemas/ and schemas/topics.toml.

No ksqlDB is needed: statements are split and their variables resolved as `apply` would, then every
source topic must be declared, every column a query references must exist in its source (the Avro
contract for the trades stream, the SELECT list for tables built from it), and aggregates and the
TIMESTAMP property must get columns of a type they accept. A renamed Avro field or topic is caught
before deploy. Each problem names the file, the line and the item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from k2.schemas.contract import load_topics, parsed_schema

from .migrations import Migration, MigrationError, Statement, resolve

NUMERIC = re.compile(r"^(DECIMAL|BIGINT|INTEGER|INT|DOUBLE)")
KEYWORDS = {
    "select", "from", "as", "window", "tumbling", "hopping", "session", "size", "advance", "by", "grace",
    "period", "group", "emit", "final", "changes", "where", "and", "or", "not", "null", "is", "case", "when",
    "then", "else", "end", "cast", "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days",
    "millisecond", "milliseconds", "true", "false", "decimal", "string", "bigint", "double", "in", "between",
    "like", "having", "partition", "limit",
}  # fmt: skip
PSEUDO = {"windowstart": "BIGINT", "windowend": "BIGINT", "rowtime": "BIGINT"}
AGGREGATES_NUMERIC = {"sum", "avg"}
AGGREGATES_ORDERED = {"min", "max"}


@dataclass
class Source:
    name: str
    columns: dict[str, str] = field(default_factory=dict)  # lower-case name -> ksqlDB type
    known: bool = True  # False when its topic or schema is already reported: no cascade of column errors


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    item: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.item}: {self.message}"


def ksql_type(avro_type: Any) -> str:
    if isinstance(avro_type, list):
        others = [t for t in avro_type if t != "null"]
        return ksql_type(others[0]) if others else "STRING"
    if isinstance(avro_type, dict):
        logical = avro_type.get("logicalType")
        if logical == "decimal":
            return f"DECIMAL({avro_type['precision']}, {avro_type.get('scale', 0)})"
        if logical in ("timestamp-millis", "timestamp-micros"):
            return "TIMESTAMP"
        if avro_type.get("type") == "map":
            return f"MAP<STRING, {ksql_type(avro_type['values'])}>"
        return ksql_type(avro_type["type"])
    return {"string": "STRING", "long": "BIGINT", "int": "INTEGER", "boolean": "BOOLEAN", "double": "DOUBLE"}.get(
        str(avro_type), str(avro_type).upper()
    )


def _with_properties(text: str) -> dict[str, str]:
    match = re.search(r"\bWITH\s*\((.*?)\)\s*(AS\b|;|$)", text, re.IGNORECASE | re.DOTALL)
    if not match:
        return {}
    return {k.upper(): v for k, v in re.findall(r"(\w+)\s*=\s*'([^']*)'", match.group(1))}


def _top_level_split(text: str) -> list[tuple[str, int]]:
    """Split a SELECT list on commas outside parentheses; returns (item, offset in text)."""
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            items.append((text[start:index], start))
            start = index + 1
    items.append((text[start:], start))
    return items


class Validator:
    def __init__(self) -> None:
        self.topics = load_topics()
        self.sources: dict[str, Source] = {}
        self.problems: list[Problem] = []

    def _problem(self, migration: Migration, statement: Statement, offset: int, item: str, message: str) -> None:
        line = statement.line + statement.text[:offset].count("\n")
        self.problems.append(Problem(migration.path.name, line, item, message))

    def check(self, migrations: list[Migration], variables: dict[str, str]) -> list[Problem]:
        for migration in migrations:
            try:
                statements = resolve(migration, variables)
            except MigrationError as exc:
                line = re.search(r"\(line (\d+)\)", str(exc))
                missing = re.search(r"no value for (\w+)", str(exc))
                item = f"variable {missing.group(1)}" if missing else "variable"
                self.problems.append(Problem(migration.path.name, int(line.group(1)) if line else 1, item, str(exc)))
                continue
            for statement in statements:
                self._statement(migration, statement)
        return self.problems

    def _statement(self, migration: Migration, statement: Statement) -> None:
        text = statement.text
        head = re.match(
            r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", text, re.IGNORECASE
        )
        if not head:
            return
        name = head.group(2).lower()
        properties = _with_properties(text)
        select = re.search(r"\bAS\s+SELECT\b(.*?)\bFROM\s+(\w+)(.*)$", text, re.IGNORECASE | re.DOTALL)
        if select is None:
            self._source_object(migration, statement, name, properties)
        else:
            self._derived_object(migration, statement, name, select)

    def _source_object(self, migration: Migration, statement: Statement, name: str, props: dict[str, str]) -> None:
        text = statement.text
        topic = props.get("KAFKA_TOPIC")
        declared = {t.name: t for t in self.topics.values()}
        source = Source(name)
        for column, column_type in re.findall(r"(\w+)\s+(\w+(?:\([^)]*\))?)\s+KEY", text, re.IGNORECASE):
            source.columns[column.lower()] = column_type.upper()
        if topic not in declared:
            offset = text.find(topic or "KAFKA_TOPIC")
            self._problem(migration, statement, offset, f"topic {topic}", "not declared in schemas/topics.toml")
            source.known = False
        elif topic is not None and props.get("VALUE_FORMAT", "").upper() == "AVRO":
            schema_file = declared[topic].value_schema
            if not schema_file:
                self._problem(migration, statement, text.find(topic), f"topic {topic}", "declares no value_schema")
            else:
                for avro_field in parsed_schema(schema_file)["fields"]:
                    source.columns[avro_field["name"].lower()] = ksql_type(avro_field["type"])
        timestamp = props.get("TIMESTAMP")
        if timestamp and source.known:
            column_type = source.columns.get(timestamp.lower())
            offset = text.find(timestamp)
            if column_type is None:
                self._problem(migration, statement, offset, f"column {timestamp}", f"unknown column in {name}")
            elif column_type not in ("TIMESTAMP", "BIGINT"):
                self._problem(
                    migration,
                    statement,
                    offset,
                    f"column {timestamp}",
                    f"TIMESTAMP needs TIMESTAMP or BIGINT, is {column_type}",
                )
        self.sources[name] = source

    def _derived_object(self, migration: Migration, statement: Statement, name: str, select: re.Match[str]) -> None:
        source_name = select.group(2).lower()
        source = self.sources.get(source_name)
        if source is None:
            self._problem(migration, statement, select.start(2), f"source {select.group(2)}", "no such stream or table")
            return
        derived = Source(name, known=source.known)
        for item, offset in _top_level_split(select.group(1)):
            start = select.start(1) + offset
            alias_match = re.search(r"\bAS\s+(\w+)\s*$", item, re.IGNORECASE)
            expression = item[: alias_match.start()] if alias_match else item
            column_type = self._expression_type(migration, statement, start, expression, source)
            alias = alias_match.group(1) if alias_match else expression.strip()
            derived.columns[alias.lower()] = column_type
        rest = select.group(3)
        group = re.search(r"\bGROUP\s+BY\s+(.*?)(\bEMIT\b|\bHAVING\b|;|$)", rest, re.IGNORECASE | re.DOTALL)
        if group:
            self._expression_type(migration, statement, select.start(3) + group.start(1), group.group(1), source)
        self.sources[name] = derived

    def _expression_type(
        self, migration: Migration, statement: Statement, start: int, text: str, source: Source
    ) -> str:
        """Check the columns and aggregates of an expression; return its (approximate) ksqlDB type."""
        result = "UNKNOWN"
        for match in re.finditer(r"\b([A-Za-z_]\w*)\s*\(([^()]*)\)", text):
            function, argument = match.group(1).lower(), match.group(2).strip()
            arg_type = self._plain_type(argument, source)
            if function in AGGREGATES_NUMERIC and arg_type and not NUMERIC.match(arg_type):
                self._problem(
                    migration, statement, start + match.start(), f"{match.group(1)}({argument})",
                    f"needs a numeric argument, {argument} is {arg_type}",
                )  # fmt: skip
            if function in AGGREGATES_ORDERED and arg_type and not (NUMERIC.match(arg_type) or arg_type == "TIMESTAMP"):
                self._problem(
                    migration, statement, start + match.start(), f"{match.group(1)}({argument})",
                    f"needs a numeric or TIMESTAMP argument, {argument} is {arg_type}",
                )  # fmt: skip
            result = "BIGINT" if function == "count" else (arg_type or result)
        for match in re.finditer(r"(?<![\w'.])([A-Za-z_]\w*)\b(?!\s*\()", text):
            word = match.group(1).lower()
            if word in KEYWORDS or word in PSEUDO:
                continue
            if word not in source.columns and source.known:
                known = ", ".join(sorted(source.columns))
                self._problem(
                    migration, statement, start + match.start(), f"column {match.group(1)}",
                    f"unknown column in {source.name} (it has: {known})",
                )  # fmt: skip
            elif result == "UNKNOWN" and word in source.columns:
                result = source.columns[word]
        words = [w.lower() for w in re.findall(r"[A-Za-z_]\w*", text)]
        if len(words) == 1 and words[0] in PSEUDO:
            result = PSEUDO[words[0]]
        return result

    @staticmethod
    def _plain_type(argument: str, source: Source) -> str | None:
        """The type of an aggregate's argument when it is a column or arithmetic on columns."""
        names = re.findall(r"[A-Za-z_]\w*", argument)
        types = [source.columns.get(n.lower()) for n in names]
        if not names or not source.known or any(t is None for t in types):
            return None
        if len(names) == 1:
            return types[0]
        return "DECIMAL" if all(NUMERIC.match(t or "") for t in types) else types[0]


def validate(migrations: list[Migration], variables: dict[str, str]) -> list[Problem]:
    return Validator().check(migrations, variables)
