"""Re-consent through the simulator's `/connections/extend`: every outcome (and the fallback to a
new consent) keeps the connection, its account keys and the ledger, rotates the encrypted tokens,
and the next daily import works."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa

from bank_pipeline.connections.reconnect import reconnect
from bank_pipeline.connections.tokens import ConnectionStore
from bank_pipeline.db.schema import accounts, connections
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.timestamps import aware
from bank_pipeline_tests.fixtures.clock import TODAY
from bank_pipeline_tests.fixtures.connections import cli_env, set_faults

pytestmark = pytest.mark.slow

DAY = TODAY - dt.timedelta(days=1)  # what the daily import reads


def _row(engine, connection_id):
    with engine.connect() as conn:
        return conn.execute(sa.select(connections).where(connections.c.id == connection_id)).mappings().one()


def _renew(p, lines: list[str]):
    """Reconfirmed; the simulator's pages (when an outcome sends the user there) answered as the user."""
    return reconnect(
        p.settings, confirm=lambda _q: True, simulator_user=p.user, open_browser=False, timeout=30, out=lines.append
    )


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("no_action_needed", "no_action_needed"),
        ("reconfirmation_of_consent_needed", "reconfirmation_of_consent_needed"),
        ("authentication_needed", "authentication_needed"),
        ("cannot_extend", "new_consent"),
        ("expired", "new_consent"),
    ],
)
def test_reconnect_keeps_the_connection_keys_and_ledger_and_the_next_import_works(
    pipeline_factory, move_clock, fault, expected
):
    # Every run asks the bank (none replays a day fetched minutes before), so the runs after the
    # consent ended and after the renewal really use the connection's tokens.
    p = pipeline_factory("alice", refetch_after_hours=0)
    cid = p.connection.connection_id
    p.run(DAY - dt.timedelta(days=5), DAY)
    ledger = p.ledger_rows()
    assert ledger
    before = _row(p.engine, cid)
    store = ConnectionStore.from_settings(p.engine, p.settings)
    old_access = store.access_token(cid)
    if fault == "expired":  # the consent ended: extending is impossible, `invalid_grant` everywhere
        httpx.post(f"{p.sim.base_url}/_sim/consent/expire", json={"user": "alice"}, timeout=10).raise_for_status()
        failed = p.run(DAY, DAY, require_success=False)  # fails at the token refresh: no bank call
        assert failed and not any(o.success for o in failed)
    else:
        set_faults(p.sim, extend_outcome=fault)

    lines: list[str] = []
    result = _renew(p, lines)

    assert result.outcome == expected and result.connection_id == cid
    assert sorted(a["account_key"] for a in result.accounts) == p.keys
    with p.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == len(p.keys)
        assert conn.execute(sa.select(sa.func.count()).select_from(connections)).scalar_one() == 1
    assert p.ledger_rows() == ledger  # the history already landed is untouched
    after = _row(p.engine, cid)
    assert after["status"] == "active" and after["token_version"] > before["token_version"]
    assert after["access_token_enc"] != before["access_token_enc"]
    new_access = store.access_token(cid)
    assert new_access != old_access and new_access not in after["access_token_enc"]
    assert aware(after["consent_expires_at"]) >= aware(before["consent_expires_at"])
    assert any("Renewed connection" in line for line in lines)
    if expected != "new_consent":  # an extension rotates the pair: the previous access token is refused
        answer = httpx.get(f"{p.settings.data_url}/me", headers={"Authorization": f"Bearer {old_access}"}, timeout=10)
        assert answer.status_code == 401

    # The next day's daily import works on the same partitions.
    move_clock(TODAY + dt.timedelta(days=1))
    httpx.post(f"{p.sim.base_url}/_sim/clock", json={"advance_days": 1}, timeout=10).raise_for_status()
    p.run(TODAY, TODAY)
    totals = p.ledger_totals(TODAY, TODAY)
    truth = p.truth(TODAY, TODAY)
    assert {k: v[0] for k, v in totals.items()} == {k: int(t["count"]) for k, t in truth.items()}
    assert p.ledger_rows() >= ledger


def test_extension_moves_the_consent_expiry_to_90_days_after_reconfirmation(pipeline_factory, move_clock):
    p = pipeline_factory("alice")
    cid = p.connection.connection_id
    first = aware(_row(p.engine, cid)["consent_expires_at"])
    assert first.date() == TODAY + dt.timedelta(days=90)
    later = TODAY + dt.timedelta(days=80)
    move_clock(later)
    httpx.post(f"{p.sim.base_url}/_sim/clock", json={"today": later.isoformat()}, timeout=10).raise_for_status()
    reconnect(p.settings, confirm=lambda _q: True, open_browser=False, timeout=30, out=lambda _l: None)
    renewed = aware(_row(p.engine, cid)["consent_expires_at"])
    assert renewed.date() == later + dt.timedelta(days=90)


def test_not_reconfirmed_changes_nothing(pipeline_factory):
    p = pipeline_factory("alice")
    before = _row(p.engine, p.connection.connection_id)
    with pytest.raises(BankPipelineError, match="not reconfirmed"):
        reconnect(p.settings, confirm=lambda _q: False, open_browser=False, out=lambda _l: None)
    assert _row(p.engine, p.connection.connection_id) == before




def test_reconnect_and_status_from_the_command_line(connect_settings, alice_connection, tl_sim, monkeypatch, capsys):
    from bank_pipeline.cli import main

    cli_env(monkeypatch, connect_settings)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # no terminal to reconfirm in
    assert main(["reconnect"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: nothing changed: the consent was not reconfirmed"
    assert main(["reconnect", "7"]) == 2
    assert "no connection with id 7" in capsys.readouterr().err

    set_faults(tl_sim, extend_outcome="reconfirmation_of_consent_needed")
    assert main(["reconnect", "--yes", "--simulator-user", "alice", "--no-browser", "--timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert "Renewed connection 1" in out and "same account keys" in out
    assert main(["status"]) == 0
    assert "(89 days left)" in capsys.readouterr().out


def test_renewed_tokens_never_in_plain_text_in_the_sqlite_file_or_logs(sqlite_url, tl_sim, tmp_path, caplog):
    import logging

    from bank_pipeline.connections.flow import connect
    from bank_pipeline.db import make_engine
    from bank_pipeline_tests.fixtures.connections import simulator_settings

    caplog.set_level(logging.DEBUG)
    settings = simulator_settings(sqlite_url, tl_sim, tmp_path / "home")
    connect(settings, simulator_user="alice", open_browser=False, timeout=30, out=lambda _l: None)
    lines: list[str] = []
    for outcome in ("no_action_needed", "authentication_needed"):
        set_faults(tl_sim, extend_outcome=outcome)
        reconnect(settings, confirm=lambda _q: True, simulator_user="alice", open_browser=False, timeout=30,
                  out=lines.append)
    engine = make_engine(sqlite_url)
    store = ConnectionStore.from_settings(engine, settings)
    access = store.access_token(1)
    refresh = store.refresh_token_of(1)
    engine.dispose()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("app.db*"))
    shown = "\n".join(lines) + caplog.text
    for secret in (access, refresh):
        assert secret.encode() not in blob and secret not in shown
