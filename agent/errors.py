"""Errors a user sees as one line (the CLI prints them without a traceback)."""


class SelfhealError(Exception):
    """A failure the user can act on; its message is the whole story."""

    exit_code = 2


class InputError(SelfhealError):
    """Unreadable or invalid input (a file, a rule, a config value)."""

    exit_code = 2


class LockedError(SelfhealError):
    """Another writer holds the store."""

    exit_code = 3
