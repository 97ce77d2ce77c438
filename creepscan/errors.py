"""Errors that reach the user as one line on stderr and exit code 2.

Library code raises these with a message that says what is wrong and how to fix it; the CLI prints
the message (no traceback unless ``--debug``) and exits 2. Anything else escaping is a bug.
"""


class CreepscanError(Exception):
    """Bad usage or input: the message is shown to the user as is."""

    exit_code = 2


class ModelUnavailable(CreepscanError):
    """A model's weights could not be fetched or loaded."""


class DataUnavailable(CreepscanError):
    """A probe's data could not be fetched or read."""


class ProbeFileError(CreepscanError):
    """A probe file is malformed."""


class EngineError(CreepscanError, ValueError):
    """An engine that cannot be used as asked (unknown name, missing Ray, an address without Ray):
    one line for the user, exit 2; a ValueError for library callers."""


def one_line(text, limit: int | None = None) -> str:
    """``text`` with every run of whitespace (newlines included) as one space, cut to ``limit``
    characters (ending in "...") when given: for messages that must stay on one line."""
    text = " ".join(str(text).split())
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def error_summary(exc: BaseException, limit: int = 200) -> str:
    """One line naming an exception: ``"TypeName: message"``, at most ``limit`` characters. urllib's
    errors keep their cause in ``reason``, which is used when present."""
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return one_line(f"{type(exc).__name__}: {text}", limit)
