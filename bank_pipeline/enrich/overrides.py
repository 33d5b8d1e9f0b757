"""`categorize`: the user's word on one transaction — final, and a rule for the next ones.

The override is stored apart from `enrichments` (which every re-enrichment may rewrite), and
enrichment never writes over a transaction that has one. A `key` rule learned from it labels the
same normalised description + direction as source `rule` from then on — and at once: the rows
already in the ledger that the rule now decides are relabelled in the same transaction (never a
row with its own override, nor a leg of a transfer between own accounts), and the result says how
many changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, select

from bank_pipeline.categories import Category, load_categories
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import category_overrides, enrichments, transactions, transfers
from bank_pipeline.enrich._db import upsert
from bank_pipeline.enrich.normalise import clean_text, is_distinctive, normalise_description
from bank_pipeline.enrich.payment import detect_payment_method
from bank_pipeline.enrich.rules import learn_rule, load_rules, match_rule
from bank_pipeline.enrich.types import Enrichment
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.formulas import is_formula, strip_formula


@dataclass(frozen=True)
class CategorizeResult:
    transaction_id: int
    enrichment: Enrichment
    rule_id: int | None
    rule_pattern: str | None
    rule_skipped: str | None  # why no rule was learned
    relabelled: int = 0  # other ledger rows the rule relabelled at once
    covered: int = 0  # other ledger rows the rule decides (relabelled or already so)
    changed_ids: tuple[int, ...] = ()  # this transaction and the rows relabelled


def _validate(
    categories: dict[str, Category], category: str, subcategory: str | None, direction: str
) -> Category:
    if category not in categories:
        raise BankPipelineError(
            f"unknown category {category!r}; valid categories: {', '.join(sorted(categories))}"
        )
    cat = categories[category]
    if subcategory is not None and subcategory not in cat.subcategories:
        valid = ", ".join(cat.subcategories) or "(none)"
        raise BankPipelineError(
            f"unknown subcategory {subcategory!r} for {category!r}; valid subcategories: {valid}"
        )
    if direction not in cat.directions:
        allowed = ", ".join(sorted(n for n, c in categories.items() if direction in c.directions))
        money = "money in" if direction == "credit" else "money out"
        raise BankPipelineError(
            f"category {category!r} cannot label a {direction} ({money}); categories for a {direction}: {allowed}"
        )
    return cat


def categorize(
    engine: Engine,
    transaction_id: int,
    category: str,
    *,
    subcategory: str | None = None,
    merchant: str | None = None,
    learn: bool = True,
    categories: dict[str, Category] | None = None,
) -> CategorizeResult:
    categories = categories or load_categories()
    if is_formula(merchant):
        raise BankPipelineError(
            f"--merchant {merchant!r} starts with {merchant[0]!r}: a spreadsheet opening an export would run it "
            "as a formula; give the name without it"
        )
    with engine.begin() as conn:
        txn = conn.execute(select(transactions).where(transactions.c.id == transaction_id)).mappings().first()
        if txn is None:
            raise BankPipelineError(f"no transaction with id {transaction_id}")
        cat = _validate(categories, category, subcategory, txn["direction"])
        current = (
            conn.execute(select(enrichments).where(enrichments.c.transaction_id == transaction_id))
            .mappings()
            .first()
        )
        keep = current if current is not None and current["category"] == category else None
        enrichment = Enrichment(
            category=category,
            subcategory=subcategory if subcategory is not None else (keep["subcategory"] if keep else None),
            merchant=merchant or strip_formula((current["merchant"] if current else None) or txn["merchant_name"]),
            merchant_type=current["merchant_type"] if current else None,
            essential=cat.essential,
            payment_method=(current["payment_method"] if current else None)
            or detect_payment_method(txn["description"], txn["transaction_category"]),
            confidence=1.0,
            source="override",
            provider="user",
        )
        now = utcnow()
        upsert(
            conn,
            category_overrides,
            [{"transaction_id": transaction_id, **enrichment.fields(), "created_at": now}],
            ["transaction_id"],
        )
        upsert(
            conn,
            enrichments,
            [
                {
                    "transaction_id": transaction_id,
                    **enrichment.fields(),
                    "source": "override",
                    "provider": "user",
                    "model": None,
                    "cache_key": None,
                    "flags": None,
                    "run_id": None,
                    "updated_at": now,
                }
            ],
            ["transaction_id"],
        )
        rule_id = pattern = skipped = None
        if learn:
            normalised = normalise_description(txn["description"])
            if normalised and is_distinctive(normalised):
                pattern = normalised
                rule_fields = enrichment.with_(payment_method=None, source="rule")
                rule_id = learn_rule(conn, normalised, txn["direction"], rule_fields, transaction_id)
            else:
                skipped = f"the description {txn['description']!r} is too generic to learn a rule from"
        covered, relabelled = 0, []
        if rule_id is not None:
            covered, relabelled = apply_rule(conn, rule_id, pattern, txn["direction"], exclude=transaction_id)
        return CategorizeResult(transaction_id, enrichment, rule_id, pattern, skipped, len(relabelled), covered,
                                (transaction_id, *relabelled))


_COMPARED = ("category", "subcategory", "merchant", "source")


def apply_rule(
    conn: Connection, rule_id: int, normalised: str, direction: str, *, exclude: int
) -> tuple[int, list[int]]:
    """Label now the ledger rows whose description normalises to `normalised` (same direction)
    and for which rule `rule_id` is the deciding rule, except rows with an override and legs of a
    transfer pair. Returns (how many rows the rule decides, the ids of those whose label changed)."""
    t, e = transactions.c, enrichments.c
    leg = select(transfers.c.debit_transaction_id).union(select(transfers.c.credit_transaction_id))
    candidates = conn.execute(
        select(t.id, t.description, t.transaction_category, e.category, e.subcategory, e.merchant, e.source)
        .select_from(transactions.outerjoin(enrichments, e.transaction_id == t.id))
        .where(
            t.direction == direction,
            t.id != exclude,
            t.id.not_in(select(category_overrides.c.transaction_id)),
            t.id.not_in(leg),
        )
    ).all()
    rules = load_rules(conn)
    now = utcnow()
    covered, rows = 0, []
    for row in candidates:
        description = row.description or ""
        if normalise_description(description) != normalised:
            continue
        rule = match_rule(rules, normalised, clean_text(description), direction)
        if rule is None or rule.id != rule_id:
            continue
        covered += 1
        label = rule.enrichment.with_(
            payment_method=detect_payment_method(description, row.transaction_category)
        )
        if tuple(getattr(row, k) for k in _COMPARED) == (label.category, label.subcategory, label.merchant, "rule"):
            continue
        rows.append({
            "transaction_id": row.id, **label.fields(), "source": "rule", "provider": "user", "model": None,
            "cache_key": None, "flags": None, "run_id": None, "updated_at": now,
        })
    upsert(conn, enrichments, rows, ["transaction_id"])
    return covered, [r["transaction_id"] for r in rows]
