"""Re-consent (what `bank-pipeline reconnect` runs): renew a connection before or after its 90 days
without losing anything.

The user reconfirms in the terminal; then TrueLayer's `/connections/extend` either renews at once
(new token pair) or sends a link — TrueLayer's auth dialog or the bank's login — that the user opens
as with `connect`. When the bank cannot extend (the consent already ended, the provider does not
support it, no refresh token), a new consent is asked for through the ordinary auth link. Every
path stores the result on the SAME connection row: the tokens rotate (encrypted), the accounts are
re-discovered by their stable identity, so account keys, Dagster partitions and the ledger stay.
"""

from __future__ import annotations

import contextlib
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from bank_pipeline.config import Settings
from bank_pipeline.connections.accounts import discover_accounts
from bank_pipeline.connections.callback import CallbackServer, callback_problem
from bank_pipeline.connections.flow import _consent_bot, check_simulator_user, consent_link
from bank_pipeline.connections.oauth import OAuthStates
from bank_pipeline.connections.tokens import ConnectionStore
from bank_pipeline.crypto import TokenCipher
from bank_pipeline.db import make_engine
from bank_pipeline.db.schema import connections
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.timestamps import aware
from bank_pipeline.truelayer.auth import AuthClient
from bank_pipeline.truelayer.client import DataClient
from bank_pipeline.truelayer.extend import CannotExtend, extend_connection

NEW_CONSENT = "new_consent"  # the outcome when the bank could not extend


@dataclass
class ReconnectResult:
    connection_id: int
    outcome: str  # no_action_needed | reconfirmation_of_consent_needed | authentication_needed | new_consent
    consent_expires_at: object = None
    accounts: list[dict] = field(default_factory=list)


def choose_connection(engine: sa.Engine, connection_id: int | None) -> int:
    """The connection to renew: the one named, else the only one not replaced."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(connections.c.id, connections.c.status).order_by(connections.c.id)
        ).all()
    if connection_id is not None:
        if connection_id not in {r.id for r in rows}:
            raise BankPipelineError(f"no connection with id {connection_id}; `bank-pipeline status` lists them")
        return connection_id
    live = [r.id for r in rows if r.status != "revoked"]
    if len(live) == 1:
        return live[0]
    if not live:
        raise BankPipelineError("no bank connected yet: run `bank-pipeline connect`")
    raise BankPipelineError(
        f"{len(live)} connections ({', '.join(map(str, live))}): name one, e.g. `bank-pipeline reconnect {live[0]}`"
    )


def reconnect(
    settings: Settings,
    connection_id: int | None = None,
    *,
    confirm: Callable[[str], bool],
    simulator_user: str | None = None,
    open_browser: bool = True,
    timeout: float = 300,
    response_mode: str | None = None,
    assume_simulator: bool = False,
    out: Callable[[str], None] = print,
) -> ReconnectResult:
    """Renew one connection's consent; `confirm(question)` is the user's reconfirmation."""
    check_simulator_user(settings, simulator_user, assume_simulator)
    engine = make_engine(settings.database_url)
    try:
        connection_id = choose_connection(engine, connection_id)
        cipher = TokenCipher.from_settings(settings)
        auth = AuthClient(settings.auth_url, settings.client_id, settings.client_secret)
        store = ConnectionStore(engine, cipher, auth)
        row = store.get_connection(connection_id)
        provider = row["provider_name"] or row["provider_id"] or "your bank"
        question = (
            f"Keep sharing the accounts of {provider} (connection {connection_id}) with bank-pipeline for "
            "90 more days? [y/N] "
        )
        if not confirm(question):
            raise BankPipelineError("nothing changed: the consent was not reconfirmed")
        refresh_token = store.refresh_token_of(connection_id)
        states = OAuthStates(engine, cipher)
        bot: threading.Thread | None = None
        try:
            with CallbackServer(settings.redirect_uri) as server:
                redirect_uri = server.redirect_uri
                started = states.create_state(redirect_uri)
                server.expected_state = started.state
                try:
                    if refresh_token is None:
                        raise CannotExtend("the connection has no refresh token")
                    answer = extend_connection(
                        settings.data_url,
                        settings.client_id,
                        settings.client_secret,
                        refresh_token,
                        redirect_uri,
                        state=started.state,
                        code_challenge=started.code_challenge,
                        response_mode=response_mode,
                    )
                    outcome, tokens, link = answer.action_needed, answer.tokens, answer.user_input_link
                except CannotExtend as exc:
                    out(f"The bank cannot extend this connection ({exc}); asking for a new consent to the same accounts.")
                    outcome, tokens = NEW_CONSENT, None
                    link = consent_link(settings, redirect_uri, started, row["provider_id"], response_mode)
                if tokens is None:
                    if simulator_user:
                        out(f"Answering the simulator's page as {simulator_user!r} unattended…")
                        bot = _consent_bot(server, link, settings.auth_url, simulator_user, "allow")
                    else:
                        what = "log in to your bank again" if outcome == "authentication_needed" else "confirm"
                        out(f"Open this link in a browser to {what}:")
                        out(link)
                        if open_browser:
                            webbrowser.open(link)
                        out(f"Waiting up to {timeout:g}s for the redirect to {redirect_uri} …")
                    callback = server.wait(timeout)
                    problem = callback_problem(callback, started.state)
                    if problem:
                        raise BankPipelineError(problem)
                    verifier, stored_redirect = states.consume_state(callback.get("state"))
                    tokens = auth.exchange_code(callback["code"], stored_redirect, verifier)
                else:
                    with contextlib.suppress(BankPipelineError):
                        states.consume_state(started.state)  # not needed: the extension was immediate
                with DataClient(settings.data_url, lambda: tokens.access_token, psu_ip=settings.psu_ip) as client:
                    me = client.me()
                    store.renew_connection(connection_id, tokens, me)
                    found = discover_accounts(engine, client, connection_id)
                if outcome != "no_action_needed":
                    server.connected(f"{provider}: connection {connection_id} renewed. You can close this page.")
        finally:
            if bot is not None:
                bot.join(timeout=30)
        expires = aware(store.get_connection(connection_id)["consent_expires_at"])
        out(f"Renewed connection {connection_id} ({provider}; {outcome.replace('_', ' ')}): "
            f"{len(found)} account(s)/card(s), same account keys; consent now expires "
            f"{f'{expires:%Y-%m-%d %H:%M} UTC' if expires else 'at an unknown date'}.")
        return ReconnectResult(connection_id, outcome, expires, found)
    finally:
        engine.dispose()
