"""`bank-pipeline plan`: what a backfill would cost (runs, bank calls, budget, model calls) before launching it;
`bank-pipeline plan --daily`: runs, bank calls and time of the daily import for every account."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from bank_pipeline.cli_args import add_account_filter, add_date_range, int_between
from bank_pipeline.config import MAX_ACCOUNTS_PER_RUN, Settings


def _price(value: str) -> Decimal:
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a price in USD: {value!r}") from None
    if price < 0:
        raise argparse.ArgumentTypeError("the price cannot be negative")
    return price


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="estimate a backfill: runs, TrueLayer calls vs today's budget, expected transactions, model cost",
        description=__doc__,
    )
    add_date_range(parser, required=False)
    parser.add_argument(
        "--daily",
        action="store_true",
        help="plan the daily import of every active account instead: runs, bank calls, estimated time",
    )
    parser.add_argument(
        "--accounts-per-run", type=int_between(1, MAX_ACCOUNTS_PER_RUN, "a number of accounts"), metavar="N",
        help="with --daily: accounts a run covers (default: BANK_PIPELINE_ACCOUNTS_PER_RUN)",
    )  # fmt: skip
    parser.add_argument(
        "--call-seconds", type=float, default=1.0, metavar="S",
        help="with --daily: seconds one bank call takes through TrueLayer (default 1.0)",
    )  # fmt: skip
    add_account_filter(parser, default="every active account")
    parser.add_argument(
        "--price-per-call",
        type=_price,
        metavar="USD",
        help="expected cost of one model call (default: 0 for the offline enricher, else estimated from the price table)",
    )
    parser.set_defaults(func=run)


def default_price_per_call(settings: Settings) -> Decimal | None:
    """USD per model call for the configured enricher (0 offline); None when the model has no price."""
    if settings.enricher == "offline":
        return Decimal(0)
    from bank_pipeline.enrich.pricing import PriceTable, estimate_call_cost

    prices = PriceTable.from_env()
    if prices.get(settings.anthropic_model) is None:
        return None
    return estimate_call_cost(settings.anthropic_model, settings.enrich_batch_size, prices)


def run(args: argparse.Namespace) -> int:
    from bank_pipeline.db import open_database, utcnow
    from bank_pipeline.planning import PlanError, format_plan, plan_backfill

    settings = Settings.from_env()
    if not args.daily and not (args.date_from and args.date_to):
        raise PlanError("plan needs --from DATE and --to DATE (a backfill), or --daily (the daily import)")
    engine = open_database(settings.database_url)
    today = utcnow().astimezone(ZoneInfo(settings.timezone)).date()  # the partitions' local today
    if args.daily:
        from bank_pipeline.planning import format_daily_plan, plan_daily

        daily = plan_daily(
            engine,
            accounts_per_run=args.accounts_per_run or settings.accounts_per_run,
            fetch_concurrency=settings.fetch_concurrency,
            lookback_days=settings.lookback_days,
            max_window_days=settings.max_window_days,
            unattended_budget=settings.unattended_daily_budget,
            today=today,
            call_seconds=args.call_seconds,
        )
        print(format_daily_plan(daily))
        return 0
    price = args.price_per_call if args.price_per_call is not None else default_price_per_call(settings)
    plan = plan_backfill(
        engine,
        args.date_from,
        args.date_to,
        args.accounts,
        max_window_days=settings.max_window_days,
        enrich_batch_size=settings.enrich_batch_size,
        price_per_call_estimate=price,
        unattended_budget=settings.unattended_daily_budget,
        backfill_reserve=settings.backfill_reserve,
        lookback_days=settings.lookback_days,
        refetch_after_hours=settings.refetch_after_hours,
        today=today,
    )
    print(format_plan(plan))
    from bank_pipeline.enrich.status import enrichment_status

    print(enrichment_status(engine, price, settings.enrich_batch_size).describe())
    return 0
