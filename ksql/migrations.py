"""ksqlDB migrations in ksql/migrations/: reading, variables, statement splitting, checksums.

Files follow the ksqlDB migrations tool's naming, ``V000001__create_trades_stream.sql``, and are applied
in version order. ``DEFINE name = 'value';`` in a file gives a variable its default; ``-d name=value``
on the command line wins; ``${name}`` is replaced in the statements after it. Everything here reads the
tokens of lexer.py.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .lexer import LexError, Token, lex, substitute

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^V(\d{6})__(\w+)\.sql$")


class MigrationError(RuntimeError):
    """A migration file is malformed, refers to an undefined variable, or conflicts with what ran."""

    def __init__(self, message: str, line: int = 1, item: str = "migration") -> None:
        super().__init__(message)
        self.line, self.item = line, item  # where in the file, and what: for `k2 ksql validate`'s report


@dataclass(frozen=True)
class Statement:
    text: str  # as ksqlDB receives it: from the first token to the ';', variables filled once resolved
    line: int  # line of the file where the statement starts
    tokens: tuple[Token, ...] = ()  # the ';' included; spans point into the file, also after resolve()


@dataclass(frozen=True)
class Migration:
    version: str  # as in the file name, "000001"
    name: str
    path: Path
    checksum: str  # MD5 of the file's bytes, lower-case hex: what ksql-migrations records
    statements: tuple[Statement, ...] = field(default=())
    defaults: dict[str, str] = field(default_factory=dict)
    text: str = field(default="", repr=False)  # the file, which the tokens' spans point into

    @property
    def description(self) -> str:
        """The name as ksql-migrations records it: the file name's part after "__", "_" read as a space."""
        return self.name.replace("_", " ")

    @property
    def number(self) -> str:
        """The version as ksql-migrations records it: "1" for V000001."""
        return str(int(self.version))


def split_statements(text: str) -> list[Statement]:
    """Split on the ';' tokens (so never in a string, quoted name or comment); statements with their first line."""
    try:
        tokens = lex(text)
    except LexError as exc:
        raise MigrationError(f"line {exc.line}, column {exc.column}: {exc.reason}") from exc
    statements: list[Statement] = []
    start = 0
    for index, token in enumerate(tokens):
        if token.is_(";"):
            if index > start:  # an empty statement (";;") is skipped
                first = tokens[start]
                statements.append(
                    Statement(text[first.offset : token.end], first.line, tuple(tokens[start : index + 1]))
                )
            start = index + 1
    if start < len(tokens):
        raise MigrationError(f"statement starting on line {tokens[start].line} does not end with ';'")
    return statements


class Created(NamedTuple):
    kind: str  # STREAM or TABLE
    name: Token
    rest: int  # index of the token after the name


def created(statement: Statement) -> Created | None:
    """What a CREATE [OR REPLACE] [SOURCE] STREAM|TABLE [IF NOT EXISTS] name ... statement creates, else None."""
    tokens, index = statement.tokens, 1
    if not tokens[0].is_("CREATE"):
        return None
    while tokens[index].is_("OR", "REPLACE", "SOURCE"):
        index += 1
    if not tokens[index].is_("STREAM", "TABLE"):
        return None
    name = index + (4 if tokens[index + 1].is_("IF") else 1)  # IF NOT EXISTS
    return Created(tokens[index].text.upper(), tokens[name], name + 1) if name < len(tokens) - 1 else None


def _define(statement: Statement) -> tuple[str, str] | None:
    """(name, value) of a `DEFINE name = 'value';` (SqlBase.g4 defineVariable), else None."""
    match statement.tokens:
        case (define, name, equals, value, _) if define.is_("DEFINE") and name.kind == "identifier" and equals.is_("="):
            return (name.text, value.value) if value.kind == "string" else None
    return None


def load_migration(path: Path) -> Migration:
    match = FILE_NAME.match(path.name)
    if not match:
        raise MigrationError(f"{path.name}: migration files are named V000001__description.sql")
    data = path.read_bytes()
    text = data.decode()
    try:
        statements = split_statements(text)
    except MigrationError as exc:
        raise MigrationError(f"{path.name}: {exc}") from exc
    defines = [(statement, _define(statement)) for statement in statements]
    return Migration(
        version=match.group(1),
        name=match.group(2),
        path=path,
        checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        statements=tuple(statement for statement, define in defines if define is None),
        defaults=dict(define for _, define in defines if define is not None),
        text=text,
    )


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = [load_migration(p) for p in sorted(directory.glob("*.sql"))]
    seen: dict[str, str] = {}
    for migration in migrations:
        if migration.version in seen:
            raise MigrationError(
                f"version {migration.version} is used by {seen[migration.version]} and {migration.path.name}"
            )
        seen[migration.version] = migration.path.name
    return migrations


def variable_names(migration: Migration) -> set[str]:
    """Every variable the migration DEFINEs or uses as ${name} (in strings too), from its tokens."""
    used = {name for statement in migration.statements for token in statement.tokens
            for name in substitute(token, {})[1]}  # fmt: skip
    return used | set(migration.defaults)


def resolve(migration: Migration, variables: dict[str, str]) -> list[Statement]:
    """The migration's statements with ${name} filled (-d values over the file's DEFINE defaults)."""
    values = {**migration.defaults, **variables}
    resolved = []
    missing: list[tuple[str, int]] = []
    for statement in migration.statements:
        try:
            pieces = [(token, *substitute(token, values)) for token in statement.tokens]
        except LexError as exc:  # a value that is no ksqlDB text, e.g. with an unbalanced quote
            raise MigrationError(f"{migration.path.name}: a variable's value on line {statement.line}: {exc.reason}",
                                 statement.line, "variable") from exc  # fmt: skip
        missing += [(name, statement.line) for _, _, unknown in pieces for name in unknown]
        text, base = statement.text, statement.tokens[0].offset
        for token, filled, _ in reversed(pieces):  # from the end, so that earlier offsets stay valid in text
            if filled != [token]:
                value = values[token.text[2:-1]] if token.kind == "variable" else filled[0].text
                text = text[: token.offset - base] + value + text[token.end - base :]
        resolved.append(Statement(text, statement.line, tuple(t for _, filled, _ in pieces for t in filled)))
    if missing:
        missing = list(dict.fromkeys(missing))
        names = ", ".join(f"{name} (line {line})" for name, line in missing)
        message = f"{migration.path.name}: no value for {names}; pass -d NAME=VALUE or DEFINE it"
        raise MigrationError(message, missing[0][1], f"variable {missing[0][0]}")
    return resolved
