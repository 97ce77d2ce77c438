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
