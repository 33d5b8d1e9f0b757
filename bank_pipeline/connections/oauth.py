"""The OAuth 2 state of connecting a bank: single-use state with its PKCE verifier, stored encrypted
until the callback (the server that receives the redirect is `connections.callback`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

import sqlalchemy as sa

from bank_pipeline.crypto import TokenCipher
from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import oauth_states
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.timestamps import aware
from bank_pipeline.truelayer.auth import generate_pkce

STATE_TTL = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class OAuthState:
    """A started authorisation: send `state` and `code_challenge` in the link; keep the verifier secret."""

    state: str
    code_challenge: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    expires_at: dt.datetime



class OAuthStates:
    """The `oauth_states` table: states this machine issued, each usable once before it expires."""

    def __init__(self, engine: sa.Engine, cipher: TokenCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    def create_state(
        self, redirect_uri: str, providers: str | None = None, ttl: dt.timedelta = STATE_TTL
    ) -> OAuthState:
        """A fresh random state and PKCE pair; the verifier is stored encrypted until the callback."""
        state = secrets.token_urlsafe(32)
        verifier, challenge = generate_pkce()
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(oauth_states).where(oauth_states.c.expires_at < now - dt.timedelta(days=1))
            )
            conn.execute(
                sa.insert(oauth_states).values(
                    state=state,
                    code_verifier_enc=self.cipher.encrypt(verifier),
                    redirect_uri=redirect_uri,
                    providers=providers,
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return OAuthState(state, challenge, verifier, redirect_uri, now + ttl)

    def consume_state(self, state: str | None) -> tuple[str, str]:
        """(code_verifier, redirect_uri) for a callback's state; single use, unexpired, known — or
        BankPipelineError("state mismatch …")."""
        if not state:
            raise BankPipelineError(
                "state mismatch: the bank's redirect carried no state; start again with `bank-pipeline connect`"
            )
        now = utcnow()
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(oauth_states).where(oauth_states.c.state == state).with_for_update()
            ).first()
            if row is None:
                problem = "the redirect's state is not one this machine issued"
            elif row.consumed_at is not None:
                problem = "the redirect's state was already used (a replayed or duplicate redirect)"
            elif aware(row.expires_at) < now:
                problem = "the authorisation took too long and its state expired"
            else:
                problem = None
                conn.execute(
                    sa.update(oauth_states).where(oauth_states.c.state == state).values(consumed_at=now)
                )
        if problem:
            raise BankPipelineError(f"state mismatch: {problem}; start again with `bank-pipeline connect`")
        return self.cipher.decrypt(row.code_verifier_enc), row.redirect_uri
