"""Typed results of TrueLayer calls."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenSet:
    """An access/refresh token pair. `repr` never shows the tokens."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: dt.datetime
    scope: str | None = None

    def __repr__(self) -> str:
        return (
            f"TokenSet(access_token=<hidden>, refresh_token={'<hidden>' if self.refresh_token else None}, "
            f"expires_at={self.expires_at.isoformat()}, scope={self.scope!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class TransactionsResponse:
    """One transactions call: the rows exactly as TrueLayer sent them, and the raw body for audit."""

    results: list[dict]
    status: str | None
    body: str = field(repr=False)
    http_status: int
    attempts: int

    def __repr__(self) -> str:
        return (
            f"TransactionsResponse(results=<{len(self.results)} rows>, status={self.status!r}, "
            f"http_status={self.http_status}, attempts={self.attempts})"
        )
