"""A connected bank, one concern per module:

- `oauth`: single-use OAuth state with its PKCE verifier;
- `callback`: the local server that receives the bank's redirect (Starlette on uvicorn, loopback);
- `tokens`: the token store — encrypted tokens, refresh with rotation, the data client wiring;
- `accounts`: account discovery, upserting accounts and cards by a stable identity;
- `status`: consent warnings and the `bank-pipeline status` text;
- `flow`: connecting a bank end to end (`connect`), built from the above; import it from
  `bank_pipeline.connections.flow` (it is not loaded by importing this package).

The store, discovery and status names are importable from here.
"""

from bank_pipeline.connections.accounts import account_identity, account_key_for, discover_accounts
from bank_pipeline.connections.oauth import OAuthState, OAuthStates
from bank_pipeline.connections.status import consent_warnings, format_status, record_failure, status_summary
from bank_pipeline.connections.tokens import ConnectionStore, open_data_client

__all__ = [
    "ConnectionStore",
    "OAuthState",
    "OAuthStates",
    "account_identity",
    "account_key_for",
    "consent_warnings",
    "discover_accounts",
    "format_status",
    "open_data_client",
    "record_failure",
    "status_summary",
]
