"""Structure the project promises: one place for shared test helpers, a thin query layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_integration_modules_share_helpers_instead_of_importing_each_other() -> None:
    offenders = []
    for path in sorted((ROOT / "tests" / "integration").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1].startswith("test_"):
                offenders.append(f"{path.name}:{node.lineno} imports {node.module}")
    assert not offenders, "import shared code from tests/integration/helpers.py: " + "; ".join(offenders)


def test_the_query_layer_stays_thin() -> None:
    lines = sum(len(path.read_text().splitlines()) for path in (ROOT / "query").glob("*.py"))
    assert lines < 450, f"query/ has {lines} lines of Python; DuckDB's own Iceberg support should do the work"


def test_the_cli_starts_without_the_stack_manager_duckdb_or_pyarrow() -> None:
    import subprocess
    import sys

    heavy = ("k2.stack.manager", "duckdb", "pyarrow", "k2.producer.app")
    code = f"import sys, k2.cli.main; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"every `k2` command would pay for importing {loaded}"
