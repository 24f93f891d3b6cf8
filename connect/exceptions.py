"""Errors of connector deployment; each message names the connector and what to fix."""


class ConnectError(RuntimeError):
    """Kafka Connect refused or could not be reached, or a connector file is wrong."""


class InvalidConfig(ConnectError):
    """Connect's validation found errors; ``errors`` maps each config key to its messages."""

    def __init__(self, name: str, errors: dict[str, list[str]]) -> None:
        self.name = name
        self.errors = errors
        details = "; ".join(f"{key}: {' '.join(messages)}" for key, messages in sorted(errors.items()))
        super().__init__(f"{name} is invalid: {details}")


class MissingTables(ConnectError):
    """A sink would write to tables the catalog does not have (auto-create is off)."""

    def __init__(self, name: str, tables: list[str], catalog_uri: str) -> None:
        self.name = name
        self.tables = tables
        super().__init__(
            f"{name} writes to {', '.join(tables)}, which the catalog at {catalog_uri} does not have "
            "(the sink's auto-create is off): run `k2 tables apply` first, then deploy again"
        )


class ConnectorFailed(ConnectError):
    """A connector or one of its tasks reached FAILED."""

    def __init__(self, name: str, summary: str) -> None:
        self.name = name
        self.summary = summary
        super().__init__(f"{name} FAILED: {summary}")


def catalog_unreachable(uri: str, exc: BaseException) -> str:
    """The one-line message for an Iceberg REST catalog that does not answer (shared by every command)."""
    return (
        f"Iceberg REST catalog at {uri} is unreachable ({type(exc).__name__}); start the stack with "
        "`k2 stack up` or point --catalog-uri / K2_CATALOG_URI at a running catalog"
    )
