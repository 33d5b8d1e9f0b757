"""Session ids out of the logs: httpx logs every request's URL at INFO, and Enable Banking's
URLs carry the session id (`/sessions/{id}`) and continuation keys. A filter on httpx's loggers
replaces them, as the TrueLayer package does for OAuth secrets in query strings."""

from __future__ import annotations

import logging
import re

from bank_pipeline.truelayer import RedactSecrets


class RedactSessions(RedactSecrets):
    """Replaces a session id in a `/sessions/{id}` path and a `continuation_key=` value."""

    PATTERN = re.compile(r"(/sessions/|continuation_key=)[^/?&\s\"'#]+")


def install_session_redaction() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSessions) for f in logger.filters):
            logger.addFilter(RedactSessions())
