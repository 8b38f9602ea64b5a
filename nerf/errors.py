"""User-facing errors: the CLI prints them as one line and exits with status 2."""
from nerf.datasets.errors import DatasetError


class UserError(Exception):
    """Bad input from the user (an option, a file, a run folder); the message names it."""


class ConfigError(UserError):
    """A config file or override is malformed, unknown, of the wrong type or out of range."""


USER_ERRORS = (UserError, DatasetError)
