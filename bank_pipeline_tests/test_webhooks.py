"""The webhook receiver over real HTTP: only genuine, fresh, well-formed events are stored, once."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time

import httpx
import pytest
import sqlalchemy as sa

from bank_pipeline.db import make_engine, utcnow
from bank_pipeline.db.schema import accounts, connections, webhook_events, webhook_rejections
from bank_pipeline.webhooks import mark_processed, pending_events, run_webhook_server_in_thread
from bank_pipeline.webhooks.jwks import JwksCache, JwksUnavailable
from bank_pipeline.webhooks.settings import SIMULATOR_JKU, TRUELAYER_JKUS, jku_allowlist_from_env
from bank_pipeline_tests.fixtures.webhooks import SigningKey


def _events(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(webhook_events)).mappings()]


def _rejections(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(webhook_rejections).order_by("id")).mappings()]


@pytest.fixture
def lite_engine(sqlite_url):
    """SQLite only: for rejection cases whose storage is one plain INSERT (the suite stays fast)."""
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def lite_receiver(lite_engine, webhook_signer):
    with run_webhook_server_in_thread(lite_engine, jku_allowlist=[webhook_signer.jku]) as server:
        yield server


def _assert_rejected(engine, response, status: int, reason_part: str, body: bytes) -> None:
    assert response.status_code == status, response.text
    assert _events(engine) == []
    (rejection,) = _rejections(engine)
    assert rejection["status_code"] == status and rejection["count"] == 1
    assert reason_part in f"{rejection['reason']} [{rejection['sample_detail']}]"
    assert rejection["last_body_sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.date_sensitive
def test_valid_webhook_is_stored_once_and_replay_is_a_no_op(engine, webhook_signer, webhook_receiver):
    event = webhook_signer.event()
    body = json.dumps(event)
    headers = webhook_signer.headers(webhook_receiver.url, body)

    first = httpx.post(webhook_receiver.url, content=body, headers=headers)
    assert first.status_code == 200 and first.json() == {"status": "stored", "event_id": event["event_id"]}
    replay = httpx.post(webhook_receiver.url, content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"

    (stored,) = _events(engine)
    assert stored["event_id"] == event["event_id"]
    assert stored["event_type"] == "transactions_available"
    assert stored["provider_account_id"] == "acc-1"
    assert stored["payload"] == body  # the exact bytes that were verified
    assert stored["processed_at"] is None
    assert _rejections(engine) == []


def test_unsigned_webhook_is_401(engine, webhook_signer, webhook_receiver):
    body = json.dumps(webhook_signer.event()).encode()
    response = httpx.post(
        webhook_receiver.url, content=body, headers={"X-TL-Webhook-Timestamp": "2026-01-01T00:00:00Z"}
    )
    _assert_rejected(engine, response, 401, "missing Tl-Signature", body)
    assert response.json() == {"error": "unauthorized"}


def test_forged_signature_is_401(lite_engine, webhook_signer, lite_receiver):
    body = json.dumps(webhook_signer.event())
    headers = webhook_signer.headers(lite_receiver.url, body)
    header, _, sig = headers["Tl-Signature"].partition("..")
    headers["Tl-Signature"] = f"{header}..{sig[:-8]}{'A' * 8 if not sig.endswith('A' * 8) else 'B' * 8}"
    response = httpx.post(lite_receiver.url, content=body, headers=headers)
    _assert_rejected(lite_engine, response, 401, "signature verification failed", body.encode())


def test_garbage_signature_is_401(lite_engine, webhook_signer, lite_receiver):
    body = json.dumps(webhook_signer.event())
    headers = webhook_signer.headers(lite_receiver.url, body)
    headers["Tl-Signature"] = "not-a-jws"
    response = httpx.post(lite_receiver.url, content=body, headers=headers)
    _assert_rejected(lite_engine, response, 401, "Tl-Signature", body.encode())


def test_wrong_key_with_published_kid_is_401(lite_engine, webhook_signer, lite_receiver):
    impostor = SigningKey.generate(kid=webhook_signer.key.kid)  # same kid, key nobody published
    body = json.dumps(webhook_signer.event())
    response = httpx.post(
        lite_receiver.url,
        content=body,
        headers=webhook_signer.headers(lite_receiver.url, body, key=impostor),
    )
    _assert_rejected(lite_engine, response, 401, "signature verification failed", body.encode())


def test_unknown_kid_is_401(lite_engine, webhook_signer, lite_receiver):
    body = json.dumps(webhook_signer.event())
    response = httpx.post(
        lite_receiver.url,
        content=body,
        headers=webhook_signer.headers(lite_receiver.url, body, key=SigningKey.generate()),
    )
    _assert_rejected(lite_engine, response, 401, "no jwk found", body.encode())


def test_tampered_body_is_401(lite_engine, webhook_signer, lite_receiver):
    event = webhook_signer.event()
    body = json.dumps(event)
    headers = webhook_signer.headers(lite_receiver.url, body)
    tampered = json.dumps({**event, "account_id": "someone-elses"}).encode()
    response = httpx.post(lite_receiver.url, content=tampered, headers=headers)
    _assert_rejected(lite_engine, response, 401, "signature verification failed", tampered)


def test_signature_for_another_path_is_401(lite_engine, webhook_signer, lite_receiver):
    body = json.dumps(webhook_signer.event())
    headers = webhook_signer.headers(lite_receiver.base_url + "/elsewhere", body)
    response = httpx.post(lite_receiver.url, content=body, headers=headers)
    _assert_rejected(lite_engine, response, 401, "signature verification failed", body.encode())


def test_timestamp_changed_after_signing_is_401(lite_engine, webhook_signer, lite_receiver):
    body = json.dumps(webhook_signer.event())
    headers = webhook_signer.headers(lite_receiver.url, body, timestamp=utcnow() - dt.timedelta(minutes=2))
    headers["X-TL-Webhook-Timestamp"] = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    response = httpx.post(lite_receiver.url, content=body, headers=headers)
    _assert_rejected(lite_engine, response, 401, "signature verification failed", body.encode())


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(dt.timedelta(minutes=-6), "stale timestamp"), (dt.timedelta(minutes=10), "in the future")],
    ids=["stale", "future"],
)
@pytest.mark.date_sensitive
def test_stale_or_future_timestamp_is_401(lite_engine, webhook_signer, lite_receiver, offset, reason):
    body = json.dumps(webhook_signer.event())
    headers = webhook_signer.headers(lite_receiver.url, body, timestamp=utcnow() + offset)
    response = httpx.post(lite_receiver.url, content=body, headers=headers)
    _assert_rejected(lite_engine, response, 401, reason, body.encode())


def test_jku_not_on_allow_list_is_401_and_never_fetched(lite_engine, webhook_signer, lite_receiver):
    body = json.dumps(webhook_signer.event())
    rogue_jku = webhook_signer.jku.replace("/jwks", "/rogue-jwks")
    before = list(webhook_signer.jwks_requests)
    response = httpx.post(
        lite_receiver.url,
        content=body,
        headers=webhook_signer.headers(lite_receiver.url, body, jku=rogue_jku),
    )
    _assert_rejected(lite_engine, response, 401, "jku not on the allow-list", body.encode())
    assert "/rogue-jwks" not in webhook_signer.jwks_requests[len(before) :]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("this is not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"event_type": "transactions_available"}), "event_id"),
        (json.dumps({"event_id": "e-1"}), "event_type"),
    ],
    ids=["not-json", "not-object", "no-event-id", "no-event-type"],
)
def test_signed_but_malformed_is_400(lite_engine, webhook_signer, lite_receiver, body, reason):
    response = webhook_signer.post(lite_receiver.url, body)
    _assert_rejected(lite_engine, response, 400, reason, body.encode())
    assert response.json() == {"error": "malformed_event"}


def test_rejections_never_store_body_or_signature(lite_engine, webhook_signer, lite_receiver):
    secretish = "SENSITIVE-BODY-MARKER"
    body = json.dumps(webhook_signer.event(account_id=secretish))
    headers = webhook_signer.headers(lite_receiver.url, body)
    httpx.post(lite_receiver.url, content=body + " ", headers=headers)  # tampered: 401
    (rejection,) = _rejections(lite_engine)
    stored = json.dumps(rejection, default=str)
    assert secretish not in stored
    assert headers["Tl-Signature"].split("..")[1][:20] not in stored


def test_get_is_not_allowed(lite_receiver):
    assert httpx.get(lite_receiver.url).status_code == 405


def _add_account(engine, provider_account_id: str, key: str) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn_id = conn.execute(
            connections.insert().values(created_at=now, updated_at=now).returning(connections.c.id)
        ).scalar_one()
        conn.execute(
            accounts.insert().values(
                account_key=key,
                identity=f"tl:{provider_account_id}",
                connection_id=conn_id,
                kind="account",
                provider_account_id=provider_account_id,
                created_at=now,
                updated_at=now,
            )
        )


def test_pending_events_and_mark_processed(engine, webhook_signer, webhook_receiver):
    _add_account(engine, "acc-1", "a0123456789ab")
    first, second = webhook_signer.event(), webhook_signer.event(account_id="acc-unknown")
    for event in (first, second):
        assert webhook_signer.post(webhook_receiver.url, event).status_code == 200

    pending = pending_events(engine, limit=10)
    assert [p["event_id"] for p in pending] == [first["event_id"], second["event_id"]]
    assert pending[0]["account_key"] == "a0123456789ab" and pending[0]["payload"] == first
    assert pending[1]["account_key"] is None
    assert [p["event_id"] for p in pending_events(engine, limit=1)] == [first["event_id"]]

    assert mark_processed(engine, [first["event_id"]], "run-key-1") == 1
    assert mark_processed(engine, [first["event_id"]], "run-key-2") == 0  # already processed
    assert [p["event_id"] for p in pending_events(engine, limit=10)] == [second["event_id"]]
    (row,) = [e for e in _events(engine) if e["event_id"] == first["event_id"]]
    assert row["run_key"] == "run-key-1" and row["processed_at"] is not None
    # A replay of a processed event stays processed: it does not start a second run.
    assert webhook_signer.post(webhook_receiver.url, first).json()["status"] == "duplicate"
    assert [p["event_id"] for p in pending_events(engine, limit=10)] == [second["event_id"]]


def test_unreachable_jwks_is_503(lite_engine, webhook_signer):
    def failing_fetcher(url):
        raise OSError("connection refused")

    with run_webhook_server_in_thread(
        lite_engine, jku_allowlist=[webhook_signer.jku], jwks_fetcher=failing_fetcher
    ) as server:
        body = json.dumps(webhook_signer.event())
        response = httpx.post(server.url, content=body, headers=webhook_signer.headers(server.url, body))
    _assert_rejected(lite_engine, response, 503, "could not fetch JWKS", body.encode())


# --- units without HTTP ------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.mark.date_sensitive
def test_jwks_cache_ttl_and_rate_limited_refetch_on_unknown_kid():
    calls = []

    def fetcher(url):
        calls.append(url)
        return {"keys": [{"kid": "k1"}]}

    clock = _Clock()
    cache = JwksCache(fetcher, ttl_seconds=300, min_refetch_seconds=10, clock=clock)

    async def scenario():
        await cache.get("u", "k1")
        await cache.get("u", "k1")
        assert len(calls) == 1
        await cache.get("u", "unknown")  # fetched just now: no refetch storm on forged kids
        assert len(calls) == 1
        clock.now += 11
        await cache.get("u", "unknown")  # once the cool-down passed, an unknown kid refetches once
        assert len(calls) == 2
        clock.now += 301
        # TTL expired: the previous keys answer at once while one refresh runs in the background.
        assert await cache.get("u", "k1") == {"keys": [{"kid": "k1"}]}
        for _ in range(200):
            if cache.fetches == 3:
                break
            await asyncio.sleep(0.01)
        assert len(calls) == 3 and cache.fetches == 3

    asyncio.run(scenario())


def test_jwks_cache_rejects_non_jwks_documents():
    cache = JwksCache(lambda url: {"not": "keys"})
    with pytest.raises(JwksUnavailable):
        asyncio.run(cache.get("u", "k"))


def test_jwks_cache_caches_failures_and_bounds_fetches_per_minute():
    calls = []
    answers = iter([OSError("down"), {"keys": []}, {"keys": []}, {"keys": []}, {"keys": []}])

    def fetcher(url):
        calls.append(url)
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    clock = _Clock()
    cache = JwksCache(
        fetcher, min_refetch_seconds=1, failure_ttl_seconds=30, max_fetches_per_minute=3, clock=clock
    )

    async def scenario():
        with pytest.raises(JwksUnavailable, match="OSError"):
            await cache.get("u", "k")
        for _ in range(20):  # the failure is cached: no fetch for 30 s
            with pytest.raises(JwksUnavailable):
                await cache.get("u", "k")
            clock.now += 1
        assert len(calls) == 1
        clock.now += 40  # failure expired; unknown kids refetch once a second, but at most 3 a minute
        for _ in range(30):
            await cache.get("u", "k")
            clock.now += 1
        assert len(calls) == 1 + 3
        assert cache.attempts == 4 and cache.fetches == 3

    asyncio.run(scenario())


def test_jwks_cache_fetches_once_for_concurrent_requests():
    calls = []

    def slow_fetcher(url):
        calls.append(url)
        time.sleep(0.3)
        return {"keys": [{"kid": "k1"}]}

    cache = JwksCache(slow_fetcher)

    async def scenario():
        documents = await asyncio.gather(*(cache.get("u", "k1") for _ in range(20)))
        assert all(d == {"keys": [{"kid": "k1"}]} for d in documents)

    asyncio.run(scenario())
    assert calls == ["u"]


def test_allow_list_from_env(monkeypatch):
    monkeypatch.delenv("BANK_PIPELINE_WEBHOOK_JKU_ALLOWLIST", raising=False)
    monkeypatch.delenv("BANK_PIPELINE_TRUELAYER_ENV", raising=False)
    assert jku_allowlist_from_env() == [SIMULATOR_JKU, *TRUELAYER_JKUS]
    monkeypatch.setenv("BANK_PIPELINE_TRUELAYER_ENV", "live")
    assert jku_allowlist_from_env() == list(TRUELAYER_JKUS)
    monkeypatch.setenv("BANK_PIPELINE_WEBHOOK_JKU_ALLOWLIST", " https://a/jwks , https://b/jwks,")
    assert jku_allowlist_from_env() == ["https://a/jwks", "https://b/jwks"]


# --- against the simulator's signed webhooks (POST /_sim/webhooks/send) ---------------------


@pytest.fixture
def sim_receiver(engine, simulator):
    with run_webhook_server_in_thread(engine, jku_allowlist=[f"{simulator.base_url}/_sim/jwks"]) as server:
        yield server


def _sim_send(simulator, receiver_url: str, **extra) -> dict:
    answer = httpx.post(
        f"{simulator.base_url}/_sim/webhooks/send",
        json={"url": receiver_url, "user": "alice", "from": "2026-11-18", "to": "2026-11-20", **extra},
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_simulator_webhook_is_stored_once_and_replays_are_no_ops(engine, simulator, sim_receiver):
    sent = _sim_send(simulator, sim_receiver.url)
    assert sent["status_code"] == 200, sent["body"]
    assert json.loads(sent["body"])["status"] == "stored"
    (stored,) = _events(engine)
    payload = json.loads(stored["payload"])
    assert stored["event_id"] == sent["event_id"] == payload["event_id"]
    assert stored["event_type"] == "transactions_available"
    assert stored["provider_account_id"] == payload["account_id"]
    assert payload["from"] == "2026-11-18" and payload["to"] == "2026-11-20" and payload["event_version"] == 1

    # The same signed request again (a network replay), and a re-delivery of the same event id.
    replay = httpx.post(sim_receiver.url, content=sent["payload"].encode(), headers=sent["headers"])
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    again = _sim_send(simulator, sim_receiver.url, event_id=sent["event_id"])
    assert again["status_code"] == 200 and json.loads(again["body"])["status"] == "duplicate"
    assert len(_events(engine)) == 1 and _rejections(engine) == []


@pytest.mark.parametrize("tamper", ["body", "signature", "wrong_key"])
def test_simulator_tampered_webhooks_are_401(engine, simulator, sim_receiver, tamper):
    sent = _sim_send(simulator, sim_receiver.url, tamper=tamper)
    assert sent["status_code"] == 401, sent["body"]
    assert _events(engine) == []
    (rejection,) = _rejections(engine)
    assert rejection["status_code"] == 401 and rejection["reason"] == "signature verification failed"
    assert rejection["last_body_sha256"] == hashlib.sha256(sent["payload"].encode()).hexdigest()


@pytest.mark.date_sensitive
def test_simulator_stale_webhook_is_401(engine, simulator, sim_receiver):
    stale = (utcnow() - dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sent = _sim_send(simulator, sim_receiver.url, timestamp=stale)
    assert sent["status_code"] == 401
    assert _events(engine) == [] and _rejections(engine)[0]["reason"] == "stale timestamp"


def test_simulator_jku_not_allow_listed_is_401(engine, simulator, webhook_signer):
    with run_webhook_server_in_thread(engine, jku_allowlist=[webhook_signer.jku]) as server:
        sent = _sim_send(simulator, server.url)
    assert sent["status_code"] == 401
    assert _events(engine) == [] and _rejections(engine)[0]["reason"] == "jku not on the allow-list"
