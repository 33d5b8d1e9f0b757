"""Recurring payments: the direct debits and standing orders the bank lists, plus a detector over
the ledger for card subscriptions and other repeats.

Detection, per account and direction:

1. Rows are grouped by payee (the first significant word of the description, after prefixes such
   as `DD`, `SO`, `CARD PAYMENT TO` and references, dates and card numbers are stripped).
2. Within a payee, candidate sets are tried in turn: the whole group when it is paid by direct
   debit or standing order (amounts may vary freely: energy bills), then each exact amount, then
   amounts within `amount_tolerance` of each other (variable card bills).
3. A candidate set fits a cadence (weekly, monthly, quarterly, annual) when its rows fall within
   `tolerance_days` of a regular schedule (one row per period; the schedule's phase is the
   rows' typical day of the month / weekday), with at least `min_occurrences` rows (2 for
   annual), most of the set on the schedule and most periods in its span paid. The cadence
   that places the most rows wins.
4. Rows left over are tried once more grouped by exact amount alone (a standing order described
   two ways).

A bank mandate claims its rows first: a direct debit's payments by the mandate reference the
bank sends with them or by its name in the description; a standing order's by its amount.

States, as of the ledger's last day: `early` (the minimum seen), `mature` (paid regularly for
long enough: 6 weeks or months, 4 quarters, 3 years), `ended` (the next expected payment is
more than the tolerance overdue). A pattern's next date, amount and state follow from its last
payment: a later payment of the same payee and amount (after a gap, off the old phase) joins the
pattern and moves them on, so no pattern is "ended" with a payment after its expected next date.
Each pattern has a stable key, so a pattern the user dismissed stays dismissed when the asset
runs again.

Legs of transfers between the user's own accounts (card repayments included: paired in
`transfers`, or labelled `transfers`) are never recurring payments: they are left out of the
rows. A payee is the bank's mandate name or a word of the description; when the description
names only a number, the merchant name (the bank's, or the enrichment's) or the description.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bank_pipeline.db import utcnow, write_transaction
from bank_pipeline.db.schema import (
    accounts,
    bank_mandates,
    enrichments,
    raw_transactions,
    recurring_payments,
    transactions,
    transfers,
)
from bank_pipeline.errors import BankPipelineError

CADENCES = ("weekly", "monthly", "quarterly", "annual")
MONTHS_PER = {"monthly": 1, "quarterly": 3, "annual": 12}
MATURE_AFTER = {"weekly": 6, "monthly": 6, "quarterly": 4, "annual": 3}
DEFAULT_TOLERANCE_DAYS = 3
WEEKLY_TOLERANCE_DAYS = 2  # a week leaves less room
DEFAULT_AMOUNT_TOLERANCE = 0.25
MIN_OCCURRENCES = 3
MIN_ANNUAL_OCCURRENCES = 2
ON_SCHEDULE_SHARE = 0.75  # of the candidate set's rows, and of the periods in the pattern's span
MANDATE_CATEGORIES = {"DIRECT_DEBIT", "STANDING_ORDER"}


@dataclass(frozen=True)
class Row:
    """A booked ledger row (amount signed, debits negative)."""

    id: Hashable
    account_id: Hashable
    day: dt.date
    amount: Decimal
    currency: str = "GBP"
    description: str = ""
    transaction_category: str | None = None
    reference: str | None = None  # the bank's `meta.provider_reference` (a direct debit's mandate)
    merchant: str | None = None  # the merchant's name (the enrichment's, else the bank's)

    @property
    def direction(self) -> str:
        return "debit" if self.amount < 0 else "credit"


@dataclass(frozen=True)
class Mandate:
    """A direct debit or standing order the bank listed for an account."""

    account_id: Hashable
    kind: str  # direct_debit | standing_order
    key: str
    name: str
    reference: str | None = None
    amounts: tuple[Decimal, ...] = ()  # standing orders: the payment amounts (positive)
    next_date: dt.date | None = None
    status: str | None = None


@dataclass
class Pattern:
    key: str
    account_id: Hashable
    source: str  # direct_debit | standing_order | detected
    payee: str
    direction: str
    cadence: str
    state: str
    rows: list[Row]
    next_date: dt.date
    next_amount: Decimal
    variable_amount: bool
    currency: str

    @property
    def occurrences(self) -> int:
        return len(self.rows)

    @property
    def first_date(self) -> dt.date:
        return self.rows[0].day

    @property
    def last_date(self) -> dt.date:
        return self.rows[-1].day


# --- payee ---------------------------------------------------------------------------------------

_PREFIXES = re.compile(
    r"^(?:CARD PAYMENT TO|DIRECT DEBIT(?: TO)?|FASTER PAYMENT (?:TO|FROM)|BILL PAYMENT(?: TO)?|PAYMENT TO|"
    r"TFR (?:TO|FROM)|(?:TO|FROM) A/C|DD|DDR|SO|STO|BGC|FP|FPO|FPI|CHQ|POS)\s+"
)
_DATE_SUFFIX = re.compile(r"\s+ON\s+\d{1,2}\s+[A-Z]{3}\b.*$")
_NOISE = {"GB", "UK", "INTERNET", "LTD", "PLC", "REF", "DDR", "CD", "THE", "WWW"}


def payee_key(description: str) -> str:
    """The first significant word of a description: what repeated payments to one payee share."""
    text = " ".join((description or "").upper().split())
    for _ in range(2):  # "DD DIRECT DEBIT …"
        text = _PREFIXES.sub("", text)
    text = _DATE_SUFFIX.sub("", text)
    for token in text.split(" "):
        token = token.split("*", 1)[0].strip(".,-/:")
        if token and token not in _NOISE and not any(c.isdigit() for c in token):
            return token
    return text or "?"


# --- schedules -----------------------------------------------------------------------------------


def _add_months(day: dt.date, months: int, dom: int) -> dt.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return dt.date(year, month, min(dom, calendar.monthrange(year, month)[1]))


def _slots(rows: Sequence[Row], cadence: str) -> list[dt.date]:
    """The regular schedule (nominal dates) around `rows` for `cadence`, phased on the rows."""
    first, last = rows[0].day, rows[-1].day
    if cadence == "weekly":
        weekday = Counter(r.day.weekday() for r in rows).most_common(1)[0][0]
        start = first - dt.timedelta(days=7 + (first.weekday() - weekday) % 7)
        return [start + dt.timedelta(days=7 * n) for n in range((last - start).days // 7 + 3)]
    step = MONTHS_PER[cadence]
    dom = int(statistics.median_low([r.day.day for r in rows]))
    if cadence == "monthly":
        phase = 0
    else:  # the month within the quarter / year that most rows fall on
        phase = Counter((r.day.year * 12 + r.day.month - 1) % step for r in rows).most_common(1)[0][0]
    start_index = (first.year * 12 + first.month - 1) - step
    start_index -= (start_index - phase) % step
    base = dt.date(start_index // 12, start_index % 12 + 1, 1)
    out = []
    n = 0
    while True:
        slot = _add_months(base, step * n, dom)
        out.append(slot)
        if slot > last + dt.timedelta(days=31 * step):
            return out
        n += 1


@dataclass
class Fit:
    cadence: str
    rows: list[Row]  # on the schedule, one per period, by date
    slot_index: list[int]
    slots: list[dt.date]
    tolerance: int

    def next_date(self) -> dt.date:
        return self.slots[self.slot_index[-1] + 1]


def fit_cadence(
    rows: Sequence[Row], cadence: str, tolerance_days: int = DEFAULT_TOLERANCE_DAYS
) -> Fit | None:
    """`rows` (sorted by date) on a `cadence` schedule: the rows within the tolerance of a slot,
    the closest one per slot. None when fewer than two rows fit."""
    if len(rows) < 2:
        return None
    tol = min(tolerance_days, WEEKLY_TOLERANCE_DAYS) if cadence == "weekly" else tolerance_days
    slots = _slots(rows, cadence)
    chosen: dict[int, tuple[int, Row]] = {}
    j = 0
    for r in rows:
        while j + 1 < len(slots) and abs((slots[j + 1] - r.day).days) <= abs((slots[j] - r.day).days):
            j += 1
        gap = abs((slots[j] - r.day).days)
        if gap <= tol and (j not in chosen or gap < chosen[j][0]):
            chosen[j] = (gap, r)
    if len(chosen) < 2:
        return None
    order = sorted(chosen)
    return Fit(cadence, [chosen[i][1] for i in order], order, slots, tol)


def _longest_run(indexes: list[int]) -> int:
    best = run = 1
    for a, b in zip(indexes, indexes[1:], strict=False):
        run = run + 1 if b == a + 1 else 1
        best = max(best, run)
    return best


def _min_occurrences(cadence: str, minimum: int) -> int:
    return MIN_ANNUAL_OCCURRENCES if cadence == "annual" else minimum


def best_fit(
    rows: Sequence[Row],
    *,
    tolerance_days: int = DEFAULT_TOLERANCE_DAYS,
    min_occurrences: int = MIN_OCCURRENCES,
    share: float = ON_SCHEDULE_SHARE,
) -> Fit | None:
    """The cadence that puts the most of `rows` on a regular schedule, if any passes the rules."""
    rows = sorted(rows, key=lambda r: (r.day, str(r.id)))
    best = None
    for cadence in CADENCES:
        fit = fit_cadence(rows, cadence, tolerance_days)
        if fit is None or len(fit.rows) < _min_occurrences(cadence, min_occurrences):
            continue
        span = fit.slot_index[-1] - fit.slot_index[0] + 1
        if len(fit.rows) < share * len(rows) or len(fit.rows) < share * span:
            continue
        if _longest_run(fit.slot_index) < _min_occurrences(cadence, min_occurrences):
            continue
        if best is None or len(fit.rows) > len(best.rows):
            best = fit
    return best


# --- patterns ------------------------------------------------------------------------------------


def _after(day: dt.date, cadence: str, dom: int | None = None) -> dt.date:
    """The date one period of `cadence` after `day` (on day-of-month `dom` when given)."""
    if cadence == "weekly":
        return day + dt.timedelta(days=7)
    return _add_months(day, MONTHS_PER[cadence], dom or day.day)


def _state_of(cadence: str, count: int, next_date: dt.date, tolerance: int, asof: dt.date) -> str:
    if asof > next_date + dt.timedelta(days=tolerance):
        return "ended"
    return "mature" if count >= MATURE_AFTER[cadence] else "early"


def _state(fit: Fit, asof: dt.date) -> str:
    return _state_of(fit.cadence, len(fit.rows), fit.next_date(), fit.tolerance, asof)


def _next_amount(rows: Sequence[Row]) -> tuple[Decimal, bool]:
    amounts = [r.amount for r in rows]
    variable = len(set(amounts)) > 1
    if Counter(amounts).most_common(1)[0][1] * 2 >= len(amounts):
        return amounts[-1], variable  # a fixed price (a rise carries on at the new one)
    return Decimal(statistics.median(amounts[-3:])), variable


def _pattern(key: str, source: str, payee: str, fit: Fit, asof: dt.date, next_date: dt.date | None = None) -> Pattern:
    amount, variable = _next_amount(fit.rows)
    first = fit.rows[0]
    return Pattern(
        key=key,
        account_id=first.account_id,
        source=source,
        payee=payee,
        direction=first.direction,
        cadence=fit.cadence,
        state=_state(fit, asof),
        rows=list(fit.rows),
        next_date=next_date or fit.next_date(),
        next_amount=amount,
        variable_amount=variable,
        currency=first.currency,
    )


def _amount_clusters(rows: Sequence[Row], tolerance: float) -> list[list[Row]]:
    ordered = sorted(rows, key=lambda r: abs(r.amount))
    clusters: list[list[Row]] = []
    for r in ordered:
        if clusters and abs(r.amount) <= abs(clusters[-1][0].amount) * Decimal(str(1 + tolerance)):
            clusters[-1].append(r)
        else:
            clusters.append([r])
    return clusters


def _mandate_rows(mandate: Mandate, rows: Iterable[Row]) -> list[Row]:
    if mandate.kind == "standing_order":
        amounts = {-abs(a) for a in mandate.amounts}
        return [r for r in rows if r.amount in amounts]
    name = " ".join(mandate.name.upper().split())
    return [
        r for r in rows
        if (r.reference and r.reference == mandate.key) or (name and name in " ".join(r.description.upper().split()))
    ]


def _mandate_pattern(mandate: Mandate, rows: list[Row], asof: dt.date, tolerance_days: int) -> Pattern | None:
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: (r.day, str(r.id)))
    # The bank says it recurs: any regular schedule will do, however few payments so far.
    fit = best_fit(rows, tolerance_days=tolerance_days, min_occurrences=2)
    if fit is None:
        slots = [*(r.day for r in rows), _after(rows[-1].day, "monthly")]
        fit = Fit("monthly", rows, list(range(len(rows))), slots, tolerance_days)
    key = f"{mandate.account_id}|{mandate.kind}|{mandate.key}"
    pattern = _pattern(key, mandate.kind, mandate.name, fit, asof)
    # Every payment the mandate claims is its own, on the schedule or not: the last one decides.
    follow_last_payment(pattern, [r for r in rows if r.day > pattern.last_date], asof, tolerance_days)
    if mandate.next_date and mandate.next_date > pattern.last_date:
        pattern.next_date = mandate.next_date  # the bank's own word, when it is after the last payment
        pattern.state = _state_of(pattern.cadence, pattern.occurrences, pattern.next_date, tolerance_days, asof)
    return pattern


def follow_last_payment(pattern: Pattern, later: Sequence[Row], asof: dt.date, tolerance_days: int) -> None:
    """Add `later` payments (after the pattern's last one) to it; its next date, amount and state
    then follow from its last payment."""
    if not later:
        return
    pattern.rows = sorted([*pattern.rows, *later], key=lambda r: (r.day, str(r.id)))
    dom = int(statistics.median_low([r.day.day for r in pattern.rows])) if pattern.cadence != "weekly" else None
    pattern.next_date = _after(pattern.last_date, pattern.cadence, dom)
    if pattern.next_date <= pattern.last_date + dt.timedelta(days=tolerance_days):  # dom before the last day
        pattern.next_date = _after(pattern.last_date, pattern.cadence)
    pattern.next_amount, pattern.variable_amount = _next_amount(pattern.rows)
    tolerance = min(tolerance_days, WEEKLY_TOLERANCE_DAYS) if pattern.cadence == "weekly" else tolerance_days
    pattern.state = _state_of(pattern.cadence, pattern.occurrences, pattern.next_date, tolerance, asof)


@dataclass
class DetectOptions:
    tolerance_days: int = DEFAULT_TOLERANCE_DAYS
    amount_tolerance: float = DEFAULT_AMOUNT_TOLERANCE
    min_occurrences: int = MIN_OCCURRENCES


def detect_recurring(
    rows: Iterable[Row],
    mandates: Iterable[Mandate] = (),
    *,
    asof: dt.date | None = None,
    options: DetectOptions | None = None,
) -> list[Pattern]:
    """Every recurring pattern in `rows` (any accounts), mandates first. `asof` (default: the last
    booked day in `rows`) decides which patterns have ended."""
    options = options or DetectOptions()
    rows = sorted(rows, key=lambda r: (r.day, str(r.id)))
    if not rows:
        return []
    asof = asof or rows[-1].day
    by_account: dict[Hashable, list[Row]] = defaultdict(list)
    for r in rows:
        by_account[r.account_id].append(r)
    patterns: list[Pattern] = []
    claimed: set[Hashable] = set()
    for mandate in mandates:
        debits = [r for r in by_account.get(mandate.account_id, ()) if r.amount < 0 and r.id not in claimed]
        pattern = _mandate_pattern(mandate, _mandate_rows(mandate, debits), asof, options.tolerance_days)
        if pattern:
            patterns.append(pattern)
            claimed.update(r.id for r in pattern.rows)
    found: dict[str, Pattern] = {}

    def accept(key: str, payee: str, candidates: list[Row], free: set[Hashable]) -> None:
        fit = best_fit(
            [r for r in candidates if r.id in free],
            tolerance_days=options.tolerance_days,
            min_occurrences=options.min_occurrences,
        )
        if fit is None:
            return
        key = f"{key}|{fit.cadence}"
        if key in found:  # a second amount of the same payee and cadence: one pattern
            merged = sorted(found[key].rows + fit.rows, key=lambda r: (r.day, str(r.id)))
            merged_fit = best_fit(merged, tolerance_days=options.tolerance_days, min_occurrences=options.min_occurrences)
            if merged_fit is None and found[key].occurrences >= len(fit.rows):
                return
            fit = merged_fit or fit
        found[key] = _pattern(key, "detected", payee, fit, asof)
        free.difference_update(r.id for r in fit.rows)

    def extend(pattern_key: str, left: list[Row], free: set[Hashable]) -> None:
        pattern = found[pattern_key]
        typical = abs(Decimal(statistics.median([r.amount for r in pattern.rows])))
        near = [r for r in left if abs(abs(r.amount) - typical) <= typical * Decimal(str(options.amount_tolerance))]
        if not near:
            return
        merged = sorted(pattern.rows + near, key=lambda r: (r.day, str(r.id)))
        fit = best_fit(merged, tolerance_days=options.tolerance_days, min_occurrences=options.min_occurrences)
        if fit is not None and fit.cadence == pattern.cadence and len(fit.rows) > pattern.occurrences:
            found[pattern_key] = _pattern(pattern_key, "detected", pattern.payee, fit, asof)
            free.difference_update(r.id for r in fit.rows)

    for account_id, account_rows in by_account.items():
        groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
        for r in account_rows:
            if r.id not in claimed:
                groups[(r.direction, r.currency, payee_key(r.description))].append(r)
        free = {r.id for group in groups.values() for r in group}
        for (direction, _currency, payee), group in sorted(groups.items()):
            key = f"{account_id}|{direction}|{payee}"
            categories = Counter(r.transaction_category for r in group)
            if categories and categories.most_common(1)[0][0] in MANDATE_CATEGORIES:
                accept(key, payee, group, free)
            by_amount: dict[Decimal, list[Row]] = defaultdict(list)
            for r in group:
                by_amount[r.amount].append(r)
            for amount in sorted(by_amount, key=lambda a: -len(by_amount[a])):
                if len(by_amount[amount]) >= MIN_ANNUAL_OCCURRENCES:
                    accept(key, payee, by_amount[amount], free)
            left = [r for r in group if r.id in free]
            for cluster in _amount_clusters(left, options.amount_tolerance):
                if len(cluster) >= MIN_ANNUAL_OCCURRENCES:
                    accept(key, payee, cluster, free)
            # A price change is the same payment: rows left over near the pattern's amount join it
            # when they keep to its schedule.
            for pattern_key in [k for k in found if k.startswith(key + "|")]:
                extend(pattern_key, [r for r in group if r.id in free], free)
            # A payment of this payee after a pattern's last one (a gap moved its phase) carries
            # the pattern on: its next date and state follow from that last payment.
            for pattern_key in [k for k in found if k.startswith(key + "|")]:
                pattern = found[pattern_key]
                typical = abs(Decimal(statistics.median([r.amount for r in pattern.rows])))
                later = [r for r in group if r.id in free and r.day > pattern.last_date
                         and abs(abs(r.amount) - typical) <= typical * Decimal(str(options.amount_tolerance))]
                follow_last_payment(pattern, later, asof, options.tolerance_days)
                free.difference_update(r.id for r in later)
        # What is left, by exact amount alone: one payment described in more than one way.
        by_amount_only: dict[tuple[str, str, Decimal], list[Row]] = defaultdict(list)
        for r in account_rows:
            if r.id in free:
                by_amount_only[(r.direction, r.currency, r.amount)].append(r)
        for (direction, _currency, amount), group in sorted(by_amount_only.items(), key=lambda kv: str(kv[0])):
            if len(group) >= MIN_ANNUAL_OCCURRENCES:
                payee = Counter(payee_key(r.description) for r in group).most_common(1)[0][0]
                accept(f"{account_id}|{direction}|amount:{abs(amount)}", payee, group, free)
    for pattern in found.values():
        pattern.payee = payee_name(pattern.payee, pattern.rows)
    patterns.extend(found.values())
    return patterns


def payee_name(payee: str, rows: Sequence[Row]) -> str:
    """`payee` unless it names no word (an account number): then the rows' merchant name, else
    their most frequent description."""
    if any(c.isalpha() for c in payee):
        return payee
    named = [r.merchant for r in rows if r.merchant and any(c.isalpha() for c in r.merchant)]
    if named:
        return Counter(named).most_common(1)[0][0]
    return Counter(" ".join(r.description.split()) for r in rows).most_common(1)[0][0] or payee


# --- the database --------------------------------------------------------------------------------


def _meta_reference(payload: str | None) -> str | None:
    if not payload:
        return None
    try:
        meta = json.loads(payload).get("meta")
    except (ValueError, AttributeError):
        return None
    ref = meta.get("provider_reference") if isinstance(meta, dict) else None
    return str(ref) if ref else None


def load_rows(conn: Connection) -> list[Row]:
    """The booked ledger rows, except legs of transfers between own accounts (paired, or labelled
    `transfers`)."""
    t = transactions.c
    leg = sa.exists().where(sa.or_(transfers.c.debit_transaction_id == t.id, transfers.c.credit_transaction_id == t.id))
    result = conn.execute(
        sa.select(t.id, t.account_id, t.booking_date, t.amount, t.currency, t.description,
                  t.transaction_category, raw_transactions.c.payload,
                  sa.func.coalesce(enrichments.c.merchant, t.merchant_name).label("merchant"))
        .select_from(transactions.outerjoin(raw_transactions, raw_transactions.c.id == t.raw_transaction_id)
                     .outerjoin(enrichments, enrichments.c.transaction_id == t.id))
        .where(~leg, sa.func.coalesce(enrichments.c.category, "") != "transfers")
        .order_by(t.booking_date, t.id)
    )
    return [
        Row(r.id, r.account_id, r.booking_date, Decimal(r.amount), r.currency, r.description or "",
            r.transaction_category, _meta_reference(r.payload), r.merchant)
        for r in result
    ]


def load_mandates(conn: Connection) -> list[Mandate]:
    out = []
    for r in conn.execute(sa.select(bank_mandates).order_by(bank_mandates.c.id)).mappings():
        if (r["status"] or "active").lower() not in ("active", ""):
            continue
        amounts = tuple({abs(Decimal(a)) for a in (r["next_payment_amount"], (r["payload"] or {}).get("first_payment_amount"))
                         if a not in (None, "") and Decimal(str(a)) != 0})
        out.append(Mandate(r["account_id"], r["kind"], r["mandate_key"], r["name"], r["reference"],
                           amounts, r["next_payment_date"], r["status"]))
    return out


def _day(value) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _amount(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return abs(Decimal(str(value)))
    except ArithmeticError:
        return None


def mandate_rows(account_id: int, direct_debits: list[dict], standing_orders: list[dict]) -> list[dict]:
    """`bank_mandates` rows for what `/direct_debits` and `/standing_orders` returned."""
    now = utcnow()
    rows: dict[tuple[str, str], dict] = {}
    for dd in direct_debits:
        meta = dd.get("meta") or {}
        name = str(dd.get("name") or "").strip()
        key = str(meta.get("provider_mandate_identification") or dd.get("direct_debit_id") or name)
        if not key or not name:
            continue
        rows[("direct_debit", key)] = dict(
            account_id=account_id, kind="direct_debit", mandate_key=key[:256], name=name, reference=None,
            status=dd.get("status"), frequency=None, currency=dd.get("currency"), next_payment_date=None,
            next_payment_amount=None, previous_payment_date=_day(dd.get("previous_payment_timestamp")),
            previous_payment_amount=_amount(dd.get("previous_payment_amount")), payload=dd, fetched_at=now,
        )
    for so in standing_orders:
        payee = str(so.get("payee") or "").strip()
        reference = str(so.get("reference") or "").strip() or None
        if not payee:
            continue
        key = f"{payee}|{reference or ''}"
        rows[("standing_order", key)] = dict(
            account_id=account_id, kind="standing_order", mandate_key=key[:256], name=payee, reference=reference,
            status=so.get("status"), frequency=so.get("frequency"), currency=so.get("currency"),
            next_payment_date=_day(so.get("next_payment_date")),
            next_payment_amount=_amount(so.get("next_payment_amount")),
            previous_payment_date=None, previous_payment_amount=None, payload=so, fetched_at=now,
        )
    return list(rows.values())


def store_mandates(engine: Engine, account_id: int, direct_debits: list[dict], standing_orders: list[dict]) -> int:
    """Replace the account's listed direct debits and standing orders; returns how many."""
    rows = mandate_rows(account_id, direct_debits, standing_orders)
    with write_transaction(engine) as conn:
        conn.execute(bank_mandates.delete().where(bank_mandates.c.account_id == account_id))
        if rows:
            conn.execute(bank_mandates.insert(), rows)
    return len(rows)


@dataclass
class RecurringStats:
    rows: int = 0
    mandates: int = 0
    patterns: int = 0
    new: int = 0
    removed: int = 0
    dismissed: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, int]:
        meta = {"ledger_rows": self.rows, "mandates": self.mandates, "patterns": self.patterns, "new": self.new,
                "removed": self.removed, "dismissed": self.dismissed}
        meta.update({f"state_{s}": self.by_state.get(s, 0) for s in ("early", "mature", "ended")})
        meta.update({f"source_{s}": self.by_source.get(s, 0) for s in ("direct_debit", "standing_order", "detected")})
        return meta


def update_recurring(
    engine: Engine, *, asof: dt.date | None = None, options: DetectOptions | None = None, run_id: str | None = None
) -> RecurringStats:
    """Detect again and upsert by pattern key: ids and dismissals stay; patterns no longer found
    go, unless dismissed (the dismissal is remembered for when they come back)."""
    stats = RecurringStats()
    with write_transaction(engine) as conn:
        rows = load_rows(conn)
        mandates = load_mandates(conn)
        stats.rows, stats.mandates = len(rows), len(mandates)
        patterns = detect_recurring(rows, mandates, asof=asof, options=options)
        rp = recurring_payments.c
        existing = {r.pattern_key: r for r in conn.execute(sa.select(rp.id, rp.pattern_key, rp.dismissed))}
        now = utcnow()
        for p in patterns:
            values = dict(
                account_id=p.account_id, source=p.source, payee=p.payee[:512], direction=p.direction,
                cadence=p.cadence, state=p.state, occurrences=p.occurrences, first_date=p.first_date,
                last_date=p.last_date, last_amount=p.rows[-1].amount, next_date=p.next_date,
                next_amount=p.next_amount, variable_amount=p.variable_amount, currency=p.currency,
                transaction_ids=[r.id for r in p.rows], run_id=run_id, computed_at=now,
            )
            old = existing.pop(p.key, None)
            if old is None:
                conn.execute(recurring_payments.insert().values(pattern_key=p.key, **values))
                stats.new += 1
            else:
                conn.execute(recurring_payments.update().where(rp.id == old.id).values(**values))
                if old.dismissed:
                    stats.dismissed += 1
                    continue
            stats.patterns += 1
            stats.by_state[p.state] = stats.by_state.get(p.state, 0) + 1
            stats.by_source[p.source] = stats.by_source.get(p.source, 0) + 1
        gone = [r.id for r in existing.values() if not r.dismissed]
        if gone:
            conn.execute(recurring_payments.delete().where(rp.id.in_(gone)))
        stats.removed = len(gone)
    return stats


@dataclass(frozen=True)
class RecurringRow:
    id: int
    account_key: str
    source: str
    payee: str
    direction: str
    cadence: str
    state: str
    occurrences: int
    last_date: dt.date
    last_amount: Decimal
    next_date: dt.date
    next_amount: Decimal
    variable_amount: bool
    currency: str
    dismissed: bool


def list_recurring(engine: Engine, *, include_dismissed: bool = False, include_ended: bool = True) -> list[RecurringRow]:
    rp = recurring_payments.c
    query = (
        sa.select(rp.id, accounts.c.account_key, rp.source, rp.payee, rp.direction, rp.cadence, rp.state,
                  rp.occurrences, rp.last_date, rp.last_amount, rp.next_date, rp.next_amount,
                  rp.variable_amount, rp.currency, rp.dismissed)
        .select_from(recurring_payments.join(accounts, accounts.c.id == rp.account_id))
        .order_by(rp.next_date, rp.id)
    )
    if not include_dismissed:
        query = query.where(rp.dismissed.is_(False))
    if not include_ended:
        query = query.where(rp.state != "ended")
    with engine.connect() as conn:
        return [RecurringRow(**{**r._mapping, "last_amount": Decimal(r.last_amount),
                                "next_amount": Decimal(r.next_amount)}) for r in conn.execute(query)]


def dismiss_recurring(engine: Engine, pattern_id: int) -> str:
    """Dismiss a pattern: it is kept, hidden from `list` and never counted again. Returns its payee."""
    rp = recurring_payments.c
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(rp.payee, rp.dismissed).where(rp.id == pattern_id)).first()
        if row is None:
            raise BankPipelineError(
                f"no recurring payment {pattern_id}; `bank-pipeline recurring list` shows the ids"
            )
        conn.execute(recurring_payments.update().where(rp.id == pattern_id).values(dismissed=True, dismissed_at=utcnow()))
    return row.payee
