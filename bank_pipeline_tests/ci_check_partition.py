"""CI check: one imported account-day equals the simulator's ground truth (count and sum).

    python -m bank_pipeline_tests.ci_check_partition ACCOUNT_KEY YYYY-MM-DD
"""

import sys
from decimal import Decimal

import httpx
import sqlalchemy as sa

from bank_pipeline.config import Settings
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import accounts, enrichments, transactions


def main(account_key: str, day: str) -> int:
    settings = Settings.from_env()
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        account = conn.execute(sa.select(accounts).where(accounts.c.account_key == account_key)).one()
        count, total = conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(transactions.c.amount), 0)).where(
                transactions.c.account_id == account.id, transactions.c.booking_date == day
            )
        ).one()
        enriched = conn.execute(
            sa.select(sa.func.count())
            .select_from(enrichments.join(transactions, transactions.c.id == enrichments.c.transaction_id))
            .where(transactions.c.account_id == account.id, transactions.c.booking_date == day)
        ).scalar_one()
    truth = httpx.get(
        f"{settings.auth_url}/_sim/ground_truth", params={"user": "alice", "from": day, "to": day}
    ).json()
    expected = truth["accounts"][account.provider_account_id]
    ok = count == expected["count"] and Decimal(str(total)) == Decimal(str(expected["sum"])) and enriched == count
    print(
        f"{account_key} {day}: loaded {count} (sum {total}), enriched {enriched}; "
        f"simulator: {expected['count']} (sum {expected['sum']}) -> {'OK' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
