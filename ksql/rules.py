"""What ksqlDB 0.29 gives and takes: column types from Avro, operator result types, and functions, one row each.

Types are written as ksqlDB prints them: STRING, BIGINT, DECIMAL(28, 8), MAP<STRING, STRING>; UNKNOWN when this
validator cannot tell (nothing is checked against an UNKNOWN).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UNKNOWN = "UNKNOWN"
NUMBERS = frozenset({"INTEGER", "BIGINT", "DECIMAL", "DOUBLE"})
ORDERED = NUMBERS | {"DATE", "TIME", "TIMESTAMP", "STRING", "BYTES"}  # what MinKudaf and MaxKudaf take
WIDENED = {"INTEGER": "DECIMAL(10, 0)", "BIGINT": "DECIMAL(19, 0)"}  # next to a DECIMAL: DecimalUtil.toSqlDecimal
SUM_PRECISION = 38  # the widest decimal Iceberg holds; the migrations sum CAST(... AS DECIMAL(38, s))


def base(type_name: str) -> str:
    """DECIMAL for DECIMAL(28, 8), MAP for MAP<STRING, STRING>."""
    return type_name.partition("(")[0].partition("<")[0]


def decimal(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) of a DECIMAL, or of the DECIMAL an INTEGER or BIGINT is widened to; else None."""
    type_name = WIDENED.get(type_name, type_name)
    if base(type_name) != "DECIMAL":
        return None
    precision, scale = type_name[len("DECIMAL(") : -1].split(",")
    return int(precision), int(scale)


def ksql_type(avro_type: Any) -> str:
    """The column type ksqlDB infers from an Avro field's type."""
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


def arithmetic_type(operator: str, left: str, right: str) -> str:
    """The type ksqlDB 0.29 gives `left operator right` (SqlDecimal.add/multiply/divide/modulus)."""
    if operator == "||":
        return "STRING"
    if not (base(left) in NUMBERS and base(right) in NUMBERS):
        return UNKNOWN
    if "DOUBLE" in (left, right):
        return "DOUBLE"
    if "DECIMAL" not in (base(left), base(right)):
        return "BIGINT" if "BIGINT" in (left, right) else "INTEGER"
    left_decimal, right_decimal = decimal(left), decimal(right)
    assert left_decimal and right_decimal  # each a DECIMAL, or an INTEGER or BIGINT widened to one
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


def exact_division(dividend: str, divisor: str, quotient: str) -> bool:
    """Whether a DECIMAL `dividend` divided by the integer literal `divisor` always terminates in the quotient's
    scale, so ksqlDB's RoundingMode.UNNECESSARY never throws: 1/n terminates for n = 2^a * 5^b, after max(a, b)
    more digits. Any other DECIMAL division can need rounding."""
    if not divisor.isdigit() or int(divisor) == 0:
        return False
    rest, twos, fives = int(divisor), 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    dividend_decimal, quotient_decimal = decimal(dividend), decimal(quotient)
    assert dividend_decimal and quotient_decimal
    return rest == 1 and dividend_decimal[1] + max(twos, fives) <= quotient_decimal[1]


def sum_width(argument: str, arg_type: str) -> str | None:
    """Why SUM(argument) fails or does not fit Iceberg unless it is over DECIMAL(38, s); None when it is fine."""
    decimal_type = decimal(arg_type) if base(arg_type) == "DECIMAL" else None
    if decimal_type is None or decimal_type[0] == SUM_PRECISION:
        return None
    precision, scale = decimal_type
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


@dataclass(frozen=True)
class Function:
    """A function's one-argument form: the base types it takes (None: any), what it returns (None: its argument's
    type), how a refusal names what it takes (`needs`) and what it adds (`why`, {argument} filled), and a further
    check given the argument's text and type. Other forms (more arguments) are typed UNKNOWN."""

    accepts: frozenset[str] | None
    returns: str | None
    needs: str = ""
    why: str = ""
    check: Callable[[str, str], str | None] | None = None


# Aggregates as ksqldb-engine's function/udaf defines them at v0.29.0. None casts its argument implicitly
# (UdafAggregateFunctionFactory indexes them without implicit casts): AVG(DECIMAL) does not even resolve.
FUNCTIONS = {
    "COUNT": Function(None, "BIGINT"),  # CountKudaf; COUNT(*) too
    "SUM": Function(NUMBERS, None, "a numeric", check=sum_width),  # Integer/Long/Double/DecimalSumKudaf
    "AVG": Function(
        frozenset({"INTEGER", "BIGINT", "DOUBLE"}),
        "DOUBLE",
        "an INTEGER, BIGINT or DOUBLE",
        " (AverageUdaf has no DECIMAL form); use AVG(CAST({argument} AS DOUBLE))",
    ),  # fmt: skip
    "MIN": Function(ORDERED, None, "a number, DATE, TIME, TIMESTAMP, STRING or BYTES"),  # MinKudaf
    "MAX": Function(ORDERED, None, "a number, DATE, TIME, TIMESTAMP, STRING or BYTES"),  # MaxKudaf
    "EARLIEST_BY_OFFSET": Function(None, None),  # offset/EarliestByOffset: any type
    "LATEST_BY_OFFSET": Function(None, None),  # offset/LatestByOffset
}
