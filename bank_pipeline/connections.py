"""A connected bank: OAuth state, encrypted tokens with refresh rotation, account discovery, status.

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
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bank_pipeline.crypto import TokenCipher
from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import accounts, connections, oauth_states
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.auth import AuthClient, generate_pkce
from bank_pipeline.truelayer.client import DataClient, RetryPolicy
from bank_pipeline.truelayer.errors import AuthorizationRequired, NotSupported
from bank_pipeline.truelayer.models import TokenSet

if TYPE_CHECKING:
    from bank_pipeline.config import Settings

log = logging.getLogger(__name__)

STATE_TTL = dt.timedelta(minutes=10)
REFRESH_MARGIN = dt.timedelta(minutes=5)
RECONNECT_HINT = "run `bank-pipeline connect` again to re-authorise it"


# --- small helpers ------------------------------------------------------------------------------




def aware(value: dt.datetime | None) -> dt.datetime | None:
    """Timezone-aware UTC (SQLite hands back naive datetimes that were stored as UTC)."""
    if value is None:
        return None
    return (
        value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    )


def parse_timestamp(value: Any) -> dt.datetime | None:
    """An ISO-8601 timestamp from TrueLayer (`…Z`, offsets, with or without fractions) in UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if match:  # Python 3.10 accepts only 3 or 6 fractional digits
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return aware(parsed)


def account_identity(row: dict, kind: str) -> str:
    """The stable identity: iban → sort code + number → card details → TrueLayer's id."""
    number = row.get("account_number") or {}
    iban = re.sub(r"\s+", "", str(number.get("iban") or "")).upper()
    if iban:
        return f"iban:{iban}"
    sort_code = re.sub(r"\D", "", str(number.get("sort_code") or ""))
    account_number = re.sub(r"\s+", "", str(number.get("number") or ""))
    if sort_code and account_number:
        return f"sort:{sort_code}:{account_number}"
    partial = str(row.get("partial_card_number") or "").strip()
    if kind == "card" and partial:
        provider_id = (row.get("provider") or {}).get("provider_id") or ""
        return f"card:{provider_id}:{partial}:{row.get('display_name') or ''}"
    return f"tl:{row['account_id']}"


def account_key_for(identity: str) -> str:
    """The Dagster partition key: "a" + the first 12 hex digits of sha256(identity)."""
    return "a" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class OAuthState:
    """A started authorisation: send `state` and `code_challenge` in the link; keep the verifier secret."""

    state: str
    code_challenge: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    expires_at: dt.datetime


# --- the store ----------------------------------------------------------------------------------


class ConnectionStore:
    """OAuth state, encrypted tokens and their refresh, for the `connections` table."""

    def __init__(self, engine: sa.Engine, cipher: TokenCipher, auth_client: AuthClient | None = None) -> None:
        self.engine = engine
        self.cipher = cipher
        self.auth_client = auth_client

    @classmethod
    def from_settings(cls, engine: sa.Engine, settings: Settings) -> ConnectionStore:
        auth = AuthClient(settings.auth_url, settings.client_id, settings.client_secret)
        return cls(engine, TokenCipher.from_settings(settings), auth)

    # OAuth state ---------------------------------------------------------------------------

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

    # tokens --------------------------------------------------------------------------------

    def save_connection(self, tokenset: TokenSet, me: dict) -> int:
        """Store a freshly authorised connection (tokens encrypted); returns its id.

        The same credentials connected again (same `credentials_id`) update their existing row.
        """
        provider = me.get("provider") or {}
        scopes = me.get("scopes")
        now = utcnow()
        values = dict(
            provider_id=provider.get("provider_id"),
            provider_name=provider.get("display_name"),
            credentials_id=me.get("credentials_id"),
            access_token_enc=self.cipher.encrypt(tokenset.access_token),
            refresh_token_enc=self.cipher.encrypt(tokenset.refresh_token) if tokenset.refresh_token else None,
            access_expires_at=tokenset.expires_at,
            scopes=" ".join(scopes) if isinstance(scopes, list) else (tokenset.scope or scopes),
            consent_created_at=parse_timestamp(me.get("consent_created_at")) or now,
            consent_expires_at=parse_timestamp(me.get("consent_expires_at")),
            status="active",
            status_message=None,
            updated_at=now,
        )
        with write_transaction(self.engine) as conn:
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
        if tokenset.refresh_token is None:
            log.warning(
                "connection %s has no refresh token (was the offline_access scope granted?); it will need "
                "`bank-pipeline connect` again when the access token expires",
                connection_id,
            )
        return connection_id

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
            reason = denied.error or "authorization ended"
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
    settings: Settings,
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


# --- accounts -----------------------------------------------------------------------------------


def discover_accounts(engine: sa.Engine, client: DataClient, connection_id: int) -> list[dict]:
    """Fetch /accounts and /cards (501 tolerated) and upsert them into `accounts` by identity.

    An account whose TrueLayer id changed after re-authentication keeps its row and account_key
    (provider_account_id and connection are updated). Accounts of this connection that the bank no
    longer lists are marked inactive. Returns the upserted `accounts` rows as dicts.
    """
    found: list[tuple[str, dict]] = [("account", row) for row in client.accounts()]
    try:
        found += [("card", row) for row in client.cards()]
    except NotSupported:
        log.info("connection %s: the provider does not support cards (501)", connection_id)
    now = utcnow()
    ids: list[int] = []
    with write_transaction(engine) as conn:
        for kind, item in found:
            if not item.get("account_id"):
                log.warning("connection %s: skipping a %s without account_id", connection_id, kind)
                continue
            identity = account_identity(item, kind)
            values = dict(
                connection_id=connection_id,
                kind=kind,
                provider_account_id=str(item["account_id"]),
                provider_id=(item.get("provider") or {}).get("provider_id"),
                account_type=item.get("account_type") or item.get("card_type"),
                display_name=item.get("display_name"),
                currency=item.get("currency"),
                active=True,
                updated_at=now,
            )
            existing = conn.execute(
                sa.select(accounts.c.id, accounts.c.connection_id, accounts.c.provider_account_id)
                .where(accounts.c.identity == identity)
                .with_for_update()
            ).first()
            if existing is None:
                account_id = conn.execute(
                    sa.insert(accounts)
                    .values(
                        identity=identity, account_key=account_key_for(identity), created_at=now, **values
                    )
                    .returning(accounts.c.id)
                ).scalar_one()
            else:
                account_id = existing.id
                if existing.provider_account_id != values["provider_account_id"]:
                    log.info(
                        "account %s: TrueLayer id changed after re-authentication; keeping its history",
                        account_id,
                    )
                conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(**values))
            ids.append(int(account_id))
        stale = sa.and_(accounts.c.connection_id == connection_id, accounts.c.active.is_(True))
        if ids:
            stale = sa.and_(stale, accounts.c.id.not_in(ids))
        conn.execute(sa.update(accounts).where(stale).values(active=False, updated_at=now))
        # Connections whose accounts all moved here (re-authentication) are superseded.
        moved_from = (
            conn.execute(
                sa.select(connections.c.id).where(
                    connections.c.id != connection_id,
                    connections.c.status != "revoked",
                    ~sa.exists().where(accounts.c.connection_id == connections.c.id),
                    connections.c.provider_id
                    == sa.select(connections.c.provider_id)
                    .where(connections.c.id == connection_id)
                    .scalar_subquery(),
                )
            )
            .scalars()
            .all()
        )
        for old in moved_from:
            conn.execute(
                sa.update(connections)
                .where(connections.c.id == old)
                .values(
                    status="revoked", status_message=f"replaced by connection {connection_id}", updated_at=now
                )
            )
        rows = conn.execute(sa.select(accounts).where(accounts.c.id.in_(ids or [-1]))).mappings().all()
    by_id = {row["id"]: dict(row) for row in rows}
    return [by_id[i] for i in dict.fromkeys(ids)]


# --- status -------------------------------------------------------------------------------------


def consent_warnings(engine: sa.Engine, within_days: int = 7) -> list[str]:
    """One line per connection whose consent ends within `within_days` days, has ended, or needs
    the user again."""
    now = utcnow()
    warnings = []
    with engine.connect() as conn:
        rows = conn.execute(sa.select(connections).order_by(connections.c.id)).all()
    for row in rows:
        name = f"connection {row.id} ({row.provider_name or row.provider_id or 'bank'})"
        expires = aware(row.consent_expires_at)
        if row.status == "authorization_required":
            warnings.append(f"{name} needs authorising again: {RECONNECT_HINT}")
        elif row.status == "active" and expires is not None:
            if expires <= now:
                warnings.append(f"{name}: consent expired on {expires:%Y-%m-%d %H:%M} UTC; {RECONNECT_HINT}")
            elif expires - now <= dt.timedelta(days=within_days):
                days = (expires - now).days
                warnings.append(
                    f"{name}: consent expires on {expires:%Y-%m-%d %H:%M} UTC (in {days} day{'s' if days != 1 else ''}); "
                    f"run `bank-pipeline connect` before then to keep importing"
                )
    return warnings


def status_summary(engine: sa.Engine, within_days: int = 7) -> dict:
    """Connections and their accounts for `bank-pipeline status` — never a token."""
    with engine.connect() as conn:
        conns = (
            conn.execute(
                sa.select(
                    connections.c.id,
                    connections.c.provider_id,
                    connections.c.provider_name,
                    connections.c.status,
                    connections.c.status_message,
                    connections.c.consent_expires_at,
                    connections.c.access_expires_at,
                    connections.c.scopes,
                    connections.c.created_at,
                    connections.c.updated_at,
                ).order_by(connections.c.id)
            )
            .mappings()
            .all()
        )
        accts = (
            conn.execute(
                sa.select(
                    accounts.c.id,
                    accounts.c.connection_id,
                    accounts.c.account_key,
                    accounts.c.kind,
                    accounts.c.display_name,
                    accounts.c.account_type,
                    accounts.c.currency,
                    accounts.c.active,
                    accounts.c.provider_id,
                    accounts.c.last_synced_at,
                    accounts.c.last_failure_at,
                    accounts.c.last_failure_message,
                    accounts.c.last_failure_run_id,
                ).order_by(accounts.c.connection_id, accounts.c.kind, accounts.c.id)
            )
            .mappings()
            .all()
        )
    return {
        "connections": [dict(row) for row in conns],
        "accounts": [dict(row) for row in accts],
        "warnings": consent_warnings(engine, within_days),
    }


def format_status(summary: dict) -> str:
    """Human-readable status text."""
    lines: list[str] = []
    if not summary["connections"]:
        return "no bank connected yet: run `bank-pipeline connect`"

    def when(value: dt.datetime | None) -> str:
        value = aware(value)
        return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"

    for c in summary["connections"]:
        lines.append(
            f"connection {c['id']}: {c['provider_name'] or c['provider_id'] or '?'} — {c['status']}"
            f"; consent expires {when(c['consent_expires_at']) if c['consent_expires_at'] else 'unknown'}"
        )
        if c["status_message"]:
            lines.append(f"    {c['status_message']}")
        for a in (a for a in summary["accounts"] if a["connection_id"] == c["id"]):
            flag = "" if a["active"] else " (no longer listed by the bank)"
            lines.append(
                f"  - {a['display_name'] or '?'} [{a['kind']}, {a['currency'] or '?'}] key {a['account_key']}{flag}; "
                f"last synced {when(a['last_synced_at'])}"
            )
            if a["last_failure_message"]:
                lines.append(f"      last failure {when(a['last_failure_at'])}: {a['last_failure_message']}")
    for warning in summary["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


# --- the connect flow (implemented in bank_pipeline.commands.connect) ---------------------------


def connect(settings: Settings, **kwargs: Any):
    """Connect a bank end to end; see `bank_pipeline.commands.connect.connect`. Returns a ConnectResult."""
    from bank_pipeline.commands.connect import connect as _connect

    return _connect(settings, **kwargs)
