"""Connecting a bank: PKCE and the auth link, OAuth state, the full flow against the simulator,
refresh rotation (also under concurrency), invalid_grant, account discovery, status and the CLI."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from bank_pipeline import clock
from bank_pipeline.cli import main
from bank_pipeline.connections import (
    ConnectionStore,
    OAuthStates,
    account_identity,
    account_key_for,
    consent_warnings,
    discover_accounts,
    format_status,
    open_data_client,
    status_summary,
)
from bank_pipeline.crypto import TokenCipher, generate_key
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import accounts, connections, oauth_states
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.auth import AuthClient, build_auth_link, generate_pkce
from bank_pipeline.truelayer.errors import AuthorizationRequired, TrueLayerError
from bank_pipeline.truelayer.models import TokenSet
from bank_pipeline_tests.fixtures.connections import (
    cli_env,
    expire_access_token,
    set_faults,
    sim_admin,
    simulator_settings,
)

# --- PKCE and the auth link (no network) -----------------------------------------------------


def test_pkce_s256():
    verifier, challenge = generate_pkce()
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9\-._~]+", verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected and "=" not in challenge
    assert generate_pkce()[0] != verifier


def test_auth_link_encodes_scopes_with_percent_20():
    link = build_auth_link(
        "https://auth.truelayer-sandbox.com/",
        "client-1",
        "http://127.0.0.1:3456/callback",
        "info accounts balance cards transactions offline_access",
        "st4te",
        "ch4llenge",
        providers="uk-ob-all uk-oauth-all",
        response_mode="form_post",
    )
    assert link.startswith("https://auth.truelayer-sandbox.com/?response_type=code&")
    assert "scope=info%20accounts%20balance%20cards%20transactions%20offline_access" in link
    assert "+" not in link
    params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert params == {
        "response_type": "code",
        "client_id": "client-1",
        "redirect_uri": "http://127.0.0.1:3456/callback",
        "scope": "info accounts balance cards transactions offline_access",
        "state": "st4te",
        "code_challenge": "ch4llenge",
        "code_challenge_method": "S256",
        "providers": "uk-ob-all uk-oauth-all",
        "response_mode": "form_post",
    }


def test_tokenset_repr_hides_tokens():
    tokens = TokenSet("at-SECRET", "rt-SECRET", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "info")
    assert "SECRET" not in repr(tokens) and "SECRET" not in str(tokens) and "SECRET" not in f"{tokens!r}"


# --- identities ------------------------------------------------------------------------------


def test_identity_order_and_account_key():
    iban = {
        "account_id": "x",
        "account_number": {"iban": "GB35 LOYD 1234", "sort_code": "12-34-56", "number": "1"},
    }
    assert account_identity(iban, "account") == "iban:GB35LOYD1234"
    sort = {"account_id": "x", "account_number": {"sort_code": "04-00-04", "number": "12345678"}}
    assert account_identity(sort, "account") == "sort:040004:12345678"
    card = {
        "account_id": "x",
        "partial_card_number": "0044",
        "display_name": "Club",
        "provider": {"provider_id": "ob-x"},
    }
    assert account_identity(card, "card") == "card:ob-x:0044:Club"
    assert account_identity({"account_id": "abc"}, "account") == "tl:abc"
    key = account_key_for("iban:GB35LOYD1234")
    assert re.fullmatch(r"a[0-9a-f]{12}", key)
    assert key == "a" + hashlib.sha256(b"iban:GB35LOYD1234").hexdigest()[:12]


# --- OAuth state (database, both backends) ---------------------------------------------------


@pytest.fixture
def store(engine):
    return OAuthStates(engine, TokenCipher([generate_key()]))


def test_state_is_single_use(store):
    started = store.create_state("http://127.0.0.1:1/callback")
    verifier, redirect = store.consume_state(started.state)
    assert verifier == started.code_verifier and redirect == "http://127.0.0.1:1/callback"
    with pytest.raises(BankPipelineError, match="state mismatch: .*already used"):
        store.consume_state(started.state)


def test_unknown_state_is_a_mismatch(store):
    store.create_state("http://127.0.0.1:1/callback")
    with pytest.raises(BankPipelineError, match="state mismatch: .*not one this machine issued"):
        store.consume_state("forged-state")
    with pytest.raises(BankPipelineError, match="state mismatch"):
        store.consume_state(None)


@pytest.mark.date_sensitive
def test_expired_state_is_a_mismatch(store, engine):
    started = store.create_state("http://127.0.0.1:1/callback", ttl=dt.timedelta(minutes=10))
    with engine.begin() as conn:
        conn.execute(
            sa.update(oauth_states).values(
                expires_at=clock.now() - dt.timedelta(seconds=1)
            )
        )
    with pytest.raises(BankPipelineError, match="state mismatch: .*expired"):
        store.consume_state(started.state)


def test_verifier_is_stored_encrypted(store, engine):
    started = store.create_state("http://127.0.0.1:1/callback")
    with engine.connect() as conn:
        stored = conn.execute(sa.select(oauth_states.c.code_verifier_enc)).scalar_one()
    assert started.code_verifier not in stored
    assert store.cipher.decrypt(stored) == started.code_verifier


# --- against the simulator (real HTTP on loopback) -------------------------------------------


def _connection_row(engine, connection_id):
    with engine.connect() as conn:
        return conn.execute(sa.select(connections).where(connections.c.id == connection_id)).mappings().one()


def _store(settings, engine=None):
    return ConnectionStore.from_settings(engine or make_engine(settings.database_url), settings)


@pytest.mark.date_sensitive
def test_full_connect_flow(connect_settings, alice_connection):
    engine = make_engine(connect_settings.database_url)
    row = _connection_row(engine, alice_connection.connection_id)
    assert row["status"] == "active" and row["token_version"] >= 0
    assert row["consent_expires_at"] is not None and row["access_expires_at"] is not None
    assert row["provider_id"] and row["credentials_id"]
    store = _store(connect_settings, engine)
    access = store.access_token(alice_connection.connection_id)
    assert access not in row["access_token_enc"]
    assert store.cipher.decrypt(row["refresh_token_enc"])  # a refresh token came back (offline_access)

    found = alice_connection.accounts
    kinds = sorted(a["kind"] for a in found)
    assert kinds == ["account", "account", "card"], found  # alice: current, savings, credit card
    for account in found:
        assert re.fullmatch(r"a[0-9a-f]{12}", account["account_key"])
        assert account["account_key"] == account_key_for(account["identity"])
        assert account["connection_id"] == alice_connection.connection_id
    assert {a["identity"].split(":")[0] for a in found} <= {"iban", "sort", "card"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 3

    # The connection works for data calls afterwards.
    client = open_data_client(engine, connect_settings, alice_connection.connection_id)
    assert {a["account_id"] for a in client.accounts()} == {
        a["provider_account_id"] for a in found if a["kind"] == "account"
    }


def test_reauthentication_keeps_account_rows_and_keys(connect_settings, alice_connection, tl_sim):
    set_faults(tl_sim, rotate_account_ids_on_reauth=True)
    again = main_connect(connect_settings)
    before = {a["identity"]: a for a in alice_connection.accounts}
    after = {a["identity"]: a for a in again.accounts}
    assert before.keys() == after.keys()
    for identity, account in after.items():
        assert account["id"] == before[identity]["id"]
        assert account["account_key"] == before[identity]["account_key"]
    changed = [i for i in after if after[i]["provider_account_id"] != before[i]["provider_account_id"]]
    assert changed, "the simulator was asked to rotate provider account ids"
    engine = make_engine(connect_settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 3


def main_connect(settings, **kwargs):
    from bank_pipeline.connections.flow import connect

    kwargs.setdefault("simulator_user", "alice")
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("out", lambda _line: None)
    return connect(settings, open_browser=False, **kwargs)


def _authorize(settings, tl_sim, states, user="alice"):
    """Drive the simulator's consent by hand; returns (code, state, verifier, redirect_uri)."""
    started = states.create_state(settings.redirect_uri)
    link = build_auth_link(
        settings.auth_url,
        settings.client_id,
        settings.redirect_uri,
        settings.scopes,
        started.state,
        started.code_challenge,
    )
    params = dict(httpx.URL(link).params.multi_items())
    answer = httpx.post(
        f"{settings.auth_url}/consent", data={**params, "user": user, "decision": "allow"}, timeout=10
    )
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == [started.state]
    return query["code"][0], started


def test_reused_code_is_rejected(connect_settings, tl_sim, engine):
    states = OAuthStates(engine, TokenCipher.from_settings(connect_settings))
    code, started = _authorize(connect_settings, tl_sim, states)
    auth = AuthClient(connect_settings.auth_url, connect_settings.client_id, connect_settings.client_secret)
    tokens = auth.exchange_code(code, connect_settings.redirect_uri, started.code_verifier)
    assert tokens.access_token and tokens.refresh_token
    with pytest.raises(AuthorizationRequired) as info:
        auth.exchange_code(code, connect_settings.redirect_uri, started.code_verifier)
    assert info.value.error == "invalid_grant" and "invalid_grant" in str(info.value)
    assert code not in str(info.value)


def test_wrong_code_verifier_is_rejected(connect_settings, tl_sim, engine):
    states = OAuthStates(engine, TokenCipher.from_settings(connect_settings))
    code, _started = _authorize(connect_settings, tl_sim, states)
    auth = AuthClient(connect_settings.auth_url, connect_settings.client_id, connect_settings.client_secret)
    wrong, _ = generate_pkce()
    with pytest.raises(TrueLayerError) as info:
        auth.exchange_code(code, connect_settings.redirect_uri, wrong)
    assert info.value.error == "invalid_grant" and info.value.status_code == 400
    assert wrong not in str(info.value)


def _states(settings) -> set[str]:
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(oauth_states.c.state)).scalars())
    finally:
        engine.dispose()


def _issued_state(settings, deadline: float, known: set[str]) -> str:
    """The state the running `connect` stored (what its auth link carries): the one not `known`."""
    while not (new := _states(settings) - known):
        assert time.monotonic() < deadline, "connect never issued a state"
        time.sleep(0.05)
    (state,) = new
    return state


def _callback_during_connect(settings, params, run=None) -> tuple[httpx.Response, object]:
    """Run `connect` waiting for a browser (or `run()`, e.g. the CLI), send it the redirect over
    real HTTP — `params`, or `params(issued_state)` — and return the page the browser gets and
    what `connect` ended with (its BankPipelineError, or what `run` returned)."""
    outcome = {}
    known = _states(settings)

    def connect_waiting_for_a_browser():
        try:
            outcome["error"] = run() if run else main_connect(settings, simulator_user=None, timeout=20)
        except BankPipelineError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=connect_waiting_for_a_browser)
    thread.start()
    deadline = time.monotonic() + 15
    if callable(params):
        params = params(_issued_state(settings, deadline, known))
    while True:
        try:
            response = httpx.get(settings.redirect_uri, params=params, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "callback server never came up"
            time.sleep(0.05)
    thread.join(30)
    assert not thread.is_alive()
    return response, outcome.get("error")


def _page_text(response: httpx.Response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.text))


def test_forged_state_on_the_callback_is_rejected(connect_settings, tl_sim):
    """A redirect carrying a state this connect did not issue is refused, and the browser page
    says exactly what the CLI says (never "Connected")."""
    response, error = _callback_during_connect(connect_settings, {"code": "x", "state": "forged"})
    assert response.status_code == 200
    assert "state mismatch" in str(error)
    page = _page_text(response)
    assert "Not connected" in page and f"error: {error}" in page
    assert "Connected" not in page.replace("Not connected", "")


def test_bank_error_on_the_callback_shows_the_cli_error_on_the_page(connect_settings, tl_sim):
    response, error = _callback_during_connect(
        connect_settings, {"error": "access_denied", "error_description": "the user said no <b>"}
    )
    assert str(error) == "the bank connection was not authorised: access_denied: the user said no <b>"
    page = _page_text(response)
    assert "Not connected" in page and f"error: {error}" in page
    assert "<b>" not in response.text  # escaped in the HTML
    assert "Connected" not in page.replace("Not connected", "")


def test_a_redirect_without_a_code_is_an_error_page_and_a_failed_connect(connect_settings, tl_sim):
    response, error = _callback_during_connect(connect_settings, lambda state: {"state": state})
    assert str(error) == "the bank's redirect carried no authorization code; start again"
    page = _page_text(response)
    assert "Not connected" in page and f"error: {error}" in page
    assert "Connected" not in page.replace("Not connected", "")


def test_the_browser_page_says_connected_once_the_connection_is_stored(connect_settings, tl_sim, engine):
    """The page of a valid redirect waits for `connect` to exchange the code and find the accounts."""
    from bank_pipeline.simulator.consent import answer_consent

    lines: list[str] = []
    result = {}

    def run():
        result["connect"] = main_connect(connect_settings, simulator_user=None, out=lines.append)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 15
    while not any(line.startswith(connect_settings.auth_url) for line in lines):
        assert time.monotonic() < deadline, "connect never printed its auth link"
        time.sleep(0.05)
    link = next(line for line in lines if line.startswith(connect_settings.auth_url))
    page = _page_text(httpx.Response(200, text=answer_consent(link, connect_settings.auth_url, "alice")))
    thread.join(30)
    connection_id = result["connect"].connection_id
    assert "Connected" in page and f"connection {connection_id}" in page and "3 account(s)/card(s)" in page
    with engine.connect() as conn:  # stored before the page said so
        assert conn.execute(sa.select(connections.c.status).where(connections.c.id == connection_id)).scalar() == "active"


def test_the_cli_fails_with_one_line_on_a_bad_redirect(connect_settings, monkeypatch, capsys):
    """The CLI waiting for a browser: a forged state and then a missing code each end the command
    with exit 2 and one `error:` line, while the browser page shows that same error."""
    cli_env(monkeypatch, connect_settings)

    def cli():
        return main(["connect", "--no-browser", "--timeout", "20", "--history-days", "0"])

    for params, expected in (
        ({"code": "x", "state": "forged"}, "state mismatch"),
        (lambda state: {"state": state}, "carried no authorization code"),
    ):
        response, exit_code = _callback_during_connect(connect_settings, params, run=cli)
        err = capsys.readouterr().err
        assert exit_code == 2
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1 and "Traceback" not in err
        assert err.strip() in _page_text(response) and "Not connected" in _page_text(response)


def test_the_callback_server_listens_on_loopback_only(connect_settings):
    from bank_pipeline.connections.callback import CallbackServer

    with pytest.raises(BankPipelineError, match="^TRUELAYER_REDIRECT_URI must be a loopback http:// URL"):
        CallbackServer("http://0.0.0.0:3456/callback")
    with CallbackServer("http://localhost:0/callback") as server:
        assert server.redirect_uri.startswith("http://localhost:") and server.redirect_uri.endswith("/callback")
        assert httpx.get(server.redirect_uri.replace("localhost", "127.0.0.1") + "x", timeout=5).status_code == 404
        answered = httpx.post(server.redirect_uri.replace("localhost", "127.0.0.1"), content=b"a" * 70_000, timeout=5)
        assert answered.status_code == 413


@pytest.mark.date_sensitive
def test_refresh_rotates_and_persists_the_new_pair(connect_settings, alice_connection, engine):
    cid = alice_connection.connection_id
    store = _store(connect_settings, engine)
    before = _connection_row(engine, cid)
    old_access = store.cipher.decrypt(before["access_token_enc"])
    old_refresh = store.cipher.decrypt(before["refresh_token_enc"])
    expire_access_token(engine, cid, in_seconds=120)  # inside the 5-minute margin

    new_access = store.access_token(cid)
    after = _connection_row(engine, cid)
    new_refresh = store.cipher.decrypt(after["refresh_token_enc"])
    assert new_access != old_access and new_refresh != old_refresh
    assert store.cipher.decrypt(after["access_token_enc"]) == new_access
    assert after["token_version"] == before["token_version"] + 1
    assert after["status"] == "active"
    assert store.access_token(cid) == new_access  # no second refresh while it is fresh
    assert _connection_row(engine, cid)["token_version"] == after["token_version"]
    # The new token works, the old refresh token is spent.
    assert open_data_client(engine, connect_settings, cid, store=store).accounts()
    with pytest.raises(AuthorizationRequired, match="invalid_grant"):
        store.auth_client.refresh(old_refresh)


def test_concurrent_refresh_spends_the_refresh_token_once(connect_settings, alice_connection, tl_sim):
    """Two workers (own engines, as two processes would have) race to refresh an expiring token."""
    cid = alice_connection.connection_id
    engine = make_engine(connect_settings.database_url)
    expire_access_token(engine, cid, in_seconds=30)
    before = _connection_row(engine, cid)
    sim_admin(tl_sim, "POST", "stats/reset")
    workers = [_store(connect_settings, make_engine(connect_settings.database_url)) for _ in range(3)]
    barrier = threading.Barrier(len(workers))
    results, errors = [None] * len(workers), []

    def work(i):
        barrier.wait()
        try:
            results[i] = workers[i].access_token(cid)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(set(results)) == 1  # everyone got the same, new token
    assert sum(w.auth_client.calls_made for w in workers) == 1  # exactly one refresh call…
    assert sim_admin(tl_sim, "GET", "stats").json()["token_requests"] == {
        "refresh_token": 1
    }  # …as TrueLayer saw
    after = _connection_row(engine, cid)
    assert after["status"] == "active" and after["token_version"] == before["token_version"] + 1
    assert workers[0].cipher.decrypt(after["access_token_enc"]) == results[0]
    assert open_data_client(engine, connect_settings, cid).accounts()


def test_invalid_grant_marks_authorization_required(connect_settings, alice_connection, tl_sim, engine):
    cid = alice_connection.connection_id
    # A second user's connection must be unaffected.
    bob = main_connect(connect_settings, simulator_user="bob")
    sim_admin(tl_sim, "POST", "consent/expire", json={"user": "alice"})
    expire_access_token(engine, cid, in_seconds=60)
    client = open_data_client(engine, connect_settings, cid)
    with pytest.raises(AuthorizationRequired) as info:
        client.accounts()
    assert "bank-pipeline reconnect" in str(info.value)
    row = _connection_row(engine, cid)
    assert row["status"] == "authorization_required"
    assert "bank-pipeline reconnect" in row["status_message"] and "invalid_grant" in row["status_message"]
    assert client.calls_made == 0  # no data call was wasted
    # Later calls fail fast and clearly, without touching TrueLayer.
    with pytest.raises(AuthorizationRequired, match="authorization_required"):
        _store(connect_settings, engine).access_token(cid)
    assert any("needs authorising again" in w for w in consent_warnings(engine))
    # Bob keeps working.
    assert _connection_row(engine, bob.connection_id)["status"] == "active"
    assert open_data_client(engine, connect_settings, bob.connection_id).accounts()


def test_access_denied_on_a_data_call_marks_authorization_required(
    connect_settings, alice_connection, tl_sim, engine
):
    cid = alice_connection.connection_id
    sim_admin(tl_sim, "POST", "consent/expire", json={"user": "alice"})
    client = open_data_client(engine, connect_settings, cid)  # the access token itself is still fresh
    with pytest.raises(AuthorizationRequired) as info:
        client.accounts()
    assert info.value.status_code == 403 and info.value.error == "access_denied"
    assert client.calls_made == 1  # not retried
    assert _connection_row(engine, cid)["status"] == "authorization_required"


def test_rediscovery_is_idempotent(connect_settings, alice_connection, engine):
    client = open_data_client(engine, connect_settings, alice_connection.connection_id)
    again = discover_accounts(engine, client, alice_connection.connection_id)
    assert sorted(a["id"] for a in again) == sorted(a["id"] for a in alice_connection.accounts)


def test_tokens_never_in_plain_text_in_the_sqlite_file_or_logs(sqlite_url, tl_sim, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    settings = simulator_settings(sqlite_url, tl_sim, tmp_path / "home")
    result = main_connect(settings)
    engine = make_engine(sqlite_url)
    store = _store(settings, engine)
    expire_access_token(engine, result.connection_id, in_seconds=10)
    access = store.access_token(result.connection_id)  # a refresh, logged
    row = _connection_row(engine, result.connection_id)
    refresh = store.cipher.decrypt(row["refresh_token_enc"])
    status_text = format_status(status_summary(engine))
    engine.dispose()
    secrets_ = [access, refresh, settings.client_secret]
    files = [p for p in (tmp_path).glob("app.db*")]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    for secret in (access, refresh):
        assert secret.encode() not in blob
    log_text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "refreshed" in log_text  # the refresh was logged…
    for secret in secrets_:
        assert secret not in log_text  # …without any secret
        assert secret not in status_text
    assert "code=<redacted>" in log_text or "callback?" not in log_text


def test_status_cli_shows_accounts_and_no_secrets(
    connect_settings, alice_connection, monkeypatch, capsys, engine
):
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", connect_settings.database_url)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(connect_settings.home))
    monkeypatch.setenv("BANK_PIPELINE_FERNET_KEYS", connect_settings.fernet_keys[0])
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "active" in out
    for account in alice_connection.accounts:
        assert account["account_key"] in out and account["display_name"] in out
    access = _store(connect_settings, engine).access_token(alice_connection.connection_id)
    assert access not in out and "_enc" not in out


@pytest.mark.date_sensitive
def test_consent_expiry_warning(connect_settings, alice_connection, engine):
    soon = clock.now() + dt.timedelta(days=3)
    with engine.begin() as conn:
        conn.execute(sa.update(connections).values(consent_expires_at=soon))
    warnings = consent_warnings(engine, within_days=7)
    assert len(warnings) == 1 and "consent expires" in warnings[0] and "bank-pipeline reconnect" in warnings[0]
    assert consent_warnings(engine, within_days=2) == []


def test_connect_with_form_post(connect_settings):
    result = main_connect(connect_settings, response_mode="form_post")
    assert len(result.accounts) == 3


def test_denied_consent_is_a_clear_error(connect_settings):
    with pytest.raises(BankPipelineError, match="not authorised: access_denied"):
        main_connect(connect_settings, decision="deny")


def test_connect_cli_unattended(connect_settings, monkeypatch, capsys):
    cli_env(monkeypatch, connect_settings)
    # A week of history: the history import itself is test_history_lands.py's subject.
    assert main(["connect", "--simulator-user", "alice", "--no-browser", "--timeout", "30", "--history-days", "7"]) == 0
    out = capsys.readouterr().out
    assert "Connected" in out and out.count("  a") >= 3


def test_connect_cli_errors_are_one_line(connect_settings, monkeypatch, capsys):
    cli_env(monkeypatch, connect_settings)
    monkeypatch.setenv("TRUELAYER_CLIENT_SECRET", "wrong-secret")
    assert main(["connect", "--simulator-user", "alice", "--no-browser", "--timeout", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TrueLayer POST /connect/token failed") and "Traceback" not in err
    assert "wrong-secret" not in err

    monkeypatch.delenv("TRUELAYER_CLIENT_SECRET")
    monkeypatch.setenv("BANK_PIPELINE_TRUELAYER_ENV", "sandbox")
    monkeypatch.setenv("TRUELAYER_CLIENT_ID", "x")
    monkeypatch.setenv("TRUELAYER_CLIENT_SECRET", "y")
    assert main(["connect", "--simulator-user", "alice", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --simulator-user only works against the local simulator")


class _StubBank:
    """A minimal Data API over real loopback HTTP for cases the simulator does not produce
    (cards answering 501, accounts without IBAN). `accounts` can be changed between calls."""

    def __init__(self):
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stub = self
        self.accounts = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if self.path.endswith("/cards"):
                    status, body = 501, {"error": "endpoint_not_supported", "error_description": "no cards"}
                elif self.path.endswith("/accounts"):
                    status, body = 200, {"results": stub.accounts}
                else:
                    status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_discover_accounts_identity_501_cards_and_changed_ids(engine):
    from bank_pipeline.truelayer.client import DataClient

    store = ConnectionStore(engine, TokenCipher([generate_key()]))
    tokens = TokenSet("at", "rt", clock.now() + dt.timedelta(hours=1), None)
    cid = store.save_connection(tokens, {"provider": {"provider_id": "ob-stub"}, "credentials_id": "cred-1"})
    bank = _StubBank()
    try:
        bank.accounts = [
            {
                "account_id": "A1",
                "display_name": "Current",
                "currency": "GBP",
                "account_type": "TRANSACTION",
                "account_number": {"iban": "GB00STUB0001", "sort_code": "01-02-03", "number": "111"},
                "provider": {"provider_id": "ob-stub"},
            },
            {
                "account_id": "B1",
                "display_name": "Saver",
                "currency": "GBP",
                "account_number": {"sort_code": "01-02-03", "number": "222"},
                "provider": {"provider_id": "ob-stub"},
            },
            {"account_id": "C1", "display_name": "Odd", "currency": "EUR", "account_number": {}},
        ]
        client = DataClient(bank.url, lambda: "at")
        first = discover_accounts(engine, client, cid)  # cards → 501: tolerated
        assert [a["identity"] for a in first] == ["iban:GB00STUB0001", "sort:010203:222", "tl:C1"]
        assert all(a["kind"] == "account" and a["active"] for a in first)
        # Re-authentication: TrueLayer ids change, and one account disappears.
        bank.accounts = [dict(bank.accounts[0], account_id="A2"), dict(bank.accounts[1], account_id="B2")]
        second = discover_accounts(engine, client, cid)
        assert [(a["id"], a["account_key"]) for a in second] == [
            (a["id"], a["account_key"]) for a in first[:2]
        ]
        assert [a["provider_account_id"] for a in second] == ["A2", "B2"]
        with engine.connect() as conn:
            gone = conn.execute(
                sa.select(accounts.c.active).where(accounts.c.identity == "tl:C1")
            ).scalar_one()
        assert gone is False  # no longer listed → inactive, history kept
    finally:
        bank.close()


@pytest.mark.date_sensitive
def test_the_first_connect_records_where_the_day_partitions_begin(connect_settings, alice_connection, monkeypatch):
    """Partitions begin where the first connection's history can reach, not years before any data
    (the UI's "% filled" counts days that can have data); set once, and never over the variable."""
    from bank_pipeline.config import PARTITIONS_START_FILE, partition_start_date
    from bank_pipeline.history import record_partitions_start

    monkeypatch.delenv("BANK_PIPELINE_START_DATE", raising=False)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(connect_settings.home))
    engine = make_engine(connect_settings.database_url)
    start = record_partitions_start(connect_settings, engine)
    today = clock.today_in(connect_settings.timezone)
    assert start == today - dt.timedelta(days=connect_settings.history_days - 1)
    assert (connect_settings.home / PARTITIONS_START_FILE).read_text().strip() == start.isoformat()
    assert partition_start_date() == start.isoformat()
    assert record_partitions_start(connect_settings, engine) is None  # recorded once
    monkeypatch.setenv("BANK_PIPELINE_START_DATE", "2021-03-04")
    assert partition_start_date() == "2021-03-04"  # the variable wins
