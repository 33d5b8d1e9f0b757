"""Configuration of the local TrueLayer simulator: what to generate and which faults to inject."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bank_pipeline.config import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET
from bank_pipeline.errors import BankPipelineError

SERVER_ERROR_STATUSES = (500, 503, 504)
MALFORMED_KINDS = ("truncated", "missing_field", "bad_timestamp", "string_amount")


EXTEND_OUTCOMES = (
    "no_action_needed",
    "reconfirmation_of_consent_needed",
    "authentication_needed",
    "cannot_extend",
)


@dataclass
class FaultConfig:
    """Faults the simulator injects into Data API calls. Deterministic: counters, not wall-clock luck.

    Counters start at zero whenever the fault configuration changes (`POST /_sim/faults`).
    Every Data API request counts (including the ones answered with a fault).
    """

    # 429 provider_too_many_requests on every Nth Data API request (1 = every request).
    rate_limit_every: int | None = None
    # At most this many such 429s (None = no cap).
    rate_limit_count: int | None = None
    # Retry-After seconds sent with provider_too_many_requests; None sends no Retry-After header.
    retry_after: int | None = 1
    # Unattended calls (no X-PSU-IP header) allowed per account per UTC day; None disables.
    unattended_limit: int | None = 4
    # 5xx: probability per request (seeded RNG over the request counter); with rate 0 and a
    # count, the next `server_error_count` requests fail. Statuses cycle through the list.
    server_error_rate: float = 0.0
    server_error_count: int | None = None
    server_error_statuses: list[int] = field(default_factory=lambda: list(SERVER_ERROR_STATUSES))
    # Added to every Data API call.
    latency_ms: int = 0
    # Malformed transactions responses (booked and pending endpoints): same rate/count rules;
    # kinds cycle through the list.
    malformed_rate: float = 0.0
    malformed_count: int | None = None
    malformed_kinds: list[str] = field(default_factory=lambda: list(MALFORMED_KINDS))
    # Minutes after consent during which data older than 90 days may be read; None disables.
    sca_window_minutes: int | None = None
    # Days a consent lives.
    consent_days: int = 90
    # What `POST /data/v1/connections/extend` answers while the consent is live: no_action_needed
    # (the consent is extended and new tokens come back), reconfirmation_of_consent_needed (the auth
    # dialog), authentication_needed (the bank's login) or cannot_extend (422: the bank cannot).
    extend_outcome: str = "no_action_needed"
    # A new consent for a user gets new provider account ids (same sort code/number/IBAN).
    rotate_account_ids_on_reauth: bool = False
    # Hostile rows (see simulator/hostile.py). Each picks every Nth transaction by a stable hash of
    # its identity, so a row is hostile the same way in every response; the ground truth agrees.
    # NUL, escape and line-break characters inside the description and merchant name.
    control_chars_every: int | None = None
    # Sent first with a wrong amount (a tenth) and description, then, from `correction_lag_days`
    # after the day it books, corrected under the same stable id (rows with a stable id only).
    correction_every: int | None = None
    correction_lag_days: int = 2
    # An unparseable amount ("12.3O") under its stable id, in every response (a repeated bad row).
    bad_row_every: int | None = None
    # A currency that is not ISO 4217 ("XYZ"): the row cannot be loaded.
    unknown_currency_every: int | None = None
    # A valid currency other than the account's ("EUR" on a GBP account): kept and flagged.
    foreign_currency_every: int | None = None
    # What the bank names its accounts: every account's and card's `display_name` becomes this
    # after the account's key in the simulator ("current Saver\x00NUL"), so names stay distinct.
    account_display_name: str | None = None
    # `/accounts` and `/cards` answer with this HTTP status (a connect failing after the token
    # exchange); None: they answer normally.
    accounts_error_status: int | None = None
    # The token endpoint answers the grants in `token_error_grants` with `token_error_status` and
    # the error `token_error` (its `error_description` as given, newlines and all).
    token_error: str | None = None
    token_error_status: int = 400
    token_error_description: str | None = None
    token_error_grants: list[str] = field(default_factory=lambda: ["refresh_token"])

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def _nonneg_int(name: str, allow_none: bool = True, minimum: int = 0) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise BankPipelineError(
                    f"fault {name} must be a whole number >= {minimum}"
                    + (" or null" if allow_none else "")
                    + f", got {value!r}"
                )

        _nonneg_int("rate_limit_every", minimum=1)
        _nonneg_int("rate_limit_count")
        _nonneg_int("retry_after")
        _nonneg_int("unattended_limit")
        _nonneg_int("server_error_count")
        _nonneg_int("malformed_count")
        _nonneg_int("latency_ms", allow_none=False)
        _nonneg_int("sca_window_minutes")
        _nonneg_int("consent_days", allow_none=False, minimum=1)
        for name in (
            "control_chars_every",
            "correction_every",
            "bad_row_every",
            "unknown_currency_every",
            "foreign_currency_every",
        ):
            _nonneg_int(name, minimum=1)
        _nonneg_int("correction_lag_days", allow_none=False)
        for name in ("server_error_rate", "malformed_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise BankPipelineError(f"fault {name} must be a number between 0 and 1, got {value!r}")
        for name in ("account_display_name", "token_error", "token_error_description"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise BankPipelineError(f"fault {name} must be a string or null, got {type(value).__name__}")
        for name in ("accounts_error_status", "token_error_status"):
            value = getattr(self, name)
            if (value is not None or name == "token_error_status") and (
                isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599
            ):
                raise BankPipelineError(f"fault {name} must be an HTTP error status (400-599), got {value!r}")
        grants = self.token_error_grants
        if not isinstance(grants, list) or not set(grants) <= {"authorization_code", "refresh_token"}:
            raise BankPipelineError(
                "fault token_error_grants must be a list of 'authorization_code' and 'refresh_token'"
            )
        if self.extend_outcome not in EXTEND_OUTCOMES:
            raise BankPipelineError(f"fault extend_outcome must be one of {list(EXTEND_OUTCOMES)}")
        if not isinstance(self.rotate_account_ids_on_reauth, bool):
            raise BankPipelineError("fault rotate_account_ids_on_reauth must be true or false")
        bad = [s for s in self.server_error_statuses if s not in SERVER_ERROR_STATUSES]
        if not self.server_error_statuses or bad:
            raise BankPipelineError(
                f"fault server_error_statuses must be a non-empty list of {list(SERVER_ERROR_STATUSES)}"
            )
        bad = [k for k in self.malformed_kinds if k not in MALFORMED_KINDS]
        if not self.malformed_kinds or bad:
            raise BankPipelineError(
                f"fault malformed_kinds must be a non-empty list of {list(MALFORMED_KINDS)}"
            )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with `changes` applied; unknown names raise BankPipelineError."""
        if not isinstance(changes, dict):
            raise BankPipelineError("faults must be a JSON object of FaultConfig fields")
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise BankPipelineError(
                f"unknown fault field(s) {', '.join(unknown)}; valid: {', '.join(self.field_names())}"
            )
        values = dataclasses.asdict(self)
        values.update(changes)
        return FaultConfig(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SimulatorConfig:
    """What the simulator generates and how it behaves.

    `today=None` follows the real date (until `POST /_sim/clock` sets it). `state_file` keeps
    issued tokens and consents across restarts (None = in memory only).
    """

    seed: int = 42
    today: date | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    state_file: Path | None = None
    client_id: str = SIMULATOR_CLIENT_ID
    client_secret: str = SIMULATOR_CLIENT_SECRET
    history_days: int = 3 * 365
