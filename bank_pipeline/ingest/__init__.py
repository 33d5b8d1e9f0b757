"""The plain-Python ingest stages, each per (engine, account_id, days): fetch → normalize → dedup → load.

No Dagster here: `bank_pipeline.orchestration` wraps these functions in assets.
"""

from bank_pipeline.ingest.dedup import DedupStats, dedup_account_days
from bank_pipeline.ingest.fetch import FetchStats, fetch_account_days
from bank_pipeline.ingest.load import LoadStats, load_account_days
from bank_pipeline.ingest.normalize import (
    InvalidRow,
    NormalizedRow,
    NormalizeStats,
    normalize_account_days,
    normalize_row,
)

__all__ = [
    "DedupStats",
    "FetchStats",
    "InvalidRow",
    "LoadStats",
    "NormalizeStats",
    "NormalizedRow",
    "dedup_account_days",
    "fetch_account_days",
    "load_account_days",
    "normalize_account_days",
    "normalize_row",
]
