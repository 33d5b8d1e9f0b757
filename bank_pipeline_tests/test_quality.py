"""The ledger checks: they pass on clean data and catch what they exist to catch."""

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from bank_pipeline import quality
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, connections, quarantine, transactions


def _account(conn) -> int:
    now = utcnow()
    cid = conn.execute(connections.insert().values(status="active", created_at=now, updated_at=now)
                       .returning(connections.c.id)).scalar_one()
    return conn.execute(accounts.insert().values(
        account_key="aq1", identity="sort:1:2", connection_id=cid, kind="account", provider_account_id="p",
        created_at=now, updated_at=now).returning(accounts.c.id)).scalar_one()


def _ledger(engine, amounts_by_day: list[tuple[int, str, str]], skip: set[int] = frozenset()) -> None:
    """Rows (day, amount, hh:mm) posted in order from a 100.00 opening balance; `skip` drops rows by index."""
    with engine.begin() as conn:
        account_id = _account(conn)
        balance = Decimal("100.00")
        rows = []
        for i, (day, amount, clock) in enumerate(amounts_by_day):
            balance += Decimal(amount)
            if i in skip:
                continue
            when = dt.datetime.fromisoformat(f"2026-03-{day:02d}T{clock}:00+00:00")
            rows.append(dict(dedup_key=f"k{i}", account_id=account_id, transaction_id=f"t{i}",
                             booking_date=when.date(), booked_at=when, amount=Decimal(amount), currency="GBP",
                             direction="debit" if amount.startswith("-") else "credit", description=f"row {i}",
                             running_balance=balance, loaded_at=utcnow()))
        # Insert the day's rows in reverse: load order must not matter, nor midnight stamps.
        conn.execute(transactions.insert(), list(reversed(rows)))


POSTINGS = [(1, "-3.40", "00:00"), (1, "-12.00", "09:15"), (1, "2500.00", "00:00"),
            (2, "-40.26", "00:00"), (2, "-3.40", "00:00"), (3, "-1250.00", "07:00")]


def test_balances_that_add_up_in_any_same_day_order_pass(engine):
    _ledger(engine, POSTINGS)
    assert quality.running_balance_gaps(engine) == []


def test_a_missing_transaction_is_a_gap(engine):
    _ledger(engine, POSTINGS, skip={3})
    gaps = quality.running_balance_gaps(engine)
    assert [g["booking_date"] for g in gaps] == ["2026-03-02"]


def test_duplicates_and_unexplained_quarantine_are_counted(engine):
    with engine.begin() as conn:
        account_id = _account(conn)
        now = utcnow()
        for key in ("a", "b"):
            conn.execute(transactions.insert().values(
                dedup_key=key, account_id=account_id, transaction_id=key, normalised_provider_transaction_id="same",
                booking_date=dt.date(2026, 3, 1), booked_at=now, amount=1, currency="GBP", direction="credit",
                description="x", loaded_at=now))
        conn.execute(quarantine.insert().values(account_id=account_id, partition_date=dt.date(2026, 3, 1),
                                                reason="amount is '12,50'", payload="{}", created_at=now))
    assert quality.duplicate_provider_ids(engine)[0]["copies"] == 2
    assert quality.unexplained_quarantine(engine) == 1
    with engine.begin() as conn:
        conn.execute(sa.update(quarantine).values(resolved_at=utcnow(), resolution="bank error, ignored"))
    assert quality.unexplained_quarantine(engine) == 0


def test_a_gap_equal_to_a_pending_transaction_is_not_reported(engine):
    from bank_pipeline.db.schema import pending_transactions

    _ledger(engine, POSTINGS, skip={3})  # the -40.26 has not booked yet: the bank shows it pending
    with engine.begin() as conn:
        account_id = conn.execute(sa.select(accounts.c.id)).scalar_one()
        conn.execute(pending_transactions.insert().values(
            account_id=account_id, transaction_id="pend-1", booking_date=dt.date(2026, 3, 2),
            booked_at=utcnow(), amount=Decimal("-40.26"), currency="GBP", direction="debit",
            description="SHELL", fetched_at=utcnow()))
    assert quality.running_balance_gaps(engine) == []


def test_a_scope_looks_only_at_its_account_days(engine):
    _ledger(engine, POSTINGS, skip={3})  # the gap is on 2026-03-02
    with engine.connect() as conn:
        account_id = conn.execute(sa.select(accounts.c.id)).scalar_one()
    elsewhere = quality.LedgerScope((account_id,), dt.date(2026, 3, 3), dt.date(2026, 3, 31))
    there = quality.LedgerScope((account_id,), dt.date(2026, 3, 2), dt.date(2026, 3, 2))
    other_account = quality.LedgerScope((account_id + 1,), dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert quality.running_balance_gaps(engine, scope=elsewhere) == []
    assert quality.running_balance_gaps(engine, scope=other_account) == []
    assert [g["booking_date"] for g in quality.running_balance_gaps(engine, scope=there)] == ["2026-03-02"]
    with engine.begin() as conn:
        conn.execute(quarantine.insert().values(account_id=account_id, partition_date=dt.date(2026, 3, 2),
                                                reason="bad", payload="{}", created_at=utcnow()))
    assert quality.unexplained_quarantine(engine, there) == 1
    assert quality.unexplained_quarantine(engine, elsewhere) == 0


def test_the_checks_follow_the_runs_partitions(sqlite_url):
    """Through Dagster: a run over one account-day checks that day; a gap elsewhere does not fail it."""
    import dagster as dg

    from bank_pipeline.db import make_engine
    from bank_pipeline.orchestration.checks import ledger_checks
    from bank_pipeline.orchestration.partitions import partition_key, transaction_partitions
    from bank_pipeline.orchestration.resources import AppDatabase

    engine = make_engine(sqlite_url)
    _ledger(engine, POSTINGS, skip={3})  # the gap is on 2026-03-02, account "aq1"

    @dg.asset(name="loaded_transactions", partitions_def=transaction_partitions)
    def stand_in() -> None:
        """Stands in for the loaded asset: the checks read the ledger, not the asset's output."""

    def check_results(day: dt.date) -> dict[str, dg.AssetCheckEvaluation]:
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("accounts", ["aq1"])
            result = dg.materialize(
                [stand_in, *ledger_checks], instance=instance, partition_key=partition_key("aq1", day),
                resources={"database": AppDatabase(url=sqlite_url)},
            )
            return {e.check_name: e for e in result.get_asset_check_evaluations()}

    clean_day = check_results(dt.date(2026, 3, 3))
    assert clean_day["running_balances_continuous"].passed
    assert clean_day["running_balances_continuous"].metadata["scope"].value == "1 account(s), 2026-03-03 to 2026-03-03"
    gap_day = check_results(dt.date(2026, 3, 2))
    assert not gap_day["running_balances_continuous"].passed


def test_a_run_over_a_range_shows_each_partitions_own_check_result(sqlite_url):
    """Dagster records a range run's check once, for no partition (each partition would show
    "Skipped"): the checks add one result per partition, so the gap's day alone shows as failed."""
    import dagster as dg
    from dagster._core.definitions.partitions.context import partition_loading_context

    from bank_pipeline.db import make_engine
    from bank_pipeline.orchestration.checks import ledger_checks
    from bank_pipeline.orchestration.partitions import (
        RANGE_END_TAG,
        RANGE_START_TAG,
        partition_key,
        transaction_partitions,
    )
    from bank_pipeline.orchestration.resources import AppDatabase

    engine = make_engine(sqlite_url)
    _ledger(engine, POSTINGS, skip={3})  # the gap is on 2026-03-02, account "aq1"
    with engine.begin() as conn:
        account_id = conn.execute(sa.select(accounts.c.id)).scalar_one()
        conn.execute(quarantine.insert().values(account_id=account_id, partition_date=dt.date(2026, 3, 3),
                                                reason="bad", payload="{}", created_at=utcnow()))

    @dg.asset(name="loaded_transactions", partitions_def=transaction_partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def stand_in() -> None:
        """Stands in for the loaded asset: the checks read the ledger, not the asset's output."""

    days = {str(partition_key("aq1", dt.date(2026, 3, d))): d for d in (1, 2, 3)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("accounts", ["aq1"])
        result = dg.materialize(
            [stand_in, *ledger_checks], instance=instance, resources={"database": AppDatabase(url=sqlite_url)},
            tags={RANGE_START_TAG: partition_key("aq1", dt.date(2026, 3, 1)),
                  RANGE_END_TAG: partition_key("aq1", dt.date(2026, 3, 3))},
        )
        assert result.success
        shown = {}
        for check in ledger_checks:
            with partition_loading_context(dynamic_partitions_store=instance):
                state = instance.event_log_storage.get_asset_check_state(
                    [(check.check_key, transaction_partitions)])[check.check_key]
            shown[check.check_key.name] = {
                days[key]: status.value for status, subset in state.subsets.items()
                for key in subset.subset_value.get_partition_keys() if key in days
            }
    assert shown == {
        "no_duplicate_transactions": {1: "SUCCEEDED", 2: "SUCCEEDED", 3: "SUCCEEDED"},
        "running_balances_continuous": {1: "SUCCEEDED", 2: "FAILED", 3: "SUCCEEDED"},
        "quarantine_explained": {1: "SUCCEEDED", 2: "SUCCEEDED", 3: "FAILED"},
    }
