"""Retries for the outbound HTTP clients (TrueLayer data and auth, Anthropic), on tenacity.

Each client states what it retries, how many attempts it gets and how long it waits; tenacity runs
the attempts. What is shared lives here: `Retry-After` (the server's word wins over our backoff,
capped), and one warning line per retry naming the call, the error and the wait.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from collections.abc import Callable

import tenacity
from tenacity.wait import wait_base

from bank_pipeline import clock

__all__ = ["parse_retry_after", "retrying", "wait_retry_after"]


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - clock.now()).total_seconds())


class wait_retry_after(wait_base):  # noqa: N801 - tenacity's naming for wait strategies
    """Wait what the failed attempt's server asked for (`told(exc)`, seconds), capped at `max_delay`;
    when it did not say, wait `fallback`."""

    def __init__(self, told: Callable[[BaseException], float | None], fallback: wait_base, max_delay: float):
        self.told = told
        self.fallback = fallback
        self.max_delay = max_delay

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        seconds = self.told(exc) if exc is not None else None
        if seconds is not None:
            return max(0.0, min(seconds, self.max_delay))
        return self.fallback(retry_state)


def retrying(
    *,
    attempts: int,
    retry_if: Callable[[BaseException], bool],
    wait: wait_base,
    log: logging.Logger,
    what: str,
    describe: Callable[[BaseException], object] = lambda exc: type(exc).__name__,
    level: int = logging.WARNING,
) -> tenacity.Retrying:
    """A tenacity loop: at most `attempts` attempts (at least one), retrying exceptions for which
    `retry_if` holds, waiting `wait` between them; the last exception is re-raised as itself.
    Use as `for attempt in retrying(...): with attempt: ...`; `attempt.retry_state.attempt_number`
    is the 1-based attempt under way."""
    total = max(1, attempts)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.log(
            level,
            "%s: %s (attempt %d/%d); retrying in %.2fs",
            what,
            describe(exc) if exc is not None else "failed",
            state.attempt_number,
            total,
            state.upcoming_sleep,
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(total),
        retry=tenacity.retry_if_exception(retry_if),
        wait=wait,
        before_sleep=before_sleep,
        reraise=True,
    )
