"""Fault injection in the TrueLayer simulator, over real HTTP."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest

from bank_pipeline.simulator import FaultConfig
from bank_pipeline_tests.fixtures.simulator import SIM_TODAY, connect, default_simulator_config


def bearer(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def setup(sim, user="alice", **faults):
    tokens = connect(sim, user)
    accounts = httpx.get(f"{sim.data_url}/accounts", headers=bearer(tokens)).json()["results"]
    if faults:
        r = httpx.post(f"{sim.base_url}/_sim/faults", json=faults)
        assert r.status_code == 200, r.text
    return tokens, accounts[0]["account_id"]


def tx(sim, tokens, account_id, headers=None, **params):
    params = params or {"from": "2026-11-01", "to": "2026-11-10"}
    return httpx.get(
        f"{sim.data_url}/accounts/{account_id}/transactions",
        headers={**bearer(tokens), **(headers or {})},
        params=params,
    )


def test_rate_limits_with_and_without_retry_after(simulator):
    tokens, account_id = setup(simulator, rate_limit_every=2, rate_limit_count=2, retry_after=3)
    statuses = [tx(simulator, tokens, account_id) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 429, 200, 429, 200, 200]
    assert statuses[1].json()["error"] == "provider_too_many_requests"
    assert statuses[1].headers["retry-after"] == "3"
    httpx.post(
        f"{simulator.base_url}/_sim/faults",
        json={"rate_limit_every": 1, "rate_limit_count": 1, "retry_after": None},
    )
    r = tx(simulator, tokens, account_id)
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert tx(simulator, tokens, account_id).status_code == 200


def test_unattended_limit_and_psu_ip(simulator):
    tokens, account_id = setup(simulator, unattended_limit=4)
    codes = [tx(simulator, tokens, account_id).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    r = tx(simulator, tokens, account_id)
    assert r.json()["error"] == "provider_request_limit_exceeded"
    assert tx(simulator, tokens, account_id, headers={"X-PSU-IP": "203.0.113.9"}).status_code == 200
    stats = httpx.get(f"{simulator.base_url}/_sim/stats").json()
    assert stats["unattended"][account_id][SIM_TODAY.isoformat()] == 6
    assert stats["attended"][account_id] == 1
    assert stats["paths"]["/data/v1/accounts/{account_id}/transactions"] == 7
    # a new UTC day resets the budget
    httpx.post(f"{simulator.base_url}/_sim/clock", json={"advance_days": 1})
    assert tx(simulator, tokens, account_id).status_code == 200
    httpx.post(f"{simulator.base_url}/_sim/stats/reset")
    assert httpx.get(f"{simulator.base_url}/_sim/stats").json()["data_api_calls"] == 0


def test_server_errors_cycle_and_stop(simulator):
    tokens, account_id = setup(simulator, server_error_count=3)
    answers = [tx(simulator, tokens, account_id) for _ in range(4)]
    assert [r.status_code for r in answers] == [500, 503, 504, 200]
    assert [r.json()["error"] for r in answers[:3]] == [
        "provider_error",
        "temporarily_unavailable",
        "provider_timeout",
    ]
    httpx.post(
        f"{simulator.base_url}/_sim/faults", json={"server_error_rate": 0.5, "server_error_count": None}
    )
    first = [tx(simulator, tokens, account_id).status_code for _ in range(10)]
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"server_error_rate": 0.5})
    second = [tx(simulator, tokens, account_id).status_code for _ in range(10)]
    assert first == second, "deterministic given the seed"
    assert 200 in first and any(c >= 500 for c in first)


def test_malformed_bodies(simulator):
    tokens, account_id = setup(simulator, malformed_count=4)
    truncated = tx(simulator, tokens, account_id)
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.text)
    missing = tx(simulator, tokens, account_id).json()["results"]
    required = (
        "transaction_id",
        "timestamp",
        "description",
        "amount",
        "currency",
        "transaction_type",
        "transaction_category",
        "transaction_classification",
    )
    assert any(any(k not in row for k in required) for row in missing)
    stamps = tx(simulator, tokens, account_id).json()["results"]
    assert any("/" in row["timestamp"] for row in stamps)
    amounts = tx(simulator, tokens, account_id).json()["results"]
    assert any(isinstance(row["amount"], str) and "," in row["amount"] for row in amounts)
    clean = tx(simulator, tokens, account_id).json()["results"]
    assert all(isinstance(row["amount"], float) for row in clean)


def test_sca_window(simulator):
    tokens, account_id = setup(simulator, sca_window_minutes=0)
    old = {"from": (SIM_TODAY - timedelta(days=200)).isoformat(), "to": SIM_TODAY.isoformat()}
    r = tx(simulator, tokens, account_id, **old)
    assert r.status_code == 403 and r.json()["error"] == "sca_exceeded"
    recent = {"from": (SIM_TODAY - timedelta(days=30)).isoformat(), "to": SIM_TODAY.isoformat()}
    assert tx(simulator, tokens, account_id, **recent).status_code == 200
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"sca_window_minutes": 5})
    assert tx(simulator, tokens, account_id, **old).status_code == 200, "within minutes of consent"


def test_account_ids_rotate_on_reauth(simulator_factory):
    sim = simulator_factory(
        default_simulator_config(faults=FaultConfig(unattended_limit=None, rotate_account_ids_on_reauth=True))
    )

    def accounts(tokens):
        rows = httpx.get(f"{sim.data_url}/accounts", headers=bearer(tokens)).json()["results"]
        return {a["account_number"]["number"]: a for a in rows}

    first, second = connect(sim, "alice"), connect(sim, "alice")
    before, after = accounts(first), accounts(second)
    assert before.keys() == after.keys()
    for number in before:
        assert before[number]["account_id"] != after[number]["account_id"]
        assert before[number]["account_number"] == after[number]["account_number"]
    old_id = next(iter(before.values()))["account_id"]
    r = httpx.get(f"{sim.data_url}/accounts/{old_id}", headers=bearer(second))
    assert r.status_code == 404 and r.json()["error"] == "account_not_found"
    gt = httpx.get(f"{sim.base_url}/_sim/ground_truth", params={"user": "alice", "from": "2026-11-01"}).json()
    assert {a["account_id"] for a in after.values()} <= set(gt["accounts"])


def test_latency_and_bad_fault_fields(simulator):
    tokens, account_id = setup(simulator, latency_ms=150)
    start = time.perf_counter()
    assert httpx.get(f"{simulator.data_url}/me", headers=bearer(tokens)).status_code == 200
    assert time.perf_counter() - start >= 0.15
    for bad in ({"nope": 1}, {"server_error_rate": 2}, {"server_error_statuses": [502]}, {"latency_ms": "x"}):
        r = httpx.post(f"{simulator.base_url}/_sim/faults", json=bad)
        assert r.status_code == 400, bad
    assert httpx.get(f"{simulator.base_url}/_sim/faults").json()["faults"]["latency_ms"] == 150
