"""ksqlDB migrations in ksql/migrations/: reading, variables, statement splitting, checksums.

Files follow the ksqlDB migrations tool's naming, ``V000001__create_trades_stream.sql``, and are applied
in version order. ``DEFINE name = 'value';`` in a file gives a variable its default; ``-d name=value``
on the command line wins; ``${name}`` is replaced in the statements after it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^V(\d{6})__(\w+)\.sql$")
DEFINE = re.compile(r"^\s*DEFINE\s+(\w+)\s*=\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE | re.DOTALL)
VARIABLE = re.compile(r"\$\{(\w+)\}")


class MigrationError(RuntimeError):
    """A migration file is malformed, refers to an undefined variable, or conflicts with what ran."""


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # line of the file where the statement starts


@dataclass(frozen=True)
class Migration:
    version: str  # as in the file name, "000001"
    name: str
    path: Path
    checksum: str  # MD5 of the file's bytes, lower-case hex: what ksql-migrations records
    statements: tuple[Statement, ...] = field(default=())
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """The name as ksql-migrations records it: the file name's part after "__", "_" read as a space."""
        return self.name.replace("_", " ")

    @property
    def number(self) -> str:
        """The version as ksql-migrations records it: "1" for V000001."""
        return str(int(self.version))


def split_statements(text: str) -> list[Statement]:
    """Split on semicolons outside quotes and comments; returns statements with their first line."""
    statements: list[Statement] = []
    buffer: list[str] = []
    start_line = None
    line = 1
    i = 0
    quote: str | None = None
    while i < len(text):
        char = text[i]
        if quote:
            buffer.append(char)
            if char == quote:
                if i + 1 < len(text) and text[i + 1] == quote:  # doubled quote inside a literal
                    buffer.append(text[i + 1])
                    i += 1
                else:
                    quote = None
        elif char == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end == -1 else end
            continue
        elif char == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            skipped = text[i : len(text) if end == -1 else end + 2]
            line += skipped.count("\n")
            i = len(text) if end == -1 else end + 2
            continue
        elif char in ("'", '"', "`"):
            quote = char
            buffer.append(char)
        elif char == ";":
            statement = "".join(buffer).strip()
            if statement:
                statements.append(Statement(statement + ";", start_line or line))
            buffer = []
            start_line = None
        else:
            if start_line is None and not char.isspace():
                start_line = line
            buffer.append(char)
        if char == "\n":
            line += 1
        i += 1
    rest = "".join(buffer).strip()
    if rest:
        raise MigrationError(f"statement starting on line {start_line} does not end with ';'")
    return statements


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
    defaults: dict[str, str] = {}
    body = []
    for statement in statements:
        define = DEFINE.match(statement.text.rstrip(";"))
        if define:
            defaults[define.group(1)] = define.group(2).replace("''", "'")
        else:
            body.append(statement)
    return Migration(
        version=match.group(1),
        name=match.group(2),
        path=path,
        checksum=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        statements=tuple(body),
        defaults=defaults,
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


def resolve(migration: Migration, variables: dict[str, str]) -> list[Statement]:
    """The migration's statements with ${name} filled (-d values over the file's DEFINE defaults)."""
    values = {**migration.defaults, **variables}
    resolved = []
    missing: list[str] = []
    for statement in migration.statements:
        names = VARIABLE.findall(statement.text)
        missing += [f"{n} (line {statement.line})" for n in names if n not in values]
        resolved.append(
            Statement(VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), statement.text), statement.line)
        )
    if missing:
        raise MigrationError(
            f"{migration.path.name}: no value for {', '.join(dict.fromkeys(missing))}; pass -d NAME=VALUE or DEFINE it"
        )
    return resolved
