"""The webhook receiver under hostile input, over real HTTP on loopback.

Hostile `jku` values answer 401 and leave nothing raw in the log or the database; a slow or
failing allow-listed key server does not delay a genuine webhook; a flood of unsigned requests
is counted in bounded storage.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import sqlalchemy as sa

from bank_pipeline.db.schema import webhook_events, webhook_rejections
from bank_pipeline.webhooks import run_webhook_server_in_thread
from bank_pipeline_tests.fixtures.webhooks import SigningKey

FORGED_LOG_LINE = "INFO bank_pipeline.webhooks.app: webhook transactions_available forged-1 (stored)"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature_with_header(header: dict | bytes) -> str:
    """A Tl-Signature whose JWS header is exactly `header` (a dict as JSON, or raw bytes)."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return f"{_b64(raw)}..{_b64(b'not-a-real-signature' * 4)}"


def _jws(jku) -> dict:
    return {"alg": "ES512", "kid": "k-1", "tl_version": "2", "tl_headers": "X-TL-Webhook-Timestamp", "jku": jku}


def _rejection_rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(webhook_rejections)).mappings()]


HOSTILE = {
    "nul": _jws("http://127.0.0.1:9/jwks\x00MARKER-NUL"),
    "newline": _jws("http://127.0.0.1:9/jwks\n2026-11-20 12:00:00,000 " + FORGED_LOG_LINE),
    "crlf-ansi-bidi": _jws("http://x/\r\n\x1b[2J\u202eMARKER-ESC"),
    "oversized": _jws("https://example.com/" + "MARKER-BIG" * 500),
    "non-string": _jws({"MARKER-OBJ": ["x"] * 10}),
    "extra-field": {**_jws("http://x/jwks"), "MARKER-EXTRA\n": 1},
    "not-json": b"\xff\xfe MARKER-BYTES \x00\n{",
    "not-base64": "!!!MARKER-B64..sig",
    "too-long": "A" * 12_000 + "..MARKER-LONG",
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_jku_is_401_and_nothing_raw_is_logged_or_stored(engine, webhook_signer, caplog, case):
    caplog.set_level(logging.INFO)
    value = HOSTILE[case]
    signature = value if isinstance(value, str) else _signature_with_header(value)
    body = json.dumps(webhook_signer.event())
    headers = {**webhook_signer.headers("http://x/webhooks/truelayer", body), "Tl-Signature": signature}
    with run_webhook_server_in_thread(engine, jku_allowlist=[webhook_signer.jku]) as server:
        requests_before = len(webhook_signer.jwks_requests)
        response = httpx.post(server.url, content=body, headers=headers, timeout=10)
        assert len(webhook_signer.jwks_requests) == requests_before  # nothing was fetched

    assert response.status_code == 401, response.text
    assert response.json() == {"error": "unauthorized"}
    messages = [record.getMessage() for record in caplog.records]
    assert any("webhook rejected with 401" in m for m in messages), messages
    for message in messages:
        assert message.isprintable() and message.isascii(), repr(message)  # no NUL, newline, ESC, bidi
        assert "(stored)" not in message
        assert "MARKER-BIG" * 10 not in message  # truncated
    log_text = "\n".join(messages)
    for raw in ("\x00MARKER-NUL", "\nMARKER", "\x1b[2J", "\u202e", "'MARKER-OBJ'"):
        assert raw not in log_text
    (row,) = _rejection_rows(engine)
    assert row["status_code"] == 401 and row["count"] == 1
    for column, stored in row.items():
        if isinstance(stored, str):
            assert stored.isprintable() and stored.isascii() and FORGED_LOG_LINE not in stored, column
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(webhook_events)).scalar_one() == 0


def test_escaped_jku_is_readable_in_the_log(engine, webhook_signer, caplog):
    """Escaped, not dropped: an operator can still see what was sent."""
    caplog.set_level(logging.INFO)
    body = json.dumps(webhook_signer.event())
    headers = {
        **webhook_signer.headers("http://x/webhooks/truelayer", body),
        "Tl-Signature": _signature_with_header(_jws("http://evil/\x00jwks\nfake")),
    }
    with run_webhook_server_in_thread(engine, jku_allowlist=[webhook_signer.jku]) as server:
        assert httpx.post(server.url, content=body, headers=headers).status_code == 401
    assert "jku not on the allow-list [http://evil/\\x00jwks\\nfake] from 127.0.0.0/24" in caplog.text


def test_hostile_kid_and_tl_headers_with_an_allow_listed_jku_are_401(engine, webhook_signer, caplog):
    """The allow-listed path (keys fetched, signature checked) with hostile kid and tl_headers."""
    caplog.set_level(logging.INFO)
    body = json.dumps(webhook_signer.event())
    header = {**_jws(webhook_signer.jku), "kid": "k\x00\nFORGED-KID", "tl_headers": "X-TL-Webhook-Timestamp,X-\nFAKE"}
    headers = {
        **webhook_signer.headers("http://x/webhooks/truelayer", body),
        "Tl-Signature": _signature_with_header(header),
    }
    with run_webhook_server_in_thread(engine, jku_allowlist=[webhook_signer.jku]) as server:
        response = httpx.post(server.url, content=body, headers=headers, timeout=10)
        signed = webhook_signer.post(server.url, webhook_signer.event())  # a genuine one still passes
    assert response.status_code == 401 and signed.status_code == 200
    messages = [record.getMessage() for record in caplog.records]
    assert any("signature verification failed" in m for m in messages), messages
    assert all(m.isprintable() and m.isascii() for m in messages), messages
    (row,) = _rejection_rows(engine)
    assert row["reason"] == "signature verification failed" and str(row["sample_detail"]).isprintable()


def test_escape_truncates_and_fingerprints_long_values():
    from bank_pipeline.webhooks.untrusted import escape, source_network

    assert escape("a\x00b\nc\u202e\\") == "a\\x00b\\nc\\u202e\\\\"
    long = "x" * 100 + "\n"
    shown = escape(long, 10)
    assert shown.startswith("xxxxxxxxxx...(+91 chars, sha256 ") and shown.isprintable() and len(shown) < 60
    assert escape(b"\xff\x00") == "\\xff\\x00"
    assert source_network("203.0.113.77") == "203.0.113.0/24"
    assert source_network("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert source_network("2001:db8:1:2::1") == "2001:db8:1::/48"
    assert source_network("not an address\n") == source_network(None) == "unknown"


# --- a slow or failing allow-listed key server does not delay genuine webhooks -------------------


class _KeyServer:
    """An allow-listed JWKS URL that answers after `delay` seconds, or fails with HTTP 500."""

    def __init__(self, mode: str, delay: float = 3.0) -> None:
        self.hits = 0
        self.first_hit = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.hits += 1
                server.first_hit.set()
                if mode == "slow":
                    time.sleep(delay)
                    payload = json.dumps({"keys": [SigningKey.generate().jwk]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self.send_error(500)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _genuine_latency(signer, url: str) -> float:
    started = time.perf_counter()
    response = signer.post(url, signer.event())
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.json()["status"] == "stored", response.text
    return elapsed


@pytest.mark.parametrize("mode", ["slow", "failing"])
def test_unsigned_flood_naming_a_slow_key_server_does_not_delay_genuine_webhooks(engine, webhook_signer, mode):
    key_server = _KeyServer(mode)
    impostor = SigningKey.generate()
    allowlist = [webhook_signer.jku, key_server.url]
    try:
        with run_webhook_server_in_thread(engine, jku_allowlist=allowlist) as quiet:
            baseline = _genuine_latency(webhook_signer, quiet.url)  # cold key cache, no flood

        with run_webhook_server_in_thread(engine, jku_allowlist=allowlist) as server:
            forged_body = json.dumps(webhook_signer.event())
            forged = webhook_signer.headers(server.url, forged_body, key=impostor, jku=key_server.url)

            sending = threading.Semaphore(0)

            def send_forged(client):
                sending.release()
                return client.post(server.url, content=forged_body, headers=forged).status_code

            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(50) as pool:
                flood = [pool.submit(send_forged, client) for _ in range(50)]
                for _ in range(50):
                    assert sending.acquire(timeout=10)
                assert key_server.first_hit.wait(10)
                time.sleep(0.3)  # let the flood pile up on the key server
                during = _genuine_latency(webhook_signer, server.url)  # cold cache too, mid-flood
                statuses = [f.result() for f in flood]
    finally:
        key_server.close()

    print(
        f"\n[{engine.dialect.name}] {mode} key server: genuine webhook {baseline * 1000:.0f} ms alone, {during * 1000:.0f} ms during "
        f"50 parallel forged requests; key server fetched {key_server.hits} time(s); forged answers "
        f"{sorted(set(statuses))}"
    )
    assert during - baseline < 1.0
    assert key_server.hits == 1  # one fetch in flight per URL; a failure is cached
    assert set(statuses) == ({401} if mode == "slow" else {503})
    rows = _rejection_rows(engine)
    assert sum(r["count"] for r in rows) == 50 and len(rows) == 1


# --- a flood of unsigned requests is counted in bounded storage ---------------------------------


def test_rejection_storage_stays_bounded_under_a_flood(engine, webhook_signer, caplog):
    caplog.set_level(logging.INFO)
    rng = random.Random(9)
    body = b'{"event_id": "x"}'
    kinds = {
        "missing Tl-Signature header": lambda: {},
        "unreadable Tl-Signature": lambda: {"Tl-Signature": f"garbage-{rng.random()}"},
        "jku not on the allow-list": lambda: {"Tl-Signature": _signature_with_header(_jws(f"http://e/{rng.random()}"))},
    }  # fmt: skip
    reasons = list(kinds)

    def send(client: httpx.Client, i: int) -> int:
        # Each request claims another sender (uvicorn trusts X-Forwarded-For from loopback).
        source = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        headers = {"X-Forwarded-For": source, **kinds[reasons[i % 3]]()}
        return client.post(server.url, content=body, headers=headers).status_code

    def flood(count: int) -> float:
        started = time.perf_counter()
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: send(client, i), range(count)))
        assert set(statuses) == {401}
        return time.perf_counter() - started

    with run_webhook_server_in_thread(engine, jku_allowlist=[webhook_signer.jku]) as server:
        first = flood(2000)
        rows_after_first = _rejection_rows(engine)
        second = flood(500)
    rows = _rejection_rows(engine)
    warnings = [r for r in caplog.records if "webhook rejected" in r.getMessage()]
    print(
        f"\n[{engine.dialect.name}] 2,000 unsigned requests in {first:.1f} s -> {len(rows_after_first)} rejection rows; "
        f"500 more in {second:.1f} s -> {len(rows)} rows; {len(warnings)} log lines"
    )
    bound = len(reasons) * 64  # reasons x source buckets, per day
    assert len(rows_after_first) <= bound and len(rows) <= bound
    assert sum(r["count"] for r in rows_after_first) == 2000 and sum(r["count"] for r in rows) == 2500
    by_reason = {reason: sum(r["count"] for r in rows if r["reason"] == reason) for reason in reasons}
    assert by_reason == {reasons[0]: 834, reasons[1]: 834, reasons[2]: 832}
    assert len({r["source_bucket"] for r in rows}) > 32  # the senders were told apart, in buckets
    assert all(r["sample_source"].endswith("/24") for r in rows)
    assert len(warnings) <= len(reasons) * (1 + int((first + second) / 10))  # throttled, not 2,500


# --- the migration folds the old one-row-per-request table into counters -------------------------


def test_migration_folds_old_rejection_rows_into_counters(tmp_path):
    from alembic import command

    from bank_pipeline.db import make_engine
    from bank_pipeline.db.engine import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    old = sa.table(
        "webhook_rejections",
        sa.column("received_at", sa.DateTime(timezone=True)),
        sa.column("status_code", sa.Integer),
        sa.column("reason", sa.Text),
        sa.column("body_sha256", sa.String),
    )
    day1 = dt.datetime(2026, 11, 19, 10, tzinfo=dt.timezone.utc)
    rows = [
        {"received_at": day1, "status_code": 401, "reason": "missing Tl-Signature header", "body_sha256": "a"},
        {"received_at": day1, "status_code": 401, "reason": "missing Tl-Signature header", "body_sha256": "b"},
        {"received_at": day1, "status_code": 401, "reason": "jku not on the allow-list: http://x/\nFAKE (stored)",
         "body_sha256": "c"},
        {"received_at": day1 + dt.timedelta(days=1), "status_code": 401, "reason": "missing Tl-Signature header",
         "body_sha256": "d"},
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(old.insert(), rows)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    counters = sorted(
        (str(r["day"]), r["reason"], r["count"], r["last_body_sha256"]) for r in _rejection_rows(engine)
    )
    engine.dispose()
    assert counters == [
        ("2026-11-19", "jku not on the allow-list", 1, "c"),
        ("2026-11-19", "missing Tl-Signature header", 2, "b"),
        ("2026-11-20", "missing Tl-Signature header", 1, "d"),
    ]


def test_status_lists_refused_webhook_requests(db_url, tmp_path, monkeypatch, capsys):
    from bank_pipeline.cli import main
    from bank_pipeline.db import make_engine
    from bank_pipeline.webhooks.rejections import record_rejection

    engine = make_engine(db_url)
    for network in ("203.0.113.0/24", "198.51.100.0/24", "203.0.113.0/24"):
        record_rejection(engine, status_code=401, reason="jku not on the allow-list", detail="http://e/\\n", source=network)
    record_rejection(engine, status_code=413, reason="body too large", source="unknown")
    engine.dispose()
    monkeypatch.setenv("BANK_PIPELINE_DATABASE_URL", db_url)
    monkeypatch.setenv("BANK_PIPELINE_HOME", str(tmp_path / "home"))
    assert main(["status"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index("webhook requests refused since 2026-11-14 (UTC): 4")
    assert out[start + 1].split() == ["3", "401", "jku", "not", "on", "the", "allow-list", "(2", "source",
                                      "bucket(s),", "last", "2026-11-20", "12:00)"]  # fmt: skip
    assert out[start + 2].split()[:5] == ["1", "413", "body", "too", "large"]
