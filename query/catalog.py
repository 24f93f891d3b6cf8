"""The REST catalog as DuckDB reaches it: S3 credentials as a secret, the one error translation, and
a table's snapshots from its loadTable response."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import duckdb

from k2.connect.exceptions import catalog_unreachable

from .exceptions import QueryError


def configure_s3(con: duckdb.DuckDBPyConnection, env: Mapping[str, str]) -> bool:
    """An S3 secret from the standard AWS_* variables and K2_S3_ENDPOINT (MinIO, S3Proxy, moto).

    Values go to DuckDB as parameters and are never printed. False when no keys are set.
    """
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return False
    endpoint = env.get("K2_S3_ENDPOINT", "")
    parsed = urlsplit(endpoint) if endpoint else None
    options = ["TYPE s3", "KEY_ID $key", "SECRET $secret", "REGION $region"]
    parameters = {"key": key, "secret": secret, "region": env.get("AWS_REGION", "us-east-1")}
    if parsed and parsed.netloc:
        options += ["ENDPOINT $endpoint", "URL_STYLE 'path'", f"USE_SSL {str(parsed.scheme == 'https').lower()}"]
        parameters["endpoint"] = parsed.netloc
    con.execute(f"CREATE OR REPLACE SECRET k2_s3 ({', '.join(options)})", parameters)
    return True


def catalog_error(uri: str, exc: duckdb.Error) -> QueryError | None:
    """The shared one-line message when DuckDB could not connect to the catalog (at ATTACH or later)."""
    if isinstance(exc, duckdb.IOException) and f"to '{uri}/" in str(exc) and "Could not connect" in str(exc):
        return QueryError(catalog_unreachable(uri, exc))
    return None


def snapshot_rows(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The table's snapshots, oldest first, with the branches and tags whose head each one is."""
    current = metadata.get("current-snapshot-id")
    heads: dict[int, list[str]] = {}
    for ref, target in sorted(metadata.get("refs", {}).items()):
        heads.setdefault(target["snapshot-id"], []).append(ref)
    rows = []
    for snapshot in sorted(metadata.get("snapshots", []), key=lambda s: s["timestamp-ms"]):
        summary = snapshot.get("summary", {})
        rows.append(
            {
                "snapshot_id": snapshot["snapshot-id"],
                "committed_at": datetime.fromtimestamp(snapshot["timestamp-ms"] / 1000, UTC),
                "operation": summary.get("operation", ""),
                "added_records": int(summary.get("added-records", 0)),
                "total_records": int(summary.get("total-records", 0)),
                "total_data_files": int(summary.get("total-data-files", 0)),
                "refs": ",".join(heads.get(snapshot["snapshot-id"], [])),
                "current": snapshot["snapshot-id"] == current,
            }
        )
    return rows
