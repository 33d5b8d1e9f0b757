"""`bank-pipeline categorize` (the user's word on a transaction) and `bank-pipeline enrich`
(re-enrich a date range outside Dagster)."""

from __future__ import annotations

import argparse
import uuid

from bank_pipeline.cli_args import add_account_filter, add_date_range, database_id
from bank_pipeline.errors import BankPipelineError


def register(subparsers: argparse._SubParsersAction) -> None:
    cat = subparsers.add_parser(
        "categorize",
        help="set a transaction's category (never overwritten) and learn a rule for similar ones",
        description="Record your category for one transaction. Enrichment never overwrites it, and a rule "
        "learned from its description labels the same payee/merchant next time (source 'rule').",
    )
    cat.add_argument("transaction_id", type=database_id, help="the transaction's id (transactions.id)")
    cat.add_argument("category", help="a category of the configured taxonomy")
    cat.add_argument("--subcategory", help="a subcategory of that category")
    cat.add_argument("--merchant", help="the clean merchant name to record")
    cat.add_argument("--no-rule", dest="learn", action="store_false", help="do not learn a rule from it")
    cat.set_defaults(func=_categorize_cmd)

    enrich = subparsers.add_parser(
        "enrich",
        help="enrich (or with --force re-enrich) the transactions of a date range",
        description="Run the enrichment tiers (overrides → rules → cache → model) over booked transactions "
        "of a date range, outside Dagster. Overrides are never changed.",
    )
    add_date_range(enrich, required=False, first="first day (required to enrich)", last="last day (inclusive)")
    add_account_filter(enrich)
    enrich.add_argument(
        "--force", action="store_true", help="re-enrich transactions that already have an enrichment"
    )
    enrich.add_argument(
        "--review",
        action="store_true",
        help="list the low-confidence enrichments (guesses) instead, grouped by payee, most frequent first; "
        "correct them with `categorize`",
    )
    enrich.add_argument(
        "--limit", type=int, default=50, metavar="N", help="with --review: at most N payees (default 50)"
    )
    enrich.set_defaults(func=_enrich_cmd)


def _engine():
    from bank_pipeline.config import Settings
    from bank_pipeline.db import open_database

    settings = Settings.from_env()
    return settings, open_database(settings.database_url)


def _categorize_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.corrections import refresh_months
    from bank_pipeline.categories import load_categories
    from bank_pipeline.enrich import categorize
    from bank_pipeline.enrich.service import reclassify

    _, engine = _engine()
    result = categorize(
        engine,
        args.transaction_id,
        args.category,
        subcategory=args.subcategory,
        merchant=args.merchant,
        learn=args.learn,
    )
    reclassified = reclassify(engine, load_categories(), run_id="cli-categorize") if args.learn else []
    refresh_months(engine, [*result.changed_ids, *reclassified], "cli-categorize")  # stored monthly_spending
    e = result.enrichment
    label = e.category + (f"/{e.subcategory}" if e.subcategory else "")
    print(f"transaction {result.transaction_id}: {label}" + (f" ({e.merchant})" if e.merchant else ""))
    if result.rule_id is not None:
        print(f"learned rule {result.rule_id}: descriptions like {result.rule_pattern!r} → {label}")
        print(f"relabelled {result.relabelled} other transaction(s) now ({result.covered} covered by the rule; "
              "overrides and transfer legs left alone)")
    if args.learn:
        print(f"the classifier learned from your labels relabelled {len(reclassified)} more transaction(s)")
    elif result.rule_skipped:
        print(f"no rule learned: {result.rule_skipped}")
    return 0


def _enrich_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.enrich import build_model, enrich_account_days
    from bank_pipeline.enrich.service import account_days_between

    if args.date_from and args.date_to and args.date_to < args.date_from:
        raise BankPipelineError(f"--to {args.date_to} is before --from {args.date_from}")
    if args.review:
        return _review(args)
    if args.date_from is None or args.date_to is None:
        raise BankPipelineError("enrich needs --from and --to (or --review to list low-confidence rows)")
    settings, engine = _engine()
    account_days = account_days_between(engine, args.date_from, args.date_to, args.accounts)
    run_id = f"cli-{uuid.uuid4().hex[:12]}"
    stats = enrich_account_days(engine, account_days, build_model(settings), run_id=run_id, force=args.force)
    meta = stats.as_metadata()
    sources = ", ".join(f"{k[7:]} {v}" for k, v in meta.items() if k.startswith("source_") and v)
    print(
        f"run {run_id}: {meta['enriched']} enriched of {meta['transactions']} ({sources or 'nothing to do'}); "
        f"{meta['model_calls']} model call(s), tokens in {meta['tokens_in']} / out {meta['tokens_out']} / "
        f"cache read {meta['tokens_cache_read']} / cache write {meta['tokens_cache_write']}, "
        f"cost ${meta['cost_usd']:.4f}; provisional {meta['provisional']}, replaced {meta['provisional_replaced']}, "
        f"queued for the model {meta['queued']}"
    )
    return 0


def _review(args: argparse.Namespace) -> int:
    from bank_pipeline.enrich.review import REVIEW_BELOW, review_list, shown

    if args.limit < 1:
        raise BankPipelineError(f"--limit must be at least 1, got {args.limit}")
    _, engine = _engine()
    rows = review_list(
        engine,
        date_from=args.date_from,
        date_to=args.date_to,
        account_keys=args.accounts,
        limit=args.limit,
    )
    if not rows:
        print(f"nothing to review: every enrichment has confidence ≥ {REVIEW_BELOW:g} or is yours")
        return 0
    print(f"{len(rows)} payee(s) with confidence < {REVIEW_BELOW:g}, most frequent first:")
    print("rows  confidence  guess                     payee (example transaction id: description)")
    for r in rows:
        guess = r.category + (f"/{r.subcategory}" if r.subcategory else "")
        print(
            f"{r.count:>4}  {r.confidence:>10.2f}  {guess:<24}  {shown(r.payee)} "
            f"({r.example_id}: {shown(r.example)})"
        )
    print("correct one with: bank-pipeline categorize <transaction id> <category>")
    return 0
