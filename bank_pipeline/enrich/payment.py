"""How the money moved (card, direct debit, standing order…), from the text and TrueLayer's type.

UK banks encode it in short prefixes/suffixes ("DD", "SO", "FPO", "BGC", ")))", "CPT"), so the
description wins over TrueLayer's coarser `transaction_category` when both are present.
"""

from __future__ import annotations

import re

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    # A processor's "DD *DOORDASH", "SQ *BAKERY": a card payment, not a direct debit.
    ("card", re.compile(r"^(?:dd|sq|tst|sp|py|pp|ic)\s?\*")),
    # US/EU card descriptors: "PURCHASE AUTHORIZED ON 03/12", "CHECKCARD 0312", "POS DEBIT".
    (
        "card",
        re.compile(
            r"^(?:purchase authorized|recurring payment authorized|checkcard|check card|debit card purchase"
            r"|pos debit|pos purchase|point of sale|card purchase|dbt crd|debit purchase)\b"
        ),
    ),
    ("cheque", re.compile(r"^check\s*#?\s*\d+|^(?:check|cheque) (?:paid|no)\b")),
    # Continental statements lead with the method: German, French, Spanish, Dutch, Italian.
    ("card", re.compile(r"^(?:kartenzahlung|cb|bea|compra tarj|pagamento pos|paiement cb|carte)\b")),
    ("cash", re.compile(r"^(?:retrait dab|gea|bargeldauszahlung|reintegro|prelievo)\b")),
    (
        "direct_debit",
        re.compile(r"^(?:lastschrift|basislastschrift|prlv|incasso|adeudo|recibo|addebito)\b"),
    ),
    ("standing_order", re.compile(r"^(?:dauerauftrag|vir permanent|orden permanente|ordine permanente)\b")),
    (
        "transfer",
        re.compile(
            r"^(?:ueberweisung|überweisung|umbuchung|vir sepa|virement|transferencia|bizum|overboeking|bonifico)\b"
        ),
    ),
    ("transfer", re.compile(r"\b(?:zelle|venmo|cash app|xfer|online transfer|wire transfer)\b")),
    ("bank_credit", re.compile(r"\b(?:direct dep|dir dep|ach credit|payroll)\b")),
    ("direct_debit", re.compile(r"^ach (?:debit|pmt|payment)\b|\bach debit\b")),
    ("direct_debit", re.compile(r"^(?:dd|ddr)\b|\b(?:dd|ddr)$|\bdirect debit\b|\bd/d\b")),
    ("standing_order", re.compile(r"^(?:so|sto)\b|\b(?:so|sto)$|\bstanding order\b")),
    ("cash", re.compile(r"\b(?:atm|cpt|cashpoint|notemac|cash withdrawal)\b|^cash\b|^(?:link|lnk)\b")),
    ("faster_payment", re.compile(r"^(?:fpo|fpi|fp)\b|\bfaster payments?\b|\bbill payment\b")),
    ("bank_credit", re.compile(r"^(?:bgc|bcc|bacs|cr)\b|\bbank credit\b|\bbacs\b")),
    ("cheque", re.compile(r"\b(?:chq|cheque)\b")),
    ("interest", re.compile(r"\binterest\b")),
    ("fee", re.compile(r"\b(?:fee|charge|charges)\b")),
    (
        "card",
        re.compile(
            r"^(?:\)\)\)|vis|visa|pos|deb|clp)\b|^\)\)\)|\bcard payment\b|\bcontactless\b"
            r"|\bvisa purchase\b|\bapple pay\b|\bgoogle pay\b|\bclp$"
        ),
    ),
    ("transfer", re.compile(r"^tfr\b|\btfr$|\btransfer (?:to|from)\b|^transfer\b|\bpot transfer\b")),
]

_FROM_TRUELAYER = {
    "DIRECT_DEBIT": "direct_debit",
    "STANDING_ORDER": "standing_order",
    "ATM": "cash",
    "CASH": "cash",
    "FEE_CHARGE": "fee",
    "INTEREST": "interest",
    "PURCHASE": "card",
    "CASHBACK": "card",
    "TRANSFER": "transfer",
    "BILL_PAYMENT": "faster_payment",
    "CREDIT": "bank_credit",
    "CHEQUE": "cheque",
    "DIVIDEND": "bank_credit",
}


def detect_payment_method(description: str, transaction_category: str | None) -> str:
    text = " ".join((description or "").casefold().split())
    tl = (transaction_category or "").upper()
    # HSBC's "BP" (bill payment) prefix, unless TrueLayer says it was a purchase ("BP HIGHBURY": fuel).
    if text.startswith("bp ") and tl in ("", "BILL_PAYMENT", "TRANSFER", "DEBIT", "OTHER"):
        return "faster_payment"
    for method, pattern in _PATTERNS:
        if pattern.search(text):
            return method
    return _FROM_TRUELAYER.get(tl, "other")
