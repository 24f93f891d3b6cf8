"""`k2 tables maintain` on a table whose warehouse is in S3 (moto's S3 server): compaction, expiry and orphan
cleanup work there as on a local disk, through the table's FileIO.

The catalog is a second one of the real stack (`k2 stack up catalog --warehouse s3://...` in its own
state directory), as a user with MinIO or S3 runs it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from k2.connect.tables import apply_table, load_table_specs, rest_catalog, s3_properties

from .conftest import LocalStack
from .helpers import arrow, free_port, make_trades

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_catalog(local_stack: LocalStack, moto_s3: str, tmp_path: Path) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    catalog_port = free_port()
    env = {
        "K2_HOME": str(tmp_path / "s3home"),
        "K2_CATALOG_PORT": str(catalog_port),
        "K2_CATALOG_URI": f"http://127.0.0.1:{catalog_port}",
        "K2_S3_ENDPOINT": moto_s3,
        "AWS_REGION": "us-east-1",
    }
    stack = replace(local_stack, env={**local_stack.env, **env}, catalog_uri=env["K2_CATALOG_URI"])
    up = stack.k2("stack", "up", "catalog", "--warehouse", f"s3://k2-it/wh-{uuid.uuid4().hex[:8]}")
    assert up.returncode == 0, up.stderr
    try:
        yield stack, env
    finally:
        stack.k2("stack", "down")


def bucket(stack: LocalStack, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )


def objects(client: Any, location: str) -> dict[str, int]:
    """Every object under an s3://bucket/prefix location: key -> size (pyarrow's empty "directory"
    markers, keys ending in /, are not files)."""
    name, _, prefix = location.removeprefix("s3://").partition("/")
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue
            found[f"s3://{name}/{item['Key']}"] = item["Size"]
    return found


def test_maintain_compacts_expires_and_deletes_orphans_in_s3(s3_catalog: tuple[LocalStack, dict[str, str]]) -> None:
    stack, env = s3_catalog
    catalog = rest_catalog(
        stack.catalog_uri,
        **s3_properties(env),
        **{
            "s3.access-key-id": stack.env["AWS_ACCESS_KEY_ID"],
            "s3.secret-access-key": stack.env["AWS_SECRET_ACCESS_KEY"],
        },
    )
    identifier = "market_data.trades"
    apply_table(catalog, replace(load_table_specs()[identifier], identifier=identifier))
    table = catalog.load_table(identifier)
    trades = make_trades(1200, seed=71)  # two past days, three symbols
    for offset in range(0, len(trades), 60):
        table.append(arrow(trades[offset : offset + 60], table))
    table.refresh()
    files_before = len(table.inspect.files())
    assert files_before >= 20

    client = bucket(stack, env["K2_S3_ENDPOINT"])
    orphan = f"{table.location()}/data/orphan-{uuid.uuid4().hex}.parquet"
    name, _, key = orphan.removeprefix("s3://").partition("/")
    client.put_object(Bucket=name, Key=key, Body=b"left by a writer that crashed before its commit")
    stored_before = objects(client, table.location())
    assert orphan in stored_before

    args = ("tables", "maintain", identifier, "--retain", "0s", "--orphan-age", "0s", "--format", "json")
    dry = stack.k2(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    (delete,) = [row for row in planned if row["step"] == "delete"]
    assert delete["count"] >= 1
    done = stack.k2(*args)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)[0]
    assert report["partitions_compacted"] == len([row for row in planned if row["step"] == "compact"]) > 0
    assert report["disk_files_before"] == len(stored_before)
    assert (report["orphans_deleted"], report["orphan_bytes_deleted"]) == (delete["count"], delete["bytes"])

    table = catalog.load_table(identifier)
    stored_after = objects(client, table.location())
    assert report["disk_files_after"] == len(stored_after) < len(stored_before)
    assert orphan not in stored_after
    live = set(table.inspect.files()["file_path"].to_pylist())
    assert len(live) == report["data_files_after"] < files_before
    data_objects = {k for k in stored_after if "/data/" in k}
    assert data_objects == live, "every data object left in the bucket is a live file of the table"
    counted = stack.k2("query", f"select count(*) as n from {identifier}", "--format", "json")
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout) == [{"n": len(trades)}]
    newest = max(t["trade_time"] for t in trades)
    assert newest < datetime.now(UTC) - timedelta(days=1), "finished days: compacted, not merged"
