"""Token encryption at rest: Fernet keys from BANK_PIPELINE_FERNET_KEYS, with rotation.

`BANK_PIPELINE_FERNET_KEYS` is a comma-separated list: the FIRST key encrypts, every key decrypts
(MultiFernet). To rotate: put a new key first, keep the old one second, run
`bank-pipeline rotate-keys` (re-encrypts every stored token under the new key), then drop the old key.
Without the variable, an embedded key file `<BANK_PIPELINE_HOME>/fernet.key` (mode 0600) is created
on first use and read afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bank_pipeline.db import write_transaction
from bank_pipeline.db.schema import connections, oauth_states
from bank_pipeline.errors import BankPipelineError

if TYPE_CHECKING:
    from bank_pipeline.config import Settings

log = logging.getLogger(__name__)

KEYS_ENV = "BANK_PIPELINE_FERNET_KEYS"
KEY_FILE_NAME = "fernet.key"


def generate_key() -> str:
    """A new Fernet key (url-safe base64 text), e.g. for BANK_PIPELINE_FERNET_KEYS."""
    return Fernet.generate_key().decode("ascii")


def load_or_create_key_file(path: Path) -> str:
    """The key stored at `path`, creating it (mode 0600, atomically) when missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (generate_key() + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic and refuses to overwrite: a concurrent creator's key wins
            log.info(
                "created Fernet key file %s (mode 0600); back it up — tokens are unreadable without it", path
            )
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise BankPipelineError(f"cannot read the Fernet key file {path}: {exc}") from None
    return key


class TokenCipher:
    """Encrypts/decrypts secrets with MultiFernet; the first key encrypts, all keys decrypt."""

    def __init__(self, keys: Sequence[str | bytes], *, source: str = KEYS_ENV) -> None:
        if not keys:
            raise BankPipelineError(f"no Fernet key configured: set {KEYS_ENV}")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise BankPipelineError(
                    f"{source}: key #{position} is not a valid Fernet key (it must be 32 url-safe "
                    "base64-encoded bytes; make one with "
                    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
                ) from None
        self._fernet = MultiFernet(fernets)
        self.source = source
        self.key_count = len(fernets)

    def __repr__(self) -> str:
        return f"TokenCipher(source={self.source!r}, keys={self.key_count})"

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        return cls.from_keys(settings.fernet_keys, settings.home)

    @classmethod
    def from_keys(cls, keys: Sequence[str], home: Path | str) -> TokenCipher:
        """The configured keys (BANK_PIPELINE_FERNET_KEYS), else the key file in `home`."""
        if keys:
            return cls(keys, source=KEYS_ENV)
        path = Path(home) / KEY_FILE_NAME
        return cls([load_or_create_key_file(path)], source=f"the key file {path}")

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, AttributeError):
            raise BankPipelineError(self._wrong_key_message()) from None

    def rotate(self, token: str) -> str:
        """The same secret re-encrypted under the first key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, AttributeError):
            raise BankPipelineError(self._wrong_key_message()) from None

    def _wrong_key_message(self) -> str:
        if self.source == KEYS_ENV:
            hint = (
                f"none of the {self.key_count} key(s) in {KEYS_ENV} can decrypt a stored token: the key it "
                f"was encrypted with is missing (after a key change, keep the old key in {KEYS_ENV} — "
                "second — and run `bank-pipeline rotate-keys`), or the data was tampered with"
            )
        else:
            hint = (
                f"{self.source} cannot decrypt a stored token: it is not the key the tokens were encrypted "
                f"with (set {KEYS_ENV} to the original key, or run `bank-pipeline connect` again)"
            )
        return f"cannot decrypt stored token: {hint}"


def rotate_stored_tokens(engine: sa.Engine, cipher: TokenCipher) -> int:
    """Re-encrypt every stored secret (connection tokens, pending PKCE verifiers) under the first key.

    Runs in one write transaction (rows locked), so a concurrent token refresh is never overwritten.
    Returns the number of secrets re-encrypted.
    """
    count = 0
    with write_transaction(engine) as conn:
        rows = conn.execute(
            sa.select(connections.c.id, connections.c.access_token_enc, connections.c.refresh_token_enc)
            .order_by(connections.c.id)
            .with_for_update()
        ).all()
        for row in rows:
            values = {}
            for column in ("access_token_enc", "refresh_token_enc"):
                token = getattr(row, column)
                if token:
                    values[column] = cipher.rotate(token)
                    count += 1
            if values:
                conn.execute(sa.update(connections).where(connections.c.id == row.id).values(**values))
        states = conn.execute(
            sa.select(oauth_states.c.state, oauth_states.c.code_verifier_enc).with_for_update()
        ).all()
        for row in states:
            conn.execute(
                sa.update(oauth_states)
                .where(oauth_states.c.state == row.state)
                .values(code_verifier_enc=cipher.rotate(row.code_verifier_enc))
            )
            count += 1
    return count
