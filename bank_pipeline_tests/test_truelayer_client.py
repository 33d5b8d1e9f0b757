"""The Data API client against the simulator over loopback HTTP: envelopes, raw bodies, retries under
injected 429/5xx/timeouts (attempts counted), final errors, the unattended limit, precise errors."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import tenacity

from bank_pipeline import clock
from bank_pipeline.connections import open_data_client
from bank_pipeline.db import make_engine
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.client import DataClient, RetryPolicy, parse_retry_after
from bank_pipeline.truelayer.errors import (
    InvalidDateRange,
    InvalidRequest,
    MalformedResponse,
    NetworkError,
    ProviderLimitExceeded,
    RateLimited,
    ServerError,
    TrueLayerError,
    error_for_status,
)
from bank_pipeline_tests.fixtures.connections import set_faults, sim_admin

FAST = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def client(connect_settings, alice_connection):
    engine = make_engine(connect_settings.database_url)
    with open_data_client(engine, connect_settings, alice_connection.connection_id, retry=FAST) as data:
        yield data
    engine.dispose()


@pytest.fixture
def current(alice_connection):
    return next(a for a in alice_connection.accounts if a["kind"] == "account")


@pytest.fixture
def card(alice_connection):
    return next(a for a in alice_connection.accounts if a["kind"] == "card")


def _window(days=30):
    end = clock.today_utc()
    return end - dt.timedelta(days=days), end


# --- no network ------------------------------------------------------------------------------


def test_error_mapping():
    body = json.dumps(
        {"error": "provider_request_limit_exceeded", "error_description": "Max", "error_details": {}}
    )
    exc = error_for_status(429, body, method="GET", path="/accounts/x/transactions")
    assert isinstance(exc, ProviderLimitExceeded) and exc.error == "provider_request_limit_exceeded"
    assert "provider_request_limit_exceeded" in str(exc) and "HTTP 429" in str(exc)
    assert isinstance(
        error_for_status(429, '{"error": "provider_too_many_requests"}', method="GET", path="/"), RateLimited
    )
    assert isinstance(error_for_status(503, "<html>down</html>", method="GET", path="/"), ServerError)
    assert (
        error_for_status(501, '{"error": "endpoint_not_supported"}', method="GET", path="/").status_code
        == 501
    )
    assert isinstance(
        error_for_status(404, '{"error": "account_not_found"}', method="GET", path="/"), InvalidRequest
    )
    assert issubclass(TrueLayerError, BankPipelineError)


def test_retry_after_parsing_and_backoff_bounds():
    assert (
        parse_retry_after("2") == 2.0
        and parse_retry_after(None) is None
        and parse_retry_after("soon") is None
    )
    wait = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=3.0).wait()

    def after(attempt: int, retry_after: float | None = None) -> float:
        state = tenacity.RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        error = RateLimited("TrueLayer GET / failed", status_code=429)
        error.retry_after = retry_after
        state.set_exception((RateLimited, error, None))
        return wait(state)

    assert after(1, retry_after=100) == 3.0  # Retry-After capped by max_delay
    assert after(4, retry_after=0.25) == 0.25  # …and otherwise obeyed, whatever the backoff
    delays = {n: [after(n) for _ in range(20)] for n in range(1, 8)}
    assert all(0 <= d <= min(3.0, 0.5 * 2 ** (n - 1)) for n, ds in delays.items() for d in ds)
    assert len(set(delays[7])) > 1  # jittered


def test_inverted_range_refused_before_any_call():
    data = DataClient("http://127.0.0.1:9/data/v1", lambda: "unused-token")
    with pytest.raises(InvalidDateRange) as info:
        data.transactions("account", "acc-1", dt.date(2026, 3, 2), dt.date(2026, 3, 1))
    assert isinstance(info.value, ValueError) and isinstance(info.value, BankPipelineError)
    assert "2026-03-02 is after to 2026-03-01" in str(info.value)
    assert data.calls_made == 0
    with pytest.raises(InvalidRequest, match="kind must be"):
        data.transactions("loan", "acc-1", dt.date(2026, 3, 1), dt.date(2026, 3, 2))


# --- against the simulator -------------------------------------------------------------------


def test_transactions_keep_the_raw_body_and_rows(client, current, card):
    start, end = _window(30)
    response = client.transactions("account", current["provider_account_id"], start, end)
    assert response.http_status == 200 and response.attempts == 1
    assert response.results and response.results == json.loads(response.body)["results"]
    assert response.status in (None, "Succeeded")
    assert all("transaction_id" in row and "amount" in row for row in response.results)
    assert client.calls_made == 1
    cards = client.transactions("card", card["provider_account_id"], start, end)
    assert cards.http_status == 200
    pending = client.pending_transactions("account", current["provider_account_id"])
    assert pending.results == json.loads(pending.body)["results"]


def test_other_endpoints(client, current, card):
    me = client.me()
    assert me["consent_expires_at"] and me["provider"]["provider_id"]
    assert client.account(current["provider_account_id"])["account_id"] == current["provider_account_id"]
    assert "current" in client.balance("account", current["provider_account_id"])
    assert "current" in client.balance("card", card["provider_account_id"])
    assert {c["account_id"] for c in client.cards()} == {card["provider_account_id"]}


def test_unknown_account_is_a_precise_error(client):
    start, end = _window(5)
    with pytest.raises(InvalidRequest) as info:
        client.transactions("account", "no-such-account", start, end)
    assert info.value.status_code == 404 and info.value.error == "account_not_found"
    assert "/accounts/no-such-account/transactions" in str(info.value) and "account_not_found" in str(
        info.value
    )
    assert info.value.attempts == 1 and client.calls_made == 1  # 4xx is never retried


def test_429_without_retry_after_is_retried(client, current, tl_sim):
    set_faults(tl_sim, rate_limit_every=1, rate_limit_count=2, retry_after=None, unattended_limit=None)
    start, end = _window(10)
    response = client.transactions("account", current["provider_account_id"], start, end)
    assert response.attempts == 3 and client.calls_made == 3 and response.http_status == 200


def test_429_with_retry_after_waits_as_told(client, current, tl_sim):
    patient = DataClient(
        client.data_url,
        client.token_provider,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=5.0),
    )
    set_faults(tl_sim, rate_limit_every=1, rate_limit_count=1, retry_after=1, unattended_limit=None)
    started = time.monotonic()
    response = patient.transactions("account", current["provider_account_id"], *_window(10))
    elapsed = time.monotonic() - started
    assert response.attempts == 2 and patient.calls_made == 2
    assert elapsed >= 0.9  # Retry-After: 1 honoured (the policy's own backoff would be ≤ 0.01 s)
    # …but never beyond max_delay.
    capped = DataClient(
        client.data_url,
        client.token_provider,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.1),
    )
    set_faults(tl_sim, rate_limit_every=1, rate_limit_count=1, retry_after=1, unattended_limit=None)
    started = time.monotonic()
    assert capped.accounts()
    assert time.monotonic() - started < 0.9 and capped.calls_made == 2


def test_5xx_is_retried(client, current, tl_sim):
    set_faults(tl_sim, server_error_count=3, unattended_limit=None)
    response = client.transactions("account", current["provider_account_id"], *_window(10))
    assert response.attempts == 4 and client.calls_made == 4


def test_final_error_after_the_retry_budget_names_the_code(client, current, tl_sim):
    set_faults(tl_sim, rate_limit_every=1, retry_after=None, unattended_limit=None)
    with pytest.raises(RateLimited) as info:
        client.transactions("account", current["provider_account_id"], *_window(10))
    assert info.value.attempts == 5 and client.calls_made == 5
    assert "provider_too_many_requests" in str(info.value) and "after 5 attempts" in str(info.value)

    set_faults(tl_sim, rate_limit_every=None, server_error_count=100, server_error_statuses=[503])
    with pytest.raises(ServerError) as info:
        client.accounts()
    assert info.value.status_code == 503 and info.value.attempts == 5 and info.value.error
    assert info.value.error in str(info.value) and "after 5 attempts" in str(info.value)


def test_provider_request_limit_is_not_retried(client, current, tl_sim):
    set_faults(tl_sim, unattended_limit=1)
    account_id = current["provider_account_id"]
    client.transactions("account", account_id, *_window(10))
    calls = client.calls_made
    with pytest.raises(ProviderLimitExceeded) as info:
        client.transactions("account", account_id, *_window(10))
    assert client.calls_made == calls + 1 and info.value.attempts == 1
    assert info.value.error == "provider_request_limit_exceeded" and "try again tomorrow" in str(info.value)


def test_psu_ip_makes_calls_attended(connect_settings, alice_connection, current, tl_sim):
    import dataclasses

    set_faults(tl_sim, unattended_limit=1)
    settings = dataclasses.replace(connect_settings, psu_ip="203.0.113.7")
    engine = make_engine(settings.database_url)
    attended = open_data_client(engine, settings, alice_connection.connection_id, retry=FAST)
    for _ in range(3):
        attended.transactions("account", current["provider_account_id"], *_window(5))
    assert attended.calls_made == 3


def test_timeouts_are_retried_then_final(client, tl_sim):
    slow = DataClient(client.data_url, client.token_provider, retry=RetryPolicy(2, 0.01, 0.05), timeout=0.2)
    set_faults(tl_sim, latency_ms=600, unattended_limit=None)
    with pytest.raises(NetworkError) as info:
        slow.accounts()
    assert info.value.attempts == 2 and slow.calls_made == 2 and "timed out" in str(info.value)


def test_malformed_response_is_a_precise_error(client, current, tl_sim):
    set_faults(tl_sim, malformed_count=1, malformed_kinds=["truncated"], unattended_limit=None)
    path = f"/accounts/{current['provider_account_id']}/transactions"
    with pytest.raises(MalformedResponse) as info:
        client.transactions("account", current["provider_account_id"], *_window(10))
    message = str(info.value)
    assert path in message and "not valid JSON" in message and "starts" in message
    token = client.token_provider()
    assert token not in message
    # The next call is fine again.
    assert client.transactions("account", current["provider_account_id"], *_window(10)).http_status == 200


def test_simulator_stats_agree_with_calls_made(client, tl_sim):
    sim_admin(tl_sim, "POST", "stats/reset")
    set_faults(tl_sim, server_error_count=2, unattended_limit=None)
    client.accounts()
    stats = sim_admin(tl_sim, "GET", "stats").json()
    assert client.calls_made == 3 == stats["data_api_calls"] == stats["paths"]["/data/v1/accounts"]


def test_token_calls_retry_only_when_the_grant_cannot_have_been_used():
    """5xx and refused connections are retried; a read timeout (the server may have spent the
    single-use code) and a 501 are final at once. Counted per attempt."""
    import httpx

    from bank_pipeline.truelayer.auth import AuthClient

    def client_answering(*answers):
        seen = []

        def handler(request: httpx.Request) -> httpx.Response:
            answer = answers[min(len(seen), len(answers) - 1)]
            seen.append(request)
            if isinstance(answer, Exception):
                raise answer
            return answer

        auth = AuthClient("https://auth.test", "client", "secret", transport=httpx.MockTransport(handler))
        return auth, seen

    tokens = httpx.Response(200, json={"access_token": "a", "refresh_token": "r2", "expires_in": 60})
    auth, seen = client_answering(
        httpx.Response(503, json={"error": "temporarily_unavailable"}),
        httpx.ConnectError("refused"),
        tokens,
    )
    assert auth.refresh("r1").refresh_token == "r2" and auth.calls_made == 3 == len(seen)

    auth, seen = client_answering(httpx.Response(503, json={"error": "temporarily_unavailable"}))
    with pytest.raises(ServerError) as info:
        auth.refresh("r1")
    assert info.value.attempts == 3 == auth.calls_made and "after 3 attempts" in str(info.value)

    auth, seen = client_answering(httpx.ReadTimeout("slow"), tokens)
    with pytest.raises(NetworkError, match="the grant may have been used"):
        auth.exchange_code("code", "https://app.test/callback")
    assert auth.calls_made == 1

    auth, seen = client_answering(httpx.Response(501, json={"error": "endpoint_not_supported"}), tokens)
    with pytest.raises(TrueLayerError):
        auth.refresh("r1")
    assert auth.calls_made == 1
