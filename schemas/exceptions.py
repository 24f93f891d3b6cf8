"""Errors of schema and topic handling; each message says what is wrong and how to fix it."""


class SchemaError(RuntimeError):
    """A schema could not be loaded, checked or registered."""


class IncompatibleSchemaError(SchemaError):
    """A schema change breaks the subject's compatibility rule."""


class TopicError(RuntimeError):
    """A topic declaration is invalid or could not be applied."""
