"""`bank-pipeline recurring list|dismiss ID|detect`: recurring payments (direct debits, standing
orders and the ledger's repeats)."""

from __future__ import annotations

import argparse

from bank_pipeline.cli_args import add_actions, database_id
from bank_pipeline.commands import configured_database


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recurring",
        help="list or dismiss recurring payments",
        description="Recurring payments are found by the `recurring_payments` asset (after enrichment): the "
        "direct debits and standing orders your bank listed when you connected, and weekly, monthly, "
        "quarterly or annual repeats in the ledger. Dismiss one that is not recurring: it stays dismissed.",
    )
    actions = add_actions(parser)
    show = actions.add_parser("list", help="the patterns by next expected date (ID, state, cadence, next date and amount)")
    show.add_argument("--all", action="store_true", help="include dismissed patterns")
    show.add_argument("--active", action="store_true", help="leave out the ones that ended")
    show.set_defaults(func=_list_cmd)
    dismiss = actions.add_parser("dismiss", help="not a recurring payment: hide it, also after later runs")
    dismiss.add_argument("pattern_id", type=database_id, metavar="ID", help="the pattern's id (from `list`)")
    dismiss.set_defaults(func=_dismiss_cmd)
    detect = actions.add_parser("detect", help="detect now over the whole ledger (as the asset does)")
    detect.set_defaults(func=_detect_cmd)


def _list_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.recurring import list_recurring

    with configured_database() as engine:
        rows = list_recurring(engine, include_dismissed=args.all, include_ended=not args.active)
    if not rows:
        print("no recurring payments found (run an import, or `bank-pipeline recurring detect`)")
        return 0
    for r in rows:
        amount = f"{'~' if r.variable_amount else ''}{abs(r.next_amount):.2f} {r.currency}"
        sign = "in " if r.direction == "credit" else "out"
        print(
            f"{r.id}\t{r.state:<6}\t{r.cadence:<9}\t{sign} {amount}\tnext {r.next_date.isoformat()}\t"
            f"{r.payee}\t[{r.source}, {r.occurrences}×, last {r.last_date.isoformat()}]\t{r.account_key}"
            + ("\tdismissed" if r.dismissed else "")
        )
    return 0


def _dismiss_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.recurring import dismiss_recurring, list_recurring

    with configured_database() as engine:
        payee = dismiss_recurring(engine, args.pattern_id)
        left = len(list_recurring(engine))
    print(f"recurring payment {args.pattern_id} ({payee}) dismissed: it stays hidden after later runs; "
          f"1 hidden now, {left} listed")
    return 0


def _detect_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.recurring import update_recurring

    with configured_database() as engine:
        stats = update_recurring(engine, run_id="cli")
    meta = stats.as_metadata()
    print(
        f"{meta['patterns']} recurring payment(s) ({meta['source_direct_debit']} direct debits, "
        f"{meta['source_standing_order']} standing orders, {meta['source_detected']} detected; "
        f"{meta['state_mature']} mature, {meta['state_early']} early, {meta['state_ended']} ended), "
        f"{meta['new']} new, {meta['dismissed']} dismissed kept hidden"
    )
    return 0
