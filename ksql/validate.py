"""Offline validation of ksql/ migrations against schemas/ and schemas/topics.toml.

No ksqlDB is needed: statements are split and their variables resolved as `apply` would, then every
source topic must be declared, every column a query references must exist in its source (the Avro
contract for the trades stream, the SELECT list for tables built from it), and aggregates and the
TIMESTAMP property must get columns of a type they accept. A renamed Avro field or topic is caught
before deploy. Each problem names the file, the line and the item.

Types follow ksqlDB 0.29 (SqlDecimal.add/multiply/divide; an INTEGER or BIGINT meeting a DECIMAL is
widened to DECIMAL(10, 0) or DECIMAL(19, 0)), so three runtime failures are caught here too:

- exact DECIMAL division: ksqlDB divides DECIMALs with RoundingMode.UNNECESSARY
  (SqlToJavaVisitor.visitArithmeticBinary); a quotient that does not terminate throws "Rounding
  necessary", which is logged to the processing log and written as NULL (confluentinc/ksql#9874).
- SUM in a DECIMAL that is not 38 digits wide: SUM keeps its argument's type and throws "Numeric
  field overflow" once |sum| reaches 10^(p - s) (DecimalSumKudaf), uncaught, so the query's stream
  thread dies on the same record at every restart. Fewer than 38 digits can overflow on real data;
  more than 38 are published in a decimal that Iceberg (precision at most 38) cannot hold. So every
  decimal SUM takes DECIMAL(38, s), in practice SUM(CAST(x AS DECIMAL(38, s))).
- windows without RETENTION (the store then keeps only size + grace, so pull queries see only the
  last windows) or with RETENTION below size + grace, which Kafka Streams refuses when the query
  starts. A missing GRACE PERIOD counts as ksqlDB 0.29's default: Kafka Streams' deprecated
  TimeWindows.of/SessionWindows.with grace of 24 hours minus the size (StreamAggregateBuilder).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from k2.schemas.contract import load_topics, parsed_schema

from .migrations import Migration, MigrationError, Statement, resolve

NUMERIC = re.compile(r"^(DECIMAL|BIGINT|INTEGER|INT|DOUBLE)")
DECIMAL = re.compile(r"^DECIMAL\((\d+), (\d+)\)$")
UNKNOWN = "UNKNOWN"
KEYWORDS = {
    "select", "from", "as", "window", "tumbling", "hopping", "session", "size", "advance", "by", "grace",
    "period", "retention", "group", "emit", "final", "changes", "where", "and", "or", "not", "null", "is",
    "case", "when", "then", "else", "end", "cast", "second", "seconds", "minute", "minutes", "hour", "hours",
    "day", "days", "millisecond", "milliseconds", "true", "false", "decimal", "string", "bigint", "double", "in",
    "between", "like", "having", "partition", "limit",
}  # fmt: skip
PSEUDO = {"windowstart": "BIGINT", "windowend": "BIGINT", "rowtime": "BIGINT"}
AGGREGATES_NUMERIC = {"sum", "avg"}
AGGREGATES_ORDERED = {"min", "max"}
AGGREGATES_OF_ARGUMENT_TYPE = {"sum", "min", "max", "earliest_by_offset", "latest_by_offset"}
WIDENED = {"INTEGER": "DECIMAL(10, 0)", "BIGINT": "DECIMAL(19, 0)"}  # next to a DECIMAL: DecimalUtil.toSqlDecimal
CAST_NAMES = {"INT": "INTEGER", "VARCHAR": "STRING"}
SUM_PRECISION = 38  # the widest decimal Iceberg holds; the migrations sum CAST(... AS DECIMAL(38, s))
DIVISION = (
    "with rounding forbidden: ksqlDB 0.29 divides DECIMALs with RoundingMode.UNNECESSARY (SqlToJavaVisitor), "
    'so a quotient that does not terminate throws "Rounding necessary" and the column is NULL '
    "(confluentinc/ksql#9874); cast both sides to DOUBLE: CAST(x AS DOUBLE) / CAST(y AS DOUBLE)"
)

UNIT_MS = {"MILLISECOND": 1, "SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
DEFAULT_GRACE_BASE_MS = UNIT_MS["DAY"]  # Kafka Streams' DEPRECATED_DEFAULT_24_HR_GRACE_PERIOD
WINDOW = re.compile(r"\bWINDOW\s+(?:\w+\s+)?(TUMBLING|HOPPING|SESSION)\s*\(([^)]*)\)", re.IGNORECASE)


def _duration(name: str) -> str:
    return rf"(?P<{name}>\d+\s+(?:MILLISECOND|SECOND|MINUTE|HOUR|DAY)S?)"


_TAIL = rf"(?:\s*,\s*RETENTION\s+{_duration('retention')})?(?:\s*,\s*GRACE\s+PERIOD\s+{_duration('grace')})?\s*$"
WINDOW_GRAMMAR = {  # ksqlDB 0.29 SqlBase.g4: tumbling/hopping/sessionWindowExpression
    "TUMBLING": (re.compile(rf"^\s*SIZE\s+{_duration('size')}{_TAIL}", re.IGNORECASE), "SIZE n unit"),
    "HOPPING": (
        re.compile(rf"^\s*SIZE\s+{_duration('size')}\s*,\s*ADVANCE\s+BY\s+{_duration('advance')}{_TAIL}", re.I),
        "SIZE n unit, ADVANCE BY n unit",
    ),
    "SESSION": (re.compile(rf"^\s*{_duration('size')}{_TAIL}", re.IGNORECASE), "n unit"),
}


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


def _decimal(type_name: str) -> tuple[int, int] | None:
    match = DECIMAL.match(type_name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def arithmetic_type(operator: str, left: str, right: str) -> str:
    """The type ksqlDB 0.29 gives `left operator right` (UNKNOWN when this validator cannot tell)."""
    if operator == "||":
        return "STRING"
    if UNKNOWN in (left, right) or not (NUMERIC.match(left) and NUMERIC.match(right)):
        return UNKNOWN
    if "DOUBLE" in (left, right):
        return "DOUBLE"
    if not (left.startswith("DECIMAL") or right.startswith("DECIMAL")):
        return "BIGINT" if "BIGINT" in (left, right) else "INTEGER"
    left_decimal, right_decimal = _decimal(WIDENED.get(left, left)), _decimal(WIDENED.get(right, right))
    assert left_decimal and right_decimal  # both are DECIMAL, INTEGER or BIGINT here
    (p1, s1), (p2, s2) = left_decimal, right_decimal
    if operator in "+-":
        scale = max(s1, s2)
        return f"DECIMAL({scale + max(p1 - s1, p2 - s2) + 1}, {scale})"
    if operator == "*":
        return f"DECIMAL({p1 + p2 + 1}, {s1 + s2})"
    if operator == "/":
        scale = max(6, s1 + p2 + 1)
        return f"DECIMAL({p1 - s1 + s2 + scale}, {scale})"
    return f"DECIMAL({min(p1 - s1, p2 - s2) + max(s1, s2)}, {max(s1, s2)})"  # %


def _milliseconds(duration: str) -> int:
    number, unit = duration.split()
    return int(number) * UNIT_MS[unit.upper().rstrip("S")]


def _in_units(milliseconds: int) -> str:
    """A duration as ksqlDB writes one, in the largest unit that divides it: 70 SECONDS, 1 DAY."""
    for unit in ("DAY", "HOUR", "MINUTE", "SECOND", "MILLISECOND"):
        if milliseconds % UNIT_MS[unit] == 0:
            count = milliseconds // UNIT_MS[unit]
            return f"{count} {unit}{'' if count == 1 else 'S'}"
    raise AssertionError("unreachable: every duration is a whole number of milliseconds")


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


class Unsupported(Exception):
    """An expression outside the small grammar of ExpressionChecker."""


class Token(NamedTuple):
    kind: str  # number, string, name or op
    value: str
    start: int
    end: int


TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<string>'(?:[^']|'')*')|(?P<name>[A-Za-z_]\w*)|(?P<op>\|\||[-+*/%(),]))"
)


@dataclass(frozen=True)
class Typed:
    type: str
    start: int  # offsets of the expression in the checked text
    end: int


Report = Callable[[int, str, str], None]  # offset in the checked text, item, message


class ExpressionChecker:
    """Types one SELECT item or GROUP BY expression by recursive descent, reporting what ksqlDB would fail on.

    expression := term (('+' | '-' | '||') term)*
    term       := unary (('*' | '/' | '%') unary)*
    unary      := '-' unary | primary
    primary    := number | string | '(' expression ')' | CAST '(' expression AS type ')'
                | name '(' ['*' | expression (',' expression)*] ')' | name

    Anything else (CASE, comparisons, struct fields) raises Unsupported; the caller then only checks
    the expression's column names. Problems are kept until the whole expression has parsed.
    """

    def __init__(self, text: str, source: Source) -> None:
        self.text = text
        self.source = source
        self.tokens = self._tokenize(text)
        self.position = 0
        self.problems: list[tuple[int, str, str]] = []

    @staticmethod
    def _tokenize(text: str) -> list[Token]:
        tokens, offset = [], 0
        while text[offset:].strip():
            match = TOKEN.match(text, offset)
            if not match or match.lastgroup is None:
                raise Unsupported(text[offset:].strip())
            kind = match.lastgroup
            tokens.append(Token(kind, match.group(kind), match.start(kind), match.end()))
            offset = match.end()
        return tokens

    def check(self, report: Report) -> str:
        """The expression's ksqlDB type; its problems go to report. Raises Unsupported."""
        typed = self._expression()
        if self.position != len(self.tokens):
            raise Unsupported(self.tokens[self.position].value)
        for problem in self.problems:
            report(*problem)
        return typed.type

    def _source_text(self, typed: Typed) -> str:
        return " ".join(self.text[typed.start : typed.end].split())

    def _next(self) -> Token:
        if self.position == len(self.tokens):
            raise Unsupported("the expression ends early")
        self.position += 1
        return self.tokens[self.position - 1]

    def _at(self, *values: str) -> bool:
        """Whether the next token is one of values (operators or upper-case words; a string keeps its quotes)."""
        return self.position < len(self.tokens) and self.tokens[self.position].value.upper() in values

    def _accept(self, *values: str) -> Token | None:
        return self._next() if self._at(*values) else None

    def _expect(self, value: str) -> Token:
        token = self._accept(value)
        if token is None:
            raise Unsupported(f"expected {value}")
        return token

    def _expression(self) -> Typed:
        left = self._term()
        while operator := self._accept("+", "-", "||"):
            right = self._term()
            left = Typed(arithmetic_type(operator.value, left.type, right.type), left.start, right.end)
        return left

    def _term(self) -> Typed:
        left = self._unary()
        while operator := self._accept("*", "/", "%"):
            right = self._unary()
            result = Typed(arithmetic_type(operator.value, left.type, right.type), left.start, right.end)
            if operator.value == "/" and result.type.startswith("DECIMAL"):
                sides = [f"{t.type} (as {WIDENED[t.type]})" if t.type in WIDENED else t.type for t in (left, right)]
                message = f"divides {sides[0]} by {sides[1]} {DIVISION}"
                self.problems.append((result.start, self._source_text(result), message))
            left = result
        return left

    def _unary(self) -> Typed:
        if sign := self._accept("-", "+"):
            operand = self._unary()
            return Typed(operand.type, sign.start, operand.end)
        return self._primary()

    def _primary(self) -> Typed:
        token = self._next()
        if token.kind == "number":
            whole, _, fraction = token.value.partition(".")
            literal = f"DECIMAL({len(whole + fraction)}, {len(fraction)})" if fraction else "INTEGER"
            return Typed(literal, token.start, token.end)
        if token.kind == "string":
            return Typed("STRING", token.start, token.end)
        if token.value == "(":
            inner = self._expression()
            return Typed(inner.type, token.start, self._expect(")").end)
        if token.kind != "name":
            raise Unsupported(token.value)
        if token.value.upper() == "CAST" and self._accept("("):
            self._expression()
            self._expect("AS")
            cast_type = self._type()
            return Typed(cast_type, token.start, self._expect(")").end)
        if self._accept("("):
            return self._call(token)
        return Typed(self._column(token), token.start, token.end)

    def _type(self) -> str:
        name = self._next().value.upper()
        if name != "DECIMAL":
            return CAST_NAMES.get(name, name)
        self._expect("(")
        precision, _, scale = self._next().value, self._expect(","), self._next().value
        self._expect(")")
        return f"DECIMAL({precision}, {scale})"

    def _column(self, token: Token) -> str:
        name = token.value.lower()
        if name in self.source.columns:
            return self.source.columns[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name in KEYWORDS:
            return "BOOLEAN" if name in ("true", "false") else UNKNOWN
        if self.source.known:
            known = ", ".join(sorted(self.source.columns))
            message = f"unknown column in {self.source.name} (it has: {known})"
            self.problems.append((token.start, f"column {token.value}", message))
        return UNKNOWN

    def _call(self, name: Token) -> Typed:
        arguments: list[Typed] = []
        if not self._accept("*") and not self._at(")"):
            arguments.append(self._expression())
            while self._accept(","):
                arguments.append(self._expression())
        call = Typed(UNKNOWN, name.start, self._expect(")").end)
        return Typed(self._call_type(name.value.lower(), call, arguments), call.start, call.end)

    def _call_type(self, function: str, call: Typed, arguments: list[Typed]) -> str:
        if function == "count":
            return "BIGINT"
        if len(arguments) != 1 or arguments[0].type == UNKNOWN:
            return UNKNOWN
        argument, item = arguments[0], self._source_text(call)
        arg_text, arg_type = self._source_text(argument), argument.type
        if function in AGGREGATES_NUMERIC and not NUMERIC.match(arg_type):
            self.problems.append((call.start, item, f"needs a numeric argument, {arg_text} is {arg_type}"))
            return UNKNOWN
        if function in AGGREGATES_ORDERED and not (NUMERIC.match(arg_type) or arg_type == "TIMESTAMP"):
            self.problems.append((call.start, item, f"needs a numeric or TIMESTAMP argument, {arg_text} is {arg_type}"))
            return UNKNOWN
        decimal = _decimal(arg_type)
        if function == "sum" and decimal and decimal[0] != SUM_PRECISION:
            self.problems.append((call.start, item, self._sum_width(arg_text, arg_type, *decimal)))
        return arg_type if function in AGGREGATES_OF_ARGUMENT_TYPE else UNKNOWN

    @staticmethod
    def _sum_width(argument: str, arg_type: str, precision: int, scale: int) -> str:
        fix = f"use SUM(CAST({argument} AS DECIMAL({SUM_PRECISION}, {min(scale, SUM_PRECISION)})))"
        if precision < SUM_PRECISION:
            return (
                f"can overflow: ksqlDB keeps SUM in its argument's type, {arg_type}, and throws "
                f'"Numeric field overflow" once |sum| reaches 10^{precision - scale} (DecimalSumKudaf), which stops '
                f"the query (its stream thread dies on the same record at every restart); {fix}"
            )
        return (
            f"too wide: ksqlDB keeps SUM in its argument's type, {arg_type}, and publishes {precision} digits, "
            f"more than the {SUM_PRECISION} an Iceberg decimal holds; {fix}"
        )


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
            for expression, offset in _top_level_split(group.group(1)):
                start = select.start(3) + group.start(1) + offset
                self._expression_type(migration, statement, start, expression, source)
        window = WINDOW.search(rest)
        if window:
            self._window(migration, statement, select.start(3) + window.start(), window)
        self.sources[name] = derived

    def _expression_type(
        self, migration: Migration, statement: Statement, start: int, text: str, source: Source
    ) -> str:
        """Check an expression's columns, aggregates and arithmetic; return its ksqlDB type (or UNKNOWN)."""

        def report(offset: int, item: str, message: str) -> None:
            self._problem(migration, statement, start + offset, item, message)

        try:
            return ExpressionChecker(text, source).check(report)
        except Unsupported:
            self._column_names(text, source, report)
            return UNKNOWN

    @staticmethod
    def _column_names(text: str, source: Source, report: Report) -> None:
        """Only the columns of an expression ExpressionChecker cannot read: every other word must be one."""
        for match in re.finditer(r"(?<![\w'.])([A-Za-z_]\w*)\b(?!\s*\()", text):
            word = match.group(1).lower()
            if word not in KEYWORDS and word not in PSEUDO and word not in source.columns and source.known:
                known = ", ".join(sorted(source.columns))
                report(match.start(), f"column {match.group(1)}", f"unknown column in {source.name} (it has: {known})")

    def _window(self, migration: Migration, statement: Statement, offset: int, window: re.Match[str]) -> None:
        kind, clauses = window.group(1).upper(), window.group(2)
        item = " ".join(window.group(0).split())
        grammar, head = WINDOW_GRAMMAR[kind]
        parsed = grammar.match(clauses)
        if parsed is None:
            message = (
                f"not ksqlDB 0.29 window syntax: {kind} ({head}[, RETENTION n unit][, GRACE PERIOD n unit]), "
                "in that order, unit one of MILLISECOND(S), SECOND(S), MINUTE(S), HOUR(S), DAY(S)"
            )
            self._problem(migration, statement, offset, item, message)
            return
        size = _milliseconds(parsed.group("size"))
        grace_given = parsed.group("grace")
        grace = _milliseconds(grace_given) if grace_given else max(DEFAULT_GRACE_BASE_MS - size, 0)
        needed = _in_units(size + grace)
        retention_given = parsed.group("retention")
        if retention_given is None:
            message = (
                f"no RETENTION: the window store keeps only size + grace ({needed}), so pull queries see only the "
                "last windows; add RETENTION n DAYS after SIZE "
                "(ksqlDB 0.29: SIZE, [ADVANCE BY,] RETENTION, GRACE PERIOD)"
            )
            self._problem(migration, statement, offset, item, message)
            return
        if _milliseconds(retention_given) >= size + grace:
            return
        retention = " ".join(retention_given.upper().split())
        refused = (
            'Kafka Streams refuses the window store ("must be no smaller than its window size plus the grace '
            'period") and the query fails'
        )
        if grace_given:
            message = (
                f"RETENTION {retention} is less than size + grace ({needed}): {refused}; "
                f"use RETENTION of at least {needed}"
            )
        else:
            message = (
                f"RETENTION {retention} is less than size + grace ({needed}), grace being ksqlDB 0.29's default when "
                f"GRACE PERIOD is missing, 24 hours minus the size ({_in_units(grace)}): {refused}; add GRACE PERIOD "
                f"n unit after RETENTION, or use RETENTION of at least {needed}"
            )
        self._problem(migration, statement, offset, item, message)


def validate(migrations: list[Migration], variables: dict[str, str]) -> list[Problem]:
    return Validator().check(migrations, variables)
