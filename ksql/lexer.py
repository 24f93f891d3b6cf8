"""ksqlDB 0.29's lexical grammar as one tokenizer whose tokens carry their spans in the file.

The rules are those at the end of SqlBase.g4 at tag v0.29.0: identifiers, "double-quoted" and `back-quoted`
identifiers (a doubled quote stands for itself), 'strings' ('' is a quote), integer, decimal and floating-point
numbers, operators, ``--`` line comments, ``/* */`` block comments and ``${name}`` variable references
(DEFINE / ``-d``). Statement splitting, variable substitution and every check of ``k2 ksql validate`` read these
tokens; no other module looks at statement text with a regular expression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

# One alternative per lexer rule of SqlBase.g4, in its order where two can match the same text (ANTLR takes the
# longest match, then the rule defined first): `1E5` is a FLOATING_POINT_VALUE, `1m` a DIGIT_IDENTIFIER. The
# lexer reads case-insensitively (CaseInsensitiveStream), so LETTER [A-Z] is any ASCII letter here. SIMPLE_COMMENT is
# '--' ~'@' ~[\r\n]*: the one character after -- may be a newline, so a bare `--` line also comments out the next.
_TOKEN = re.compile(
    r"""(?P<space>[ \t\r\n]+)
      | (?P<comment>--.[^\r\n]*|/\*.*?\*/)
      | (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"(?:[^"]|"")*"|`(?:[^`]|``)*`)
      | (?P<variable>\$\{[A-Za-z_][\w@]*\})
      | (?P<number>\d+\.\d*(?:E[+-]?\d+)?|\.\d+(?:E[+-]?\d+)?|\d+(?:E[+-]?\d+)?(?![\w@]))
      | (?P<identifier>[A-Za-z_][\w@]*|\d[\w@]*)
      | (?P<symbol><>|!=|<=|>=|\|\||:=|->|=>|[-+*/%=<>(),.;\[\]])""",
    re.VERBOSE | re.DOTALL | re.IGNORECASE | re.ASCII,
)
# Inside a string literal ksqlDB fills ${name} as plain text (VariableSubstitutor.visitStringLiteral).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][\w@]*)\}", re.ASCII)
_UNTERMINATED = {"'": "string", '"': "quoted identifier", "`": "quoted identifier"}
_BARE_DASHES = "a bare '--' line makes ksqlDB 0.29 read the next line as comment too; write '-- ' or remove it"


class LexError(ValueError):
    """Text that is no ksqlDB token: an unterminated string, quoted identifier or comment, or a stray character."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {reason}")
        self.reason, self.line, self.column = reason, line, column


def key(ksql_name: str) -> str:
    """How a column or source is keyed here: ksqlDB upper-cases unquoted identifiers and inferred Avro field names
    (confluentinc/ksql#2415), so those are kept in lower case; any other name keeps its case, back-quoted."""
    return ksql_name.lower() if ksql_name == ksql_name.upper() else f"`{ksql_name}`"


@dataclass(frozen=True)
class Token:
    kind: str  # identifier, quoted (identifier), string, number, variable or symbol
    text: str  # as written: a string keeps its quotes
    offset: int  # span in the file: [offset, end), 1-based line and column of the first character
    end: int
    line: int
    column: int

    def is_(self, *words: str) -> bool:
        """Whether this is one of the keywords or symbols (keywords in upper case; a string or quoted name never is)."""
        return self.kind in ("identifier", "symbol") and self.text.upper() in words

    @property
    def value(self) -> str:
        """A string's or quoted identifier's content, its doubled quotes undone; other tokens as written."""
        if self.kind in ("string", "quoted"):
            quote = self.text[0]
            return self.text[1:-1].replace(quote * 2, quote)
        return self.text

    @property
    def name(self) -> str:
        """The identifier as columns and sources are keyed (see key())."""
        return key(self.value if self.kind == "quoted" else self.text.upper())


def lex(source: str) -> list[Token]:
    """The tokens of source, whitespace and comments left out. Raises LexError."""
    tokens: list[Token] = []
    offset, line, line_start = 0, 1, 0
    while offset < len(source):
        match, column = _TOKEN.match(source, offset), offset - line_start + 1
        if match is None or match.lastgroup is None:
            opening = source[offset]
            what = f"unterminated {_UNTERMINATED[opening]}" if opening in _UNTERMINATED else f"unexpected {opening!r}"
            raise LexError(what, line, column)
        text = match.group()
        if text == "/" and source.startswith("/*", offset):  # ANTLR reads it as / and *, then splits at a ';'
            raise LexError("unterminated comment", line, column)
        if text.startswith("--\n") and text[3:].strip() and not text[3:].lstrip().startswith("--"):
            raise LexError(_BARE_DASHES, line, column)  # it would hide a line of the statement from ksqlDB
        if match.lastgroup not in ("space", "comment"):
            tokens.append(Token(match.lastgroup, text, offset, match.end(), line, column))
        if "\n" in text:
            line += text.count("\n")
            line_start = offset + text.rindex("\n") + 1
        offset = match.end()
    return tokens


def substitute(token: Token, values: Mapping[str, str]) -> tuple[list[Token], list[str]]:
    """What token stands for once variables are filled, and the names that have no value.

    A ${name} token becomes the tokens of its value, each spanning the reference in the file (ksqlDB inserts the
    value as text and parses again: VariableSubstitutor); in a string a ${name} becomes the value, a quote doubled
    (ParserUtil.sanitize).
    """
    if token.kind == "variable":
        name = token.text[2:-1]
        if name not in values:
            return [token], [name]
        at = token
        return [replace(t, offset=at.offset, end=at.end, line=at.line, column=at.column) for t in lex(values[name])], []
    if token.kind != "string" or "${" not in token.text:
        return [token], []
    missing = [name for name in _VARIABLE.findall(token.text) if name not in values]
    text = _VARIABLE.sub(lambda m: values.get(m[1], m[0]).replace("'", "''"), token.text)
    return [replace(token, text=text)], missing
