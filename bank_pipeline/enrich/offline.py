"""The offline model: deterministic, no network, fast — the default, so a fresh machine works.

Evidence, strongest first: words that decide the category whatever the merchant
("REFUND", "SALARY", "ATM", "INTEREST", "COUNCIL TAX") → a known merchant from the shipped
knowledge base (on TrueLayer's `merchant_name`, then the description) → TrueLayer's own
`transaction_classification` (source `provider`) → words naming a kind of spending ("PUB",
"PHARMACY", "MOTEL", "GAS STATION" on a card) → how the money moved (a faster payment to a person
is a transfer). What it cannot place is "unknown", not a guess. Merchant names shown for payees
the knowledge base does not know are cleaned of processor prefixes, store numbers, URL noise and
city/state tails (`normalise.merchant_words`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from bank_pipeline.categories import Category, load_categories
from bank_pipeline.enrich.knowledge import KindWord, KnowledgeBase, MerchantMatch, load_knowledge_base
from bank_pipeline.enrich.normalise import clean_text, merchant_words, payee_words
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.policy import enforce_direction
from bank_pipeline.enrich.types import Enrichment, TxnInput

_PREFIX = re.compile(
    r"^(?:card payment to|card payment|contactless payment|visa purchase|purchase|direct debit payment to"
    r"|direct debit to|direct debit|standing order via faster payment to|standing order to|standing order"
    r"|bill payment via faster payment to|bill payment to|bill payment|faster payments receipt(?: ref)?"
    r"|faster payments? to|faster payments?|bank credit|transfer to|transfer from|payment to|payment from"
    r"|mobile payment to|dd|ddr|so|sto|fpo|fpi|fp|bgc|bcc|cr|deb|vis|pos|clp|cpt|tfr|bp|to|from|ref)\b\s*"
)
_SUFFIX = re.compile(r"\s*\b(?:dd|ddr|so|gb|gbr|uk|clp|ltd|plc|limited|pending|com|co|www)$")
_HAS_DIGIT = re.compile(r"\d")
_NO_MERCHANT = frozenset({"transfers", "income", "cash", "fees", "unknown", "other"})
# Confidence of each kind of evidence: about the share it gets right on the hand-written world
# set (bench enrich_knowledge prints the calibration there and on the held-out independent set).
DECISIVE_WORD = 0.95  # "REFUND", "SALARY", "ATM", "COUNCIL TAX"
KNOWN_MERCHANT = 0.95  # the hand-written knowledge base, whole words (a run-together prefix: 0.75)
BRAND_SURE = 0.8  # the brand table: several words, or TrueLayer's merchant_name
BRAND_WORD = 0.7  # the brand table: one word
KIND_KEYWORD = 0.75  # a hand-written word naming a kind of spending ("PHARMACY", "MOTEL")
KIND_WORD = 0.45  # a word shared with many brands of one kind, nothing else known
_TRANSFER_METHODS = frozenset({"faster_payment", "transfer", "standing_order"})
# "FROM R BROWN", "MR A KHAN", "J SMITH": an initial and a surname reads as a person.
_PERSON = re.compile(r"^(?:from |to )?(?:mr |mrs |ms |miss |dr )?[a-z] (?:[a-z] )?[a-z]{2,}\b")


@lru_cache(maxsize=4096)
def _payee(text: str, prefixes: tuple[str, ...], noise: frozenset[str]) -> tuple[str, ...]:
    """`payee_words`, once per text: the brand and kind-of-business steps both ask."""
    return tuple(payee_words(text, prefixes, noise))


def _body(cleaned: str, suffix: bool = True) -> str:
    """The description without payment-method words at the start (and the end, with `suffix`:
    "CO" ends a company, or is Colorado after a city, which the merchant-name cleaner handles)."""
    previous = None
    while previous != cleaned:
        previous = cleaned
        cleaned = _PREFIX.sub("", cleaned).strip()
        if suffix:
            cleaned = _SUFFIX.sub("", cleaned).strip()
    return cleaned


def _display_name(body: str, kb: KnowledgeBase | None = None) -> str | None:
    if kb is not None:
        words = merchant_words(body, kb.processor_prefixes, kb.noise_words)[:4]
    else:
        words = [w for w in body.split() if not _HAS_DIGIT.search(w)][:4]
    return " ".join(w.capitalize() for w in words) or None


class OfflineModel:
    provider = "offline"

    def __init__(self, categories: dict[str, Category] | None = None, kb: KnowledgeBase | None = None):
        self.categories = categories or load_categories()
        self.kb = kb if kb is not None else load_knowledge_base()  # an empty KB is falsy
        # Versioned by the knowledge base's content, so cached answers of an older KB are redone.
        self.name = f"offline-{self.kb.digest}"

    def enrich(self, items: Sequence[TxnInput], *, ledger=None) -> dict[int, Enrichment]:
        return {item.id: self.classify(item) for item in items}

    def _result(self, category: str, sub: str | None, confidence: float, **extra) -> Enrichment:
        return Enrichment(
            category=category,
            subcategory=sub,
            confidence=confidence,
            source=extra.pop("source", "model"),
            provider=self.provider,
            model=self.name,
            **extra,
        )

    def classify(self, txn: TxnInput) -> Enrichment:
        direction = txn.direction
        text = clean_text(txn.description)
        body = _body(text)
        named_body = _body(text, suffix=False)
        method = detect_payment_method(txn.description, txn.transaction_category)
        match = self._merchant(txn, text)
        if (
            match
            and (match.start, match.words, match.merchant.name) == (0, 1, "BP")
            and method == "faster_payment"
            and clean_text(txn.merchant_name or "") != "bp"
        ):
            match = None  # HSBC's "BP" (bill payment) prefix, not the fuel brand
        named = match.merchant if match and (not match.merchant.wrapper or match.merchant.keep_name) else None
        merchant = named.name if named else (txn.merchant_name or None)
        mtype = match.merchant.merchant_type if match else None
        common = {"payment_method": method, "merchant_type": mtype}

        rule = self.kb.keyword(self.kb.keywords_first, text, direction, method)
        if rule:
            name = (
                merchant
                if named
                else (merchant or _display_name(named_body, self.kb))
                if rule.category not in _NO_MERCHANT
                else None
            )
            return self._finish(
                txn, self._result(rule.category, rule.subcategory, DECISIVE_WORD, merchant=name, **common)
            )

        if match and not match.merchant.wrapper:
            return self._known(txn, match, KNOWN_MERCHANT if match.exact else 0.75, common)

        # The open brand table: a chain named by TrueLayer or leading the description. Several
        # words ("CHEMIST WAREHOUSE") say it surely; one word ("SALT AND SMOKE BBQ") may be a
        # plain word, so words naming a kind of business are asked first.
        brand, brand_sure, brand_words = self._brand(txn, method)
        if brand and brand_sure:
            # Words beside the chain's name still say what kind of place it is ("THE RED LION PUB"
            # is a pub, whatever hotel chain is called Red Lion).
            beside = f" {text} ".replace(f" {brand_words} ", " ", 1).strip()
            rule = self.kb.keyword(self.kb.keywords_after, beside, direction, method)
            if rule and rule.category != brand.merchant.category:
                return self._finish(
                    txn,
                    self._result(
                        rule.category,
                        rule.subcategory,
                        KIND_KEYWORD,
                        merchant=merchant or _display_name(named_body, self.kb),
                        **common,
                    ),
                )
            return self._known(txn, brand, BRAND_SURE, common)

        mapped = self.kb.classification(txn.transaction_classification)
        if mapped and self._allows(mapped[0], direction):
            name = merchant or (_display_name(named_body, self.kb) if mapped[0] not in _NO_MERCHANT else None)
            return self._finish(
                txn, self._result(mapped[0], mapped[1], 0.6, merchant=name, source="provider", **common)
            )

        # After a processor prefix ("SQ *THE LITTLE BAKERY") the rest is the merchant's own name.
        rest = " ".join(text.split()[match.start + match.words :]) if match else named_body
        # TrueLayer's merchant_name may say what kind of business it is when the text does not.
        words = f"{text} {clean_text(txn.merchant_name)}".strip() if txn.merchant_name else text
        rule = self.kb.keyword(self.kb.keywords_after, words, direction, method)
        if rule:
            name = merchant or (_display_name(rest, self.kb) if rule.category not in _NO_MERCHANT else None)
            return self._finish(
                txn, self._result(rule.category, rule.subcategory, KIND_KEYWORD, merchant=name, **common)
            )

        if brand:
            kind = self._kind(txn)
            if not (kind and kind.category != brand.merchant.category and kind.share >= 0.9):
                return self._known(txn, brand, BRAND_WORD, common)  # else "NORTHGATE OPTIK": an optician

        if match:  # only a payment processor is known
            m = match.merchant
            category, sub = (
                m.credit_category
                if direction == "credit" and m.credit_category
                else (
                    m.category,
                    m.subcategory,
                )
            )
            if direction == "credit" and not self._allows(category, "credit"):
                category, sub = "refunds", "refund"
            name = merchant or _display_name(rest, self.kb)
            return self._finish(txn, self._result(category, sub, 0.4, merchant=name, **common))
        return self._finish(txn, self._fallback(txn, method, body, merchant, common, named_body))

    def _fallback(
        self, txn: TxnInput, method: str, body: str, merchant, common, named_body: str
    ) -> Enrichment:
        credit = txn.direction == "credit"
        person = bool(_PERSON.match(body) or _PERSON.match(clean_text(txn.description)))
        if method in _TRANSFER_METHODS or person or (txn.transaction_category or "").upper() == "TRANSFER":
            return self._result("transfers", "from_others" if credit else "to_others", 0.5, **common)
        if credit:
            if method == "card":
                return self._result(
                    "refunds",
                    "refund",
                    0.4,
                    merchant=merchant or _display_name(named_body, self.kb),
                    **common,
                )
            if method == "interest":
                return self._result("income", "interest", 0.6, **common)
            return self._result("income", "other_income", 0.3, **common)
        if method == "cash":
            return self._result("cash", "atm_withdrawal", 0.6, **common)
        if method == "fee":
            return self._result("fees", "bank_fees", 0.6, **common)
        if method == "interest":
            return self._result("fees", "interest_charged", 0.6, **common)
        kind = self._kind(txn)
        if kind:
            return self._result(
                kind.category,
                kind.subcategory,
                KIND_WORD,
                merchant=merchant or _display_name(named_body, self.kb),
                **{**common, "merchant_type": common.get("merchant_type") or kind.merchant_type},
            )
        if method == "direct_debit":
            return self._result(
                "other", None, 0.3, merchant=merchant or _display_name(named_body, self.kb), **common
            )
        return self._result(
            "unknown", None, 0.0, merchant=merchant or _display_name(named_body, self.kb), **common
        )

    def _known(self, txn: TxnInput, match: MerchantMatch, confidence: float, common: dict) -> Enrichment:
        """The answer of a merchant the knowledge base or the brand table names."""
        m = match.merchant
        category, sub = m.category, m.subcategory
        if txn.direction == "credit" and m.credit_category:
            category, sub = m.credit_category
        elif txn.direction == "credit" and not self._allows(category, "credit"):
            category, sub = "refunds", "refund"
        common = {**common, "merchant_type": m.merchant_type}
        return self._finish(txn, self._result(category, sub, confidence, merchant=m.name, **common))

    def _kind(self, txn: TxnInput) -> KindWord | None:
        """A best guess for a payee nothing knows: a word its name shares with many brands of one
        kind ("ROSA'S PIZZERIA" → takeaway), on TrueLayer's merchant_name and the description."""
        kb = self.kb
        words = list(_payee(txn.description, kb.processor_prefixes, kb.noise_words))
        if txn.merchant_name:
            words += list(_payee(txn.merchant_name, kb.processor_prefixes, kb.noise_words))
        found = kb.kind_of(words)
        return found if found and self._allows(found.category, txn.direction) else None

    def _brand(self, txn: TxnInput, method: str) -> tuple[MerchantMatch | None, bool, str]:
        """(the brand-table match, whether it is sure, the words it matched): on TrueLayer's
        merchant_name (sure), else on the payee's leading words (sure when several words match).
        Never in a transfer, where a payee named like a chain ("ALBERT") is a person."""
        if method in _TRANSFER_METHODS:
            return None, False, ""
        kb = self.kb
        if txn.merchant_name:
            named = list(_payee(txn.merchant_name, kb.processor_prefixes, kb.noise_words))
            found = kb.match_brand(named)
            if found:
                return found, True, " ".join(named[found.start : found.start + found.words])
        words = list(_payee(txn.description, kb.processor_prefixes, kb.noise_words))
        payee = _body(" ".join(words), suffix=False).split()
        found = kb.match_brand(payee)
        if found is None:
            return None, False, ""
        return found, found.words > 1, " ".join(payee[found.start : found.start + found.words])

    def _merchant(self, txn: TxnInput, text: str) -> MerchantMatch | None:
        found = self.kb.match_merchant(clean_text(txn.merchant_name)) if txn.merchant_name else None
        in_text = self.kb.match_merchant(text)
        if found is None or (in_text and in_text.rank()[:2] > found.rank()[:2]):
            return in_text
        return found

    def _allows(self, category: str, direction: str) -> bool:
        known = self.categories.get(category)
        return bool(known and direction in known.directions)

    def _finish(self, txn: TxnInput, result: Enrichment) -> Enrichment:
        return enforce_direction(result, txn.direction, self.categories)
