"""The token store: a connection's encrypted tokens, their refresh with rotation, the data client.

Tokens are stored only Fernet-encrypted (`bank_pipeline.crypto`). `ConnectionStore.access_token`
refreshes five minutes before expiry and persists the ROTATED pair. Concurrent refreshers (threads,
Dagster run processes) are serialised on the connection row — `SELECT … FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` on SQLite — and re-read it after taking the lock, so only one of them spends the
refresh token and the others use the pair it stored. When TrueLayer answers `invalid_grant` /
`access_denied` the connection is marked `authorization_required` and the user is told to run
`bank-pipeline connect`; that is the only consequence.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bank_pipeline.connections.accounts import storable_id
from bank_pipeline.crypto import TokenCipher
from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import connections
from bank_pipeline.display import escaped
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.ingest.text import clean_text, fitted
from bank_pipeline.timestamps import aware, parse_timestamp
from bank_pipeline.truelayer.auth import AuthClient
from bank_pipeline.truelayer.client import DataClient, RetryPolicy
from bank_pipeline.truelayer.errors import AuthorizationRequired
from bank_pipeline.truelayer.models import TokenSet

if TYPE_CHECKING:
    from bank_pipeline.config import Settings

log = logging.getLogger(__name__)

REFRESH_MARGIN = dt.timedelta(minutes=5)
RECONNECT_HINT = "run `bank-pipeline reconnect` to re-authorise it (same accounts and history)"


CONSENT_DAYS = 90  # UK rules: access lasts 90 days after the user's last (re)confirmation


def consent_expiry(me: dict, confirmed_at: dt.datetime) -> dt.datetime:
    """When the consent ends: what `/me` says (`consent_expires_at`), else 90 days after the user
    last (re)confirmed it."""
    return parse_timestamp(me.get("consent_expires_at")) or confirmed_at + dt.timedelta(days=CONSENT_DAYS)


# --- the store ----------------------------------------------------------------------------------


class ConnectionStore:
    """Encrypted tokens and their refresh, for the `connections` table."""

    def __init__(self, engine: sa.Engine, cipher: TokenCipher, auth_client: AuthClient | None = None) -> None:
        self.engine = engine
        self.cipher = cipher
        self.auth_client = auth_client

    @classmethod
    def from_settings(cls, engine: sa.Engine, settings: Settings) -> ConnectionStore:
        auth = AuthClient(settings.auth_url, settings.client_id, settings.client_secret)
        return cls(engine, TokenCipher.from_settings(settings), auth)

    # tokens --------------------------------------------------------------------------------

    def save_connection(self, tokenset: TokenSet, me: dict, conn: sa.Connection | None = None) -> int:
        """Store a freshly authorised connection (tokens encrypted); returns its id. Inside `conn`'s
        transaction when given (connect stores the connection and its accounts together).

        The same credentials connected again (same `credentials_id`) update their existing row.
        """
        provider = me.get("provider") if isinstance(me.get("provider"), dict) else {}
        scopes = me.get("scopes")
        credentials_id = me.get("credentials_id")
        now = utcnow()
        values = dict(
            provider_id=fitted(provider.get("provider_id"), 128),
            provider_name=fitted(provider.get("display_name"), 256),
            credentials_id=storable_id(credentials_id) if isinstance(credentials_id, str) and credentials_id else None,
            access_token_enc=self.cipher.encrypt(tokenset.access_token),
            refresh_token_enc=self.cipher.encrypt(tokenset.refresh_token) if tokenset.refresh_token else None,
            access_expires_at=tokenset.expires_at,
            scopes=clean_text(" ".join(map(str, scopes)) if isinstance(scopes, list) else str(tokenset.scope or scopes or ""))
            or None,
            consent_created_at=parse_timestamp(me.get("consent_created_at")) or now,
            status="active",
            status_message=None,
            updated_at=now,
        )
        values["consent_expires_at"] = consent_expiry(me, values["consent_created_at"])
        if conn is None:
            with write_transaction(self.engine) as own:
                connection_id = self._save(own, values, now)
        else:
            connection_id = self._save(conn, values, now)
        if tokenset.refresh_token is None:
            log.warning(
                "connection %s has no refresh token (was the offline_access scope granted?); it will need "
                "`bank-pipeline connect` again when the access token expires",
                connection_id,
            )
        return connection_id

    @staticmethod
    def _save(conn: sa.Connection, values: dict, now: dt.datetime) -> int:
        existing = None
        if values["credentials_id"]:
            existing = conn.execute(
                sa.select(connections.c.id)
                .where(connections.c.credentials_id == values["credentials_id"])
                .with_for_update()
            ).scalar()
        if existing is not None:
            conn.execute(
                sa.update(connections)
                .where(connections.c.id == existing)
                .values(**values, token_version=connections.c.token_version + 1)
            )
            connection_id = int(existing)
        else:
            connection_id = int(
                conn.execute(
                    sa.insert(connections).values(**values, created_at=now).returning(connections.c.id)
                ).scalar_one()
            )
        return connection_id

    def refresh_token_of(self, connection_id: int) -> str | None:
        """The connection's refresh token (decrypted), for `/connections/extend`; None without one."""
        with self.engine.connect() as conn:
            enc = conn.execute(
                sa.select(connections.c.refresh_token_enc).where(connections.c.id == connection_id)
            ).scalar()
        return self.cipher.decrypt(enc) if enc else None

    def renew_connection(self, connection_id: int, tokenset: TokenSet, me: dict) -> None:
        """Store a renewed consent on the SAME connection row (re-consent): the rotated tokens
        (encrypted), the consent's new dates and credentials; the connection is active again."""
        provider = me.get("provider") if isinstance(me.get("provider"), dict) else {}
        credentials_id = me.get("credentials_id")
        now = utcnow()
        values = dict(
            access_token_enc=self.cipher.encrypt(tokenset.access_token),
            refresh_token_enc=self.cipher.encrypt(tokenset.refresh_token) if tokenset.refresh_token else None,
            access_expires_at=tokenset.expires_at,
            status="active",
            status_message=None,
            updated_at=now,
            token_version=connections.c.token_version + 1,
        )
        if isinstance(credentials_id, str) and credentials_id:  # the bank's text: cleaned like connect's
            values["credentials_id"] = storable_id(credentials_id)
        if provider.get("provider_id"):
            values.update(
                provider_id=fitted(provider["provider_id"], 128), provider_name=fitted(provider.get("display_name"), 256)
            )
        confirmed = parse_timestamp(me.get("consent_status_updated_at") or me.get("consent_created_at"))
        values["consent_created_at"] = confirmed or now
        values["consent_expires_at"] = consent_expiry(me, values["consent_created_at"])
        with write_transaction(self.engine) as conn:
            if values.get("credentials_id"):  # a new consent's credentials seen before: one row
                conn.execute(
                    sa.update(connections)
                    .where(connections.c.id != connection_id, connections.c.credentials_id == values["credentials_id"])
                    .values(credentials_id=None, status="revoked", status_message=f"replaced by connection {connection_id}")
                )
            conn.execute(sa.update(connections).where(connections.c.id == connection_id).values(**values))

    def get_connection(self, connection_id: int) -> dict:
        """The connection row without its encrypted tokens."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(connections).where(connections.c.id == connection_id))
                .mappings()
                .first()
            )
        if row is None:
            raise BankPipelineError(
                f"no connection with id {connection_id}; run `bank-pipeline connect` first"
            )
        return {k: v for k, v in row.items() if not k.endswith("_enc")}

    def mark_authorization_required(self, connection_id: int, reason: str | None = None) -> None:
        """Flag the connection as needing the user again, with a message saying what to do."""
        message = f"the bank needs you to authorise this connection again ({reason or 'consent ended'}): {RECONNECT_HINT}"
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(connections)
                .where(connections.c.id == connection_id)
                .values(status="authorization_required", status_message=message, updated_at=utcnow())
            )
        log.warning("connection %s: %s", connection_id, message)

    def _not_active(self, connection_id: int, row: Any) -> AuthorizationRequired:
        message = row.status_message or f"the connection is {row.status}: {RECONNECT_HINT}"
        return AuthorizationRequired(
            f"connection {connection_id} ({row.provider_name or row.provider_id or 'bank'}) is {row.status}: {message}",
            error="authorization_required",
        )

    def access_token(self, connection_id: int, *, margin: dt.timedelta = REFRESH_MARGIN) -> str:
        """A usable access token, refreshed (and the rotated pair persisted) when it expires within `margin`."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(connections).where(connections.c.id == connection_id)).first()
        if row is None:
            raise BankPipelineError(
                f"no connection with id {connection_id}; run `bank-pipeline connect` first"
            )
        if row.status != "active":
            raise self._not_active(connection_id, row)
        if not self._expiring(row, margin):
            return self.cipher.decrypt(row.access_token_enc)
        return self._refresh(connection_id, margin)

    @staticmethod
    def _expiring(row: Any, margin: dt.timedelta) -> bool:
        expires = aware(row.access_expires_at)
        return row.access_token_enc is None or expires is None or expires - margin <= utcnow()

    def _refresh(self, connection_id: int, margin: dt.timedelta) -> str:
        denied: AuthorizationRequired | None = None
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                sa.select(connections).where(connections.c.id == connection_id).with_for_update()
            ).first()
            if row.status != "active":
                raise self._not_active(connection_id, row)
            if not self._expiring(row, margin):
                # Another process refreshed while we waited for the lock: use its pair.
                log.debug("connection %s: token already refreshed by another worker", connection_id)
                return self.cipher.decrypt(row.access_token_enc)
            if not row.refresh_token_enc:
                denied = AuthorizationRequired(
                    f"connection {connection_id}: the access token expired and there is no refresh token",
                    error="no_refresh_token",
                )
            elif self.auth_client is None:
                raise BankPipelineError("ConnectionStore needs an AuthClient to refresh tokens")
            else:
                try:
                    tokens = self.auth_client.refresh(self.cipher.decrypt(row.refresh_token_enc))
                except AuthorizationRequired as exc:
                    denied = exc
            if denied is None:
                result = conn.execute(
                    sa.update(connections)
                    .where(
                        connections.c.id == connection_id, connections.c.token_version == row.token_version
                    )
                    .values(
                        access_token_enc=self.cipher.encrypt(tokens.access_token),
                        refresh_token_enc=self.cipher.encrypt(tokens.refresh_token)
                        if tokens.refresh_token
                        else row.refresh_token_enc,
                        access_expires_at=tokens.expires_at,
                        token_version=row.token_version + 1,
                        updated_at=utcnow(),
                    )
                )
                if result.rowcount != 1:  # pragma: no cover - the row lock makes this impossible
                    raise BankPipelineError(
                        f"connection {connection_id}: tokens changed during refresh (token_version race)"
                    )
                log.info(
                    "connection %s: access token refreshed (token_version %d)",
                    connection_id,
                    row.token_version + 1,
                )
                return tokens.access_token
            reason = escaped(denied.error or "authorization ended", 80)  # the bank's word, shown later
            message = f"the bank needs you to authorise this connection again ({reason}): {RECONNECT_HINT}"
            conn.execute(
                sa.update(connections)
                .where(connections.c.id == connection_id)
                .values(status="authorization_required", status_message=message, updated_at=utcnow())
            )
        log.warning("connection %s: %s", connection_id, message)
        raise AuthorizationRequired(
            f"connection {connection_id} ({row.provider_name or row.provider_id or 'bank'}): {message}",
            status_code=denied.status_code,
            error=denied.error,
            error_description=denied.error_description,
        )


# --- data client wiring -------------------------------------------------------------------------


def open_data_client(
    engine: sa.Engine,
    settings: Settings,  # or anything with data_url and psu_ip when `store` is given (the Dagster resource)
    connection_id: int,
    *,
    retry: RetryPolicy | None = None,
    store: ConnectionStore | None = None,
    timeout: float = 30.0,
) -> DataClient:
    """A DataClient for one connection: tokens come from (and refreshes go to) the database.

    A data call answered 403 `access_denied` (consent ended) marks the connection
    `authorization_required`.
    """
    store = store or ConnectionStore.from_settings(engine, settings)
    store.get_connection(connection_id)  # fail early, clearly, for an unknown id

    def on_denied(exc: AuthorizationRequired) -> None:
        if exc.status_code == 403 and exc.error == "access_denied":
            store.mark_authorization_required(connection_id, exc.error)

    return DataClient(
        settings.data_url,
        lambda: store.access_token(connection_id),
        psu_ip=settings.psu_ip,
        retry=retry,
        timeout=timeout,
        on_authorization_required=on_denied,
    )


