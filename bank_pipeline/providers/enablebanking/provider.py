"""Enable Banking behind the provider seam (`bank_pipeline.providers.base.BankProvider`)."""

from __future__ import annotations

import datetime as dt

from bank_pipeline import clock
from bank_pipeline.providers.base import Attended, Bank, Consent, ConsentLink, ProviderAccount, Rows
from bank_pipeline.providers.enablebanking.client import EnableBankingClient
from bank_pipeline.truelayer.errors import MalformedResponse

# Enable Banking's cash account types that are card accounts.
CARD_TYPES = {"CARD"}
# A consent is asked this much short of the bank's maximum, so that clocks a little apart do not
# make Enable Banking refuse it as too long.
CONSENT_MARGIN = dt.timedelta(hours=1)


def _parse_instant(value: object, what: str) -> dt.datetime:
    try:
        instant = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise MalformedResponse(f"Enable Banking sent {what} that is not a date-time", error="malformed_response") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.timezone.utc)


def bank_of(aspsp: dict) -> Bank:
    seconds = aspsp.get("maximum_consent_validity")
    days = int(seconds) // 86_400 if isinstance(seconds, int) and seconds > 0 else None
    return Bank(name=str(aspsp.get("name", "")), country=str(aspsp.get("country", "")), max_consent_days=days)


def account_of(raw: dict) -> ProviderAccount:
    """A session account: `uid` names it for reads in this session, `identification_hash` across
    sessions."""
    uid, identity = raw.get("uid"), raw.get("identification_hash")
    if not isinstance(uid, str) or not uid or not isinstance(identity, str) or not identity:
        raise MalformedResponse(
            "Enable Banking sent a session account without `uid` and `identification_hash`", error="malformed_response"
        )
    account_id = raw.get("account_id") if isinstance(raw.get("account_id"), dict) else {}
    return ProviderAccount(
        provider_account_id=uid,
        identity=identity,
        currency=str(raw.get("currency") or ""),
        name=raw.get("name") if isinstance(raw.get("name"), str) else None,
        kind="card" if raw.get("cash_account_type") in CARD_TYPES else "account",
        iban=account_id.get("iban") if isinstance(account_id.get("iban"), str) else None,
    )


class EnableBankingProvider:
    """`BankProvider` on an `EnableBankingClient`."""

    name = "enablebanking"

    def __init__(self, client: EnableBankingClient) -> None:
        self.client = client

    def banks(self, country: str) -> list[Bank]:
        return [bank_of(a) for a in self.client.aspsps(country)]

    def consent_link(self, bank: Bank, *, redirect_url: str, state: str, valid_until: dt.datetime) -> ConsentLink:
        if bank.max_consent_days:
            valid_until = min(valid_until, clock.now() + dt.timedelta(days=bank.max_consent_days) - CONSENT_MARGIN)
        data = self.client.start_authorization(
            aspsp_name=bank.name, country=bank.country, redirect_url=redirect_url, state=state, valid_until=valid_until
        )
        return ConsentLink(url=data["url"], state=state, reference=str(data.get("authorization_id") or ""))

    def exchange(self, link: ConsentLink, code: str) -> Consent:
        data = self.client.authorize_session(code)
        access = data.get("access") if isinstance(data.get("access"), dict) else {}
        aspsp = data.get("aspsp") if isinstance(data.get("aspsp"), dict) else None
        accounts = tuple(account_of(a) for a in data["accounts"] if isinstance(a, dict) and a.get("uid"))
        return Consent(
            session_id=data["session_id"],
            valid_until=_parse_instant(access.get("valid_until"), "a session `access.valid_until`"),
            accounts=accounts,
            bank=bank_of(aspsp) if aspsp else None,
        )

    def booked(
        self, consent: Consent, account: ProviderAccount, date_from: dt.date, date_to: dt.date, *,
        attended: Attended | None = None,
    ) -> Rows:
        return self.client.transactions_served(
            account.provider_account_id, date_from, date_to, status="BOOK", attended=attended
        )

    def pending(self, consent: Consent, account: ProviderAccount, *, attended: Attended | None = None) -> Rows:
        return self.client.transactions(account.provider_account_id, None, None, status="PDNG", attended=attended)

    def balances(self, consent: Consent, account: ProviderAccount, *, attended: Attended | None = None) -> list[dict]:
        return self.client.balances(account.provider_account_id, attended=attended)

    def end(self, consent: Consent) -> None:
        self.client.delete_session(consent.session_id)
