"""What `/direct_debits` and `/standing_orders` list for an account, consistent with the ledger
the generator produces: every direct debit is one of the account's billers (its payments carry
the mandate as `meta.provider_reference`), every standing order is its rent (on the 1st) or its
savings top-up (on the 28th); those rows are marked `recurring` in the ground truth."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

from bank_pipeline.simulator import catalogue as cat
from bank_pipeline.simulator.generator import AccountData, UserData, biller_mandate, pence_str


def _frequency(dom: int) -> str:
    return f"IntrvlMnthDay:01:{dom:02d}"


def _next_on(today: date, dom: int) -> date:
    nxt = today.replace(day=dom)
    if nxt <= today:
        nxt = (nxt.replace(day=28) + timedelta(days=4)).replace(day=dom)
    return nxt


def standing_orders(
    data: UserData, account_key: str, today: date, now: str, provider_account_id: str
) -> list[dict[str, Any]]:
    spec = data.accounts.spec(account_key)
    plans = []
    if spec.rent:
        plans.append((spec.rent[0], spec.rent[1], 1, "RENT"))
    if spec.saves_to:
        sav = data.accounts.spec(spec.saves_to[0])
        plans.append((f"{data.spec.full_name.upper()}", spec.saves_to[1], 28, f"SAVINGS {sav.number}"))
    first = date.fromordinal(data.start_day)
    return [
        {
            "frequency": _frequency(dom),
            "status": "Active",
            "timestamp": now,
            "currency": spec.currency,
            "meta": {"provider_account_id": provider_account_id},
            "next_payment_date": f"{_next_on(today, dom).isoformat()}T00:00:00+00:00",
            "next_payment_amount": pence_str(amount),
            "first_payment_date": f"{first.replace(day=dom).isoformat()}T00:00:00+00:00",
            "first_payment_amount": pence_str(amount),
            "final_payment_date": "9999-12-31T00:00:00+00:00",
            "final_payment_amount": "0.00",
            "payee": payee,
            "reference": ref,
        }
        for payee, amount, dom, ref in plans
    ]


def direct_debits(
    seed: int, data: UserData, account_key: str, today: date, now: str, provider_account_id: str
) -> list[dict[str, Any]]:
    acct: AccountData = data.accounts[account_key]
    spec = acct.spec
    last = {}
    for t in acct.txns:
        if t.recurring and t.recurring.startswith("dd:") and t.available_day <= today.toordinal():
            last[t.recurring[3:]] = t
    out = []
    for key in spec.billers:
        b = cat.BILLERS[key]
        mandate = biller_mandate(seed, data.spec.user, key)
        item: dict[str, Any] = {
            "direct_debit_id": hashlib.md5(f"{data.spec.user}|{account_key}|{key}".encode()).hexdigest(),
            "timestamp": now,
            "name": b.name,
            "status": "Active",
            "currency": spec.currency,
            "meta": {"provider_mandate_identification": mandate, "provider_account_id": provider_account_id},
        }
        if key in last:
            t = last[key]
            item["previous_payment_timestamp"] = t.timestamp
            item["previous_payment_amount"] = abs(t.amount) / 100
        out.append(item)
    return out
