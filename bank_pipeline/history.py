"""History at connect time, as TrueLayer intends.

Data older than 90 days is only served in the first minutes after the user authenticates
(`sca_exceeded` later), and calls made while the user is present (`X-PSU-IP`) do not count
against the bank's 4 unattended calls a day. So right after `connect`, while the user is still
there, `land_history` fetches every account's history (default two years, or as far as the bank
goes) as attended calls and lands it verbatim in the raw store. `import_history` then takes it
through the Dagster assets in runs the user sees in the UI; those runs replay what landed
(fetch mode `landed`) and make no bank call.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from bank_pipeline import clock
from bank_pipeline.config import Settings

# The user's address when none is configured: the browser that just answered the consent runs on
# this machine. Set TRUELAYER_PSU_IP when the pipeline serves users elsewhere.
LOCAL_PSU_IP = "127.0.0.1"


@dataclass
class HistoryWindow:
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def history_window(settings: Settings, days: int | None = None) -> HistoryWindow:
    """`days` (default `settings.history_days`) up to today, in the partitions' calendar, never
    before the partitions' start."""
    days = settings.history_days if days is None else days
    today = clock.today_in(settings.timezone)
    start = dt.date.fromisoformat(settings.start_date)
    return HistoryWindow(max(start, today - dt.timedelta(days=max(days, 1) - 1)), today)


def record_partitions_start(settings: Settings, engine) -> dt.date | None:
    """At the first bank's connect, record where the day partitions begin: as far back as history
    can reach (`history_days`, at least `initial_backfill_days`), not years before any data, so the
    UI's "% filled" means something. Left alone when BANK_PIPELINE_START_DATE is set, a start is
    recorded already, or other connections existed (their partitions keep their start)."""
    import os

    import sqlalchemy as sa

    from bank_pipeline.config import PARTITIONS_START_FILE
    from bank_pipeline.db.schema import connections

    recorded = settings.home / PARTITIONS_START_FILE
    if os.environ.get("BANK_PIPELINE_START_DATE") or recorded.exists():
        return None
    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(connections)).scalar_one() > 1:
            return None
    reach = max(settings.history_days, settings.initial_backfill_days, 1)
    start = clock.today_in(settings.timezone) - dt.timedelta(days=reach - 1)
    settings.home.mkdir(parents=True, exist_ok=True)
    recorded.write_text(start.isoformat() + "\n")
    return start


def land_history(
    settings: Settings,
    connection_id: int,
    accounts: list[dict],
    window: HistoryWindow,
    *,
    out: Callable[[str], None] = print,
) -> dict[str, int]:
    """Fetch each account's `window` as attended calls and land it; returns rows landed per account key."""
    from bank_pipeline.connections import open_data_client
    from bank_pipeline.db import make_engine
    from bank_pipeline.ingest.fetch import fetch_account_days

    attended = dataclasses.replace(settings, psu_ip=settings.psu_ip or LOCAL_PSU_IP)
    engine = make_engine(settings.database_url)
    days = [window.first + dt.timedelta(days=n) for n in range(window.days)]
    landed: dict[str, int] = {}
    try:
        with open_data_client(engine, attended, connection_id) as client:
            for account in accounts:
                stats = fetch_account_days(
                    engine,
                    client,
                    account,
                    days,
                    run_id=f"connect-{connection_id}",
                    max_window_days=settings.max_window_days,
                    today=clock.today_utc(),
                )
                landed[account["account_key"]] = stats.booked_rows
                out(f"  {account['account_key']}: {stats.booked_rows} transactions from {window.first} "
                    f"({stats.api_calls} attended call(s))")
    finally:
        engine.dispose()
    return landed


def land_mandates(
    settings: Settings,
    connection_id: int,
    accounts: list[dict],
    *,
    out: Callable[[str], None] = print,
) -> dict[str, int]:
    """Fetch each bank account's direct debits and standing orders as attended calls (the user is
    present at connect time, so they cost none of the 4 unattended calls a day) and store them in
    `bank_mandates` for the `recurring_payments` asset. Cards have none. A bank that does not offer
    the endpoints (501) or refuses them leaves the account without: the detector still works."""
    from bank_pipeline.analytics.recurring import store_mandates
    from bank_pipeline.connections import open_data_client
    from bank_pipeline.db import make_engine
    from bank_pipeline.truelayer.errors import AuthorizationRequired, TrueLayerError

    attended = dataclasses.replace(settings, psu_ip=settings.psu_ip or LOCAL_PSU_IP)
    engine = make_engine(settings.database_url)
    stored: dict[str, int] = {}
    try:
        with open_data_client(engine, attended, connection_id) as client:
            for account in accounts:
                if account["kind"] != "account":
                    continue
                listed: list[list[dict]] = []
                for name, call in (("direct debits", client.direct_debits), ("standing orders", client.standing_orders)):
                    try:
                        listed.append(call(account["provider_account_id"]))
                    except AuthorizationRequired:
                        raise
                    except TrueLayerError as exc:
                        out(f"  {account['account_key']}: no {name} from the bank ({exc.error or exc})")
                        listed.append([])
                stored[account["account_key"]] = n = store_mandates(engine, account["id"], *listed)
                out(f"  {account['account_key']}: {len(listed[0])} direct debit(s), {len(listed[1])} standing "
                    f"order(s) stored ({n} in all)")
    finally:
        engine.dispose()
    return stored


def import_history(instance, settings: Settings, account_keys: list[str], window: HistoryWindow, *, progress=print):
    """The landed history through the Dagster assets: one run per account, replaying the raw store
    (the runs make no bank call, so they need not be cut per bank window)."""
    from bank_pipeline.orchestration.partitions import FETCH_MODE_TAG
    from bank_pipeline.runner import run_imports

    return run_imports(
        instance,
        settings,
        account_keys,
        window.first,
        window.last,
        extra_tags={FETCH_MODE_TAG: "landed", "bank_pipeline/trigger": "connect"},
        progress=progress,
        whole_range=True,
        analytics=True,
    )
