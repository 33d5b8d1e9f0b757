"""What the bank says while connecting, taken as hostile: account names with a NUL, a newline,
U+202E or 300 characters, a connect failing after the token exchange, token endpoint errors with a
newline in their description, and a failing token endpoint under the data client's retries.
Against the simulator over loopback HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bank_pipeline.cli import main
from bank_pipeline.connections import open_data_client, record_failure
from bank_pipeline.connections.flow import connect
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.client import RetryPolicy
from bank_pipeline.truelayer.errors import AuthorizationRequired, ServerError
from bank_pipeline_tests.fixtures.connections import cli_env, expire_access_token, set_faults, sim_admin

HOSTILE_DESCRIPTION = "refresh token revoked\nFORGED LINE (HTTP 400)\u202e\x1b[31m"


def _connect(settings, **kwargs):
    return connect(settings, simulator_user="alice", open_browser=False, timeout=30, out=lambda _l: None, **kwargs)


def _rows(engine, table):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()]


def _assert_lines_are_ours(text: str) -> None:
    """Nothing the bank said starts a line, and no control or bidi character reaches the terminal."""
    for line in text.splitlines():
        assert not line.startswith("FORGED"), text
    assert "\u202e" not in text and "\x1b" not in text and "\x00" not in text, text


@pytest.mark.parametrize("name, clean", [("Saver\x00NUL", "SaverNUL"), ("S" * 300, "S" * 300)], ids=["nul", "300-chars"])
def test_account_names_with_a_nul_or_over_256_characters_connect_on_both_databases(
    connect_settings, tl_sim, engine, name, clean
):
    """Before: PostgreSQL refused the connect (`DataError: … cannot contain NUL`,
    `StringDataRightTruncation`), SQLite stored the raw value."""
    set_faults(tl_sim, account_display_name=name)
    result = _connect(connect_settings)
    assert len(result.accounts) == 3
    for row in _rows(engine, accounts):
        full = f"{row['display_name'].split(' ', 1)[0]} {clean}"  # the simulator's "<key> <name>"
        assert row["display_name"] == (full if len(full) <= 256 else full[:255] + "…")
    # The connection works afterwards, and a second discovery finds the same rows.
    client = open_data_client(engine, connect_settings, result.connection_id)
    assert len(client.accounts()) == 2


def test_a_connect_that_fails_after_the_token_exchange_stores_nothing(connect_settings, tl_sim, engine):
    """Before: the connection (with its encrypted tokens) was committed before the accounts were
    listed, so a failed connect left a connection without accounts that `status` showed later."""
    set_faults(tl_sim, accounts_error_status=400)
    with pytest.raises(BankPipelineError, match="/accounts"):
        _connect(connect_settings)
    assert _rows(engine, connections) == [] and _rows(engine, accounts) == []

    set_faults(tl_sim, accounts_error_status=None)
    first = _connect(connect_settings)
    before = _rows(engine, connections)
    set_faults(tl_sim, accounts_error_status=400)
    with pytest.raises(BankPipelineError, match="/accounts"):
        _connect(connect_settings)
    # The same credentials connected again and failed: the stored tokens are the ones that work.
    assert _rows(engine, connections) == before
    assert len(_rows(engine, accounts)) == 3
    set_faults(tl_sim, accounts_error_status=None)
    assert open_data_client(engine, connect_settings, first.connection_id).accounts()


def test_account_names_with_a_newline_or_bidi_override_print_escaped(connect_settings, tl_sim, monkeypatch, capsys):
    """Before: `connect` and `status` printed the bank's names raw: a newline made a line of its
    own, U+202E reversed the rest of the line."""
    set_faults(tl_sim, account_display_name="Saver\nFORGED LINE \u202eevil\x1b[2J")
    cli_env(monkeypatch, connect_settings)
    assert main(["connect", "--simulator-user", "alice", "--no-browser", "--timeout", "30", "--history-days", "0"]) == 0
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    _assert_lines_are_ours(out)
    assert out.count("Saver FORGED LINE \\u202eevil") == 6  # three accounts, in connect and in status


def test_a_token_error_description_with_a_newline_stays_on_one_line(connect_settings, tl_sim, engine, monkeypatch, capsys):
    """Before: `error_description: "refresh token revoked\\nFORGED LINE"` split the `error:` line,
    and `status` showed the forged line as the account's last failure."""
    cli_env(monkeypatch, connect_settings)
    set_faults(tl_sim, token_error="invalid_grant", token_error_description=HOSTILE_DESCRIPTION,
               token_error_grants=["authorization_code"])
    assert main(["connect", "--simulator-user", "alice", "--no-browser", "--timeout", "30", "--history-days", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: TrueLayer POST /connect/token failed")
    assert "refresh token revoked\\nFORGED LINE (HTTP 400)\\u202e\\x1b[31m" in err
    _assert_lines_are_ours(err)

    set_faults(tl_sim, token_error=None)
    connection_id = _connect(connect_settings).connection_id
    set_faults(tl_sim, token_error="invalid_grant", token_error_description=HOSTILE_DESCRIPTION,
               token_error_grants=["refresh_token"])
    expire_access_token(engine, connection_id)
    with pytest.raises(AuthorizationRequired) as info:
        open_data_client(engine, connect_settings, connection_id).accounts()
    message = str(info.value)
    assert "\n" not in message and "\\nFORGED LINE" in message
    with engine.begin() as conn:  # what a failed fetch step records on its account
        record_failure(conn, "run-1", f"fetch: {info.value}", accounts.c.connection_id == connection_id)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    _assert_lines_are_ours(out)
    assert out.count("last failure") == 3 and "needs authorising again" in out


def test_a_failing_token_endpoint_gets_one_set_of_attempts_per_refresh(connect_settings, tl_sim, engine):
    """Before: each of the data call's 5 attempts refreshed the token with 3 attempts of its own:
    15 POSTs to a failing token endpoint for one data call."""
    connection_id = _connect(connect_settings).connection_id
    set_faults(tl_sim, token_error="temporarily_unavailable", token_error_status=503,
               token_error_description="try later")
    sim_admin(tl_sim, "POST", "stats/reset")
    expire_access_token(engine, connection_id)
    client = open_data_client(
        engine, connect_settings, connection_id, retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)
    )
    with pytest.raises(ServerError) as info:
        client.accounts()
    assert info.value.status_code == 503 and info.value.attempts == 3
    stats = sim_admin(tl_sim, "GET", "stats").json()
    print(f"[{engine.dialect.name}] one data call, token endpoint failing: {stats['token_requests']} token POSTs, "
          f"{stats['data_api_calls']} data calls")
    assert stats["token_requests"] == {"refresh_token": 3}
    assert client.calls_made == 0 and stats["data_api_calls"] == 0
    # Once the token endpoint answers again, the next call refreshes and works.
    set_faults(tl_sim, token_error=None)
    assert client.accounts()


def test_a_redirect_error_with_a_newline_is_one_escaped_line():
    """The redirect's `error` and `error_description` are whatever reached the loopback URL."""
    from bank_pipeline.connections.callback import callback_problem

    line = callback_problem({"error": "access_denied\nFORGED", "error_description": "no\r\nFORGED \u202eevil"}, "s")
    assert line == "the bank connection was not authorised: access_denied\\nFORGED: no\\r\\nFORGED \\u202eevil"
