"""`bank-pipeline transfers list|reject ID|link ID ID|match`: the transfers between own accounts."""

from __future__ import annotations

import argparse

from bank_pipeline.cli_args import add_actions, add_date_range, database_id, int_between
from bank_pipeline.commands import configured_database


def register(subparsers: argparse._SubParsersAction) -> None:
    from bank_pipeline.analytics.transfers import DEFAULT_WINDOW_DAYS, MAX_WINDOW_DAYS

    parser = subparsers.add_parser(
        "transfers",
        help="list, reject or link transfers between your own accounts",
        description="Transfers between your own accounts are paired by the `transfers` asset (after "
        "enrichment) and labelled `transfers` unless you set a category. Reject a wrong pair (it is "
        "never proposed again) or link two transactions yourself.",
    )
    actions = add_actions(parser)
    show = actions.add_parser("list", help="the pairs, by day (ID, days, amount, from → to)")
    add_date_range(show, required=False, first="first sending day", last="last sending day")
    show.set_defaults(func=_list_cmd)
    reject = actions.add_parser("reject", help="not a transfer: undo the pair and never propose it again")
    reject.add_argument("transfer_id", type=database_id, metavar="ID", help="the pair's id (from `list`)")
    reject.set_defaults(func=_reject_cmd)
    link = actions.add_parser("link", help="pair two transactions (money out of one account, into another)")
    link.add_argument("first", type=database_id, metavar="ID", help="a transaction id")
    link.add_argument("second", type=database_id, metavar="ID", help="the other transaction id")
    link.set_defaults(func=_link_cmd)
    match = actions.add_parser("match", help="pair the ledger's legs now (as the `transfers` asset does)")
    match.add_argument(
        "--window-days",
        type=int_between(0, MAX_WINDOW_DAYS, "a number of days"),
        default=DEFAULT_WINDOW_DAYS,
        help=f"most days between the sending and receiving legs of an amount-only match (default {DEFAULT_WINDOW_DAYS})",
    )
    match.set_defaults(func=_match_cmd)


def _list_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.transfers import list_transfers

    with configured_database() as engine:
        rows = list_transfers(engine, args.date_from, args.date_to)
    if not rows:
        print("no transfers between your own accounts")
        return 0
    for r in rows:
        days = r.debit_day.isoformat() + ("" if r.credit_day == r.debit_day else f" → {r.credit_day.isoformat()}")
        print(
            f"{r.id}\t{days}\t{r.amount} {r.currency}\t{r.from_account} → {r.to_account}\t[{r.method}]"
            f"\ttransactions {r.debit_id} → {r.credit_id}"
        )
    return 0


def _reject_cmd(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from bank_pipeline.analytics.corrections import apply_after, labels, summary
    from bank_pipeline.analytics.transfers import reject_transfer
    from bank_pipeline.db.schema import transfers

    with configured_database() as engine:
        with engine.connect() as conn:
            legs = conn.execute(sa.select(transfers.c.debit_transaction_id, transfers.c.credit_transaction_id)
                                .where(transfers.c.id == args.transfer_id)).first()
        before = labels(engine, legs or ())
        debit, credit = reject_transfer(engine, args.transfer_id)
        applied = apply_after(engine, before, "cli-transfers-reject")
    print(f"transfer {args.transfer_id} rejected: transactions {debit} and {credit} will not be paired again")
    print(summary(applied))
    return 0


def _link_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.corrections import apply_after, labels, summary
    from bank_pipeline.analytics.transfers import link_transfer

    with configured_database() as engine:
        before = labels(engine, [args.first, args.second])
        transfer_id = link_transfer(engine, args.first, args.second)
        applied = apply_after(engine, before, "cli-transfers-link")
    print(f"transfer {transfer_id}: transactions {args.first} and {args.second} linked")
    print(summary(applied))
    return 0


def _match_cmd(args: argparse.Namespace) -> int:
    from bank_pipeline.analytics.transfers import update_transfers

    with configured_database() as engine:
        stats = update_transfers(engine, window_days=args.window_days, run_id="cli")
    meta = stats.as_metadata()
    print(
        f"{meta['new_pairs']} new pair(s) ({meta['new_by_identifier']} by account, {meta['new_by_reference']} by "
        f"reference, {meta['new_by_amount']} by amount and date); {meta['pairs']} in all; "
        f"{meta['recategorised']} leg(s) labelled transfers, {meta['kept_override']} kept your category"
    )
    return 0
