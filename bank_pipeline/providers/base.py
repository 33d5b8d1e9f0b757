"""What the pipeline needs from a bank provider, whoever it is (TrueLayer, Enable Banking).

The seam is small on purpose: link a consent, exchange what the bank's redirect brought back for
a consent with accounts, read an account's booked rows for a date window (the provider follows
its own pagination to the end), its pending rows and its balances, and end the consent. Every
read says whether the user is present (`Attended`): banks allow only a few unattended reads per
account per day (PSD2), while reads with the user present are not counted and carry the user's
IP address and user agent.

Accounts have two identities: `provider_account_id`, which a provider may change at every
re-consent (Enable Banking's `uid`), and `identity`, which stays the same across consents of the
same bank account (Enable Banking's `identification_hash`); the ledger keys on `identity`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Attended:
    """The user is present: the read is not counted against the bank's unattended budget, and the
    provider forwards these (the user's own) details as the regulations ask."""

    ip_address: str
    user_agent: str


@dataclass(frozen=True)
class Bank:
    """A bank a consent can be asked from. `max_consent_days`: the longest consent it grants."""

    name: str
    country: str
    max_consent_days: int | None = None


@dataclass(frozen=True)
class ConsentLink:
    """Where to send the user to grant a consent; `state` comes back with the redirect.
    `verifier`: what the provider needs back to complete it (TrueLayer's PKCE verifier; Enable
    Banking needs nothing), a secret kept with the link and never shown."""

    url: str
    state: str
    reference: str  # the provider's id of this authorisation attempt (not a secret)
    verifier: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ProviderAccount:
    """One account a consent grants. `provider_account_id` is what reads name; `identity` is what
    stays the same across consents."""

    provider_account_id: str
    identity: str
    currency: str
    name: str | None = None
    kind: str = "account"  # "account" | "card"
    iban: str | None = None


@dataclass(frozen=True)
class Consent:
    """A granted consent: the provider's session (a secret: never logged), its accounts and expiry."""

    session_id: str = field(repr=False)
    valid_until: dt.datetime
    accounts: tuple[ProviderAccount, ...]
    bank: Bank | None = None


@dataclass(frozen=True)
class Rows:
    """Rows of one listing, exactly as the provider sent them (all pages), and how it went.

    `served_from` is the first day the bank actually answered for: later than the asked start
    when the bank serves a shorter history than was asked. `calls` counts HTTP attempts; `pages`
    the pages followed; `repeats` the rows dropped because an earlier page sent them already,
    identical."""

    rows: list[dict]
    served_from: dt.date | None
    served_to: dt.date | None
    calls: int = 0
    pages: int = 0
    repeats: int = 0


@runtime_checkable
class BankProvider(Protocol):
    """One bank provider. Methods raise `bank_pipeline.truelayer.errors` types: AuthorizationRequired
    (re-consent needed), ProviderLimitExceeded (the day's unattended reads are used up; final),
    RateLimited/ServerError/NetworkError (retried inside, raised when attempts run out),
    MalformedResponse and InvalidRequest (final)."""

    name: str

    def banks(self, country: str) -> list[Bank]:
        """The banks a consent can be asked from in `country` (ISO 3166 alpha-2)."""
        ...

    def consent_link(self, bank: Bank, *, redirect_url: str, state: str, valid_until: dt.datetime) -> ConsentLink:
        """Start a consent valid until `valid_until` (capped by the bank's maximum)."""
        ...

    def exchange(self, link: ConsentLink, code: str) -> Consent:
        """The consent the redirect's `code` stands for (the redirect answered `link`), with its
        accounts."""
        ...

    def booked(
        self, consent: Consent, account: ProviderAccount, date_from: dt.date, date_to: dt.date, *,
        attended: Attended | None = None,
    ) -> Rows:
        """Booked rows in the inclusive window, every page; a window the bank does not serve in
        full is shortened to what it serves (`Rows.served_from`)."""
        ...

    def pending(self, consent: Consent, account: ProviderAccount, *, attended: Attended | None = None) -> Rows:
        """The bank's pending rows today (empty for banks that have none)."""
        ...

    def balances(self, consent: Consent, account: ProviderAccount, *, attended: Attended | None = None) -> list[dict]:
        """The account's balances as the provider sent them."""
        ...

    def end(self, consent: Consent) -> None:
        """Revoke the consent at the provider (disconnect)."""
        ...
