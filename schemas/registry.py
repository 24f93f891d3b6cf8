"""Registering the declared schemas in the schema registry through its Confluent API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from .contract import SCHEMA_DIR, TopicSpec, load_schema_text
from .exceptions import IncompatibleSchemaError, SchemaError

COMPATIBILITY = "BACKWARD"


@dataclass(frozen=True)
class SubjectResult:
    subject: str
    schema_file: str
    action: str  # registered | unchanged | set BACKWARD | compatible | incompatible | new subject
    schema_id: int | None = None
    version: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _unreachable(url: str, exc: Exception) -> SchemaError:
    return SchemaError(
        f"schema registry at {url} is unreachable ({type(exc).__name__}); start the stack with `k2 stack up` "
        "or point --registry-url / K2_REGISTRY_URL at a running registry"
    )


def _schema(path: Path) -> Schema:
    return Schema(load_schema_text(path), "AVRO")


def _schema_path(spec: TopicSpec, path: Path | None) -> Path:
    if path is not None:
        return path
    if not spec.value_schema:
        raise SchemaError(f"topic {spec.name} declares no value_schema")
    return SCHEMA_DIR / spec.value_schema


def _compatibility(client: SchemaRegistryClient, subject: str) -> str | None:
    """The subject's own compatibility level, None when it has none set (it follows the global one)."""
    try:
        return str(client.get_compatibility(subject))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise


def check(client: SchemaRegistryClient, url: str, spec: TopicSpec, path: Path | None = None) -> SubjectResult:
    """Whether the schema file could be registered under the topic's subject without breaking its rule."""
    schema_path = _schema_path(spec, path)
    schema = _schema(schema_path)
    try:
        subjects = client.get_subjects()
        if spec.subject not in subjects:
            return SubjectResult(spec.subject, str(schema_path), "new subject")
        compatible = client.test_compatibility(spec.subject, schema)
    except SchemaRegistryError as exc:
        raise SchemaError(f"registry refused the compatibility check for {spec.subject}: {exc.error_message}") from exc
    except Exception as exc:  # connection errors come from httpx under the client
        raise _unreachable(url, exc) from exc
    return SubjectResult(spec.subject, str(schema_path), "compatible" if compatible else "incompatible")


def register(
    client: SchemaRegistryClient, url: str, spec: TopicSpec, path: Path | None = None, dry_run: bool = False
) -> SubjectResult:
    """Register the schema under ``<topic>-value`` with BACKWARD compatibility; idempotent.

    The one registration path (`k2 schemas register` and the producer): a subject whose own compatibility
    is not BACKWARD (e.g. one an older producer created) gets it set, and says so in ``action``.
    """
    schema_path = _schema_path(spec, path)
    schema = _schema(schema_path)
    try:
        try:
            found = client.lookup_schema(spec.subject, schema)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
        else:
            action = "unchanged"
            if _compatibility(client, spec.subject) != COMPATIBILITY:
                action = f"would set {COMPATIBILITY}" if dry_run else f"set {COMPATIBILITY}"
                if not dry_run:
                    client.set_compatibility(spec.subject, COMPATIBILITY)
            return SubjectResult(spec.subject, str(schema_path), action, found.schema_id, found.version)
        verdict = check(client, url, spec, schema_path)
        if verdict.action == "incompatible":
            raise IncompatibleSchemaError(
                f"{schema_path} is not {COMPATIBILITY}-compatible with the latest version of {spec.subject}; "
                "add new fields with defaults instead of removing or retyping fields, or register under a new topic"
            )
        if dry_run:
            return SubjectResult(spec.subject, str(schema_path), "would register")
        if verdict.action == "new subject":
            client.set_compatibility(spec.subject, COMPATIBILITY)
        schema_id = client.register_schema(spec.subject, schema)
        registered = client.lookup_schema(spec.subject, schema)
        return SubjectResult(spec.subject, str(schema_path), "registered", schema_id, registered.version)
    except SchemaRegistryError as exc:
        raise SchemaError(
            f"registry refused {spec.subject}: {exc.error_message} (HTTP {exc.http_status_code})"
        ) from exc
    except (SchemaError, IncompatibleSchemaError):
        raise
    except Exception as exc:
        raise _unreachable(url, exc) from exc


def list_subjects(client: SchemaRegistryClient, url: str) -> list[dict[str, object]]:
    try:
        rows: list[dict[str, object]] = []
        for subject in sorted(client.get_subjects()):
            latest = client.get_latest_version(subject)
            try:
                level = client.get_compatibility(subject)
            except SchemaRegistryError:
                level = ""
            rows.append(
                {"subject": subject, "version": latest.version, "schema_id": latest.schema_id, "compatibility": level}
            )
        return rows
    except SchemaRegistryError as exc:
        raise SchemaError(f"registry refused to list subjects: {exc.error_message}") from exc
    except Exception as exc:
        raise _unreachable(url, exc) from exc
