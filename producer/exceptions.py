"""Errors of the producer. Library errors are re-raised as these, with the cause attached."""


class ProducerError(RuntimeError):
    """The producer cannot start or continue (configuration, registry, Kafka)."""


class BadFrame(ValueError):
    """A frame that is not a valid trade; ``reason`` goes to the dead-letter header, ``kind`` (one of a
    few fixed words, never a value from the frame) labels the dead-letter metric."""

    def __init__(self, reason: str, symbol: str | None = None, kind: str = "invalid_trade") -> None:
        super().__init__(reason)
        self.reason = reason
        self.symbol = symbol
        self.kind = kind


class BackfillError(RuntimeError):
    """A REST backfill request failed or could not be sent in time; the message says why."""
