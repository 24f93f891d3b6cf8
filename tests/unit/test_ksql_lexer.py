"""ksql/lexer.py: ksqlDB 0.29's tokens with their spans, and the statement splitting and variables built on them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from k2.ksql.lexer import LexError, lex, substitute
from k2.ksql.migrations import MigrationError, load_migration, resolve, split_statements


def kinds(text: str) -> list[tuple[str, str]]:
    return [(token.kind, token.text) for token in lex(text)]


def test_strings_keep_semicolons_and_dashes_and_undouble_quotes() -> None:
    tokens = lex("SELECT 'a;--b', 'it''s' FROM t;")
    assert [t.value for t in tokens if t.kind == "string"] == ["a;--b", "it's"]
    assert [t.text for t in tokens if t.is_(";")] == [";"]


def test_quoted_identifiers_keep_their_case_and_unquoted_ones_fold() -> None:
    double, back, plain = lex('"My ""Col""" `x``y` Price')
    assert (double.kind, double.value, back.kind, back.value) == ("quoted", 'My "Col"', "quoted", "x`y")
    # ksqlDB upper-cases unquoted names, so PRICE, Price and "PRICE" are one column; "price" is another.
    assert plain.name == lex('"PRICE"')[0].name == "price"
    assert lex('"price"')[0].name == "`price`"
    assert not lex("'SELECT'")[0].is_("SELECT") and lex("select")[0].is_("SELECT")


def test_comments_are_skipped_and_spans_count_their_lines() -> None:
    text = "-- one; two\nCREATE /* a\nmulti-line; comment */ STREAM\n  s;"
    assert [(t.text, t.line, t.column) for t in lex(text)] == [
        ("CREATE", 2, 1),
        ("STREAM", 3, 24),
        ("s", 4, 3),
        (";", 4, 4),
    ]
    assert text[lex(text)[1].offset : lex(text)[1].end] == "STREAM"


def test_numbers_operators_and_variables_follow_the_grammar() -> None:
    assert kinds("1 1.5 .5 1E5 2.5e-3 1m x@y") == [
        ("number", "1"),
        ("number", "1.5"),
        ("number", ".5"),
        ("number", "1E5"),
        ("number", "2.5e-3"),
        ("identifier", "1m"),  # DIGIT_IDENTIFIER: the longest match wins
        ("identifier", "x@y"),
    ]
    assert [text for _, text in kinds("a<>b != c <= d || e -> f => g := h")][1::2] == [
        "<>", "!=", "<=", "||", "->", "=>", ":=",
    ]  # fmt: skip
    assert kinds("'${a}' ${b}") == [("string", "'${a}'"), ("variable", "${b}")]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("SELECT 'open", "1:8: unterminated string"),
        ('SELECT\n  "open', "2:3: unterminated quoted identifier"),
        ("a /* open", "1:3: unterminated comment"),
        ("a # b", "1:3: unexpected '#'"),
        ("${no-dash}", "1:1: unexpected '$'"),
    ],
)
def test_what_is_no_token_is_named_with_line_and_column(text: str, error: str) -> None:
    with pytest.raises(LexError, match=f"^{re.escape(error)}$"):
        lex(text)


def test_a_variable_becomes_the_tokens_of_its_value_at_the_references_span() -> None:
    reference = lex("x\n  ${topic}")[1]
    filled, missing = substitute(reference, {"topic": "'a.b' c"})
    assert missing == [] and [(t.kind, t.value, t.line, t.column) for t in filled] == [
        ("string", "a.b", 2, 3),
        ("identifier", "c", 2, 3),
    ]
    string = lex("'${prefix}1m-${missing}'")[0]
    filled, missing = substitute(string, {"prefix": "it's."})
    assert filled[0].value == "it's.1m-${missing}" and missing == ["missing"]


def test_statements_split_on_semicolons_outside_strings_and_comments() -> None:
    text = "DEFINE a = 'x;y';\n-- ;\nSELECT ';--' /* ; */ FROM t;\n;\nDROP STREAM s;\n"
    statements = split_statements(text)
    assert [(s.text, s.line) for s in statements] == [
        ("DEFINE a = 'x;y';", 1),
        ("SELECT ';--' /* ; */ FROM t;", 3),
        ("DROP STREAM s;", 5),
    ]
    with pytest.raises(MigrationError, match="statement starting on line 2 does not end with ';'"):
        split_statements("A;\nB")


def test_a_file_that_does_not_lex_is_named_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "V000001__bad.sql"
    path.write_text("CREATE STREAM s (x STRING KEY)\nWITH (KAFKA_TOPIC = 'unterminated);\n")
    with pytest.raises(MigrationError, match=r"^V000001__bad.sql: line 2, column 21: unterminated string$"):
        load_migration(path)


def test_defines_are_read_from_tokens_and_filled_into_strings_and_names(tmp_path: Path) -> None:
    path = tmp_path / "V000001__defines.sql"
    path.write_text(
        "DEFINE topic = 'a''s';\nDEFINE name = 'trades';\nCREATE STREAM ${name} WITH (KAFKA_TOPIC = '${topic}');\n"
    )
    migration = load_migration(path)
    assert migration.defaults == {"topic": "a's", "name": "trades"}
    (statement,) = resolve(migration, {"name": "other"})
    assert statement.text == "CREATE STREAM other WITH (KAFKA_TOPIC = 'a''s');"
    assert [(t.value, t.line, t.column) for t in statement.tokens[2:3]] == [("other", 3, 15)]
    with pytest.raises(MigrationError, match="no value for missing \\(line 1\\)") as raised:
        resolve(load_migration(_write(tmp_path, "V000002__missing.sql", "DROP STREAM ${missing};\n")), {})
    assert (raised.value.line, raised.value.item) == (1, "variable missing")


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_a_bare_comment_line_hides_the_next_line_as_in_ksqldb() -> None:
    # SqlBase.g4 SIMPLE_COMMENT is '--' ~'@' ~[\r\n]*: the newline after a bare -- is its one character.
    assert kinds("--\n-- a header\n--\n\nSELECT 1;") == [("identifier", "SELECT"), ("number", "1"), ("symbol", ";")]
    assert kinds("-- \nSELECT 1;")[0] == ("identifier", "SELECT")
    with pytest.raises(LexError, match="^3:1: a bare '--' line makes ksqlDB 0.29 read the next line as comment"):
        lex("SELECT *\nFROM t\n--\nWHERE x = 1;")
