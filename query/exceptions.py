"""Errors of the query engine, each one line: what is wrong and how to fix it."""


class QueryError(RuntimeError):
    """A query could not run (bad SQL, unknown table, unreachable catalog, refused write)."""
