"""TrueLayer: the auth server (link, PKCE, token exchange/refresh) and the Data API v1 client.

Everything here talks HTTP only; storage of tokens lives in `bank_pipeline.connections`.
"""

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
