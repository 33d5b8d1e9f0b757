"""`bank-pipeline demo`: the whole pipeline on embedded defaults, with no configuration.

Starts the local TrueLayer simulator, connects a mock user unattended, lands the same history
`connect` lands by default (the person running the demo is present: attended calls), takes it
through Dagster in one run per account (SQLite for both the ledger and Dagster's own storage, the
offline enricher) and prints what this run did. So a year's backfill from the UI afterwards
replays what landed instead of asking the bank again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import socket
import time
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from bank_pipeline.config import SIMULATOR_DEFAULT_PORT, Settings
from bank_pipeline.db import make_engine, migrate
from bank_pipeline.db.schema import (
    accounts,
    enrichments,
    pending_transactions,
    quarantine,
    raw_fetches,
    transactions,
)
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.runner import RunOutcome, ensure_dagster_home


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def simulator_for(settings: Settings, seed: int):
    """The simulator on its default port (or a free one), with settings pointing at it."""
    from bank_pipeline.simulator import SimulatorConfig, run_in_thread

    port = SIMULATOR_DEFAULT_PORT if _port_free(SIMULATOR_DEFAULT_PORT) else 0
    config = SimulatorConfig(seed=seed, state_file=settings.home / "simulator-state.json")
    with run_in_thread(config, host="127.0.0.1", port=port) as sim:
        yield sim, dataclasses.replace(settings, auth_url=sim.auth_url, data_url=sim.data_url)


@dataclass
class DemoSummary:
    accounts: list[dict]
    runs: list[RunOutcome]
    first: dt.date
    last: dt.date
    seconds: float
    history_calls: int = 0  # attended calls that landed the history (none from the daily budget)

    def total(self, asset: str, name: str) -> int:
        return sum(int(r.metadata.get(asset, {}).get(name, 0) or 0) for r in self.runs)


def run_demo(
    settings: Settings, *, user: str = "alice", days: int | None = None, seed: int = 42, progress=print
) -> DemoSummary:
    """`days` of history up to today (default: `settings.history_days`, as `connect`)."""
    from bank_pipeline.connections.flow import connect
    from bank_pipeline.history import (
        history_window,
        import_history,
        land_history,
        land_mandates,
        record_partitions_start,
    )

    if settings.truelayer_env != "simulator":
        raise BankPipelineError("the demo runs against the local simulator: unset BANK_PIPELINE_TRUELAYER_ENV")
    started = time.perf_counter()
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate(make_engine(settings.database_url))
    ensure_dagster_home(settings)
    with simulator_for(settings, seed) as (sim, sim_settings):
        progress(f"Local TrueLayer simulator at {sim.base_url}; connecting mock user {user!r} (OAuth + PKCE) ...")
        # The person running the demo is present: calls are attended (no 4-a-day limit).
        sim_settings = dataclasses.replace(sim_settings, psu_ip=sim_settings.psu_ip or "127.0.0.1")
        result = connect(sim_settings, simulator_user=user, open_browser=False)
        land_mandates(sim_settings, result.connection_id, result.accounts, out=progress)
        record_partitions_start(settings, make_engine(settings.database_url))
        keys = sorted(a["account_key"] for a in result.accounts)
        window = history_window(settings, days)
        progress(f"Fetching history {window.first} .. {window.last} (attended calls, as connect does):")
        land_history(sim_settings, result.connection_id, result.accounts, window, out=progress)
        with dg.DagsterInstance.get() as instance:
            progress(f"Importing it through Dagster (one run per account, replaying what landed; "
                     f"instance at {instance.root_directory}):")
            runs = import_history(instance, sim_settings, keys, window, progress=progress)
    with make_engine(settings.database_url).connect() as conn:
        calls = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(raw_fetches.c.api_calls), 0)).where(
            raw_fetches.c.run_id == f"connect-{result.connection_id}")).scalar_one()
    return DemoSummary(result.accounts, runs, window.first, window.last, time.perf_counter() - started, int(calls))


def format_summary(settings: Settings, summary: DemoSummary) -> str:
    engine = make_engine(settings.database_url)
    ids = [a["id"] for a in summary.accounts]
    lines = [f"Imported {summary.first} .. {summary.last} for {len(ids)} account(s) in {summary.seconds:.1f}s "
             "(in the ledger now):"]
    with engine.connect() as conn:
        for account in summary.accounts:
            count, total = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(transactions.c.amount), 0)).where(
                    transactions.c.account_id == account["id"],
                    transactions.c.booking_date.between(summary.first, summary.last),
                )
            ).one()
            lines.append(
                f"  {account['account_key']}  {account['kind']:<7} {account['display_name'][:28]:<28} "
                f"{count:>6} transactions  net {total:>12.2f} {account.get('currency') or ''}"
            )
        pending = conn.execute(
            sa.select(sa.func.count()).select_from(pending_transactions).where(pending_transactions.c.account_id.in_(ids))
        ).scalar_one()
        quarantined = conn.execute(
            sa.select(sa.func.count()).select_from(quarantine).where(quarantine.c.account_id.in_(ids))
        ).scalar_one()
        by_source = dict(
            conn.execute(
                sa.select(enrichments.c.source, sa.func.count())
                .join(transactions, transactions.c.id == enrichments.c.transaction_id)
                .where(transactions.c.account_id.in_(ids), enrichments.c.run_id.in_([r.run_id for r in summary.runs]))
                .group_by(enrichments.c.source)
            ).all()
        )
        names = dict(conn.execute(sa.select(accounts.c.account_key, accounts.c.display_name)).all())
    failed = [r for r in summary.runs if not r.success]
    lines += [
        f"  new this time: {summary.total('loaded_transactions', 'inserted')}, "
        f"duplicates skipped: {summary.total('deduplicated_transactions', 'duplicate')}, "
        f"quarantined: {quarantined}, pending now: {pending}",
        f"  enriched this time, by source: {by_source or 'none'}",
        f"  bank calls: {summary.history_calls} attended (the history, while you were there), "
        f"{summary.total('fetched_transactions', 'api_calls')} from the Dagster runs",
        f"  Dagster runs: {len(summary.runs)} ({len(failed)} failed)",
    ]
    for run in failed:
        lines.append(f"  ! run {run.run_id} for {run.account_key} ({names.get(run.account_key)}) failed: {run.error}")
    return "\n".join(lines)
