"""Offline validation of ksql/ migrations against schemas/ and schemas/topics.toml.

No ksqlDB is needed: statements are split and their variables resolved as `apply` would, then every
source topic must be declared, every column a query references must exist in its sources (the Avro
contract of a stream or table over a declared topic, the SELECT list of one built by a query), and
functions and the TIMESTAMP property must get columns of a type they accept. A renamed Avro field or
topic is caught before deploy. Each problem names the file, the line and the item. Statements are read
from lexer.py's tokens; types and functions are the rows of rules.py.

Types follow ksqlDB 0.29 (SqlDecimal.add/multiply/divide; an INTEGER or BIGINT meeting a DECIMAL is
widened to DECIMAL(10, 0) or DECIMAL(19, 0)), so three runtime failures are caught here too:

- exact DECIMAL division: ksqlDB divides DECIMALs with RoundingMode.UNNECESSARY
  (SqlToJavaVisitor.visitArithmeticBinary); a quotient that does not terminate throws "Rounding
  necessary", which is logged to the processing log and written as NULL (confluentinc/ksql#9874).
  Only a division by an integer literal made of 2s and 5s (2, 4, 10...) always terminates.
- SUM in a DECIMAL that is not 38 digits wide: SUM keeps its argument's type and throws "Numeric
  field overflow" once |sum| reaches 10^(p - s) (DecimalSumKudaf), uncaught, so the query's stream
  thread dies on the same record at every restart. Fewer than 38 digits can overflow on real data;
  more than 38 are published in a decimal that Iceberg (precision at most 38) cannot hold. So every
  decimal SUM takes DECIMAL(38, s), in practice SUM(CAST(x AS DECIMAL(38, s))).
- windows without RETENTION (the store then keeps only size + grace, so pull queries see only the
  last windows) or with RETENTION below size + grace, which Kafka Streams refuses when the query
  starts. A missing GRACE PERIOD counts as ksqlDB 0.29's default: Kafka Streams' deprecated
  TimeWindows.of/SessionWindows.with grace of 24 hours minus the size (StreamAggregateBuilder).

A query may join streams and tables: columns resolve through the FROM aliases. What is outside the
grammar read here (lambdas, ARRAY/MAP/STRUCT constructors, AT TIME ZONE) is reported as not read,
never guessed at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from k2.schemas.contract import load_topics, parsed_schema

from .lexer import Token, key
from .migrations import Migration, MigrationError, Statement, created, resolve
from .rules import FUNCTIONS, UNKNOWN, WIDENED, arithmetic_type, base, exact_division, ksql_type

PSEUDO = {"windowstart": "BIGINT", "windowend": "BIGINT", "rowtime": "BIGINT", "rowpartition": "INTEGER",
          "rowoffset": "BIGINT"}  # fmt: skip  # SystemColumns
DIVISION = (
    "with rounding forbidden: ksqlDB 0.29 divides DECIMALs with RoundingMode.UNNECESSARY (SqlToJavaVisitor), "
    'so a quotient that does not terminate throws "Rounding necessary" and the column is NULL '
    "(confluentinc/ksql#9874); cast both sides to DOUBLE: CAST(x AS DOUBLE) / CAST(y AS DOUBLE)"
)
# SqlBase.g4 booleanExpression, predicate and valueExpression, loosest first, with each level's result type
# (None: arithmetic_type). NOT, BETWEEN, IN, LIKE and IS are read at the comparisons' level (Checker._predicate).
OPERATORS = (
    (("OR",), "BOOLEAN"),
    (("AND",), "BOOLEAN"),
    (("=", "<>", "!=", "<", "<=", ">", ">="), "BOOLEAN"),
    (("||",), "STRING"),
    (("+", "-"), None),
    (("*", "/", "%"), None),
)
COMPARISONS = 2
TYPE_NAMES = {"INT": "INTEGER", "VARCHAR": "STRING"}  # SqlTypeParser's aliases
UNIT_MS = {"MILLISECOND": 1, "SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
UNITS = {**UNIT_MS, **{f"{unit}S": ms for unit, ms in UNIT_MS.items()}}  # SqlBase.g4 windowUnit
DEFAULT_GRACE_BASE_MS = UNIT_MS["DAY"]  # Kafka Streams' DEPRECATED_DEFAULT_24_HR_GRACE_PERIOD
# SqlBase.g4 tumbling/hoppingWindowExpression/sessionWindowExpression: each kind's first clauses (a session's
# is its gap), then optionally RETENTION and GRACE PERIOD, in that order.
WINDOWS: dict[str, list[tuple[str, ...]]] = {
    "TUMBLING": [("SIZE",)],
    "HOPPING": [("SIZE",), ("ADVANCE", "BY")],
    "SESSION": [()],
}
WINDOW_TAIL: list[tuple[str, ...]] = [("RETENTION",), ("GRACE", "PERIOD")]
CLAUSES = ("WINDOW", "WHERE", "GROUP", "PARTITION", "HAVING", "EMIT", "LIMIT")  # SqlBase.g4 query after FROM
JOINS = ("JOIN", "INNER", "LEFT", "RIGHT", "FULL")  # SqlBase.g4 joinType JOIN
NOT_READ = (
    "not read by k2 ksql validate (it reads ksqlDB 0.29's grammar but for lambdas, ARRAY/MAP/STRUCT constructors "
    "and AT TIME ZONE): expected {expected} at line {line}, column {column}"
)


@dataclass
class Source:
    name: str
    columns: dict[str, str] = field(default_factory=dict)  # lexer.key() of the name -> ksqlDB type
    known: bool = True  # False when its topic, schema or query is already reported: no cascade of column errors


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    item: str
    message: str
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.item}: {self.message}"


def snippet(text: str, first: Token, last: Token) -> str:
    """The source from first to last, whitespace folded: how a problem names an expression or a clause."""
    return " ".join(text[first.offset : last.end].split())


def _split(tokens: Sequence[Token], angles: bool = False) -> list[list[Token]]:
    """tokens split on the commas outside brackets (and <> in a type): a SELECT, GROUP BY, WITH or column list."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        depth += token.is_("(", "[", "<" if angles else "(") - token.is_(")", "]", ">" if angles else ")")
        if depth == 0 and token.is_(","):
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in parts if part]


def _type(tokens: Sequence[Token]) -> str:
    """A type (SqlBase.g4 type) as ksqlDB prints it: DECIMAL(28, 8), STRING for VARCHAR, MAP<STRING, INTEGER>."""
    text = " ".join(TYPE_NAMES.get(t.text.upper(), t.text.upper()) for t in tokens)
    for spaced, tight in ((" (", "("), ("( ", "("), (" )", ")"), (" ,", ","), (" <", "<"), ("< ", "<"), (" >", ">")):
        text = text.replace(spaced, tight)
    return text


def _in_units(milliseconds: int) -> str:
    """A duration as ksqlDB writes one, in the largest unit that divides it: 70 SECONDS, 1 DAY."""
    unit = next(
        unit for unit in ("DAY", "HOUR", "MINUTE", "SECOND", "MILLISECOND") if milliseconds % UNIT_MS[unit] == 0
    )
    count = milliseconds // UNIT_MS[unit]
    return f"{count} {unit}{'' if count == 1 else 'S'}"


class Unsupported(Exception):
    """Tokens outside the grammar read here; token is where reading stopped (None: at the end)."""

    def __init__(self, token: Token | None, expected: str) -> None:
        super().__init__(expected)
        self.token, self.expected = token, expected


class Cursor:
    """A position in a list of tokens, with the moves a recursive-descent reader needs."""

    def __init__(self, tokens: Sequence[Token], position: int = 0) -> None:
        self.tokens, self.position = tokens, position

    def peek(self, ahead: int = 0) -> Token | None:
        return self.tokens[self.position + ahead] if self.position + ahead < len(self.tokens) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise Unsupported(None, "more (the text ends early)")
        self.position += 1
        return token

    def at(self, *words: str) -> bool:
        return (token := self.peek()) is not None and token.is_(*words)

    def accept(self, *words: str) -> Token | None:
        return self.next() if self.at(*words) else None

    def expect(self, *words: str) -> Token:
        if (token := self.accept(*words)) is None:
            raise Unsupported(self.peek(), " or ".join(f"'{word}'" for word in words))
        return token

    def until(self, *words: str) -> list[Token]:
        """The tokens before the next of words, ';' or unopened closing bracket, outside brackets."""
        start, depth = self.position, 0
        while (token := self.peek()) is not None:
            closing = token.is_(")", "]")
            # the FROM of `IS DISTINCT FROM` ends no SELECT list (SqlBase.g4 predicate distinctFrom)
            distinct = token.is_("FROM") and self.position > 0 and self.tokens[self.position - 1].is_("DISTINCT")
            if depth == 0 and (closing or token.is_(";") or (token.is_(*words) and not distinct)):
                break
            depth += token.is_("(", "[") - closing
            self.position += 1
        return list(self.tokens[start : self.position])

    def group(self, angles: bool = False) -> list[list[Token]]:
        """'(' item, ... ')': the items."""
        self.expect("(")
        items = _split(self.until(), angles)
        self.expect(")")
        return items


@dataclass(frozen=True)
class Typed:
    type: str
    first: Token  # the expression's first and last tokens
    last: Token


class Checker(Cursor):
    """Types one expression by recursive descent over SqlBase.g4's expression rules (OPERATORS by precedence,
    then unary signs, subscripts, dereferences and primaryExpression), keeping what ksqlDB would fail on.

    Problems are kept until the whole expression has been read; Unsupported ends the reading.
    """

    def __init__(self, tokens: Sequence[Token], scope: dict[str, Source], text: str) -> None:
        super().__init__(tokens)
        self.scope = scope  # the FROM sources by alias
        self.text = text  # the file, for the items of problems
        self.problems: list[tuple[Token, str, str]] = []

    def expression(self, level: int = 0) -> Typed:
        """The expression from here whose operators bind at least as tightly as OPERATORS[level]'s."""
        if level == len(OPERATORS):
            return self._unary()
        if level == COMPARISONS and (negation := self.accept("NOT")):
            return Typed("BOOLEAN", negation, self.expression(level).last)
        left = self.expression(level + 1)
        if level == COMPARISONS:
            left = self._predicate(left)
        operators, result = OPERATORS[level]
        while operator := self.accept(*operators):
            right = self.expression(level + 1)
            typed = Typed(result or arithmetic_type(operator.text, left.type, right.type), left.first, right.last)
            divisor = right.first.text if right.first == right.last else ""
            if (
                operator.is_("/")
                and base(typed.type) == "DECIMAL"
                and not exact_division(left.type, divisor, typed.type)
            ):
                sides = [f"{t.type} (as {WIDENED[t.type]})" if t.type in WIDENED else t.type for t in (left, right)]
                message = f"divides {sides[0]} by {sides[1]} {DIVISION}"
                self.problems.append((typed.first, snippet(self.text, typed.first, typed.last), message))
            left = typed
        return left

    def _predicate(self, left: Typed) -> Typed:
        """SqlBase.g4 predicate after a value: [NOT] BETWEEN / IN / LIKE, IS [NOT] NULL, IS [NOT] DISTINCT FROM."""
        value = COMPARISONS + 1
        negated = self.accept("NOT")
        if self.accept("BETWEEN"):
            self.expression(value)
            self.expect("AND")
            self.expression(value)
        elif self.accept("IN"):
            self._arguments()
        elif self.accept("LIKE"):
            self.expression(value)
            if self.accept("ESCAPE"):
                self.next()
        elif not negated and self.accept("IS"):
            self.accept("NOT")
            if self.accept("DISTINCT"):
                self.expect("FROM")
                self.expression(value)
            else:
                self.expect("NULL")
        elif negated:
            raise Unsupported(self.peek(), "BETWEEN, IN or LIKE")
        else:
            return left
        return Typed("BOOLEAN", left.first, self.tokens[self.position - 1])

    def _unary(self) -> Typed:
        if sign := self.accept("-", "+"):
            operand = self._unary()
            return Typed(operand.type, sign, operand.last)
        typed = self._primary()
        while operator := self.accept("[", "->"):  # subscript, dereference: the element's type is not tracked
            if operator.is_("["):
                self.expression()
            last = self.expect("]") if operator.is_("[") else self.next()
            typed = Typed(UNKNOWN, typed.first, last)
        return typed

    def _primary(self) -> Typed:
        token = self.next()
        if token.kind == "number":  # SqlBase.g4 INTEGER_VALUE, DECIMAL_VALUE, FLOATING_POINT_VALUE
            whole, dot, fraction = token.text.upper().partition(".")
            if "E" in token.text.upper():
                literal = "DOUBLE"
            elif dot:
                literal = f"DECIMAL({len(whole + fraction)}, {len(fraction)})"
            else:
                literal = "INTEGER" if int(whole) < 2**31 else "BIGINT"
            return Typed(literal, token, token)
        if token.kind == "string" or token.is_("TRUE", "FALSE", "NULL"):
            literal = "STRING" if token.kind == "string" else UNKNOWN if token.is_("NULL") else "BOOLEAN"
            return Typed(literal, token, token)
        if token.is_("("):
            inner = self.expression()
            return Typed(inner.type, token, self.expect(")"))
        if token.is_("CASE"):
            return self._case(token)
        if token.is_("CAST") and self.accept("("):
            self.expression()
            self.expect("AS")
            cast_type = _type(self.until())
            return Typed(cast_type, token, self.expect(")"))
        if token.kind not in ("identifier", "quoted") or token.is_("ARRAY", "MAP", "STRUCT"):
            raise Unsupported(token, "an expression")
        if (following := self.peek()) is not None and following.kind == "string":  # typeConstructor: DATE '...'
            return Typed(_type([token]), token, self.next())
        if self.at("("):
            arguments = self._arguments()
            call = Typed(UNKNOWN, token, self.tokens[self.position - 1])
            return Typed(self._call(call, arguments), token, call.last)
        if self.accept("."):
            column = self.next()
            return Typed(self._column(column, token), token, column)
        return Typed(self._column(token, None), token, token)

    def _arguments(self) -> list[Typed]:
        """'(' ['*' | argument (',' argument)*] ')', an argument an expression or a windowUnit (functionArgument)."""
        self.expect("(")
        arguments: list[Typed] = []
        if not self.accept("*") and not self.at(")"):
            arguments.append(self._argument())
            while self.accept(","):
                arguments.append(self._argument())
        self.expect(")")
        return arguments

    def _argument(self) -> Typed:
        if self.at(*UNITS) and (following := self.peek(1)) is not None and following.is_(",", ")"):
            unit = self.next()
            return Typed(UNKNOWN, unit, unit)
        return self.expression()

    def _case(self, case: Token) -> Typed:
        if not self.at("WHEN"):
            self.expression(COMPARISONS + 1)  # a simple CASE's operand
        results = []
        while self.accept("WHEN"):
            self.expression()
            self.expect("THEN")
            results.append(self.expression().type)
        if self.accept("ELSE"):
            results.append(self.expression().type)
        known = [result for result in results if result != UNKNOWN]
        return Typed(known[0] if known else UNKNOWN, case, self.expect("END"))

    def _call(self, call: Typed, arguments: list[Typed]) -> str:
        """The call's type by its row in FUNCTIONS, refusing an argument the function does not take."""
        function = FUNCTIONS.get(call.first.text.upper())
        if function is None or len(arguments) > 1:
            return UNKNOWN
        if not arguments or arguments[0].type == UNKNOWN:
            return function.returns or UNKNOWN
        argument, item = arguments[0], snippet(self.text, call.first, call.last)
        arg_text = snippet(self.text, argument.first, argument.last)
        if function.accepts is not None and base(argument.type) not in function.accepts:
            message = f"needs {function.needs} argument, {arg_text} is {argument.type}"
            self.problems.append((call.first, item, message + function.why.format(argument=arg_text)))
            return UNKNOWN
        if function.check and (problem := function.check(arg_text, argument.type)):
            self.problems.append((call.first, item, problem))
        return function.returns or argument.type

    def _column(self, name: Token, qualifier: Token | None) -> str:
        """The type of a column of the FROM sources (of the one aliased `qualifier`), or of a pseudo column."""
        sources = list(self.scope.values())
        if qualifier is not None:
            if qualifier.name not in self.scope:
                self.problems.append((qualifier, f"source {qualifier.text}", f"not in FROM ({', '.join(self.scope)})"))
                return UNKNOWN
            sources = [self.scope[qualifier.name]]
        for source in sources:
            if name.name in source.columns:
                return source.columns[name.name]
        if name.name in PSEUDO:
            return PSEUDO[name.name]
        if all(source.known for source in sources):
            known = ", ".join(sorted({column for source in sources for column in source.columns}))
            where = " or ".join(source.name for source in sources)
            self.problems.append((name, f"column {name.text}", f"unknown column in {where} (it has: {known})"))
        return UNKNOWN


class Validator:
    def __init__(self) -> None:
        self.topics = {topic.name: topic for topic in load_topics().values()}
        self.sources: dict[str, Source] = {}
        self.problems: list[Problem] = []
        self.file, self.text = "", ""  # the migration being checked: its name, and its text the spans point into

    def _problem(self, token: Token, item: str, message: str) -> None:
        self.problems.append(Problem(self.file, token.line, item, message, token.column))

    def _not_read(self, exc: Unsupported, end: Token, item: str = "") -> None:
        where = exc.token or end
        message = NOT_READ.format(expected=exc.expected, line=where.line, column=where.column)
        self._problem(where, item or where.text, message)

    def check(self, migrations: list[Migration], variables: dict[str, str]) -> list[Problem]:
        for migration in migrations:
            self.file, self.text = migration.path.name, migration.text
            try:
                statements = resolve(migration, variables)
            except MigrationError as exc:
                self.problems.append(Problem(migration.path.name, exc.line, exc.item, str(exc)))
                continue
            for statement in statements:
                try:
                    self._statement(statement)
                except Unsupported as exc:
                    self._not_read(exc, statement.tokens[-1])
        return self.problems

    def _statement(self, statement: Statement) -> None:
        """CREATE ... [(elements)] [WITH (properties)] [AS query]; other statements check nothing here."""
        head = created(statement)
        if head is None:
            return
        cursor = Cursor(statement.tokens, head.rest)
        elements = cursor.group(angles=True) if cursor.at("(") else []
        properties = {p[0].value.upper(): p[-1] for p in cursor.group()} if cursor.accept("WITH") else {}
        if cursor.accept("AS"):
            self.sources[head.name.name] = self._query(cursor, head.name)
        else:
            self.sources[head.name.name] = self._declared(head.name, elements, properties)

    def _declared(self, name: Token, elements: list[list[Token]], properties: dict[str, Token]) -> Source:
        """A stream or table over a topic: its declared columns (SqlBase.g4 tableElement: name type [[PRIMARY] KEY |
        HEADERS | HEADER('key')]), or else the value columns ksqlDB infers from the topic's Avro contract."""
        constraint = ("KEY", "PRIMARY", "HEADERS", "HEADER")
        source = Source(name.name)
        for element in elements:
            end = next((i for i, token in enumerate(element) if i and token.is_(*constraint)), len(element))
            source.columns[element[0].name] = _type(element[1:end])
        inferred = all(any(token.is_(*constraint) for token in element[1:]) for element in elements)
        topic, value_format = properties.get("KAFKA_TOPIC"), properties.get("VALUE_FORMAT", properties.get("FORMAT"))
        spec = self.topics.get(topic.value) if topic else None
        if topic is None:
            self._problem(name, "KAFKA_TOPIC", "missing: a stream or table over a topic names it in WITH (...)")
            source.known = False
        elif spec is None:
            self._problem(topic, f"topic {topic.value}", "not declared in schemas/topics.toml")
            source.known = False
        elif inferred and value_format is not None and value_format.value.upper() == "AVRO":
            if not spec.value_schema:
                self._problem(topic, f"topic {topic.value}", "declares no value_schema")
                source.known = False
            else:  # ksqlDB upper-cases the inferred names (confluentinc/ksql#2415): key() of the upper case
                for avro_field in parsed_schema(spec.value_schema)["fields"]:
                    source.columns[key(avro_field["name"].upper())] = ksql_type(avro_field["type"])
        elif inferred:
            source.known = False  # value columns inferred from a format this validator does not read
        timestamp = properties.get("TIMESTAMP")
        if timestamp and source.known:
            column_type = source.columns.get(key(timestamp.value.upper()))
            if column_type is None:
                self._problem(timestamp, f"column {timestamp.value}", f"unknown column in {source.name}")
            elif column_type not in ("TIMESTAMP", "BIGINT"):
                message = f"TIMESTAMP needs TIMESTAMP or BIGINT, is {column_type}"
                self._problem(timestamp, f"column {timestamp.value}", message)
        return source

    def _query(self, cursor: Cursor, name: Token) -> Source:
        """SqlBase.g4 query: SELECT items FROM relation [WINDOW ...] [WHERE ...] [GROUP BY ...] ... ';'."""
        cursor.expect("SELECT")
        items = _split(cursor.until("FROM"))
        cursor.expect("FROM")
        scope, conditions = self._relations(cursor)
        clauses: dict[str, list[Token]] = {}
        while word := cursor.accept(*CLAUSES):
            if word.is_("GROUP", "PARTITION"):
                cursor.expect("BY")
            clauses[word.text.upper()] = [word, *cursor.until(*CLAUSES)]
        cursor.expect(";")
        derived = Source(name.name, known=all(source.known for source in scope.values()))
        for index, item in enumerate(items):
            self._select_item(item, index, scope, derived)
        for condition in [*conditions, clauses.get("WHERE", [])[1:], clauses.get("HAVING", [])[1:]]:
            self._expression(condition, scope)
        for expression in _split(clauses.get("GROUP", [])[1:]) + _split(clauses.get("PARTITION", [])[1:]):
            self._expression(expression, scope)
        if "WINDOW" in clauses:
            self._window(clauses["WINDOW"])
        return derived

    def _relations(self, cursor: Cursor) -> tuple[dict[str, Source], list[list[Token]]]:
        """SqlBase.g4 relation: the sources by alias, and each join's ON condition."""
        scope: dict[str, Source] = {}
        conditions = []
        while True:
            source_name = cursor.next()
            source = self.sources.get(source_name.name)
            if source is None:
                self._problem(source_name, f"source {source_name.text}", "no such stream or table")
                source = Source(source_name.name, known=False)
            following = cursor.peek(1) if cursor.at("AS") else cursor.peek()
            alias = source_name
            if following and following.kind in ("identifier", "quoted") and not following.is_(*CLAUSES, *JOINS, "ON"):
                cursor.accept("AS")
                alias = cursor.next()
            scope[alias.name] = source
            if len(scope) > 1:
                cursor.until("ON")  # WITHIN (a join window)
                cursor.expect("ON")
                conditions.append(cursor.until(*CLAUSES, *JOINS))
            if not cursor.at(*JOINS):
                return scope, conditions
            cursor.until("JOIN")  # INNER, LEFT [OUTER]...
            cursor.expect("JOIN")

    def _select_item(self, item: list[Token], index: int, scope: dict[str, Source], derived: Source) -> None:
        if item and item[-1].is_("*"):  # SqlBase.g4 selectAll: * or alias.*
            sources = [scope[item[0].name]] if len(item) == 3 and item[0].name in scope else list(scope.values())
            for source in sources:
                derived.columns.update(source.columns)
            derived.known &= len(scope) == 1  # a join's * prefixes each name with its source's alias
            return
        column_type, alias = self._expression(item, scope, aliased=True)
        if alias is None and (len(item) == 1 or (len(item) == 3 and item[1].is_("."))):
            alias = item[-1]  # a column keeps its name (ColumnNames); other unnamed items become KSQL_COL_n
        derived.columns[alias.name if alias else f"ksql_col_{index}"] = column_type

    def _expression(
        self, tokens: list[Token], scope: dict[str, Source], aliased: bool = False
    ) -> tuple[str, Token | None]:
        """Check an expression's columns, functions and arithmetic: its ksqlDB type (or UNKNOWN) and [AS] alias."""
        if not tokens:
            return UNKNOWN, None
        checker = Checker(tokens, scope, self.text)
        alias = None
        try:
            typed = checker.expression()
            if aliased and (checker.accept("AS") or checker.position == len(tokens) - 1):
                alias = checker.next()
                if alias.kind not in ("identifier", "quoted"):
                    raise Unsupported(alias, "an alias")
            if checker.peek() is not None:
                raise Unsupported(checker.peek(), "the end of the expression")
        except Unsupported as exc:
            self._not_read(exc, tokens[-1], snippet(self.text, tokens[0], tokens[-1]))
            return UNKNOWN, None
        for token, item, message in checker.problems:
            self._problem(token, item, message)
        return typed.type, alias

    def _window(self, tokens: list[Token]) -> None:
        """WINDOW [name] TUMBLING|HOPPING|SESSION (clause, ...): the grammar's clause order, RETENTION and grace."""
        item = snippet(self.text, tokens[0], tokens[-1])
        at = next((index for index in (1, 2) if index < len(tokens) and tokens[index].is_(*WINDOWS)), 0)
        kind = tokens[at].text.upper() if at else ""  # SqlBase.g4 windowExpression: an optional name first
        durations = self._durations(kind, tokens[at + 1 :]) if at else None
        if durations is None:
            heads = ", ".join(" ".join((*words, "n unit")) for words in WINDOWS.get(kind, [("...",)]))
            message = (
                f"not ksqlDB 0.29 window syntax: {kind or 'TUMBLING|HOPPING|SESSION'} ({heads}[, RETENTION n unit]"
                "[, GRACE PERIOD n unit]), in that order, unit one of MILLISECOND(S), SECOND(S), MINUTE(S), "
                "HOUR(S), DAY(S)"
            )
            self._problem(tokens[0], item, message)
            return
        size = durations["SIZE"][0]
        grace = durations["GRACE"][0] if "GRACE" in durations else max(DEFAULT_GRACE_BASE_MS - size, 0)
        needed = _in_units(size + grace)
        if "RETENTION" not in durations:
            message = (
                f"no RETENTION: the window store keeps only size + grace ({needed}), so pull queries see only the "
                "last windows; add RETENTION n DAYS after SIZE "
                "(ksqlDB 0.29: SIZE, [ADVANCE BY,] RETENTION, GRACE PERIOD)"
            )
            self._problem(tokens[0], item, message)
            return
        retention_ms, retention = durations["RETENTION"]
        if retention_ms >= size + grace:
            return
        refused = (
            'Kafka Streams refuses the window store ("must be no smaller than its window size plus the grace '
            'period") and the query fails'
        )
        if "GRACE" in durations:
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
        self._problem(tokens[0], item, message)

    @staticmethod
    def _durations(kind: str, tokens: list[Token]) -> dict[str, tuple[int, str]] | None:
        """'(' clause, ... ')' of a window: each clause's (milliseconds, "n UNIT") by its first word (SIZE for a
        session's gap), or None unless the clauses are those of the kind, in the grammar's order."""
        cursor = Cursor(tokens)
        try:
            clauses = cursor.group()
        except Unsupported:
            return None
        words = [tuple(token.text.upper() for token in clause[:-2]) for clause in clauses]
        first, tail = WINDOWS[kind], words[len(WINDOWS[kind]) :]
        if words[: len(first)] != first or tail != [w for w in WINDOW_TAIL if w in tail] or cursor.peek():
            return None
        durations = {}
        for clause, clause_words in zip(clauses, words, strict=True):
            if len(clause) < 2 or not clause[-2].text.isdigit() or not clause[-1].is_(*UNITS):
                return None
            number, unit = clause[-2].text, clause[-1].text.upper()
            durations[(clause_words or ("SIZE",))[0]] = (int(number) * UNITS[unit], f"{number} {unit}")
        return durations


def validate(migrations: list[Migration], variables: dict[str, str]) -> list[Problem]:
    return Validator().check(migrations, variables)
