"""Transfers between the user's own accounts: pairing the two legs, one-to-one.

Matching, most certain first (`match_transfers`, a pure function over `Leg`s):

1. **identifier**: a leg names one of the user's other accounts (its IBAN, sort code + account
   number or account number, in TrueLayer's `meta.counter_party_iban` or in the description);
   of two such candidates, the one closest in time is taken when that is so for both legs;
2. **reference**: two legs in different accounts carry the same bank reference
   (`meta.provider_reference`);
3. **amount**: otherwise, the exact opposite amount in the same currency, the receiving (credit)
   leg booked on or after the sending (debit) leg's day and at most `window_days` later.

Every tier also needs the opposite amount, the same currency and that date window, in two
different accounts; every pair is one-to-one and unique in both directions: when a leg has two
candidates (two £9.99 payments on one day), nothing is paired — a missed transfer is better than
a false one. Card purchases, cash withdrawals, fees and interest are never legs of a transfer,
nor, on amount and dates alone, legs labelled income or refunds; they still count as candidates,
so they make an amount-only match ambiguous.

`update_transfers` runs the matcher over the ledger, records pairs in `transfers`, and gives
paired legs the category `transfers` (own_accounts) unless the user set a category
(`category_overrides`): the enrichment a leg had before is kept on the pair, and put back if
the pair is rejected. A rejected pair (`transfer_rejections`) is never proposed again; a pair
the user linked is never undone by a run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import (
    accounts,
    category_overrides,
    enrichments,
    raw_transactions,
    transactions,
    transfer_rejections,
)
from bank_pipeline.db.schema import transfers as transfers_table
from bank_pipeline.enrich._db import chunks, upsert
from bank_pipeline.errors import BankPipelineError

DEFAULT_WINDOW_DAYS = 3
MAX_WINDOW_DAYS = 31
CATEGORY, SUBCATEGORY, SOURCE = "transfers", "own_accounts", "transfer"
# TrueLayer transaction categories that are never a leg of a transfer between own accounts.
NEVER_TRANSFER = frozenset({"PURCHASE", "ATM", "CASH", "FEE_CHARGE", "INTEREST", "DIVIDEND"})
# Categories (the enrichment's, or the user's) of money from someone else: never a leg either.
NEVER_TRANSFER_CATEGORIES = frozenset({"income", "refunds"})
METHODS = ("identifier", "reference", "amount", "user")
_ENRICHMENT_KEEP = ("category", "subcategory", "merchant", "merchant_type", "essential", "payment_method",
                    "confidence", "source", "provider", "model", "cache_key", "flags", "run_id")

_IBAN = re.compile(r"\b([A-Z]{2}\d{2}(?:\s?[A-Z0-9]){11,30})\b")
_SORT_NUMBER = re.compile(r"(?<!\d)(\d{2})[- ]?(\d{2})[- ]?(\d{2})[ /]+(\d{8})(?!\d)")
_NUMBER = re.compile(r"(?<!\d)(\d{8})(?!\d)")


@dataclass(frozen=True)
class OwnAccount:
    id: Hashable
    iban: str | None = None
    sort_code: str | None = None  # six digits
    number: str | None = None  # eight digits

    @classmethod
    def from_identity(cls, account_id: Hashable, identity: str) -> OwnAccount:
        """From `accounts.identity` ("iban:GB…", "sort:040004:12345678", "card:…")."""
        kind, _, rest = identity.partition(":")
        if kind == "iban":
            iban = rest.replace(" ", "").upper()
            if iban.startswith("GB") and len(iban) == 22:  # GBkk BANK SSSSSS NNNNNNNN
                return cls(account_id, iban, iban[8:14], iban[14:])
            return cls(account_id, iban)
        if kind == "sort":
            sort_code, _, number = rest.partition(":")
            return cls(account_id, None, re.sub(r"\D", "", sort_code), number.strip())
        return cls(account_id)


@dataclass(frozen=True)
class Leg:
    id: Hashable
    account_id: Hashable
    day: dt.date
    amount: Decimal  # signed: the sending leg negative, the receiving leg positive
    currency: str
    description: str = ""
    transaction_category: str | None = None
    counterparty_iban: str | None = None
    reference: str | None = None
    category: str | None = None  # the enrichment's category, when known

    @property
    def can_be_named_leg(self) -> bool:
        """May be a leg when an account identifier or a reference says so."""
        return (self.transaction_category or "").upper() not in NEVER_TRANSFER

    @property
    def can_be_a_leg(self) -> bool:
        """May be a leg on its amount and date alone."""
        return self.can_be_named_leg and self.category not in NEVER_TRANSFER_CATEGORIES


@dataclass(frozen=True)
class Pair:
    debit: Hashable
    credit: Hashable
    method: str


def _norm_iban(text: str | None) -> str:
    return re.sub(r"\s+", "", text or "").upper()


def named_accounts(leg: Leg, own: Iterable[OwnAccount]) -> set[Hashable]:
    """The user's accounts, other than the leg's own, that the leg names (IBAN, sort code +
    number, or account number alone when only one account has it)."""
    own = list(own)
    found: set[Hashable] = set()
    ibans = {_norm_iban(leg.counterparty_iban)} | {_norm_iban(m) for m in _IBAN.findall(leg.description.upper())}
    sort_numbers = {("".join(m[:3]), m[3]) for m in _SORT_NUMBER.findall(leg.description)}
    numbers = set(_NUMBER.findall(leg.description))
    for acct in own:
        if acct.id == leg.account_id:
            continue
        if acct.iban and acct.iban in ibans:
            found.add(acct.id)
        elif acct.sort_code and acct.number and (acct.sort_code, acct.number) in sort_numbers:
            found.add(acct.id)
        elif acct.number and acct.number in numbers and sum(a.number == acct.number for a in own) == 1:
            found.add(acct.id)
    return found


def _fits(debit: Leg, credit: Leg, window_days: int) -> bool:
    return (
        debit.account_id != credit.account_id
        and debit.amount < 0 < credit.amount
        and credit.amount == -debit.amount
        and credit.currency == debit.currency
        and 0 <= (credit.day - debit.day).days <= window_days
    )


def _one_to_one(proposals: set[tuple[Hashable, Hashable]]) -> set[tuple[Hashable, Hashable]]:
    """The proposed (debit, credit) pairs whose debit and credit appear in no other proposal."""
    debits = defaultdict(int)
    credits = defaultdict(int)
    for d, c in proposals:
        debits[d] += 1
        credits[c] += 1
    return {(d, c) for d, c in proposals if debits[d] == 1 and credits[c] == 1}


def _closest(proposals: set[tuple[Hashable, Hashable]], by_id: dict) -> set[tuple[Hashable, Hashable]]:
    """Of the proposals, those that are the closest in time for both their legs (two transfers of
    the same sum between the same accounts a few days apart, each named by its account)."""
    def lag(pair):
        return (by_id[pair[1]].day - by_id[pair[0]].day).days

    best_d: dict[Hashable, int] = {}
    best_c: dict[Hashable, int] = {}
    for pair in proposals:
        best_d[pair[0]] = min(best_d.get(pair[0], lag(pair)), lag(pair))
        best_c[pair[1]] = min(best_c.get(pair[1], lag(pair)), lag(pair))
    return {p for p in proposals if lag(p) == best_d[p[0]] == best_c[p[1]]}


def match_transfers(
    legs: Iterable[Leg],
    own_accounts: Iterable[OwnAccount],
    *,
    window_days: int = DEFAULT_WINDOW_DAYS,
    rejected: Iterable[tuple[Hashable, Hashable]] = (),
) -> list[Pair]:
    """Pairs of legs that are one transfer between two of the user's own accounts (see the
    module's docstring for the rules). `rejected` pairs (debit, credit) are never proposed."""
    own = list(own_accounts)
    refused = set(rejected)
    by_id = {leg.id: leg for leg in legs if leg.amount != 0}
    # Card purchases, cash, fees are never paired, but still make another leg's match ambiguous.
    eligible = {i for i, leg in by_id.items() if leg.can_be_a_leg}
    named_ok = {i for i, leg in by_id.items() if leg.can_be_named_leg}
    debits = [leg for leg in by_id.values() if leg.amount < 0]
    credits = [leg for leg in by_id.values() if leg.amount > 0]
    # Candidates in every tier: opposite amount, same currency, in the window, different accounts.
    credits_by_amount: dict[tuple[Decimal, str], list[Leg]] = defaultdict(list)
    for c in credits:
        credits_by_amount[(c.amount, c.currency)].append(c)
    candidates: dict[Hashable, list[Hashable]] = {}
    for d in debits:
        candidates[d.id] = [
            c.id
            for c in credits_by_amount.get((-d.amount, d.currency), ())
            if _fits(d, c, window_days) and (d.id, c.id) not in refused
        ]
    taken: set[Hashable] = set()
    pairs: list[Pair] = []

    def accept(chosen: set[tuple[Hashable, Hashable]], method: str) -> None:
        for d, c in sorted(chosen, key=lambda p: (by_id[p[0]].day, str(p[0]))):
            taken.update((d, c))
            pairs.append(Pair(d, c, method))

    # 1. a leg names the other account
    named = {leg.id: named_accounts(leg, own) for leg in by_id.values()}
    proposals = set()
    for d_id, cands in candidates.items():
        d = by_id[d_id]
        for c_id in cands:
            c = by_id[c_id]
            if d_id not in named_ok or c_id not in named_ok:
                continue
            if (c.account_id in named[d_id] or d.account_id in named[c_id]) and not (
                named[d_id] - {c.account_id} or named[c_id] - {d.account_id}
            ):
                proposals.add((d_id, c_id))
    accept(_one_to_one(_closest(proposals, by_id)), "identifier")

    # 2. a shared bank reference
    proposals = set()
    for d_id, cands in candidates.items():
        ref = (by_id[d_id].reference or "").strip()
        if d_id in taken or d_id not in named_ok or not ref:
            continue
        for c_id in cands:
            if c_id not in taken and c_id in named_ok and (by_id[c_id].reference or "").strip() == ref:
                proposals.add((d_id, c_id))
    accept(_one_to_one(proposals), "reference")

    # 3. the amount and the dates alone: unique in both directions among the legs still free
    proposals = set()
    for d_id, cands in candidates.items():
        if d_id in taken:
            continue
        free = [c_id for c_id in cands if c_id not in taken]
        proposals.update((d_id, c_id) for c_id in free)
    accept({(d, c) for d, c in _one_to_one(proposals) if d in eligible and c in eligible}, "amount")
    return pairs


# --- the ledger ------------------------------------------------------------------------------


@dataclass
class TransferStats:
    legs: int = 0  # ledger rows considered
    pairs_before: int = 0
    new_pairs: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    recategorised: int = 0  # legs given the category `transfers`
    kept_override: int = 0  # legs of pairs whose category the user set (left alone)
    rejected: int = 0  # pairs the user rejected (never proposed again)
    new_legs: list = field(default_factory=list)  # transaction ids of the new pairs' legs

    def as_metadata(self) -> dict[str, int]:
        out = {
            "legs": self.legs,
            "pairs": self.pairs_before + self.new_pairs,
            "new_pairs": self.new_pairs,
            "recategorised": self.recategorised,
            "kept_override": self.kept_override,
            "rejected_pairs": self.rejected,
        }
        out.update({f"new_by_{m}": self.by_method.get(m, 0) for m in METHODS[:3]})
        return out


def _meta(payload: str | None) -> dict:
    if not payload:
        return {}
    try:
        meta = json.loads(payload).get("meta")
    except (ValueError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def load_legs(conn: Connection) -> tuple[list[Leg], list[OwnAccount]]:
    """Every booked transaction as a `Leg` (with its counterparty IBAN and reference from what
    the bank sent) and every account of the user."""
    own = [
        OwnAccount.from_identity(r.id, r.identity)
        for r in conn.execute(sa.select(accounts.c.id, accounts.c.identity))
    ]
    t = transactions.c
    rows = conn.execute(
        sa.select(t.id, t.account_id, t.booking_date, t.amount, t.currency, t.description,
                  t.transaction_category, raw_transactions.c.payload, enrichments.c.category)
        .select_from(transactions.outerjoin(raw_transactions, raw_transactions.c.id == t.raw_transaction_id)
                     .outerjoin(enrichments, enrichments.c.transaction_id == t.id))
        .order_by(t.id)
    )
    legs = []
    for r in rows:
        meta = _meta(r.payload)
        legs.append(
            Leg(
                r.id, r.account_id, r.booking_date, Decimal(r.amount), r.currency, r.description or "",
                r.transaction_category, str(meta.get("counter_party_iban") or "") or None,
                str(meta.get("provider_reference") or "") or None, r.category,
            )
        )
    return legs, own


def _previous(conn: Connection, ids: list[int]) -> dict[int, dict]:
    out = {}
    for part in chunks(ids):
        for r in conn.execute(sa.select(enrichments).where(enrichments.c.transaction_id.in_(part))).mappings():
            out[r["transaction_id"]] = {k: r[k] for k in _ENRICHMENT_KEEP}
    return out


def _overridden(conn: Connection, ids: list[int]) -> set[int]:
    out: set[int] = set()
    for part in chunks(ids):
        out.update(conn.execute(
            sa.select(category_overrides.c.transaction_id).where(category_overrides.c.transaction_id.in_(part))
        ).scalars())
    return out


def _label(conn: Connection, ids: list[int], run_id: str | None) -> tuple[int, int]:
    """Give these legs the category `transfers` unless the user set theirs; (labelled, kept)."""
    overridden = _overridden(conn, ids)
    current = _previous(conn, ids)
    now = utcnow()
    rows = []
    for txn_id in ids:
        if txn_id in overridden:
            continue
        before = current.get(txn_id) or {}
        if before.get("source") == SOURCE:
            continue
        rows.append({
            "transaction_id": txn_id, "category": CATEGORY, "subcategory": SUBCATEGORY,
            "merchant": before.get("merchant"), "merchant_type": before.get("merchant_type"),
            "essential": False, "payment_method": before.get("payment_method") or "transfer",
            "confidence": 1.0, "source": SOURCE, "provider": "transfers", "model": None,
            "cache_key": None, "flags": None, "run_id": run_id, "updated_at": now,
        })
    upsert(conn, enrichments, rows, ["transaction_id"])
    return len(rows), len(overridden)


def _unlabel(conn: Connection, txn_id: int, previous: dict | None) -> None:
    """Put back the enrichment a leg had before it was paired (none: enrichment redoes it)."""
    row = conn.execute(sa.select(enrichments.c.source).where(enrichments.c.transaction_id == txn_id)).first()
    if row is None or row.source != SOURCE:
        return  # the user (or a re-enrichment) has labelled it since
    if previous and previous.get("source") != SOURCE:
        conn.execute(
            enrichments.update().where(enrichments.c.transaction_id == txn_id)
            .values(**previous, updated_at=utcnow())
        )
    else:
        conn.execute(enrichments.delete().where(enrichments.c.transaction_id == txn_id))


def _json_safe(previous: dict | None) -> dict | None:
    if previous is None:
        return None
    return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in previous.items()}


def _record(conn: Connection, pairs: list[Pair], run_id: str | None) -> int:
    ids = [i for p in pairs for i in (p.debit, p.credit)]
    previous = _previous(conn, ids)
    now = utcnow()
    if pairs:
        conn.execute(transfers_table.insert(), [
            {
                "debit_transaction_id": p.debit, "credit_transaction_id": p.credit, "method": p.method,
                "debit_previous": _json_safe(previous.get(p.debit)),
                "credit_previous": _json_safe(previous.get(p.credit)),
                "run_id": run_id, "created_at": now,
            }
            for p in pairs
        ])
    return len(pairs)


def _check_window(window_days: int) -> None:
    if not 0 <= window_days <= MAX_WINDOW_DAYS:
        raise BankPipelineError(
            f"the transfer window must be from 0 to {MAX_WINDOW_DAYS} days, not {window_days}"
        )


def update_transfers(
    engine: Engine, *, window_days: int = DEFAULT_WINDOW_DAYS, run_id: str | None = None
) -> TransferStats:
    """Pair the ledger's unpaired legs (pairs already recorded stay), record the new pairs and
    label every paired leg `transfers` (the user's categories stand)."""
    _check_window(window_days)
    stats = TransferStats()
    with write_transaction(engine) as conn:
        legs, own = load_legs(conn)
        stats.legs = len(legs)
        existing = conn.execute(sa.select(transfers_table.c.debit_transaction_id,
                                          transfers_table.c.credit_transaction_id)).all()
        stats.pairs_before = len(existing)
        paired = {i for row in existing for i in row}
        rejected = [tuple(r) for r in conn.execute(sa.select(
            transfer_rejections.c.debit_transaction_id, transfer_rejections.c.credit_transaction_id))]
        stats.rejected = len(rejected)
        free = [leg for leg in legs if leg.id not in paired]
        new = match_transfers(free, own, window_days=window_days, rejected=rejected)
        stats.new_pairs = _record(conn, new, run_id)
        for p in new:
            stats.by_method[p.method] = stats.by_method.get(p.method, 0) + 1
            stats.new_legs += [p.debit, p.credit]
        # Every paired leg (a re-enrichment may have relabelled an old one).
        all_ids = sorted(paired | {i for p in new for i in (p.debit, p.credit)})
        stats.recategorised, stats.kept_override = _label(conn, all_ids, run_id)
    return stats


# --- the user's word ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferRow:
    id: int
    method: str
    debit_id: int
    credit_id: int
    debit_day: dt.date
    credit_day: dt.date
    amount: Decimal  # the amount moved (positive)
    currency: str
    from_account: str
    to_account: str
    debit_description: str
    credit_description: str


def list_transfers(engine: Engine, date_from: dt.date | None = None, date_to: dt.date | None = None) -> list[TransferRow]:
    d, c = transactions.alias("d"), transactions.alias("c")
    ad, ac = accounts.alias("ad"), accounts.alias("ac")
    tr = transfers_table.c
    query = (
        sa.select(tr.id, tr.method, d.c.id.label("debit_id"), c.c.id.label("credit_id"),
                  d.c.booking_date.label("debit_day"), c.c.booking_date.label("credit_day"),
                  c.c.amount, c.c.currency, ad.c.display_name.label("from_name"), ad.c.account_key.label("from_key"),
                  ac.c.display_name.label("to_name"), ac.c.account_key.label("to_key"),
                  d.c.description.label("debit_description"), c.c.description.label("credit_description"))
        .select_from(transfers_table.join(d, d.c.id == tr.debit_transaction_id)
                     .join(c, c.c.id == tr.credit_transaction_id)
                     .join(ad, ad.c.id == d.c.account_id).join(ac, ac.c.id == c.c.account_id))
        .order_by(d.c.booking_date, tr.id)
    )
    if date_from is not None:
        query = query.where(d.c.booking_date >= date_from)
    if date_to is not None:
        query = query.where(d.c.booking_date <= date_to)
    with engine.connect() as conn:
        return [
            TransferRow(r.id, r.method, r.debit_id, r.credit_id, r.debit_day, r.credit_day,
                        Decimal(r.amount).quantize(Decimal("0.01")), r.currency,
                        f"{r.from_name or ''} ({r.from_key})".strip(), f"{r.to_name or ''} ({r.to_key})".strip(),
                        r.debit_description, r.credit_description)
            for r in conn.execute(query)
        ]


def _delete_pair(conn: Connection, row) -> None:
    conn.execute(transfers_table.delete().where(transfers_table.c.id == row.id))
    _unlabel(conn, row.debit_transaction_id, row.debit_previous)
    _unlabel(conn, row.credit_transaction_id, row.credit_previous)


def reject_transfer(engine: Engine, transfer_id: int) -> tuple[int, int]:
    """Undo a pair and remember it as not a transfer; returns its (debit, credit) ids."""
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(transfers_table).where(transfers_table.c.id == transfer_id)).first()
        if row is None:
            raise BankPipelineError(f"no transfer with id {transfer_id} (see `bank-pipeline transfers list`)")
        _delete_pair(conn, row)
        upsert(conn, transfer_rejections, [{
            "debit_transaction_id": row.debit_transaction_id, "credit_transaction_id": row.credit_transaction_id,
            "transfer_id": row.id, "rejected_at": utcnow(),
        }], ["debit_transaction_id", "credit_transaction_id"])
    return row.debit_transaction_id, row.credit_transaction_id


def link_transfer(engine: Engine, first_id: int, second_id: int) -> int:
    """The user's pair of two transactions (either order): money out of one account and into
    another. Replaces any pair either was in and any rejection of this pair; returns its id."""
    if first_id == second_id:
        raise BankPipelineError("a transfer links two different transactions")
    with write_transaction(engine) as conn:
        rows = {
            r.id: r for r in conn.execute(
                sa.select(transactions.c.id, transactions.c.account_id, transactions.c.amount)
                .where(transactions.c.id.in_([first_id, second_id]))
            )
        }
        for txn_id in (first_id, second_id):
            if txn_id not in rows:
                raise BankPipelineError(f"no transaction with id {txn_id}")
        a, b = rows[first_id], rows[second_id]
        if a.account_id == b.account_id:
            raise BankPipelineError(f"transactions {first_id} and {second_id} are in the same account: not a transfer")
        if (Decimal(a.amount) < 0) == (Decimal(b.amount) < 0) or Decimal(a.amount) == 0 or Decimal(b.amount) == 0:
            raise BankPipelineError(
                f"a transfer is money out of one account and into another: transactions {first_id} "
                f"({Decimal(a.amount):.2f}) and {second_id} ({Decimal(b.amount):.2f}) are not"
            )
        debit, credit = (a.id, b.id) if Decimal(a.amount) < 0 else (b.id, a.id)
        for old in conn.execute(sa.select(transfers_table).where(sa.or_(
            transfers_table.c.debit_transaction_id.in_([debit, credit]),
            transfers_table.c.credit_transaction_id.in_([debit, credit]),
        ))).all():
            _delete_pair(conn, old)
        conn.execute(transfer_rejections.delete().where(sa.and_(
            transfer_rejections.c.debit_transaction_id == debit,
            transfer_rejections.c.credit_transaction_id == credit,
        )))
        _record(conn, [Pair(debit, credit, "user")], None)
        _label(conn, [debit, credit], None)
        return conn.execute(
            sa.select(transfers_table.c.id).where(transfers_table.c.debit_transaction_id == debit)
        ).scalar_one()
