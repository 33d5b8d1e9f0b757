"""Account discovery: a connection's accounts and cards, upserted by a stable identity.

The identity (IBAN → sort code + number → card details → TrueLayer's id) outlives TrueLayer's
account ids, which change on re-authentication; the Dagster partition key is derived from it.
"""

from __future__ import annotations

import hashlib
import logging
import re

import sqlalchemy as sa

from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.ingest.text import clean_text, fitted
from bank_pipeline.truelayer.client import DataClient
from bank_pipeline.truelayer.errors import NotSupported

log = logging.getLogger(__name__)

ID_CHARS = 256  # identity, provider_account_id


def storable_id(value: str) -> str:
    """An identifier from the bank as stored: itself when it fits its column and holds nothing
    PostgreSQL refuses (a NUL), else a digest of it — stable, so the same value matches again."""
    if len(value) <= ID_CHARS and clean_text(value) == value:
        return value
    prefix = value.split(":", 1)[0][:16] if ":" in value else "id"
    return f"{prefix}:sha256:{hashlib.sha256(value.encode('utf-8', 'surrogatepass')).hexdigest()}"


def account_identity(row: dict, kind: str) -> str:
    """The stable identity: iban → sort code + number → card details → TrueLayer's id."""
    return storable_id(_identity(row, kind))


def _identity(row: dict, kind: str) -> str:
    number = row.get("account_number") if isinstance(row.get("account_number"), dict) else {}
    iban = re.sub(r"\s+", "", str(number.get("iban") or "")).upper()
    if iban:
        return f"iban:{iban}"
    sort_code = re.sub(r"\D", "", str(number.get("sort_code") or ""))
    account_number = re.sub(r"\s+", "", str(number.get("number") or ""))
    if sort_code and account_number:
        return f"sort:{sort_code}:{account_number}"
    partial = str(row.get("partial_card_number") or "").strip()
    if kind == "card" and partial:
        provider = row.get("provider")
        provider_id = (provider.get("provider_id") if isinstance(provider, dict) else None) or ""
        return f"card:{provider_id}:{partial}:{row.get('display_name') or ''}"
    return f"tl:{row['account_id']}"


def account_key_for(identity: str) -> str:
    """The Dagster partition key: "a" + the first 12 hex digits of sha256(identity)."""
    return "a" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]


def list_accounts(client: DataClient) -> list[tuple[str, dict]]:
    """The bank's /accounts and /cards (501 tolerated) as (kind, row); nothing is stored."""
    found: list[tuple[str, dict]] = [("account", row) for row in client.accounts()]
    try:
        found += [("card", row) for row in client.cards()]
    except NotSupported:
        log.info("the provider does not support cards (501)")
    return found


def discover_accounts(engine: sa.Engine, client: DataClient, connection_id: int) -> list[dict]:
    """Fetch /accounts and /cards and upsert them into `accounts` by identity (`store_accounts`)."""
    found = list_accounts(client)
    with write_transaction(engine) as conn:
        return store_accounts(conn, connection_id, found)


def store_accounts(conn: sa.Connection, connection_id: int, found: list[tuple[str, dict]]) -> list[dict]:
    """Upsert `found` (from `list_accounts`) by identity, inside the caller's write transaction.

    The bank's text is cleaned and cut to its column here, so a NUL or a 300-character name is
    stored the same way on SQLite and PostgreSQL instead of failing the connect on PostgreSQL.
    An account whose TrueLayer id changed after re-authentication keeps its row and account_key
    (provider_account_id and connection are updated). Accounts of this connection that the bank no
    longer lists are marked inactive. Returns the upserted `accounts` rows as dicts.
    """
    now = utcnow()
    ids: list[int] = []
    for kind, item in found:
        provider_account_id = str(item.get("account_id") or "")
        if not provider_account_id or storable_id(provider_account_id) != provider_account_id:
            # Without an id that fits its column the account could not be asked for anyway.
            log.warning("connection %s: skipping a %s without a usable account_id", connection_id, kind)
            continue
        identity = account_identity(item, kind)
        provider = item.get("provider")
        values = dict(
            connection_id=connection_id,
            kind=kind,
            provider_account_id=provider_account_id,
            provider_id=fitted(provider.get("provider_id") if isinstance(provider, dict) else None, 128),
            account_type=fitted(item.get("account_type") or item.get("card_type"), 64),
            display_name=fitted(item.get("display_name"), 256),
            currency=fitted(item.get("currency"), 3),
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
