"""The application's credentials and the RS256 JWT that authenticates every Enable Banking call.

Enable Banking knows an application by its id and the public half of an RSA key pair registered
with it; each request carries a JWT signed with the private half (PyJWT), header `kid` = the
application id, claims `iss`/`aud` fixed by Enable Banking, valid for an hour. The key and the
JWTs never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bank_pipeline import clock
from bank_pipeline.errors import BankPipelineError

ISSUER = "enablebanking.com"
AUDIENCE = "api.enablebanking.com"
LIFETIME = dt.timedelta(hours=1)
# A JWT is reused until this close to its expiry, then a new one is signed.
RESIGN_BEFORE = dt.timedelta(minutes=5)


class ApplicationKey:
    """An Enable Banking application: its id and its RSA private key."""

    def __init__(self, application_id: str, private_key: rsa.RSAPrivateKey) -> None:
        if not application_id or not application_id.strip():
            raise BankPipelineError("the Enable Banking application id is empty")
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise BankPipelineError("the Enable Banking private key must be an RSA key (RS256)")
        self.application_id = application_id.strip()
        self._key = private_key
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_issued: dt.datetime | None = None
        self._token_expires: dt.datetime | None = None

    @classmethod
    def from_pem(cls, application_id: str, pem: bytes, *, source: str = "the private key") -> ApplicationKey:
        """From PEM bytes; a key that cannot be read is one line naming `source`, never its content."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise BankPipelineError(
                f"{source} is not an unencrypted PEM private key (Enable Banking gives one when the "
                "application is registered)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise BankPipelineError(f"{source} is not an RSA private key (Enable Banking signs with RS256)")
        return cls(application_id, key)

    @classmethod
    def from_file(cls, application_id: str, path: Path | str) -> ApplicationKey:
        path = Path(path)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise BankPipelineError(f"cannot read the Enable Banking private key file {path}: {exc.strerror}") from None
        return cls.from_pem(application_id, pem, source=f"the Enable Banking private key file {path}")

    def sign(self, now: dt.datetime | None = None) -> str:
        """A JWT for a call made at `now` (default: the pipeline's clock)."""
        now = now or clock.now()
        iat = int(now.timestamp())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "iat": iat, "exp": iat + int(LIFETIME.total_seconds())}
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.application_id})

    def token(self) -> str:
        """The current JWT, signed again when it is within `RESIGN_BEFORE` of expiring."""
        now = clock.now()
        with self._lock:
            issued, expires = self._token_issued, self._token_expires
            if self._token is None or issued is None or expires is None or not issued <= now < expires - RESIGN_BEFORE:
                self._token = self.sign(now)
                self._token_issued, self._token_expires = now, now + LIFETIME
            return self._token

    def __repr__(self) -> str:
        return f"ApplicationKey(application_id={self.application_id!r}, private_key=<hidden>)"

    __str__ = __repr__
