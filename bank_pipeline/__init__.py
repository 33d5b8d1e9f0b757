"""bank_pipeline: TrueLayer transactions into a de-duplicated, categorised ledger, on Dagster."""
