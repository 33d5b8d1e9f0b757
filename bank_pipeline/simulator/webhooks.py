"""The simulator's webhook signing key (ES512, P-521), its JWKS, and signed webhook delivery.

Signatures are produced with the `truelayer-signing` package exactly as TrueLayer signs webhooks:
a detached JWS over `POST <path>`, the `X-TL-Webhook-Timestamp` header and the body, with the
`jku` header naming the JWKS URL (`<base_url>/_sim/jwks`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timezone
from typing import Any
from urllib.parse import urlsplit

import truelayer_signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bank_pipeline import clock

UTC = timezone.utc

TAMPER_MODES = ("body", "signature", "wrong_key")
TIMESTAMP_HEADER = "X-TL-Webhook-Timestamp"
SIGNATURE_HEADER = "Tl-Signature"


def _b64url(n: int, size: int = 66) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    jwk: dict[str, str]

    @classmethod
    def derive(cls, seed: int, label: str = "webhook-signing") -> SigningKey:
        """A P-521 key derived deterministically from the seed (same seed, same key, same kid)."""
        curve = ec.SECP521R1()
        material = (
            hashlib.sha512(f"{seed}|{label}".encode()).digest()
            + hashlib.sha512(f"{label}|{seed}".encode()).digest()
        )
        secret = int.from_bytes(material, "big") % (2**520) + 1  # below the P-521 group order
        key = ec.derive_private_key(secret, curve)
        numbers = key.public_key().public_numbers()
        kid = "sim-" + hashlib.sha256(f"{numbers.x}:{numbers.y}".encode()).hexdigest()[:16]
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        jwk = {
            "kty": "EC",
            "crv": "P-521",
            "alg": "ES512",
            "use": "sig",
            "kid": kid,
            "x": _b64url(numbers.x),
            "y": _b64url(numbers.y),
        }
        return cls(kid, pem, jwk)


def jwks(key: SigningKey) -> dict[str, Any]:
    return {"keys": [dict(key.jwk)]}


def rfc3339_now() -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def event_uuid(seed: int, counter: int) -> str:
    digest = hashlib.sha256(f"{seed}|webhook|{counter}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def build_signed_request(
    key: SigningKey,
    wrong_key: SigningKey,
    url: str,
    payload: dict[str, Any],
    jku: str,
    timestamp: str,
    tamper: str | None = None,
) -> tuple[dict[str, str], str]:
    """(headers, body) of a signed webhook POST to `url`; `tamper` forges it on purpose."""
    body = json.dumps(payload, separators=(",", ":"))
    path = urlsplit(url).path or "/"
    signer_key = wrong_key if tamper == "wrong_key" else key
    signature = (
        truelayer_signing.sign_with_pem(key.kid, signer_key.private_pem)
        .set_method(truelayer_signing.HttpMethod.POST)
        .set_path(path)
        .add_header(TIMESTAMP_HEADER, timestamp)
        .set_body(body)
        .set_jku(jku)
        .sign()
    )
    if tamper == "body":
        body = json.dumps(
            {**payload, "account_id": payload.get("account_id", "") + "x"}, separators=(",", ":")
        )
    elif tamper == "signature":
        head, sig = signature.split("..", 1)
        flipped = "A" if sig[10] != "A" else "B"
        signature = f"{head}..{sig[:10]}{flipped}{sig[11:]}"
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    return headers, body
