"""What the enriched ledger answers: exports, and own-account transfers."""
