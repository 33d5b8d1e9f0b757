"""The base of every error a user should see as one clear line rather than a traceback."""


class BankPipelineError(Exception):
    """An error with an actionable message; the CLI prints it and exits 2."""
