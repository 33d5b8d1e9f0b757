"""Connecting a bank end to end (what `bank-pipeline connect` and the demo run).

The OAuth 2 authorisation-code flow with PKCE (S256): store a random state and the (encrypted)
code verifier, open the auth link in a browser, receive the redirect on a local callback server
(GET query or `response_mode=form_post`), check the state, exchange the code, store the encrypted
tokens, discover the accounts and cards. Against the local simulator, `simulator_user` answers the
consent page unattended.
"""

from __future__ import annotations

import contextlib
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field

from bank_pipeline.config import Settings
from bank_pipeline.connections.accounts import list_accounts, store_accounts
from bank_pipeline.connections.callback import CallbackServer, callback_problem, with_port
from bank_pipeline.connections.oauth import OAuthState, OAuthStates
from bank_pipeline.connections.tokens import ConnectionStore
from bank_pipeline.crypto import TokenCipher
from bank_pipeline.db import make_engine, write_transaction
from bank_pipeline.display import escaped
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.auth import AuthClient, auth_server_unreachable, build_auth_link
from bank_pipeline.truelayer.client import DataClient


@dataclass
class ConnectResult:
    connection_id: int
    accounts: list[dict] = field(default_factory=list)


def connect(
    settings: Settings,
    *,
    simulator_user: str | None = None,
    open_browser: bool = True,
    timeout: float = 300,
    providers: str | None = None,
    redirect_port: int | None = None,
    response_mode: str | None = None,
    assume_simulator: bool = False,
    decision: str = "allow",
    out: Callable[[str], None] = print,
) -> ConnectResult:
    """The whole connect flow. Returns the new connection's id and its accounts (rows as dicts)."""
    check_simulator_user(settings, simulator_user, assume_simulator)
    unreachable = auth_server_unreachable(settings.auth_url)
    if unreachable:
        raise BankPipelineError(unreachable)
    engine = make_engine(settings.database_url)  # migrated by its owner (the CLI command, the demo)
    try:
        cipher = TokenCipher.from_settings(settings)
        auth = AuthClient(settings.auth_url, settings.client_id, settings.client_secret)
        store = ConnectionStore(engine, cipher, auth)
        states = OAuthStates(engine, cipher)
        redirect_uri = settings.redirect_uri
        if redirect_port is not None:
            redirect_uri = with_port(redirect_uri, redirect_port)
        bot: threading.Thread | None = None
        try:
            with CallbackServer(redirect_uri) as server:
                redirect_uri = server.redirect_uri  # the real port when 0 was asked for
                started = states.create_state(redirect_uri, providers)
                server.expected_state = started.state
                link = consent_link(settings, redirect_uri, started, providers, response_mode)
                if simulator_user:
                    out(f"Connecting simulator user {simulator_user!r} unattended…")
                    bot = _consent_bot(server, link, settings.auth_url, simulator_user, decision)
                else:
                    if open_browser:
                        out("Opening your browser to connect your bank. If it does not open, visit:")
                        out(link)
                        webbrowser.open(link)
                    else:
                        out("Open this link in a browser to connect your bank:")
                        out(link)
                    out(f"Waiting up to {timeout:g}s for the bank to redirect to {redirect_uri} …")
                callback = server.wait(timeout)
                problem = callback_problem(callback, started.state)
                if problem:
                    if callback.get("state") == started.state:
                        with contextlib.suppress(BankPipelineError):
                            states.consume_state(started.state)  # spent either way; the page showed `problem`
                    raise BankPipelineError(problem)
                verifier, stored_redirect = states.consume_state(callback.get("state"))
                tokens = auth.exchange_code(callback["code"], stored_redirect, verifier)
                with DataClient(settings.data_url, lambda: tokens.access_token, psu_ip=settings.psu_ip) as client:
                    me = client.me()
                    listed = list_accounts(client)
                # One transaction: a connect that fails leaves no connection without its accounts.
                with write_transaction(engine) as conn:
                    connection_id = store.save_connection(tokens, me, conn)
                    found = store_accounts(conn, connection_id, listed)
                provider = me.get("provider") if isinstance(me.get("provider"), dict) else {}
                provider = escaped(provider.get("display_name") or provider.get("provider_id") or "your bank", 80)
                server.connected(f"{provider}: {len(found)} account(s)/card(s), connection {connection_id}. "
                                 "You can close this page.")
        finally:
            if bot is not None:
                bot.join(timeout=30)
        out(f"Connected {provider} as connection {connection_id}; {len(found)} account(s)/card(s):")
        for account in found:  # the bank's names, escaped: a newline or U+202E must not forge a line
            out(
                f"  {account['account_key']}  {account['kind']:<7} {escaped(account['display_name'] or '?')} "
                f"({escaped(account['currency'] or '?')})"
            )
        if me.get("consent_expires_at"):
            out(f"Consent expires {escaped(me['consent_expires_at'], 40)}; run `bank-pipeline reconnect` before then (same accounts, history kept).")
        return ConnectResult(connection_id, found)
    finally:
        engine.dispose()


def consent_link(
    settings: Settings, redirect_uri: str, started: OAuthState, providers: str | None, response_mode: str | None
) -> str:
    """The auth link of a started authorisation (its state and PKCE challenge), for our scopes."""
    return build_auth_link(
        settings.auth_url,
        settings.client_id,
        redirect_uri,
        settings.scopes,
        started.state,
        started.code_challenge,
        providers=providers,
        response_mode=response_mode,
    )


def check_simulator_user(settings: Settings, simulator_user: str | None, assume_simulator: bool) -> None:
    """The unattended consent bot answers only the local simulator, never a real bank's page."""
    if simulator_user and not (settings.truelayer_env == "simulator" or assume_simulator):
        raise BankPipelineError(
            f"--simulator-user only works against the local simulator, but BANK_PIPELINE_TRUELAYER_ENV is "
            f"{settings.truelayer_env!r}"
        )


def _consent_bot(server: CallbackServer, link: str, auth_url: str, user: str, decision: str) -> threading.Thread:
    """The simulator's consent answered from another thread, like a browser: its request to the
    callback waits for the page, which waits for this flow to finish."""
    from bank_pipeline.simulator.consent import answer_consent

    def run() -> None:
        try:
            answer_consent(link, auth_url, user, decision=decision)
        except BankPipelineError as exc:
            server.abandon(exc)
        except Exception as exc:  # noqa: BLE001 — the flow fails with one line, not a thread's traceback
            server.abandon(BankPipelineError(f"the simulator's consent page failed: {exc}"))

    bot = threading.Thread(target=run, name="simulator-consent", daemon=True)
    bot.start()
    return bot
