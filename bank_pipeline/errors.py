"""The base of every error a user should see as one clear line rather than a traceback, and a
failed step's error as such a line."""

from bank_pipeline.display import escaped


class BankPipelineError(Exception):
    """An error with an actionable message; the CLI prints it and exits 2."""


def failure_line(error: object) -> str:
    """A failed step's error as one line, causes included.

    Dagster wraps an exception a step did not turn into a `Failure` as `Error occurred while
    executing op "x":`, with the real reason (a dropped database connection…) only in `.cause`;
    the first line of the wrapper alone ends at that colon. `error` is Dagster's
    `SerializableErrorInfo` (anything with `.message` and `.cause`)."""
    parts: list[str] = []
    for _ in range(5):  # a wrapper or two, then the reason; a longer chain is cut
        if error is None:
            break
        first = next((line.strip() for line in str(getattr(error, "message", "")).splitlines() if line.strip()), "")
        if first.startswith("dagster.") and ": " in first:
            first = first.split(": ", 1)[1]  # the wrapper's class says nothing to the user
        if first:
            parts.append(first)
        if first and not first.endswith(":"):
            break
        error = getattr(error, "cause", None)
    return escaped(" ".join(parts), 1000) or "failed without a message"
