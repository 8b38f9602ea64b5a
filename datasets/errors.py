"""The one error type a loader raises for bad input: the CLI prints it as a one-line message."""


class DatasetError(ValueError):
    """A dataset file or folder is missing or malformed; the message names it and the problem."""
