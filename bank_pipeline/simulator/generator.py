"""Deterministic synthetic bank data: mock users, their accounts and years of UK transactions.

Everything is a pure function of (seed, user): each account-day draws from its own seeded RNG,
so extending the horizon (the simulator's clock moving on) never changes the past, and an
account's rows depend only on the accounts it exchanges money with (`money_groups`), so they are
generated when first read, a group at a time (`LazyAccounts`). Amounts are integer pence, signed
from the account holder's point of view (debits negative); `sent_amount` is what the provider
puts on the wire (credit-card providers differ: see `AccountSpec.card_sign`).
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

from bank_pipeline.simulator import catalogue as cat

MULTI_RE = re.compile(r"^multi-([1-9][0-9]{0,3})$")
# multi-N: N accounts in `_multi`'s layout, whatever N. It is independent triples (a current
# account topping up the next, which pays the card after it), so one account of multi-1000 costs
# its triple, not the user (see `LazyAccounts`).
MAX_MULTI = 1000
FIXED_USERS = ("alice", "bob")


def is_valid_user(user: str) -> bool:
    if user in FIXED_USERS:
        return True
    match = MULTI_RE.match(user or "")
    return bool(match) and 1 <= int(match.group(1)) <= MAX_MULTI


def listed_users() -> list[str]:
    return ["alice", "bob", "multi-3", "multi-10"]


def _h(*parts: object, size: int = 8) -> bytes:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=size).digest()


def _hint(*parts: object) -> int:
    return int.from_bytes(_h(*parts), "big")


def pence_str(p: int) -> str:
    sign = "-" if p < 0 else ""
    p = abs(p)
    return f"{sign}{p // 100}.{p % 100:02d}"


# --------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class AccountSpec:
    key: str  # stable key within the user ("current", "card", "acct3", ...)
    kind: str  # "account" | "card"
    display_name: str
    account_type: str = "TRANSACTION"  # accounts: TRANSACTION/SAVINGS
    currency: str = "GBP"
    sort_code: str | None = None
    number: str | None = None
    iban: str | None = None
    swift_bic: str | None = None
    partial_card_number: str | None = None
    card_network: str | None = None
    card_type: str | None = None
    name_on_card: str | None = None
    card_sign: str = "positive"  # cards: "positive" (purchases > 0) | "signed"
    opening_balance: int = 0  # pence (cards: amount owed)
    overdraft: int = 0
    credit_limit: int = 0
    # generation profile
    salary: tuple[str, int, int] | None = None  # (employer, pence, payday)
    rent: tuple[str, int] | None = None  # standing-order rent (payee, pence)
    billers: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    spend_rate: float = 0.0  # mean card purchases per day
    pool: str = "debit"  # "debit" | "credit"
    pays_card: str | None = None  # key of the card this account pays monthly
    saves_to: tuple[str, int] | None = None  # (savings key, pence) standing order on the 28th
    sends_to: str | None = None  # key of an own current account it moves money to (multi-N users)
    interest_rate: float = 0.0  # savings: annual rate
    ts_styles: tuple[int, ...] = (1, 1, 1, 0, 2, 3)  # weights for timestamp styles 0..3
    desc_style: int = 0


@dataclass(frozen=True)
class UserSpec:
    user: str
    full_name: str
    provider_id: str
    provider_name: str
    bank_code: str
    bic: str
    accounts: tuple[AccountSpec, ...]
    town: str
    card_payment_name: str
    email: str


def _iban(bank_code: str, sort_code: str, number: str) -> str:
    bban = bank_code + sort_code.replace("-", "") + number
    digits = "".join(str(int(c, 36)) for c in bban + "GB00")
    check = 98 - int(digits) % 97
    return f"GB{check:02d}{bban}"


def _account_numbers(seed: int, user: str, key: str, prefix: str) -> tuple[str, str]:
    v = _hint(seed, user, key, "numbers")
    sort_code = f"{prefix}-{v % 100:02d}-{(v // 100) % 100:02d}"  # prefix: first two digits
    number = f"{(v // 10_000) % 100_000_000:08d}"
    return sort_code, number


def build_user(seed: int, user: str) -> UserSpec:
    if user == "alice":
        return _alice(seed)
    if user == "bob":
        return _bob(seed)
    match = MULTI_RE.match(user)
    if not match or not is_valid_user(user):
        raise KeyError(user)
    return _multi(seed, user, int(match.group(1)))


def _bank_account(seed, user, key, bank_code, bic, prefix, **kw) -> AccountSpec:
    sort_code, number = _account_numbers(seed, user, key, prefix)
    return AccountSpec(
        key=key,
        kind="account",
        sort_code=sort_code,
        number=number,
        iban=_iban(bank_code, sort_code, number),
        swift_bic=bic,
        **kw,
    )


def _card(seed, user, key, **kw) -> AccountSpec:
    last4 = f"{_hint(seed, user, key, 'card') % 10_000:04d}"
    return AccountSpec(key=key, kind="card", partial_card_number=last4, card_type="CREDIT", **kw)


def _alice(seed: int) -> UserSpec:
    u = "alice"
    savings = _bank_account(
        seed,
        u,
        "savings",
        "LOYD",
        "LOYDGB2L",
        "30",
        display_name="Easy Saver",
        account_type="SAVINGS",
        opening_balance=520_000,
        interest_rate=0.035,
        ts_styles=(3, 1, 0, 0),
    )
    current = _bank_account(
        seed,
        u,
        "current",
        "LOYD",
        "LOYDGB2L",
        "30",
        display_name="Club Lloyds",
        account_type="TRANSACTION",
        opening_balance=184_217,
        overdraft=100_000,
        salary=("ACME LTD", 418_000, 25),
        rent=("FOXTONS LTD", 125_000),
        billers=("ctax", "octopus", "thameswater", "bt", "ee", "tvlicence", "aviva"),
        subscriptions=("prime", "guardian"),
        spend_rate=1.7,
        pool="debit",
        pays_card="card",
        saves_to=("savings", 30_000),
        ts_styles=(5, 2, 2, 1),
        desc_style=1,
    )
    card = _card(
        seed,
        u,
        "card",
        display_name="Lloyds Platinum Mastercard",
        card_network="MASTERCARD",
        name_on_card="MS A HARTLEY",
        card_sign="positive",
        credit_limit=500_000,
        subscriptions=("netflix", "spotify"),
        spend_rate=0.6,
        pool="credit",
        ts_styles=(1, 1, 4, 2),
    )
    return UserSpec(
        u,
        "Alice Hartley",
        "ob-lloyds",
        "Lloyds Bank",
        "LOYD",
        "LOYDGB2L",
        (current, savings, card),
        "LONDON",
        "LLOYDS BANK CREDIT CARD PAYMENT",
        "alice@example.org",
    )


def _bob(seed: int) -> UserSpec:
    u = "bob"
    current = _bank_account(
        seed,
        u,
        "current",
        "BARC",
        "BARCGB22",
        "20",
        display_name="Barclays Bank Account",
        account_type="TRANSACTION",
        opening_balance=92_350,
        overdraft=50_000,
        salary=("GLOBEX UK LTD", 418_000, 28),
        billers=("mortgage", "ctax_leeds", "britishgas", "virgin", "vodafone", "directline", "puregym"),
        subscriptions=("disney", "ms365"),
        spend_rate=1.5,
        pool="debit",
        pays_card="card",
        ts_styles=(1, 4, 1, 3),
        desc_style=3,
    )
    card = _card(
        seed,
        u,
        "card",
        display_name="Barclaycard Avios Plus",
        card_network="VISA",
        name_on_card="MR B OKAFOR",
        card_sign="signed",
        credit_limit=750_000,
        subscriptions=("netflix", "spotify"),
        spend_rate=0.7,
        pool="credit",
        ts_styles=(2, 2, 3, 1),
    )
    return UserSpec(
        u,
        "Bob Okafor",
        "ob-barclays",
        "Barclays",
        "BARC",
        "BARCGB22",
        (current, card),
        "LEEDS",
        "BARCLAYCARD PAYMENT",
        "bob@example.org",
    )


def _multi(seed: int, user: str, n: int) -> UserSpec:
    accounts: list[AccountSpec] = []
    biller_keys = [k for k in cat.BILLERS if k not in ("nursery", "mortgage", "ctax", "ctax_leeds")]
    for i in range(n):
        key = f"acct{i + 1}"
        if i % 3 == 2:
            accounts.append(
                _card(
                    seed,
                    user,
                    key,
                    display_name=f"Mock Credit Card {i + 1}",
                    card_network="VISA",
                    name_on_card="M USER",
                    card_sign="positive",
                    credit_limit=400_000,
                    subscriptions=(("netflix",) if i % 2 else ("spotify",)),
                    spend_rate=0.5,
                    pool="credit",
                    ts_styles=(1, 1, 2, 1),
                )
            )
            # the current account before it pays it
            prev = accounts[i - 1]
            accounts[i - 1] = AccountSpec(**{**prev.__dict__, "pays_card": key})
            continue
        billers = tuple(biller_keys[(i + j) % len(biller_keys)] for j in range(3)) + ("ctax",)
        employer = cat.EMPLOYERS[i % len(cat.EMPLOYERS)]
        accounts.append(
            _bank_account(
                seed,
                user,
                key,
                "MOCK",
                "MOCKGB21",
                "04",
                display_name=f"Mock Current Account {i + 1}",
                account_type="TRANSACTION",
                opening_balance=100_000 + (i * 7_919) % 200_000,
                overdraft=50_000,
                salary=(employer, 330_000 + (i * 13_717) % 150_000, 25 + i % 4),
                rent=(f"{cat.PEOPLE[i % len(cat.PEOPLE)]} LANDLORD", 90_000 + (i * 5_003) % 60_000),
                billers=billers,
                spend_rate=1.5,
                pool="debit",
                ts_styles=(2, 1, 2, 1),
                desc_style=i % 4,
            )
        )
    # Each current account that pays no card tops up the next current account (own transfers).
    current = [i for i, a in enumerate(accounts) if a.kind == "account"]
    for here, there in zip(current, current[1:], strict=False):
        if not accounts[here].pays_card:
            accounts[here] = AccountSpec(**{**accounts[here].__dict__, "sends_to": accounts[there].key})
    return UserSpec(
        user,
        f"Multi User {n}",
        "mock",
        "Mock Bank",
        "MOCK",
        "MOCKGB21",
        tuple(accounts),
        cat.TOWNS[n % len(cat.TOWNS)],
        "MOCK BANK CARD PAYMENT",
        f"{user}@example.org",
    )


# --------------------------------------------------------------------------------------------
# Transactions


@dataclass(slots=True)
class Txn:
    uid: str
    txn_day: int  # ordinal of the economic event (card: purchase date)
    booking_day: int  # ordinal of the booked timestamp's local date
    available_day: int  # first simulator "today" on which the booked row is visible
    minute: int  # local minute of day, for posting order
    amount: int  # pence, signed from the holder's view (debits negative)
    sent_amount: int  # pence as the provider sends it
    description: str
    merchant_name: str | None
    tl_category: str
    classification: tuple[str, ...]
    true_category: str
    true_subcategory: str
    meta: dict | None
    ts_style: int
    ms: int
    npti: str | None = None
    pti: str | None = None
    timestamp: str = ""
    pending_from: int | None = None
    pending_amount: int | None = None  # sent convention
    pending_timestamp: str | None = None
    pending_pti: str | None = None
    running_balance: int | None = None
    static: dict | None = None
    pending_static: dict | None = None
    # Ground truth beyond the category: both legs of a transfer between the user's own accounts
    # carry the sending leg's uid; rows planted to fool transfer matching say why.
    transfer_pair: str | None = None
    planted: str | None = None
    # Rows of a recurring payment: "dd:<biller>" (a direct debit the account lists), "so:rent" /
    # "so:savings" (standing orders it lists) or "card:<merchant>" (a card subscription).
    recurring: str | None = None

    @property
    def transaction_type(self) -> str:
        return "DEBIT" if self.amount < 0 else "CREDIT"


@dataclass
class AccountData:
    spec: AccountSpec
    txns: list[Txn] = field(default_factory=list)  # posting order
    booking_days: list[int] = field(default_factory=list)

    def booked(self, day_from: int, day_to: int, today: int) -> list[Txn]:
        lo = bisect_left(self.booking_days, day_from)
        hi = bisect_right(self.booking_days, day_to)
        return [t for t in self.txns[lo:hi] if t.available_day <= today]

    def pending(self, today: int) -> list[Txn]:
        lo = bisect_left(self.booking_days, today - 4)
        hi = bisect_right(self.booking_days, today + 4)
        return [
            t
            for t in self.txns[lo:hi]
            if t.pending_from is not None and t.pending_from <= today < t.available_day
        ]

    def balance(self, today: int) -> int:
        total = self.spec.opening_balance if self.spec.kind == "account" else -self.spec.opening_balance
        for t in self.txns:
            if t.available_day <= today:
                total += t.amount
        return total


@dataclass
class UserData:
    spec: UserSpec
    start_day: int
    end_day: int
    accounts: LazyAccounts  # reading an account may generate its rows


def _bst_bounds(year: int) -> tuple[int, int]:
    def last_sunday(month: int) -> int:
        d = date(year, month, 31)
        return (d - timedelta(days=(d.weekday() + 1) % 7)).toordinal()

    return last_sunday(3), last_sunday(10)


class _Days:
    """Per-day facts, computed once per generation."""

    def __init__(self, start: int, end: int):
        self.start = start
        self.info: dict[int, tuple] = {}
        bounds: dict[int, tuple[int, int]] = {}
        for day in range(start, end + 1):
            d = date.fromordinal(day)
            if d.year not in bounds:
                bounds[d.year] = _bst_bounds(d.year)
            b0, b1 = bounds[d.year]
            # (date, iso, weekday, bst-all-day, transition (+1 start / -1 end / 0))
            trans = 1 if day == b0 else (-1 if day == b1 else 0)
            self.info[day] = (d, d.isoformat(), d.weekday(), b0 < day < b1, trans)

    def offset_minutes(self, day: int, minute: int) -> int:
        _, _, _, bst, trans = self.info[day]
        if trans == 1:
            return 60 if minute >= 120 else 0
        if trans == -1:
            return 60 if minute < 120 else 0
        return 60 if bst else 0

    def timestamp(self, day: int, minute: int, style: int, ms: int) -> str:
        """Styles: 0 midnight Z, 1 midnight +00:00, 2 local time with offset, 3 UTC Z with millis.

        The date part of the string is always the bank's local booking date.
        """
        iso = self.info[day][1]
        if style == 0:
            return f"{iso}T00:00:00Z"
        if style == 1:
            return f"{iso}T00:00:00+00:00"
        off = self.offset_minutes(day, minute)
        if style == 3 and minute - off >= 0:
            um = minute - off
            return f"{iso}T{um // 60:02d}:{um % 60:02d}:{ms % 60:02d}.{ms:03d}Z"
        frac = f".{ms:03d}" if ms % 3 == 0 else ""
        return f"{iso}T{minute // 60:02d}:{minute % 60:02d}:{ms % 60:02d}{frac}+{off // 60:02d}:00"


def biller_mandate(seed: int, user: str, biller: str) -> str:
    """The direct debit's mandate reference: in every payment's meta and in `/direct_debits`."""
    return f"{_hint(seed, user, biller) % 10_000_000:07d}"


def _shift_weekend(day: int, wd: int, back: bool) -> int:
    if wd == 5:
        return day - 1 if back else day + 2
    if wd == 6:
        return day - 2 if back else day + 1
    return day


class _Gen:
    def __init__(self, seed: int, spec: UserSpec, start: int, end: int, days: _Days | None = None):
        self.seed = seed
        self.spec = spec
        self.start = start
        self.end = end
        self.days = days or _Days(start - 40, end + 40)
        self.out: dict[str, list[Txn]] = {a.key: [] for a in spec.accounts}
        self.counters: dict[str, int] = {a.key: 0 for a in spec.accounts}
        # Rows added after the original generator (own transfers, planted payments) number apart,
        # so every earlier row keeps its uid and ids.
        self.extra_counters: dict[str, int] = {a.key: 0 for a in spec.accounts}
        self.by_key = {a.key: a for a in spec.accounts}
        self.card_spend: dict[tuple[str, int, int], int] = {}
        self.refunds: dict[str, list[tuple[int, cat.Merchant, int]]] = {a.key: [] for a in spec.accounts}

    # ---- helpers
    def rng(self, key: str, day: int, salt: str = "") -> random.Random:
        return random.Random(_hint(self.seed, self.spec.user, key, day, salt))

    def add(
        self,
        acct: AccountSpec,
        rng: random.Random,
        day: int,
        minute: int,
        amount: int,
        description: str,
        tl_category: str,
        classification: tuple[str, ...],
        true_cat: str,
        true_sub: str,
        merchant_name: str | None = None,
        meta: dict | None = None,
        card_purchase: bool = False,
        pending_amount: int | None = None,
        uid_tag: str = "",
    ) -> Txn:
        counters = self.extra_counters if uid_tag else self.counters
        n = counters[acct.key]
        counters[acct.key] = n + 1
        uid = f"{self.spec.user}:{acct.key}:{uid_tag}{n}"
        booking = available = day
        pending_from = None
        if card_purchase:
            r = rng.random()
            lag = 0 if r < 0.25 else (1 if r < 0.65 else (2 if r < 0.9 else 3))
            available = day + lag
            if lag:
                pending_from = day
                if rng.random() < 0.2:
                    booking = available  # booked on the posting date rather than the purchase date
        elif rng.random() < 0.05:
            available = day + rng.randint(1, 3)  # late posting
        sent = amount
        if acct.kind == "card" and acct.card_sign == "positive":
            sent = -amount
        if rng.random() < 0.08:
            classification = ()
        if rng.random() < 0.04:
            tl_category = rng.choice(("DEBIT", "UNKNOWN", "OTHER")) if amount < 0 else "OTHER"
        styles = acct.ts_styles
        style = rng.choices((0, 1, 2, 3), weights=styles)[0]
        if booking != day:
            style = rng.choice((0, 1))
        txn = Txn(
            uid=uid,
            txn_day=day,
            booking_day=booking,
            available_day=available,
            minute=minute,
            amount=amount,
            sent_amount=sent,
            description=description,
            merchant_name=merchant_name,
            tl_category=tl_category,
            classification=classification,
            true_category=true_cat,
            true_subcategory=true_sub,
            meta=meta,
            ts_style=style,
            ms=rng.randrange(1000),
        )
        r = rng.random()
        hid = _h(self.seed, uid, size=10).hex()
        if r >= 0.10:
            txn.npti = "txn-" + hid[:19]
        if r >= 0.04:
            txn.pti = hid[4:20].upper() if acct.kind == "account" else f"{hid[:8]}-{hid[8:12]}"
        if pending_from is not None:
            txn.pending_from = pending_from
            pa = amount if pending_amount is None else pending_amount
            txn.pending_amount = -pa if (acct.kind == "card" and acct.card_sign == "positive") else pa
            txn.pending_pti = "PND" + hid[-12:].upper()
        self.out[acct.key].append(txn)
        return txn

    def clone(self, acct: AccountSpec, txn: Txn) -> Txn:
        """An identical twin (same day, amount, description, timestamp) with its own ids."""
        n = self.counters[acct.key]
        self.counters[acct.key] = n + 1
        uid = f"{self.spec.user}:{acct.key}:{n}"
        hid = _h(self.seed, uid, size=10).hex()
        twin = Txn(**{f: getattr(txn, f) for f in Txn.__slots__ if f not in ("static", "pending_static")})
        twin.uid = uid
        twin.npti = "txn-" + hid[:19] if txn.npti else None
        twin.pti = (
            (hid[4:20].upper() if acct.kind == "account" else f"{hid[:8]}-{hid[8:12]}") if txn.pti else None
        )
        twin.pending_pti = "PND" + hid[-12:].upper() if txn.pending_pti else None
        self.out[acct.key].append(twin)
        return twin

    # ---- descriptions
    def card_desc(self, acct: AccountSpec, m: cat.Merchant, rng: random.Random, day: int) -> str:
        name = rng.choice(m.names)
        if m.ref_suffix:
            name += "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(9))
        d = self.days.info[day][0]
        town = "INTERNET" if m.online else (self.spec.town if rng.random() < 0.8 else rng.choice(cat.TOWNS))
        style = acct.desc_style if rng.random() < 0.7 else rng.randrange(4)
        if acct.kind == "card":
            style = 0 if style in (1, 3) else style
        if style == 1:
            return f"CARD PAYMENT TO {name} ON {d.day:02d} {cat.MONTHS[d.month - 1]}"
        if style == 2:
            return f"{name} {town} GB"
        if style == 3:
            card4 = f"{_hint(self.seed, self.spec.user, acct.key, 'debit') % 10_000:04d}"
            return f"{name} CD {card4} {d.day:02d}{cat.MONTHS[d.month - 1]}{d.year % 100:02d}"
        return name

    def card_meta(self, acct: AccountSpec, m: cat.Merchant | None) -> dict | None:
        if acct.kind == "card":
            return {
                "cardNumber": f"************{acct.partial_card_number}",
                "location": "INTERNET" if (m is None or m.online) else self.spec.town,
            }
        return {"provider_transaction_category": "DEB"}

    # ---- generation
    def purchase(self, acct: AccountSpec, m: cat.Merchant, rng: random.Random, day: int) -> Txn:
        if m.prices:
            amount = rng.choice(m.prices)
        else:
            amount = int(rng.triangular(m.low, m.high, m.low + (m.high - m.low) * 0.1))
        h0, h1 = m.hours
        minute = min(1439, rng.randint(h0 * 60, h1 * 60 + 59))
        desc = self.card_desc(acct, m, rng, day)
        pending_amount = None
        if m.tip and rng.random() < 0.5:
            pending_amount = -amount
            amount = round(amount * 1.125)
        mname = m.merchant_name if (m.merchant_name and rng.random() < 0.9) else None
        meta = self.card_meta(acct, m)
        first = self.add(
            acct,
            rng,
            day,
            minute,
            -amount,
            desc,
            "PURCHASE",
            m.classification,
            m.category,
            m.subcategory,
            merchant_name=mname,
            meta=meta,
            card_purchase=True,
            pending_amount=pending_amount,
        )
        if m.prices and m.category == "dining" and rng.random() < 0.05:
            # two identical coffees on the same day, same everything
            self.clone(acct, first)
        if acct.kind == "card":
            d = self.days.info[day][0]
            k = (acct.key, d.year, d.month)
            self.card_spend[k] = self.card_spend.get(k, 0) + amount
        if m.refundable and rng.random() < 0.04:
            self.refunds[acct.key].append(
                (day + rng.randint(3, 12), m, amount if rng.random() < 0.8 else amount // 2)
            )
        if m.category == "travel" and acct.kind == "card" and rng.random() < 0.3:
            fee = max(50, amount * 3 // 100)
            self.add(
                acct,
                rng,
                day,
                min(1439, minute + 1),
                -fee,
                "NON-STERLING TRANSACTION FEE",
                "FEE_CHARGE",
                ("Fees & Charges", "Service Fee"),
                "fees",
                "fx_fees",
                meta=self.card_meta(acct, None),
            )
            d = self.days.info[day][0]
            k = (acct.key, d.year, d.month)
            self.card_spend[k] = self.card_spend.get(k, 0) + fee
        return first

    def pools(self, acct: AccountSpec) -> tuple[list[cat.Merchant], list[float]]:
        if acct.pool == "credit":
            groups = (
                (cat.SHOPPING, 4),
                (cat.EATING, 3),
                (cat.TRAVEL, 0.25),
                (cat.GROCERIES, 1.5),
                (cat.TRANSPORT, 1),
            )
        else:
            groups = (
                (cat.GROCERIES, 4),
                (cat.COFFEE, 4.5),
                (cat.EATING, 1.2),
                (cat.TRANSPORT, 2.5),
                (cat.SHOPPING, 0.8),
            )
        merchants: list[cat.Merchant] = []
        weights: list[float] = []
        for group, w in groups:
            for m in group:
                merchants.append(m)
                weights.append(w / len(group))
        return merchants, weights

    def run(self, keys: frozenset[str] | None = None) -> dict[str, list[Txn]]:
        """Rows of every account, or only complete for `keys` (one of `money_groups`' groups):
        the same steps in the same order restricted to them, so each row keeps its uid."""
        accounts = [a for a in self.spec.accounts if keys is None or a.key in keys]
        cards = [a for a in accounts if a.kind == "card"]
        others = [a for a in accounts if a.kind == "account"]
        for acct in cards + [a for a in others if a.account_type == "TRANSACTION"]:
            self.run_spending(acct)
        for acct in others:
            if acct.account_type == "SAVINGS":
                self.run_savings(acct)
        for acct in others:
            if acct.sends_to:
                self.run_own_transfers(acct, self.by_key[acct.sends_to])
        # planted rows touch the user's first current accounts but read nothing of theirs
        current = [a for a in self.spec.accounts if a.kind == "account" and a.account_type == "TRANSACTION"]
        if self.spec.user.startswith("multi-") and len(current) >= 2:
            self.run_planted(current)
        return self.out

    def run_own_transfers(self, acct: AccountSpec, to: AccountSpec) -> None:
        """Money moved from `acct` to the user's own account `to`: a monthly top-up on the 3rd
        (pounds and pence) and occasional round sums; the receiving leg lands 0-3 days later.
        Some descriptions name the other account, some carry a shared reference, some neither."""
        for day in range(self.start, self.end + 1):
            d = self.days.info[day][0]
            rng = self.rng(acct.key, day, "own-transfer")
            if d.day == 3:
                amount = rng.randint(5_000, 60_000)
            elif rng.random() < 0.02:
                amount = rng.choice((5_000, 10_000, 15_000, 20_000, 25_000, 50_000))
            else:
                continue
            lag = rng.choices((0, 1, 2, 3), weights=(5, 3, 1, 1))[0]
            out_text = rng.choice(cat.OWN_TRANSFER_OUT)
            in_text = rng.choice(cat.OWN_TRANSFER_IN)
            meta_out: dict = {"provider_transaction_category": "FPO"}
            meta_in: dict = {"provider_transaction_category": "FPI"}
            style = rng.random()
            if style < 0.3:
                meta_out["counter_party_iban"] = to.iban
            elif style < 0.5:
                meta_out["provider_reference"] = meta_in["provider_reference"] = f"OWN{_hint(acct.key, day) % 10**8:08d}"
            minute = rng.randint(420, 1320)
            out_leg = self.add(
                acct, rng, day, minute, -amount,
                out_text.format(sort=to.sort_code, number=to.number, iban=to.iban),
                "TRANSFER", (), "transfers", "own_accounts", meta=meta_out, uid_tag="t",
            )
            in_leg = self.add(
                to, self.rng(to.key, day, "own-transfer-in"), day + lag, minute if not lag else 30, amount,
                in_text.format(sort=acct.sort_code, number=acct.number, iban=acct.iban),
                "TRANSFER", (), "transfers", "own_accounts", meta=meta_in, uid_tag="t",
            )
            out_leg.transfer_pair = in_leg.transfer_pair = out_leg.uid

    def run_planted(self, current: list[AccountSpec]) -> None:
        """On the 15th: the same £9.99 leaves two accounts for two unrelated subscriptions, and
        £9.99 is refunded into a third (or the first) the same day. None of it is a transfer."""
        payers = current[:2]
        refunded = current[2] if len(current) > 2 else current[0]
        for day in range(self.start, self.end + 1):
            if self.days.info[day][0].day != 15:
                continue
            for acct, (text, merchant, category, sub) in zip(payers, cat.PLANTED_SAME_AMOUNT, strict=True):
                txn = self.add(
                    acct, self.rng(acct.key, day, "planted"), day, 300, -cat.PLANTED_PENCE, text,
                    "PURCHASE", (), category, sub,
                    merchant_name=merchant, meta=self.card_meta(acct, None), uid_tag="p",
                )
                txn.planted = "same_amount"
                txn.recurring = f"card:{merchant.lower().replace(' ', '')}"  # monthly, on the 15th
            text, merchant, category, sub = cat.PLANTED_REFUND
            txn = self.add(
                refunded, self.rng(refunded.key, day, "planted"), day, 600, cat.PLANTED_PENCE, text,
                "CREDIT", (), category, sub, merchant_name=merchant,
                meta={"provider_transaction_category": "CR"}, uid_tag="p",
            )
            txn.planted = "same_amount"

    def run_spending(self, acct: AccountSpec) -> None:
        merchants, weights = self.pools(acct)
        cum = []
        total = 0.0
        for w in weights:
            total += w
            cum.append(total)
        subs = [cat.SUBSCRIPTIONS[s] for s in acct.subscriptions]
        billers = [cat.BILLERS[b] for b in acct.billers]
        refunds = self.refunds[acct.key]
        rate = acct.spend_rate
        days = self.days.info
        for day in range(self.start, self.end + 1):
            d, _, wd, _, _ = days[day]
            rng = self.rng(acct.key, day)
            dom = d.day
            # --- daily card spending
            lam = rate * (1.3 if wd >= 5 else 1.0)
            n = 0
            # Poisson by inversion (small lambda)
            p = pow(2.718281828459045, -lam)
            s = p
            u = rng.random()
            while u > s and n < 12:
                n += 1
                p *= lam / n
                s += p
            for _ in range(n):
                m = merchants[min(len(merchants) - 1, bisect_right(cum, rng.random() * total))]
                self.purchase(acct, m, rng, day)
            for sub, sub_dom in subs:
                if dom == sub_dom:
                    self.purchase(acct, sub, rng, day).recurring = f"card:{sub.key}"
            # --- refunds that fall due today
            if refunds:
                due = [r for r in refunds if r[0] == day]
                if due:
                    refunds[:] = [r for r in refunds if r[0] != day]
                    for _, m, amt in due:
                        name = rng.choice(m.names).rstrip("*")
                        desc = rng.choice((f"REFUND {name}", f"{name} REFUND", f"{name} CR"))
                        self.add(
                            acct,
                            rng,
                            day,
                            rng.randint(360, 1200),
                            amt,
                            desc,
                            "CREDIT",
                            (),
                            "refunds",
                            "refund",
                            merchant_name=m.merchant_name,
                            meta=self.card_meta(acct, m),
                        )
                        if acct.kind == "card":
                            k = (acct.key, d.year, d.month)
                            self.card_spend[k] = self.card_spend.get(k, 0) - amt
            if acct.kind == "card":
                continue
            # --- current accounts only from here
            if acct.salary:
                employer, pay, payday = acct.salary
                target = d.replace(day=payday).toordinal()
                target = _shift_weekend(target, days[target][2], back=True)
                if target == day:
                    amount = pay + (rng.randint(0, 4) * 1_250 if d.month in (3, 12) else 0)
                    mon = cat.MONTHS[d.month - 1]
                    desc = rng.choice(
                        (f"{employer} SALARY", f"BGC {employer} SALARY", f"FP {employer} PAYROLL {mon}")
                    )
                    cls = ("Income", "Paycheck") if rng.random() < 0.5 else ()
                    self.add(
                        acct,
                        rng,
                        day,
                        0,
                        amount,
                        desc,
                        "CREDIT",
                        cls,
                        "income",
                        "salary",
                        meta={"provider_transaction_category": "BGC"},
                    )
            if acct.rent and dom == 1:
                payee, amount = acct.rent
                desc = rng.choice((f"SO {payee} RENT", f"STO {payee} RENT FLAT 2", f"{payee} RENT"))
                rent = self.add(
                    acct,
                    rng,
                    day,
                    60,
                    -amount,
                    desc,
                    "STANDING_ORDER",
                    ("Home", "Mortgage & Rent"),
                    "housing",
                    "rent",
                    meta={"provider_transaction_category": "SO"},
                )
                rent.recurring = "so:rent"
            for b in billers:
                if d.month not in b.months:
                    continue
                due = day - dom + b.dom
                due = _shift_weekend(due, days[due][2], back=False)
                if due != day:
                    continue
                brng = self.rng(acct.key, day, b.key)
                if b.low == b.high:
                    amount = b.low
                elif b.seasonal:
                    winter = d.month in (11, 12, 1, 2, 3)
                    amount = int(
                        brng.uniform(b.high * 0.75, b.high) if winter else brng.uniform(b.low, b.low * 1.4)
                    )
                else:
                    amount = brng.randint(b.low, b.high)
                mandate = biller_mandate(self.seed, self.spec.user, b.key)
                desc = brng.choice(
                    (f"DD {b.name} REF {mandate}", b.name, f"{b.name} DDR", f"DIRECT DEBIT {b.name}")
                )
                bill = self.add(
                    acct,
                    brng,
                    day,
                    30,
                    -amount,
                    desc,
                    "DIRECT_DEBIT",
                    b.classification,
                    b.category,
                    b.subcategory,
                    meta={"provider_transaction_category": "DD", "provider_reference": mandate},
                )
                bill.recurring = f"dd:{b.key}"
            # ATM, friends
            if rng.random() < 0.06:
                amount = rng.choice((2000, 3000, 4000, 5000, 10000))
                place = rng.choice(cat.ATM_PLACES)
                mon = cat.MONTHS[d.month - 1]
                minute = rng.randint(540, 1260)
                desc = rng.choice(
                    (
                        f"CASH WITHDRAWAL LINK ATM {d.day:02d}{mon} {place}",
                        f"LNK {place} CD {_hint(self.seed, acct.key) % 10_000:04d} {d.day:02d}{mon}",
                        f"CASH {self.spec.provider_name.upper()} {d.day:02d}{mon} @{minute // 60:02d}:{minute % 60:02d}",
                    )
                )
                self.add(
                    acct,
                    rng,
                    day,
                    minute,
                    -amount,
                    desc,
                    "ATM",
                    (),
                    "cash",
                    "atm_withdrawal",
                    meta={"provider_transaction_category": "CPT"},
                )
            if rng.random() < 0.025:
                who, ref = rng.choice(cat.PEOPLE), rng.choice(cat.FRIEND_REFS)
                amount = rng.randint(8, 120) * 100 + rng.choice((0, 50))
                if rng.random() < 0.5:
                    desc = rng.choice((f"{who} FP {ref}", f"FASTER PAYMENT TO {who} REF {ref}"))
                    self.add(
                        acct,
                        rng,
                        day,
                        rng.randint(480, 1320),
                        -amount,
                        desc,
                        "TRANSFER",
                        (),
                        "transfers",
                        "to_others",
                        meta={"provider_transaction_category": "FPO"},
                    )
                else:
                    desc = rng.choice((f"FROM {who} {ref}", f"{who} FPI {ref}"))
                    self.add(
                        acct,
                        rng,
                        day,
                        rng.randint(480, 1320),
                        amount,
                        desc,
                        "TRANSFER",
                        (),
                        "transfers",
                        "from_others",
                        meta={"provider_transaction_category": "FPI"},
                    )
            # savings standing order on the 28th (both legs)
            if acct.saves_to and dom == 28:
                skey, amount = acct.saves_to
                sav = self.by_key[skey]
                desc = rng.choice(
                    (f"TO A/C {sav.number} SAVINGS", f"TFR TO EASY SAVER {sav.sort_code} {sav.number}")
                )
                out_leg = self.add(
                    acct,
                    rng,
                    day,
                    120,
                    -amount,
                    desc,
                    "STANDING_ORDER",
                    (),
                    "transfers",
                    "own_accounts",
                    meta={"provider_transaction_category": "SO"},
                )
                out_leg.recurring = "so:savings"
                srng = self.rng(skey, day, "in")
                sdesc = srng.choice((f"FROM A/C {acct.number}", "TRANSFER FROM CURRENT ACCOUNT"))
                in_leg = self.add(
                    sav,
                    srng,
                    day,
                    120,
                    amount,
                    sdesc,
                    "TRANSFER",
                    (),
                    "transfers",
                    "own_accounts",
                    meta={"provider_transaction_category": "TFR"},
                )
                out_leg.transfer_pair = in_leg.transfer_pair = out_leg.uid
            # credit card payment on the 12th (both legs): last month's spending
            if acct.pays_card and dom == 12:
                card = self.by_key[acct.pays_card]
                prev = d.replace(day=1) - timedelta(days=1)
                owed = self.card_spend.get((card.key, prev.year, prev.month), 0)
                if owed > 0:
                    out_leg = self.add(
                        acct,
                        rng,
                        day,
                        90,
                        -owed,
                        self.spec.card_payment_name,
                        "BILL_PAYMENT",
                        ("Bills and Utilities", "Credit Card"),
                        "debt_repayment",
                        "credit_card",
                        meta={"provider_transaction_category": "DD"},
                    )
                    crng = self.rng(card.key, day, "payment")
                    cdesc = crng.choice(("PAYMENT RECEIVED - THANK YOU", "DIRECT DEBIT PAYMENT - THANK YOU"))
                    in_leg = self.add(
                        card,
                        crng,
                        day,
                        90,
                        owed,
                        cdesc,
                        "CREDIT",
                        (),
                        "transfers",
                        "own_accounts",
                        meta=self.card_meta(card, None),
                    )
                    out_leg.transfer_pair = in_leg.transfer_pair = out_leg.uid

    def run_savings(self, acct: AccountSpec) -> None:
        legs = sorted(self.out[acct.key], key=lambda t: (t.booking_day, t.minute))
        balance = acct.opening_balance
        i = 0
        for day in range(self.start, self.end + 1):
            while i < len(legs) and legs[i].booking_day <= day:
                balance += legs[i].amount
                i += 1
            d = self.days.info[day][0]
            if d.day == 1 and day > self.start:
                interest = int(balance * acct.interest_rate / 12)
                if interest > 0:
                    rng = self.rng(acct.key, day, "interest")
                    self.add(
                        acct,
                        rng,
                        day,
                        0,
                        interest,
                        rng.choice(("INTEREST PAID", "GROSS INTEREST")),
                        "INTEREST",
                        ("Income", "Interest Income"),
                        "income",
                        "interest",
                        meta={"provider_transaction_category": "INT"},
                    )
                    balance += interest


def money_groups(accounts: tuple[AccountSpec, ...]) -> dict[str, frozenset[str]]:
    """key -> the keys of the accounts it exchanges money with, directly or not (card payments,
    savings, own transfers): the smallest set whose rows can be generated on their own."""
    root = {a.key: a.key for a in accounts}

    def find(key: str) -> str:
        while root[key] != key:
            key = root[key]
        return key

    for a in accounts:
        for other in (a.pays_card, a.sends_to, a.saves_to[0] if a.saves_to else None):
            if other:
                root[find(other)] = find(a.key)
    members: dict[str, list[str]] = {}
    for a in accounts:
        members.setdefault(find(a.key), []).append(a.key)
    return {key: frozenset(group) for group in members.values() for key in group}


def _finish(acct: AccountSpec, txns: list[Txn], days: _Days) -> AccountData:
    """Timestamps, posting order and running balances of one account's generated rows."""
    for t in txns:
        t.timestamp = days.timestamp(t.booking_day, t.minute if t.booking_day == t.txn_day else 0, t.ts_style, t.ms)
        if t.pending_from is not None:
            t.pending_timestamp = days.timestamp(t.txn_day, t.minute, 2 if t.ts_style < 2 else t.ts_style, t.ms)
    txns.sort(key=lambda t: (t.booking_day, t.minute if t.booking_day == t.txn_day else -1))
    if acct.kind == "account":
        balance = acct.opening_balance
        for t in txns:
            balance += t.amount
            t.running_balance = balance
    return AccountData(acct, txns, [t.booking_day for t in txns])


class LazyAccounts(Mapping[str, AccountData]):
    """key -> AccountData in the user's account order, each account's rows generated the first
    time it (or an account of its money group) is read: one account of `multi-1000` costs its
    group, not the user. Thread-safe: the server and tests read it from different threads."""

    def __init__(self, seed: int, spec: UserSpec, start: int, end: int):
        self._seed, self._spec, self._start, self._end = seed, spec, start, end
        self._specs = {a.key: a for a in spec.accounts}
        self._groups = money_groups(spec.accounts)
        self._done: dict[str, AccountData] = {}
        self._days: _Days | None = None
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> AccountData:
        data = self._done.get(key)
        if data is None:
            if key not in self._specs:
                raise KeyError(key)
            with self._lock:
                if key not in self._done:
                    self._generate(self._groups[key])
            data = self._done[key]
        return data

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def spec(self, key: str) -> AccountSpec:
        """An account's spec, without generating its rows."""
        return self._specs[key]

    @property
    def generated(self) -> int:
        """How many accounts have their rows generated so far."""
        return len(self._done)

    def _generate(self, keys: frozenset[str]) -> None:
        gen = _Gen(self._seed, self._spec, self._start, self._end, self._days)
        self._days = gen.days
        out = gen.run(keys)
        for key in keys:
            self._done[key] = _finish(self._specs[key], out[key], gen.days)


def generate_user(seed: int, user: str, start: date, end: date) -> UserData:
    """`user`'s transactions booked between `start` and `end` (ordinals fixed by `start`); nothing
    is generated until an account is read (see `LazyAccounts`)."""
    spec = build_user(seed, user)
    accounts = LazyAccounts(seed, spec, start.toordinal(), end.toordinal())
    return UserData(spec, start.toordinal(), end.toordinal(), accounts)
