"""Errors of the producer. Library errors are re-raised as these, with the cause attached."""


class ProducerError(RuntimeError):
    """The producer cannot start or continue (configuration, registry, Kafka)."""


class BadFrame(ValueError):
    """A frame that is not a valid trade; ``reason`` goes to the dead-letter header."""

    def __init__(self, reason: str, symbol: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.symbol = symbol


class BackfillError(RuntimeError):
    """A REST backfill request failed or could not be sent in time; the message says why."""
