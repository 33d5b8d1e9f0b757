"""bank_pipeline: TrueLayer transactions into a de-duplicated, categorised ledger, on Dagster."""

# `dagster job execute -m bank_pipeline` and `dagster dev -m bank_pipeline` find the definitions here.
from bank_pipeline.definitions import defs  # noqa: E402

__all__ = ["defs"]
