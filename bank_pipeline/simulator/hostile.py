"""Hostile rows the simulator can send (FaultConfig `*_every` fields), and the truth they imply.

Pure functions of (seed, transaction, faults, simulator today): a picked row is hostile the same
way in every response, so re-fetches repeat it exactly, as a real bank would. The ground truth
(`/_sim/ground_truth`) uses the same functions: rows a correct pipeline must quarantine are listed
under `bad_rows` instead of `transactions`, and a not-yet-corrected row shows its current, wrong
amount.
"""

from __future__ import annotations

import hashlib

from bank_pipeline.simulator.config import FaultConfig
from bank_pipeline.simulator.generator import Txn

UNKNOWN_CURRENCY = "XYZ"
FOREIGN_CURRENCY = "EUR"
PROVISIONAL_SUFFIX = " PROVISIONAL"


def _picked(seed: int, uid: str, every: int | None, salt: str) -> bool:
    if not every:
        return False
    digest = hashlib.blake2b(f"{seed}|{uid}|{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % every == 0


def hostile_text(text: str) -> str:
    """`text` with a NUL, an ANSI escape and a line break in it (clean_text removes them)."""
    cut = max(1, len(text) // 2)
    return f"{text[:cut]}\x00{text[cut:]}\x1b[0m\r\n"


def wrong_pence(pence: int) -> int:
    """The amount before the bank's correction: a tenth (−36.50 sent as −3.65)."""
    return pence * 10 if abs(pence) < 10 else int(pence / 10)


def has_control_chars(seed: int, t: Txn, faults: FaultConfig) -> bool:
    return _picked(seed, t.uid, faults.control_chars_every, "text")


def is_bad_row(seed: int, t: Txn, faults: FaultConfig) -> bool:
    return bool(t.npti or t.pti) and _picked(seed, t.uid, faults.bad_row_every, "bad")


def has_unknown_currency(seed: int, t: Txn, faults: FaultConfig) -> bool:
    return _picked(seed, t.uid, faults.unknown_currency_every, "xyz")


def has_foreign_currency(seed: int, t: Txn, faults: FaultConfig) -> bool:
    return _picked(seed, t.uid, faults.foreign_currency_every, "eur")


def is_corrected(seed: int, t: Txn, faults: FaultConfig) -> bool:
    """Picked for a correction (sent wrong at first): rows with a stable id only."""
    return bool(t.npti) and _picked(seed, t.uid, faults.correction_every, "fix")


def awaiting_correction(seed: int, t: Txn, faults: FaultConfig, today: int) -> bool:
    """The row is still sent with its wrong amount (it is corrected `correction_lag_days` after
    it becomes visible)."""
    return is_corrected(seed, t, faults) and today < t.available_day + faults.correction_lag_days


def bad_reason(seed: int, t: Txn, faults: FaultConfig) -> str | None:
    """Why a correct pipeline cannot load this booked row, or None."""
    if is_bad_row(seed, t, faults):
        return "bad_amount"
    if has_unknown_currency(seed, t, faults):
        return "unknown_currency"
    return None


def booked_now(seed: int, t: Txn, faults: FaultConfig, today: int) -> tuple[int, str]:
    """(amount in pence from the holder's view, description) the bank states today."""
    if awaiting_correction(seed, t, faults, today):
        return wrong_pence(t.amount), t.description + PROVISIONAL_SUFFIX
    return t.amount, t.description


def disguise(row: dict, t: Txn, faults: FaultConfig, seed: int, today: int, pending: bool) -> dict:
    """A rendered row (never mutated: renders are cached) with the configured hostilities applied."""
    if not (
        faults.control_chars_every
        or faults.correction_every
        or faults.bad_row_every
        or faults.unknown_currency_every
        or faults.foreign_currency_every
    ):
        return row
    row = dict(row)
    if not pending:
        if awaiting_correction(seed, t, faults, today):
            row["amount"] = wrong_pence(round(row["amount"] * 100)) / 100
            row["description"] = row["description"] + PROVISIONAL_SUFFIX
        if is_bad_row(seed, t, faults):
            row["amount"] = f"{row['amount']:.2f}"[:-1] + "O"
        if has_unknown_currency(seed, t, faults):
            row["currency"] = UNKNOWN_CURRENCY
        elif has_foreign_currency(seed, t, faults):
            row["currency"] = FOREIGN_CURRENCY
    if has_control_chars(seed, t, faults):
        row["description"] = hostile_text(row["description"])
        if row.get("merchant_name"):
            row["merchant_name"] = hostile_text(row["merchant_name"])
    return row
