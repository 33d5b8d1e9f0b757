"""TrueLayer: the auth server (link, PKCE, token exchange/refresh) and the Data API v1 client.

Everything here talks HTTP only; storage of tokens lives in `bank_pipeline.connections`.
httpx logs each request's URL at INFO; a filter on its logger redacts OAuth secrets carried in
query strings (the authorization `code` on the redirect, tokens), so logs never hold them.
"""

import logging
import re

from bank_pipeline.truelayer.errors import (
    AuthorizationRequired,
    InvalidDateRange,
    InvalidRequest,
    MalformedResponse,
    NetworkError,
    NotSupported,
    ProviderLimitExceeded,
    RateLimited,
    ServerError,
    TrueLayerError,
)

__all__ = [
    "AuthorizationRequired",
    "InvalidDateRange",
    "InvalidRequest",
    "MalformedResponse",
    "NetworkError",
    "NotSupported",
    "ProviderLimitExceeded",
    "RateLimited",
    "ServerError",
    "TrueLayerError",
]


class RedactSecrets(logging.Filter):
    """Replaces the values of OAuth secrets (`code=…`, `access_token=…`, …) in a log message."""

    PATTERN = re.compile(
        r"((?:code|code_verifier|access_token|refresh_token|client_secret|id_token)=)[^&\s\"'#]+"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call is not ours to fix
            return True
        redacted = self.PATTERN.sub(r"\1<redacted>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_log_redaction() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


install_log_redaction()
