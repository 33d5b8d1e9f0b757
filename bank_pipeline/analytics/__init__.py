"""Figures computed from the enriched ledger (downstream of `enriched_transactions`)."""
