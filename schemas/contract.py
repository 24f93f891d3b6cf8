"""The declared contracts: Avro schemas (``*.avsc``) and Kafka topics (``topics.toml``), read once."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from .exceptions import SchemaError, TopicError

SCHEMA_DIR = Path(__file__).resolve().parent
TOPICS_FILE = SCHEMA_DIR / "topics.toml"


@dataclass(frozen=True)
class TopicSpec:
    key: str
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    value_schema: str | None = None
    doc: str = ""

    @property
    def subject(self) -> str:
        """The registry subject of the topic's values (Confluent's TopicNameStrategy)."""
        return f"{self.name}-value"


def load_schema_text(path: Path) -> str:
    """The schema file's text after checking that it is valid Avro (raises SchemaError otherwise)."""
    try:
        text = path.read_text()
        fastavro.parse_schema(json.loads(text))
    except FileNotFoundError:
        raise SchemaError(f"schema file {path} does not exist") from None
    except (ValueError, TypeError, KeyError, AttributeError, fastavro.schema.SchemaParseException) as exc:
        # ValueError covers text that is not UTF-8 and JSON that does not parse; fastavro meets JSON of
        # another shape (a list of numbers, an object without "type") as Type-, Key- or AttributeErrors.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"{path} is not a valid Avro schema: {reason}") from exc
    return text


@cache
def parsed_schema(name: str) -> dict[str, Any]:
    """A schema of this folder parsed by fastavro, once per process."""
    parsed = fastavro.parse_schema(json.loads(load_schema_text(SCHEMA_DIR / name)))
    if not isinstance(parsed, dict):
        raise SchemaError(f"{name} must define a record schema")
    return parsed


def load_topics(path: Path = TOPICS_FILE) -> dict[str, TopicSpec]:
    """Topic declarations by key (``trades``, ``trades-dlq``, ...)."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TopicError(f"cannot read topic declarations {path}: {exc}") from exc
    topics = {}
    for key, spec in data.get("topics", {}).items():
        try:
            topics[key] = TopicSpec(
                key=key,
                name=str(spec["name"]),
                partitions=int(spec["partitions"]),
                config={str(k): str(v) for k, v in spec.get("config", {}).items()},
                value_schema=spec.get("value_schema"),
                doc=str(spec.get("doc", "")),
            )
        except (KeyError, ValueError) as exc:
            raise TopicError(f"{path}: topic {key} needs a name and integer partitions ({exc})") from exc
    return topics
