"""Signed webhooks from the simulator verify with truelayer-signing; forged ones do not."""

from __future__ import annotations

import httpx
import pytest
import truelayer_signing
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bank_pipeline.serving import bind_socket, serve_in_thread, url_of


@pytest.fixture
def receiver():
    """A minimal webhook receiver on loopback that records what it was sent."""
    received: list[dict] = []

    async def hook(request):
        received.append(
            {
                "path": request.url.path,
                "headers": dict(request.headers),
                "body": (await request.body()).decode(),
            }
        )
        return JSONResponse({"ok": True}, status_code=202)

    app = Starlette(routes=[Route("/hooks/truelayer", hook, methods=["POST"])])
    sock = bind_socket("127.0.0.1", 0, "the test receiver")
    with serve_in_thread(app, sock, "test-receiver"):
        yield f"{url_of(sock)}/hooks/truelayer", received


def verify(jwks: dict, delivered: dict) -> None:
    headers = delivered["headers"]
    signature = headers["tl-signature"]
    jws_header = truelayer_signing.extract_jws_header(signature)
    (
        truelayer_signing.verify_with_jwks(jwks, jws_header)
        .set_method(truelayer_signing.HttpMethod.POST)
        .set_path(delivered["path"])
        .add_required_header("X-TL-Webhook-Timestamp")
        .add_headers({"X-TL-Webhook-Timestamp": headers["x-tl-webhook-timestamp"]})
        .set_body(delivered["body"])
        .verify(signature)
    )


def test_signed_webhooks_round_trip(simulator, receiver):
    url, received = receiver
    jwks = httpx.get(f"{simulator.base_url}/_sim/jwks").json()
    key = jwks["keys"][0]
    assert key["kty"] == "EC" and key["crv"] == "P-521" and key["kid"] and key["x"] and key["y"]

    r = httpx.post(
        f"{simulator.base_url}/_sim/webhooks/send",
        json={
            "url": url,
            "user": "alice",
            "account_id": "acc-1",
            "type": "transactions_available",
            "from": "2026-11-01",
            "to": "2026-11-20",
        },
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status_code"] == 202 and result["event_id"]
    delivered = received[-1]
    body = httpx.Response(200, content=delivered["body"]).json()
    assert body["event_id"] == result["event_id"] and body["event_type"] == "transactions_available"
    assert body["event_version"] == 1 and body["account_id"] == "acc-1"
    assert body["from"] == "2026-11-01" and body["to"] == "2026-11-20" and body["credentials_id"]
    assert delivered["headers"]["content-type"] == "application/json"
    assert body["timestamp"] == delivered["headers"]["x-tl-webhook-timestamp"]
    jws_header = truelayer_signing.extract_jws_header(delivered["headers"]["tl-signature"])
    assert jws_header.jku == f"{simulator.base_url}/_sim/jwks" and jws_header.kid == key["kid"]
    verify(jwks, delivered)

    for tamper in ("body", "signature", "wrong_key"):
        r = httpx.post(
            f"{simulator.base_url}/_sim/webhooks/send",
            json={
                "url": url,
                "user": "alice",
                "account_id": "acc-1",
                "type": "transactions_available",
                "tamper": tamper,
                "event_id": f"evt-{tamper}",
                "timestamp": "2026-11-20T10:00:00Z",
            },
        )
        assert r.status_code == 200
        with pytest.raises(truelayer_signing.TlSigningException):
            verify(jwks, received[-1])
        assert received[-1]["headers"]["x-tl-webhook-timestamp"] == "2026-11-20T10:00:00Z"

    r = httpx.post(
        f"{simulator.base_url}/_sim/webhooks/send", json={"url": "http://127.0.0.1:9/x", "user": "alice"}
    )
    assert r.status_code == 502 and r.json()["error"] == "delivery_failed"
