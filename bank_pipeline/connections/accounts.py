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
from bank_pipeline.truelayer.client import DataClient
from bank_pipeline.truelayer.errors import NotSupported

log = logging.getLogger(__name__)


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
