"""Answers from the enriched ledger: monthly spending, own-account transfers, exports."""
