"""A step that fails on an exception it did not turn into a `Failure` (a database connection
dropped under it) still says why: the import's error line and the account's recorded failure
carry the cause after Dagster's `Error occurred while executing op "…":`, on SQLite and PostgreSQL."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from bank_pipeline.db import make_engine
from bank_pipeline.orchestration.sensors import step_failure_reason
from bank_pipeline.runner import _failure_reason

CAUSES = {
    "postgresql": "terminating connection due to administrator command",
    "sqlite": "Cannot operate on a closed database",
}


def _dropped_connection_job(db_url: str) -> dg.JobDefinition:
    @dg.op(name="loaded_transactions")
    def loaded_transactions() -> None:
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "postgresql":  # the server ends the session, as a failover does
                    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
                    with engine.connect() as other:
                        other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                else:  # SQLite has no server: the connection is closed under the step
                    conn.connection.dbapi_connection.close()
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()

    @dg.job(name="dropped_connection")
    def job() -> None:
        loaded_transactions()

    return job


def test_a_dropped_connection_is_named_after_the_op_that_hit_it(db_url):
    """Before: 'DagsterExecutionStepExecutionError: Error occurred while executing op
    "loaded_transactions":' and nothing after the colon, in the CLI and in `status`."""
    backend = make_engine(db_url).dialect.name
    with dg.DagsterInstance.ephemeral() as instance:
        result = _dropped_connection_job(db_url).execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        for reason in (_failure_reason(result), step_failure_reason(instance, result.run_id)):
            assert "\n" not in reason
            assert reason.startswith('Error occurred while executing op "loaded_transactions": '), reason
            assert CAUSES[backend] in reason, reason
