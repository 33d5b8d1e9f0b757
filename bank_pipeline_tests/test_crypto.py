"""Token encryption: MultiFernet key order, key rotation across stored tokens, the embedded key file."""

import dataclasses
import datetime as dt
import os
import stat

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bank_pipeline.config import Settings
from bank_pipeline.connections import ConnectionStore, OAuthStates
from bank_pipeline.crypto import TokenCipher, generate_key, rotate_stored_tokens
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import connections, oauth_states
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.truelayer.models import TokenSet

ACCESS = "at-SECRET-access-0123456789"
REFRESH = "rt-SECRET-refresh-0123456789"


def test_round_trip_and_no_plaintext():
    cipher = TokenCipher([generate_key()])
    token = cipher.encrypt(ACCESS)
    assert ACCESS not in token and cipher.decrypt(token) == ACCESS


def test_first_key_encrypts_all_keys_decrypt():
    old, new = generate_key(), generate_key()
    under_old = TokenCipher([old]).encrypt(ACCESS)
    both = TokenCipher([new, old])
    assert both.decrypt(under_old) == ACCESS  # the old key, second in the list, still decrypts
    fresh = both.encrypt(ACCESS)
    assert Fernet(new).decrypt(fresh.encode()).decode() == ACCESS  # the first key encrypts
    rotated = both.rotate(under_old)
    assert TokenCipher([new]).decrypt(rotated) == ACCESS


def test_wrong_key_names_the_variable_and_hides_the_token():
    token = TokenCipher([generate_key()]).encrypt(ACCESS)
    with pytest.raises(BankPipelineError) as info:
        TokenCipher([generate_key()]).decrypt(token)
    message = str(info.value)
    assert "BANK_PIPELINE_FERNET_KEYS" in message and "rotate-keys" in message
    assert token not in message and ACCESS not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_malformed_key_is_a_clear_error():
    with pytest.raises(BankPipelineError, match="key #2 is not a valid Fernet key"):
        TokenCipher([generate_key(), "not-a-key"])


def _settings(tmp_path, keys=()):
    base = Settings.from_env()
    return dataclasses.replace(base, home=tmp_path / "home", fernet_keys=tuple(keys))


def test_embedded_key_file_is_created_0600_and_reused(tmp_path):
    settings = _settings(tmp_path)
    first = TokenCipher.from_settings(settings)
    path = tmp_path / "home" / "fernet.key"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = first.encrypt(ACCESS)
    assert TokenCipher.from_settings(settings).decrypt(token) == ACCESS  # same key read back
    # A configured key takes precedence over the file.
    configured = TokenCipher.from_settings(_settings(tmp_path, [generate_key()]))
    with pytest.raises(BankPipelineError, match="BANK_PIPELINE_FERNET_KEYS"):
        configured.decrypt(token)


def _stored(engine):
    with engine.connect() as conn:
        conn_row = conn.execute(
            sa.select(connections.c.access_token_enc, connections.c.refresh_token_enc)
        ).one()
        state_row = conn.execute(sa.select(oauth_states.c.code_verifier_enc)).one()
    return [conn_row.access_token_enc, conn_row.refresh_token_enc, state_row.code_verifier_enc]


def test_rotate_keys_re_encrypts_every_stored_token(engine):
    old, new = generate_key(), generate_key()
    store = ConnectionStore(engine, TokenCipher([old]))
    tokens = TokenSet(ACCESS, REFRESH, utcnow() + dt.timedelta(hours=1), "accounts")
    store.save_connection(tokens, {"provider": {"provider_id": "mock"}, "credentials_id": "c1"})
    started = OAuthStates(engine, TokenCipher([old])).create_state("http://127.0.0.1:1/callback")

    rotating = TokenCipher([new, old])
    assert rotate_stored_tokens(engine, rotating) == 3
    after = _stored(engine)
    new_only = TokenCipher([new])
    assert [new_only.decrypt(t) for t in after] == [ACCESS, REFRESH, started.code_verifier]
    with pytest.raises(BankPipelineError):
        TokenCipher([old]).decrypt(after[0])  # the old key alone no longer decrypts
    # The store keeps working with the new key alone.
    connection_id = store.get_connection(1)["id"]
    assert ConnectionStore(engine, new_only).access_token(connection_id) == ACCESS


def test_rotate_keys_cli(tmp_path, monkeypatch, capsys):
    from bank_pipeline.cli import main
    from bank_pipeline.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    migrate(engine)
    old, new = generate_key(), generate_key()
    ConnectionStore(engine, TokenCipher([old])).save_connection(
        TokenSet(ACCESS, REFRESH, utcnow() + dt.timedelta(hours=1), None), {"credentials_id": "c"}
    )
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", url)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("BANK_PIPELINE_FERNET_KEYS", f"{new},{old}")
    assert main(["rotate-keys"]) == 0
    assert "re-encrypted 2 stored secret(s)" in capsys.readouterr().out
    # Now only the new key: status works; with the old key alone, the CLI fails cleanly.
    monkeypatch.setenv("BANK_PIPELINE_FERNET_KEYS", old)
    assert main(["rotate-keys"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot decrypt stored token") and "Traceback" not in err
    assert ACCESS not in err and REFRESH not in err
