"""What a backfill will cost before it is launched: runs, bank calls, budget, model calls, money.

A year-long backfill is cheap in Dagster runs and bank calls only if it coalesces (one run and a
few windows per account, not one per day); this planner shows the numbers so a user can see that
before pressing the button, and whether today's unattended-call budget can take it.

Runs follow the assets' backfill policy: Dagster cuts a backfill per account, then into runs of at
most one bank window (90 days), so each run is one TrueLayer call. Settled days (older than the
look-back window) that already landed are replayed from the raw store with no call. A backfill
spends at most `unattended_budget - backfill_reserve` unattended calls per account a day, keeping
the rest for the daily import; what does not fit fails today (failed partitions) and lands when the
backfill is re-executed from failure on a later day — or at once when history is imported at
connect time, as attended calls.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import Engine

from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import accounts, api_call_budget, enrichments, transactions
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.ingest.fetch import PENDING_NEAR_TODAY_DAYS, days_to_fetch, fresh_since, plan_windows
from bank_pipeline.truelayer.errors import InvalidDateRange
from bank_pipeline.truelayer.windows import as_date, split_windows

HISTORY_DAYS = 90
# The enrichment source that costs a model call; every other (override, rule, classifier, cache,
# provider) is free.
MODEL_SOURCE = "model"


class PlanError(BankPipelineError, ValueError):
    """The backfill cannot be planned as asked (bad range, unknown account, bad setting)."""


@dataclass(frozen=True)
class AccountPlan:
    account_key: str
    display_name: str | None
    kind: str
    active: bool
    partitions: int  # account x day partition keys
    runs: int  # Dagster runs for this account (one per bank window of the range)
    windows: list[tuple[dt.date, dt.date]]  # booked-transaction requests (days not already landed)
    replayed_days: int  # settled days already landed: replayed from the raw store, no call
    pending_call: bool  # the pending-transactions request (range ends within a week of today)
    budget_used_today: int
    budget_remaining_today: int  # for this backfill: the reserve for the daily import excluded
    backfill_calls_per_day: int  # unattended calls a backfill may spend per day
    history_days: int  # days of loaded history the estimate is based on (0: none)
    history_per_day: float | None
    expected_transactions: float | None  # None: unknown (no loaded history)
    expected_model_calls: int | None
    estimated_cost_usd: Decimal | None

    @property
    def api_calls(self) -> int:
        return len(self.windows) + int(self.pending_call)

    @property
    def fits_budget(self) -> bool:
        return self.api_calls <= self.budget_remaining_today

    @property
    def days_to_land(self) -> int:
        """UTC days until every call has been made (1: today), unattended, within the budget."""
        left = self.api_calls - self.budget_remaining_today
        if left <= 0:
            return 1
        if self.backfill_calls_per_day <= 0:
            return 0  # never, unattended
        return 1 + math.ceil(left / self.backfill_calls_per_day)


@dataclass(frozen=True)
class BackfillPlan:
    date_from: dt.date
    date_to: dt.date
    today: dt.date
    budget_day: dt.date
    days: int
    runs: int
    max_window_days: int
    unattended_budget: int
    backfill_reserve: int
    enrich_batch_size: int
    cache_hit_rate: float | None  # share of past enrichments that needed no model call
    price_per_call_usd: Decimal | None
    accounts: list[AccountPlan] = field(default_factory=list)

    @property
    def partitions(self) -> int:
        return sum(a.partitions for a in self.accounts)

    @property
    def api_calls(self) -> int:
        return sum(a.api_calls for a in self.accounts)

    @property
    def fits_budget(self) -> bool:
        return all(a.fits_budget for a in self.accounts)

    @property
    def expected_transactions(self) -> float | None:
        """Sum over accounts with history; None when no account has any."""
        known = [a.expected_transactions for a in self.accounts if a.expected_transactions is not None]
        return sum(known) if known else None

    @property
    def expected_model_calls(self) -> int | None:
        known = [a.expected_model_calls for a in self.accounts if a.expected_model_calls is not None]
        return sum(known) if known else None

    @property
    def estimated_cost_usd(self) -> Decimal | None:
        known = [a.estimated_cost_usd for a in self.accounts if a.estimated_cost_usd is not None]
        return sum(known, Decimal(0)) if known else None

    @property
    def unknown_history(self) -> list[str]:
        return [a.account_key for a in self.accounts if a.expected_transactions is None]


def _as_date(value: dt.date | str, name: str) -> dt.date:
    try:
        return as_date(value, name)
    except InvalidDateRange as exc:
        raise PlanError(f"--{name} must be a date like 2026-01-31, got {value!r}") from exc


def _select_accounts(conn, account_keys: Iterable[str] | None) -> list[dict]:
    columns = [
        accounts.c.id,
        accounts.c.account_key,
        accounts.c.display_name,
        accounts.c.kind,
        accounts.c.active,
    ]
    if account_keys is None:
        rows = conn.execute(
            sa.select(*columns).where(accounts.c.active.is_(True)).order_by(accounts.c.account_key)
        ).mappings()
        return [dict(r) for r in rows]
    wanted = list(dict.fromkeys(account_keys))
    rows = {
        r["account_key"]: dict(r)
        for r in conn.execute(sa.select(*columns).where(accounts.c.account_key.in_(wanted))).mappings()
    }
    missing = [key for key in wanted if key not in rows]
    if missing:
        known = list(
            conn.execute(sa.select(accounts.c.account_key).order_by(accounts.c.account_key)).scalars()
        )
        hint = (
            f"known accounts: {', '.join(known[:20])}{' …' if len(known) > 20 else ''}"
            if known
            else "no accounts are connected yet"
        )
        raise PlanError(f"unknown account key{'s' if len(missing) > 1 else ''} {', '.join(missing)} ({hint})")
    return [rows[key] for key in wanted]


def _history_rate(conn, account_id: int) -> tuple[int, float | None]:
    """(days of history used, booked transactions per day) over the last 90 days of loaded history."""
    first, last = conn.execute(
        sa.select(sa.func.min(transactions.c.booking_date), sa.func.max(transactions.c.booking_date)).where(
            transactions.c.account_id == account_id
        )
    ).one()
    if last is None:
        return 0, None
    first, last = _as_date(first, "history"), _as_date(last, "history")
    start = max(first, last - dt.timedelta(days=HISTORY_DAYS - 1))
    count = conn.execute(
        sa.select(sa.func.count()).where(
            transactions.c.account_id == account_id, transactions.c.booking_date >= start
        )
    ).scalar_one()
    days = (last - start).days + 1
    return days, count / days


def _cache_hit_rate(conn) -> float | None:
    """Share of all past enrichments that came from a free tier (override, rule, cache, provider)."""
    total, model = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((enrichments.c.source == MODEL_SOURCE, 1), else_=0)), 0),
        )
    ).one()
    return None if not total else 1 - int(model) / int(total)


def plan_backfill(
    engine: Engine,
    date_from: dt.date | str,
    date_to: dt.date | str,
    account_keys: Iterable[str] | None = None,
    *,
    max_window_days: int,
    enrich_batch_size: int,
    price_per_call_estimate: Decimal | float | str | None,
    unattended_budget: int,
    backfill_reserve: int = 0,
    lookback_days: int = 3,
    refetch_after_hours: int = 0,
    today: dt.date | None = None,
    budget_day: dt.date | None = None,
) -> BackfillPlan:
    """Plan importing `date_from..date_to` (inclusive) for the given accounts (default: all active).

    `price_per_call_estimate` is the expected USD cost of one model call (None: unknown, e.g. no
    pricing for the model); `unattended_budget` the bank's unattended calls per account per day;
    `today` (the last day with a partition; pass the local date) and `budget_day` (the UTC day the
    budget counts, as in `limits.UnattendedBudget`) default to the current UTC date.
    """
    start, end = _as_date(date_from, "from"), _as_date(date_to, "to")
    today = today or utcnow().date()
    budget_day = budget_day or utcnow().date()
    if start > end:
        raise PlanError(f"invalid date range: --from {start.isoformat()} is after --to {end.isoformat()}")
    if end > today:
        raise PlanError(
            f"--to {end.isoformat()} is in the future (today is {today.isoformat()}); "
            "there are no partitions for days that have not started"
        )
    if max_window_days < 1:
        raise PlanError(f"max_window_days must be at least 1, got {max_window_days}")
    if enrich_batch_size < 1:
        raise PlanError(f"enrich_batch_size must be at least 1, got {enrich_batch_size}")
    price = None if price_per_call_estimate is None else Decimal(str(price_per_call_estimate))
    days = (end - start).days + 1
    all_days = [start + dt.timedelta(days=i) for i in range(days)]
    pending = end >= today - dt.timedelta(days=PENDING_NEAR_TODAY_DAYS)
    runs_per_account = len(split_windows(start, end, max_window_days))
    per_day_allowance = max(0, unattended_budget - backfill_reserve)
    fresh = fresh_since(refetch_after_hours)

    with engine.connect() as conn:
        selected = _select_accounts(conn, account_keys)
        hit_rate = _cache_hit_rate(conn)
        used_today = dict(
            conn.execute(
                sa.select(api_call_budget.c.account_id, api_call_budget.c.unattended_calls).where(
                    api_call_budget.c.day == budget_day
                )
            ).all()
        )
        plans = []
        for account in selected:
            wanted = days_to_fetch(
                engine, account["id"], all_days, mode="auto",
                settled_before=today - dt.timedelta(days=lookback_days), fresh_since=fresh,
            )  # fmt: skip
            windows = plan_windows(wanted, max_window_days)
            history_days, per_day = _history_rate(conn, account["id"])
            expected = None if per_day is None else per_day * days
            model_calls = cost = None
            if expected is not None:
                uncached = expected * (1 - (hit_rate or 0.0))
                model_calls = math.ceil(round(uncached, 6) / enrich_batch_size)
                cost = None if price is None else (price * model_calls).quantize(Decimal("0.0001"))
            used = int(used_today.get(account["id"], 0))
            plans.append(
                AccountPlan(
                    account_key=account["account_key"],
                    display_name=account["display_name"],
                    kind=account["kind"],
                    active=bool(account["active"]),
                    partitions=days,
                    runs=runs_per_account,
                    windows=list(windows),
                    replayed_days=days - len(wanted),
                    pending_call=pending,
                    budget_used_today=used,
                    budget_remaining_today=max(0, per_day_allowance - used),
                    backfill_calls_per_day=per_day_allowance,
                    history_days=history_days,
                    history_per_day=per_day,
                    expected_transactions=expected,
                    expected_model_calls=model_calls,
                    estimated_cost_usd=cost,
                )
            )
    return BackfillPlan(
        date_from=start,
        date_to=end,
        today=today,
        budget_day=budget_day,
        days=days,
        runs=runs_per_account * len(plans),
        max_window_days=max_window_days,
        unattended_budget=unattended_budget,
        backfill_reserve=backfill_reserve,
        enrich_batch_size=enrich_batch_size,
        cache_hit_rate=hit_rate,
        price_per_call_usd=price,
        accounts=plans,
    )


def _num(value: float | None, unknown: str = "unknown") -> str:
    return unknown if value is None else f"{value:,.0f}"


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def format_plan(plan: BackfillPlan) -> str:
    """A readable table with one line per account and the totals."""
    lines = [
        f"Backfill {plan.date_from.isoformat()} .. {plan.date_to.isoformat()} "
        f"({plan.days} day{'s' if plan.days != 1 else ''}) for {len(plan.accounts)} account"
        f"{'s' if len(plan.accounts) != 1 else ''}",
    ]
    if not plan.accounts:
        lines.append("No active accounts: connect a bank first (`bank-pipeline connect`).")
        return "\n".join(lines)
    header = (
        "account",
        "name",
        "partitions",
        "runs",
        "bank calls",
        "budget today",
        "exp. txns",
        "model calls",
        "est. cost",
    )
    rows = []
    for a in plan.accounts:
        calls = f"{len(a.windows)}+{int(a.pending_call)}={a.api_calls}"
        budget = f"{a.budget_remaining_today} left, {'fits' if a.fits_budget else 'NO'}"
        name = (a.display_name or a.kind) + ("" if a.active else " (inactive)")
        rows.append(
            (a.account_key, name[:24], f"{a.partitions:,}", str(a.runs), calls, budget,
             _num(a.expected_transactions), _num(a.expected_model_calls), _money(a.estimated_cost_usd))
        )  # fmt: skip
    total_budget = "fits" if plan.fits_budget else "NO"
    rows.append(
        ("total", "", f"{plan.partitions:,}", str(plan.runs), str(plan.api_calls), total_budget,
         _num(plan.expected_transactions), _num(plan.expected_model_calls), _money(plan.estimated_cost_usd))
    )  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4, 6, 7, 8}

    def fmt(row) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    lines += [
        fmt(header),
        fmt(["-" * w for w in widths]),
        *[fmt(r) for r in rows[:-1]],
        fmt(["-" * w for w in widths]),
        fmt(rows[-1]),
    ]
    replayed = sum(a.replayed_days for a in plan.accounts)
    lines.append(
        f"Runs: one per account and bank window of at most {plan.max_window_days} days "
        f"(not {plan.partitions:,} runs of one partition); {replayed:,} settled account-day(s) already landed "
        "are replayed from the raw store with no bank call."
    )
    lines.append(
        f"Bank calls: booked windows of at most {plan.max_window_days} days + one pending call when the range ends "
        f"within {PENDING_NEAR_TODAY_DAYS} days of today; the bank allows {plan.unattended_budget} unattended calls "
        f"per account per UTC day and a backfill keeps {plan.backfill_reserve} of them for the daily import "
        f"(used so far on {plan.budget_day.isoformat()})."
    )
    if not plan.fits_budget:
        short = [a for a in plan.accounts if not a.fits_budget]
        longest = max(a.days_to_land for a in short)
        when = f"over {longest} UTC days" if longest else "never unattended (no calls left for backfills)"
        lines.append(
            f"Over today's budget for {', '.join(a.account_key for a in short)}: the windows that fit land today and "
            "the others fail (failed partitions, nothing fetched twice); re-execute the backfill from failure after "
            f"00:00 UTC each day, which lands it all {when}. Faster: history is imported at connect time as "
            "attended calls (`bank-pipeline connect --history-days N`)."
        )
    rate = (
        "no enrichment history, assumed 0%" if plan.cache_hit_rate is None else f"{plan.cache_hit_rate:.0%}"
    )
    price = "unknown" if plan.price_per_call_usd is None else f"${plan.price_per_call_usd:.4f} per call"
    lines.append(
        f"Model calls: expected transactions not served by overrides/rules/cache ({rate} historically) "
        f"/ batch size {plan.enrich_batch_size}; price {price}."
    )
    if plan.unknown_history:
        lines.append(
            f"Expected transactions unknown for {', '.join(plan.unknown_history)}: no loaded history yet."
        )
    return "\n".join(lines)


# --- the daily import over the whole population -------------------------------------------------

# Dagster's cost of one import run (launch, five steps, checks, event log), from the `daily_schedule`
# bench: 2.66 s per one-account run with 100 ms bank calls, on the 2-core development machine.
RUN_OVERHEAD_SECONDS = 2.5
# Work per account in a grouped run besides its bank calls (normalize, dedup, load, enrich and the
# event log for a few days): the `daily_scale` bench, 50 accounts in 23.6 s of which 4.2 s fetching,
# on the same machine under load (an upper bound).
ACCOUNT_SECONDS = 0.3


@dataclass(frozen=True)
class DailyPlan:
    """The daily import (yesterday + the look-back window) for every active account."""

    first: dt.date
    last: dt.date
    accounts: int
    accounts_per_run: int
    fetch_concurrency: int
    call_seconds: float
    run_overhead_seconds: float
    account_seconds: float
    unattended_budget: int
    bank_calls: int
    calls_per_account: dict[int, int]  # bank calls -> how many accounts make that many
    over_budget: list[str]  # accounts today's remaining budget cannot take

    @property
    def runs(self) -> int:
        return math.ceil(self.accounts / self.accounts_per_run)

    @property
    def most_calls(self) -> int:
        return max(self.calls_per_account, default=0)

    def run_seconds(self, accounts_in_run: int, concurrency: int) -> float:
        """One run: Dagster's overhead, the database work, and the bank calls `concurrency` accounts at a time."""
        waves = math.ceil(accounts_in_run / max(1, concurrency))
        return (self.run_overhead_seconds + self.account_seconds * accounts_in_run
                + waves * self.most_calls * self.call_seconds)  # fmt: skip

    @property
    def seconds_grouped(self) -> float:
        full, rest = divmod(self.accounts, self.accounts_per_run)
        seconds = full * self.run_seconds(self.accounts_per_run, self.fetch_concurrency)
        return seconds + (self.run_seconds(rest, self.fetch_concurrency) if rest else 0.0)

    @property
    def seconds_per_account(self) -> float:
        return self.accounts * self.run_seconds(1, 1)


def plan_daily(
    engine: Engine,
    *,
    accounts_per_run: int,
    fetch_concurrency: int,
    lookback_days: int,
    max_window_days: int,
    unattended_budget: int,
    today: dt.date,
    budget_day: dt.date | None = None,
    call_seconds: float = 1.0,
    run_overhead_seconds: float = RUN_OVERHEAD_SECONDS,
    account_seconds: float = ACCOUNT_SECONDS,
) -> DailyPlan:
    """Runs, bank calls and an estimate of the wall time of the daily import for every active account.

    `today` is the partitions' local day (the daily window ends the day before); calls per account
    follow the fetch step: the look-back days are re-read, a settled day already landed is
    replayed, and the pending set is refreshed.
    """
    from bank_pipeline.ingest.fetch import has_landed_pending

    for name, value in (("accounts per run", accounts_per_run), ("fetch concurrency", fetch_concurrency)):
        if value < 1:
            raise PlanError(f"{name} must be at least 1, got {value}")
    if call_seconds < 0:
        raise PlanError(f"--call-seconds cannot be negative, got {call_seconds}")
    budget_day = budget_day or utcnow().date()
    last = today - dt.timedelta(days=1)
    first = last - dt.timedelta(days=lookback_days)
    days = [first + dt.timedelta(days=i) for i in range(lookback_days + 1)]
    with engine.connect() as conn:
        selected = _select_accounts(conn, None)
        used_today = dict(
            conn.execute(
                sa.select(api_call_budget.c.account_id, api_call_budget.c.unattended_calls).where(
                    api_call_budget.c.day == budget_day
                )
            ).all()
        )
    calls_per_account: dict[int, int] = {}
    over_budget = []
    total = 0
    for account in selected:
        wanted = days_to_fetch(engine, account["id"], days, mode="auto",
                               settled_before=today - dt.timedelta(days=lookback_days))  # fmt: skip
        calls = len(plan_windows(wanted, max_window_days))
        calls += int(bool(wanted) or not has_landed_pending(engine, account["id"]))
        calls_per_account[calls] = calls_per_account.get(calls, 0) + 1
        total += calls
        if calls > unattended_budget - int(used_today.get(account["id"], 0)):
            over_budget.append(account["account_key"])
    return DailyPlan(
        first=first, last=last, accounts=len(selected), accounts_per_run=accounts_per_run,
        fetch_concurrency=fetch_concurrency, call_seconds=call_seconds,
        run_overhead_seconds=run_overhead_seconds, account_seconds=account_seconds,
        unattended_budget=unattended_budget, bank_calls=total, calls_per_account=calls_per_account,
        over_budget=over_budget,
    )  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def format_daily_plan(plan: DailyPlan) -> str:
    """Runs, bank calls and estimated time of the daily import, one run per account vs grouped."""
    lines = [
        f"Daily import of {plan.accounts:,} active account{'s' if plan.accounts != 1 else ''}: "
        f"{plan.first.isoformat()} .. {plan.last.isoformat()} (yesterday and the look-back window)"
    ]
    if not plan.accounts:
        lines.append("No active accounts: connect a bank first (`bank-pipeline connect`).")
        return "\n".join(lines)
    rows = [
        ("", "runs", "bank calls", "est. time"),
        ("one run per account", f"{plan.accounts:,}", f"{plan.bank_calls:,}", _duration(plan.seconds_per_account)),
        (f"grouped, {plan.accounts_per_run} a run", f"{plan.runs:,}", f"{plan.bank_calls:,}",
         _duration(plan.seconds_grouped)),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        lines.append("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]))
    shape = ", ".join(f"{n:,} account(s) {calls} call(s)" for calls, n in sorted(plan.calls_per_account.items()))
    lines.append(
        f"Bank calls per account: {shape} (booked windows of the days not yet settled and landed, "
        f"+ the pending set); the bank allows {plan.unattended_budget} unattended calls per account a day."
    )
    if plan.over_budget:
        shown = ", ".join(plan.over_budget[:10]) + (" …" if len(plan.over_budget) > 10 else "")
        lines.append(f"Over today's remaining budget: {len(plan.over_budget)} account(s) ({shown}); "
                     "their runs fail for them and the next day's run re-reads the window.")  # fmt: skip
    else:
        lines.append("Every account's calls fit today's remaining budget.")
    lines.append(
        f"Time, runs one after another: {plan.run_overhead_seconds:g} s of Dagster overhead a run + "
        f"{plan.account_seconds:g} s of database work an account + bank calls of {plan.call_seconds:g} s, "
        f"{plan.fetch_concurrency} account(s) at a time within a grouped run "
        "(BANK_PIPELINE_ACCOUNTS_PER_RUN, BANK_PIPELINE_FETCH_CONCURRENCY); the run queue runs several at "
        "once where the machine has the cores."
    )
    return "\n".join(lines)
