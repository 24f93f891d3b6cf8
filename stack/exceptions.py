"""Errors of the local stack. Each message is one line naming the cause and what to do."""


class StackError(RuntimeError):
    """The stack could not be resolved, started, stopped or inspected."""
