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


class ConnectorFailed(ConnectError):
    """A connector or one of its tasks reached FAILED."""

    def __init__(self, name: str, summary: str) -> None:
        self.name = name
        self.summary = summary
        super().__init__(f"{name} FAILED: {summary}")
