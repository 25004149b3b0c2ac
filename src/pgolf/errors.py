"""The error a user can fix: the CLI prints it as one `error:` line (exit 2), never a traceback.

Each module raises its own subclass (ConfigError, DataError, SizeError, ...); the CLI catches this
base alone, so it needs none of those modules loaded to know what is a user error.
"""


class UserError(ValueError):
    """Bad input or environment, said in one line naming the file, key or numbers."""
