"""What the Enable Banking simulator serves and which of the provider's quirks it plays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bank_pipeline.errors import BankPipelineError

SIM_APPLICATION_ID = "00000000-0000-4000-8000-00000000e8b1"
SIM_BANK = ("Simulated Bank", "GB")


@dataclass
class EnableBankingSimConfig:
    """`public_key`: PEM of the application's public key (calls signed otherwise are refused).
    `today=None` follows the pipeline's clock until `POST /_sim/clock` sets it."""

    public_key: bytes
    application_id: str = SIM_APPLICATION_ID
    seed: int = 42
    today: date | None = None
    history_days: int = 3 * 365
    # Transactions per page; a listing that fills its last page exactly still gets a
    # continuation key, leading to an empty page (a boundary real banks produce).
    page_size: int = 50
    # Every Nth page starts with the previous page's last row again (a repeated entry_reference).
    repeat_entry_every: int | None = None
    # Every Nth booked row (by a stable hash) shares the entry_reference of the row booked before
    # it: two distinct transactions under one reference, as some banks send.
    shared_reference_every: int | None = None
    # After every Nth page, an empty page that still carries a continuation key.
    empty_page_every: int | None = None
    # The bank serves only this many days of history (before: WRONG_TRANSACTIONS_PERIOD).
    served_days: int | None = None
    # ...except in the first minutes after the consent, while the user has just authenticated
    # (None: the limit holds from the start).
    full_history_minutes: int | None = None
    # The refusal names the first day served (`detail.date_from`); some banks do, others do not.
    name_served_from: bool = False
    # Unattended reads (no PSU headers) per account per simulated day; None: no limit. A read is
    # a balances call or the first page of a transactions listing (continuation pages are free).
    unattended_limit: int | None = 4
    # Every Nth account request (continuation pages included) fails with 500 ASPSP_ERROR, not
    # counted as a read; the retry is the next request.
    bank_error_every: int | None = None
    # Banks that report no pending rows.
    with_pending: bool = True
    # The longest consent the bank grants.
    max_consent_days: int = 180

    def __post_init__(self) -> None:
        for name in ("page_size", "bank_error_every", "repeat_entry_every", "shared_reference_every", "empty_page_every", "served_days", "full_history_minutes", "max_consent_days"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BankPipelineError(f"Enable Banking simulator: {name} must be a whole number >= 1, got {value!r}")
        if self.unattended_limit is not None and self.unattended_limit < 0:
            raise BankPipelineError("Enable Banking simulator: unattended_limit must be >= 0")
