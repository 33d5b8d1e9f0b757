"""What the simulator's `multi-1000` costs (a thousand accounts for one user), over HTTP with no injected
latency: connecting it, listing its accounts and cards, an account's first and second daily window
(yesterday + a 3-day look-back), then the first window of a sample of accounts spread over the user,
each of which generates its rows (and its money group's) on that first read.

    python -m bank_pipeline_tests.bench simulator_users                            # a sample of 30
    BENCH_SIM_ACCOUNTS=1000 python -m bank_pipeline_tests.bench simulator_users    # every account
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time

import httpx

TODAY = dt.date(2026, 11, 20)
USER = "multi-1000"
FAR = 977


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def run(args) -> None:
    from bank_pipeline.simulator import SimulatorConfig, run_in_thread
    from bank_pipeline_tests.fixtures.simulator import connect

    sample = int(os.environ.get("BENCH_SIM_ACCOUNTS") or (6 if args.quick else 30))
    window = {"from": str(TODAY - dt.timedelta(days=4)), "to": str(TODAY - dt.timedelta(days=1))}
    with run_in_thread(SimulatorConfig(seed=42, today=TODAY), host="127.0.0.1", port=0) as sim:
        tokens, t_connect = _timed(lambda: connect(sim, USER))
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}

        def get(path: str, **params) -> list[dict]:
            r = httpx.get(f"{sim.data_url}{path}", params=params, headers=headers, timeout=600)
            r.raise_for_status()
            return r.json()["results"]

        listed, t_list = _timed(lambda: get("/accounts") + get("/cards"))
        ids = {int(a["display_name"].rsplit(" ", 1)[1]): (a["account_id"], a.get("account_type")) for a in listed}
        lazy = sim.app_state.user_data(USER).accounts
        print(f"{USER}: connect {t_connect * 1000:.0f} ms, /accounts + /cards {t_list * 1000:.0f} ms "
              f"({len(listed)} listed, {lazy.generated} generated)")

        def window_of(n: int) -> tuple[int, float]:
            account_id, kind = ids[n]
            path = f"/{'accounts' if kind else 'cards'}/{account_id}/transactions"
            rows, seconds = _timed(lambda: get(path, **window))
            return len(rows), seconds

        (rows, first), (_, again) = window_of(FAR), window_of(FAR)
        print(f"account {FAR}: first 4-day window {first * 1000:.0f} ms ({rows} rows; {lazy.generated} accounts "
              f"generated), again {again * 1000:.1f} ms")

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        picks = sorted({1 + i * 1000 // sample for i in range(sample)} - {FAR})
        before = lazy.generated
        started = time.perf_counter()
        for n in picks:
            window_of(n)
        seconds = time.perf_counter() - started
        made = lazy.generated - before
        per_account = seconds / max(made, 1)
        rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024  # KiB on Linux
        print(f"first window of {len(picks)} more accounts: {seconds:.1f}s, {made} accounts generated "
              f"({per_account * 1000:.0f} ms an account; 1,000 accounts ≈ {per_account * 1000:.0f}s), "
              f"peak RSS +{rss_growth:.0f} MB ({lazy.generated} of 1,000 generated)")
