"""The Enable Banking client against the Enable Banking simulator, over real HTTP: JWT on every
call, consent and session, pagination followed to the end, pending and booked, windows shortened
where the bank serves less history, the bank's daily budget, expired sessions — and the
application's key, its JWTs and session ids kept out of every error and log line."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jsonschema
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bank_pipeline import clock
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.providers.base import Attended, Bank, BankProvider
from bank_pipeline.providers.enablebanking.client import EnableBankingClient
from bank_pipeline.providers.enablebanking.errors import WindowNotServed
from bank_pipeline.providers.enablebanking.provider import EnableBankingProvider
from bank_pipeline.providers.enablebanking.signing import ApplicationKey
from bank_pipeline.simulator.enablebanking import EnableBankingSimConfig, run_in_thread
from bank_pipeline.simulator.enablebanking.config import SIM_APPLICATION_ID
from bank_pipeline.truelayer.client import RetryPolicy
from bank_pipeline.truelayer.errors import AuthorizationRequired, InvalidRequest, ProviderLimitExceeded
from bank_pipeline_tests.fixtures.clock import TODAY

ROOT = Path(__file__).resolve().parents[1]
SHAPES = json.loads((ROOT / "docs" / "enablebanking" / "api-shapes.schema.json").read_text())

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
USER_PRESENT = Attended(ip_address="203.0.113.7", user_agent="Mozilla/5.0 (test)")
REDIRECT = "http://127.0.0.1:9/callback"


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def app_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """The application's registered key, and another one."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture
def key_file(app_keys, tmp_path):
    path = tmp_path / "enablebanking.pem"
    path.write_bytes(_pem(app_keys[0]))
    return path


@pytest.fixture
def eb(app_keys, key_file):
    """Start an Enable Banking simulator (`eb(**config)`) and get a client for it, signing with the
    application's key file; all are stopped at the end of the test."""
    public = app_keys[0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with contextlib.ExitStack() as stack:

        def start(transport: httpx.BaseTransport | None = None, **config):
            config.setdefault("today", TODAY)
            sim = stack.enter_context(run_in_thread(EnableBankingSimConfig(public_key=public, **config)))
            key = ApplicationKey.from_file(SIM_APPLICATION_ID, key_file)
            client = EnableBankingClient(key, sim.base_url, retry=FAST, transport=transport)
            stack.callback(client.close)
            return sim, client

        yield start


def grant(provider: EnableBankingProvider, user: str = "alice", days: int = 90):
    """The user's round trip: consent link, the bank's page, the redirect's code, the session."""
    bank = next(b for b in provider.banks("GB") if b.name == "Simulated Bank")
    link = provider.consent_link(bank, redirect_url=REDIRECT, state="s-1", valid_until=clock.now() + dt.timedelta(days=days))
    redirect = httpx.get(link.url, params={"user": user}, follow_redirects=False)
    assert redirect.status_code == 302
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert query["state"] == ["s-1"]
    return provider.exchange(link, query["code"][0])


def truth(sim, user: str, first: dt.date, last: dt.date) -> dict:
    return httpx.get(
        f"{sim.base_url}/_sim/ground_truth", params={"user": user, "from": first.isoformat(), "to": last.isoformat()}
    ).json()["accounts"]


def signed(row: dict) -> str:
    amount = row["transaction_amount"]["amount"]
    return f"-{amount}" if row["credit_debit_indicator"] == "DBIT" and amount != "0.00" else amount


def fetched(rows: list[dict]) -> Counter:
    return Counter((r["entry_reference"], r["booking_date"], signed(r)) for r in rows)


def expected(account_truth: dict) -> Counter:
    return Counter((t["entry_reference"], t["booking_date"], t["amount"]) for t in account_truth["booked"])


def test_every_call_carries_an_rs256_jwt_naming_the_application(app_keys, key_file):
    key = ApplicationKey.from_file(SIM_APPLICATION_ID, key_file)
    token = key.token()
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, app_keys[0].public_key(), algorithms=["RS256"], audience="api.enablebanking.com",
        issuer="enablebanking.com", options={"verify_exp": False, "verify_iat": False},
    )
    assert (header["alg"], header["kid"]) == ("RS256", SIM_APPLICATION_ID)
    assert claims["iat"] == int(clock.now().timestamp()) or abs(claims["iat"] - clock.now().timestamp()) < 5
    assert claims["exp"] - claims["iat"] == 3600
    assert key.token() == token  # reused while fresh
    assert "hidden" in repr(key) and "BEGIN" not in repr(key)


def test_consent_accounts_keep_their_identity_across_sessions(eb):
    sim, client = eb()
    provider = EnableBankingProvider(client)
    assert isinstance(provider, BankProvider)
    [bank] = provider.banks("GB")
    assert bank == Bank("Simulated Bank", "GB", 180)
    first = grant(provider, days=400)  # more than the bank grants: capped at its maximum
    assert first.valid_until <= clock.now() + dt.timedelta(days=180, minutes=1)
    second = grant(provider)
    assert {a.identity for a in first.accounts} == {a.identity for a in second.accounts}
    assert len(first.accounts) == len(truth(sim, "alice", TODAY, TODAY)) >= 2
    assert not {a.provider_account_id for a in first.accounts} & {a.provider_account_id for a in second.accounts}
    assert first.session_id not in repr(first)


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_a_window_fetched_page_by_page_equals_the_ground_truth(eb, user):
    # Small pages, an empty page with a key every 3rd page, every 2nd page repeating a row, and
    # distinct rows that share an entry reference (both must be kept).
    sim, client = eb(page_size=7, repeat_entry_every=2, empty_page_every=3, shared_reference_every=5, unattended_limit=None)
    consent = grant(EnableBankingProvider(client), user)
    first, last = TODAY - dt.timedelta(days=60), TODAY - dt.timedelta(days=1)
    gt = truth(sim, user, first, last)
    pages = repeats = 0
    for account in consent.accounts:
        rows = client.transactions(account.provider_account_id, first, last, status="BOOK")
        assert fetched(rows.rows) == expected(gt[account.identity]), account.name
        pages, repeats = pages + rows.pages, repeats + rows.repeats
        assert rows.calls == rows.pages
    assert pages > 10 and repeats > 0
    shared = Counter(t["entry_reference"] for a in gt.values() for t in a["booked"])
    assert max(shared.values()) > 1


def test_a_read_the_budget_refuses_is_never_sent(eb):
    sim, client = eb()
    provider = EnableBankingProvider(client)
    consent = grant(provider)

    def refuse() -> None:
        raise BankPipelineError("no unattended call left today")

    client.before_attempt = refuse
    calls = client.calls_made
    with pytest.raises(BankPipelineError, match="no unattended call"):
        provider.balances(consent, consent.accounts[0])
    assert client.calls_made == calls
    assert httpx.get(f"{sim.base_url}/_sim/stats").json()["unattended_reads"] == []


def test_a_listing_that_fills_its_last_page_ends_on_an_empty_page(eb):
    sim, client = eb(unattended_limit=None)
    consent = grant(EnableBankingProvider(client))
    account = consent.accounts[0]
    first, last = TODAY - dt.timedelta(days=30), TODAY
    want = expected(truth(sim, "alice", first, last)[account.identity])
    sim.state.config.page_size = sum(want.values())  # exactly one full page
    rows = client.transactions(account.provider_account_id, first, last, status="BOOK")
    assert fetched(rows.rows) == want
    assert rows.pages == 2


def test_pending_becomes_booked_under_a_new_entry_reference(eb, move_clock):
    sim, client = eb(unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    pending = {}
    for account in consent.accounts:
        rows = provider.pending(consent, account)
        gt = truth(sim, "alice", TODAY, TODAY)[account.identity]["pending"]
        assert Counter((r["entry_reference"], signed(r)) for r in rows.rows) == Counter((p["entry_reference"], p["amount"]) for p in gt)
        assert all(r["status"] == "PDNG" for r in rows.rows)
        pending.update({p["booked_entry_reference"]: (account, p["entry_reference"]) for p in gt})
    assert pending, "alice has pending rows today"
    later = TODAY + dt.timedelta(days=7)
    httpx.post(f"{sim.base_url}/_sim/clock", json={"today": later.isoformat()}).raise_for_status()
    move_clock(later)
    booked = set()
    for account in {a for a, _ in pending.values()}:
        booked |= {r["entry_reference"] for r in provider.booked(consent, account, TODAY - dt.timedelta(days=5), later).rows}
    assert set(pending) <= booked
    assert not {ref for _, ref in pending.values()} & booked


def test_a_bank_without_pending_answers_an_empty_list(eb):
    _, client = eb(with_pending=False, unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    assert all(provider.pending(consent, a).rows == [] for a in consent.accounts)


def test_windows_are_shortened_to_the_history_the_bank_serves(eb):
    sim, client = eb(served_days=90, page_size=40, unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    account = consent.accounts[0]
    rows = provider.booked(consent, account, TODAY - dt.timedelta(days=364), TODAY)
    assert rows.served_from == TODAY - dt.timedelta(days=88) and rows.served_to == TODAY
    assert fetched(rows.rows) == expected(truth(sim, "alice", rows.served_from, TODAY)[account.identity])
    with pytest.raises(WindowNotServed) as refused:
        provider.booked(consent, account, TODAY - dt.timedelta(days=300), TODAY - dt.timedelta(days=200))
    assert refused.value.error == "WRONG_TRANSACTIONS_PERIOD" and refused.value.status_code == 422


def test_the_fifth_unattended_read_of_the_day_is_refused_and_not_retried(eb, move_clock):
    sim, client = eb(page_size=10)  # the bank's 4 unattended reads per account per day
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    one, other = consent.accounts[0], consent.accounts[1]
    window = (TODAY - dt.timedelta(days=20), TODAY)
    for _ in range(2):
        assert provider.booked(consent, one, *window).pages > 1  # a listing of many pages is one read
    provider.pending(consent, one)
    provider.balances(consent, one)
    calls = client.calls_made
    with pytest.raises(ProviderLimitExceeded) as limited:
        provider.balances(consent, one)
    assert client.calls_made == calls + 1 and limited.value.attempts == 1
    assert limited.value.error == "ASPSP_RATE_LIMIT_EXCEEDED" and "tomorrow" in str(limited.value)
    assert provider.booked(consent, one, *window, attended=USER_PRESENT).rows  # the user is present
    assert provider.balances(consent, other)  # another account has its own budget
    again = grant(provider)  # the bank counts per account, not per consent
    same = next(a for a in again.accounts if a.identity == one.identity)
    with pytest.raises(ProviderLimitExceeded):
        provider.balances(again, same)
    tomorrow = TODAY + dt.timedelta(days=1)
    httpx.post(f"{sim.base_url}/_sim/clock", json={"today": tomorrow.isoformat()}).raise_for_status()
    move_clock(tomorrow)
    assert provider.balances(consent, one)


def test_a_continuation_key_is_valid_only_in_its_own_session(eb):
    _, client = eb(page_size=5, unattended_limit=None)
    provider = EnableBankingProvider(client)
    first, second = grant(provider), grant(provider)
    window = (TODAY - dt.timedelta(days=30), TODAY)
    _, key, _ = client.transactions_page(first.accounts[0].provider_account_id, date_from=window[0], date_to=window[1])
    assert key
    with pytest.raises(InvalidRequest) as refused:
        client.transactions_page(
            second.accounts[0].provider_account_id, date_from=window[0], date_to=window[1], continuation_key=key
        )
    assert refused.value.error == "WRONG_CONTINUATION_KEY" and key not in str(refused.value)


def test_half_the_psu_headers_is_refused_by_the_simulator(eb):
    sim, client = eb()
    consent = grant(EnableBankingProvider(client))
    response = httpx.get(
        f"{sim.base_url}/accounts/{consent.accounts[0].provider_account_id}/balances",
        headers={"Authorization": f"Bearer {client.key.token()}", "Psu-Ip-Address": "203.0.113.7"},
    )
    assert (response.status_code, response.json()["error"]) == (400, "PSU_HEADER_NOT_PROVIDED")


def test_an_expired_or_ended_session_asks_for_a_new_consent(eb, move_clock, caplog):
    sim, client = eb(unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider, days=10)
    account = consent.accounts[0]
    later = TODAY + dt.timedelta(days=11)
    httpx.post(f"{sim.base_url}/_sim/clock", json={"today": later.isoformat()}).raise_for_status()
    move_clock(later)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthorizationRequired) as expired:
        provider.booked(consent, account, later - dt.timedelta(days=5), later)
    assert expired.value.error == "EXPIRED_SESSION" and "connect" in str(expired.value)
    fresh = grant(provider)
    client.session(fresh.session_id)
    provider.end(fresh)
    with pytest.raises(AuthorizationRequired) as ended:
        provider.balances(fresh, fresh.accounts[0])
    assert ended.value.error == "CLOSED_SESSION"
    assert "DELETE" in caplog.text and "/sessions/<redacted>" in caplog.text  # httpx logged the calls
    for session_id in (consent.session_id, fresh.session_id):
        assert session_id not in caplog.text + str(expired.value) + str(ended.value)


def test_a_jwt_signed_with_another_key_is_refused_and_no_secret_is_shown(eb, app_keys, tmp_path, caplog):
    sim, _ = eb()
    wrong_file = tmp_path / "other.pem"
    wrong_file.write_bytes(_pem(app_keys[1]))
    errors = []
    with caplog.at_level(logging.DEBUG):
        for app_id, path in ((SIM_APPLICATION_ID, wrong_file), ("not-the-app", tmp_path / "enablebanking.pem")):
            key = ApplicationKey.from_file(app_id, path)
            with EnableBankingClient(key, sim.base_url, retry=FAST) as client, pytest.raises(InvalidRequest) as refused:
                client.aspsps("GB")
            assert refused.value.status_code == 401 and refused.value.error == "UNAUTHORIZED_ACCESS"
            assert "private key" in str(refused.value)
            errors.append((str(refused.value), repr(refused.value), key.token()))
    secrets = [_pem(k).decode() for k in app_keys]
    for text, shown, token in errors:
        for secret in (token, token.split(".")[2], *[line for s in secrets for line in s.splitlines()[1:3]]):
            assert secret not in text + shown + caplog.text


def test_a_key_file_that_is_not_a_key_is_one_line_without_its_content(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----\n")
    with pytest.raises(BankPipelineError) as bad:
        ApplicationKey.from_file(SIM_APPLICATION_ID, path)
    assert "\n" not in str(bad.value) and "c2VjcmV0" not in str(bad.value) and str(path) in str(bad.value)
    with pytest.raises(BankPipelineError, match="cannot read"):
        ApplicationKey.from_file(SIM_APPLICATION_ID, tmp_path / "missing.pem")


def test_right_after_consent_the_bank_serves_all_its_history_then_only_90_days(eb, move_clock):
    sim, client = eb(served_days=90, full_history_minutes=5, page_size=100, unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    account = consent.accounts[0]
    year = (TODAY - dt.timedelta(days=364), TODAY)
    at_connect = provider.booked(consent, account, *year, attended=USER_PRESENT)
    assert at_connect.served_from == year[0]
    assert fetched(at_connect.rows) == expected(truth(sim, "alice", *year)[account.identity])
    move_clock(dt.datetime.combine(TODAY, dt.time(12, 10), dt.timezone.utc))
    later = provider.booked(consent, account, *year)
    assert later.served_from == TODAY - dt.timedelta(days=88)


def test_a_bank_that_names_the_first_day_it_serves_is_asked_from_that_day(eb):
    sim, client = eb(served_days=90, name_served_from=True, page_size=500, unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    account = consent.accounts[0]
    rows = provider.booked(consent, account, TODAY - dt.timedelta(days=200), TODAY)
    assert rows.served_from == TODAY - dt.timedelta(days=89)
    assert fetched(rows.rows) == expected(truth(sim, "alice", rows.served_from, TODAY)[account.identity])


def test_a_window_refused_in_another_shape_is_still_a_window_not_served():
    from bank_pipeline.providers.enablebanking.errors import error_for_response

    refused = error_for_response(
        400, '{"title":"Range is out of the last 90-day period","code":"PERIOD_INVALID","detail":"dateFrom=2025-12-11"}',
        method="GET", path="/accounts/x/transactions",
    )
    assert isinstance(refused, WindowNotServed) and refused.corrected_from is None
    named = error_for_response(
        422, '{"code":422,"message":"Wrong transactions period requested","error":"WRONG_TRANSACTIONS_PERIOD",'
        '"detail":{"date_from":"2026-08-23"}}', method="GET", path="/accounts/x/transactions",
    )
    assert named.corrected_from == dt.date(2026, 8, 23)


def test_bank_errors_are_retried_page_by_page(eb):
    sim, client = eb(bank_error_every=3, page_size=10, unattended_limit=None)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    account = consent.accounts[0]
    window = (TODAY - dt.timedelta(days=60), TODAY)
    calls = client.calls_made
    rows = provider.booked(consent, account, *window)
    assert fetched(rows.rows) == expected(truth(sim, "alice", *window)[account.identity])
    assert rows.pages > 3 and rows.calls - rows.pages == rows.calls // 3  # every 3rd request failed once
    assert client.calls_made == calls + rows.calls


class Recording(httpx.HTTPTransport):
    """Real HTTP, with every response kept for checking its shape."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str, int, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        body = response.read()
        self.seen.append((request.method, request.url.path, response.status_code, body))
        return response


SHAPE_OF = [
    ("GET", r"/aspsps", "GetAspspsResponse"),
    ("POST", r"/auth", "StartAuthorizationResponse"),
    ("POST", r"/sessions", "AuthorizeSessionResponse"),
    ("GET", r"/sessions/[^/]+", "GetSessionResponse"),
    ("DELETE", r"/sessions/[^/]+", "SuccessResponse"),
    ("GET", r"/accounts/[^/]+/balances", "HalBalances"),
    ("GET", r"/accounts/[^/]+/transactions", "HalTransactions"),
]


def test_the_simulator_answers_in_enable_bankings_published_shapes(eb, move_clock):
    recording = Recording()
    sim, client = eb(transport=recording, page_size=20, repeat_entry_every=2, served_days=90, unattended_limit=1)
    provider = EnableBankingProvider(client)
    consent = grant(provider)
    client.session(consent.session_id)
    one = consent.accounts[0]
    provider.booked(consent, one, TODAY - dt.timedelta(days=120), TODAY, attended=USER_PRESENT)
    provider.pending(consent, one, attended=USER_PRESENT)
    provider.balances(consent, one)
    with pytest.raises(ProviderLimitExceeded):
        provider.balances(consent, one)
    provider.end(consent)
    with pytest.raises(AuthorizationRequired):
        provider.balances(consent, one)
    checked = Counter()
    for method, path, status, body in recording.seen:
        if status >= 400:
            name = "ErrorResponse"
        else:
            name = next(n for m, pattern, n in SHAPE_OF if m == method and re.fullmatch(pattern, path))
        jsonschema.validate(json.loads(body), {**SHAPES, "$ref": f"#/$defs/{name}"})
        checked[name] += 1
    assert set(checked) == {n for _, _, n in SHAPE_OF} | {"ErrorResponse"}, checked
