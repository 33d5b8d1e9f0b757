"""The simulator's hostile-row faults over real HTTP: what it sends, and that its ground truth agrees."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from bank_pipeline.errors import BankPipelineError
from bank_pipeline.simulator import FaultConfig
from bank_pipeline_tests.fixtures.simulator import SIM_TODAY, connect

WINDOW = {"from": (SIM_TODAY - timedelta(days=20)).isoformat(), "to": (SIM_TODAY - timedelta(days=1)).isoformat()}


def _current(sim):
    tokens = connect(sim, "alice")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    accounts = httpx.get(f"{sim.data_url}/accounts", headers=headers).json()["results"]
    account = next(a for a in accounts if a["account_type"] == "TRANSACTION")
    return headers, account["account_id"]


def _fetch(sim, headers, account_id) -> list[dict]:
    r = httpx.get(f"{sim.data_url}/accounts/{account_id}/transactions", headers=headers, params=WINDOW)
    assert r.status_code == 200
    return json.loads(r.text)["results"]


def _truth(sim, account_id) -> dict:
    return httpx.get(f"{sim.base_url}/_sim/ground_truth", params={"user": "alice", **WINDOW}).json()["accounts"][account_id]


def test_hostile_rows_are_sent_the_same_way_every_time_and_the_truth_agrees(simulator):
    headers, account_id = _current(simulator)
    clean = _fetch(simulator, headers, account_id)
    faults = dict(control_chars_every=5, correction_every=4, bad_row_every=9, unknown_currency_every=13)
    assert httpx.post(f"{simulator.base_url}/_sim/faults", json=faults).status_code == 200
    first, second = _fetch(simulator, headers, account_id), _fetch(simulator, headers, account_id)
    strip = [{k: v for k, v in r.items() if k != "transaction_id"} for r in first]
    assert strip == [{k: v for k, v in r.items() if k != "transaction_id"} for r in second]  # repeated exactly
    assert len(first) == len(clean)

    assert sum("\x00" in r["description"] for r in first) >= 3
    bad_amounts = [r for r in first if isinstance(r["amount"], str)]
    assert bad_amounts and all(r["amount"].endswith("O") for r in bad_amounts)
    assert any(r["currency"] == "XYZ" for r in first)
    provisional = [r for r in first if "PROVISIONAL" in r["description"]]
    assert provisional, "rows awaiting correction are sent wrong"

    truth = _truth(simulator, account_id)
    assert len(truth["bad_rows"]) == sum(isinstance(r["amount"], str) or r["currency"] == "XYZ" for r in first)
    by_id = {t["normalised_provider_transaction_id"]: t for t in truth["transactions"] if t["normalised_provider_transaction_id"]}
    for row in provisional:  # the truth states what the bank says today: the wrong amount, for now
        if row.get("normalised_provider_transaction_id") in by_id and not isinstance(row["amount"], str):
            assert float(by_id[row["normalised_provider_transaction_id"]]["amount"]) == pytest.approx(row["amount"])

    # Once the correction lag has passed, the same stable ids carry the right amount.
    httpx.post(f"{simulator.base_url}/_sim/clock", json={"advance_days": 3})
    later = {r.get("normalised_provider_transaction_id"): r for r in _fetch(simulator, headers, account_id)}
    originals = {r.get("normalised_provider_transaction_id"): r for r in clean}
    for row in provisional:
        npti = row["normalised_provider_transaction_id"]
        assert later[npti]["amount"] == originals[npti]["amount"] and "PROVISIONAL" not in later[npti]["description"]
    corrected = [t for t in _truth(simulator, account_id)["transactions"] if t["corrected_from"]]
    assert {t["normalised_provider_transaction_id"] for t in corrected} >= {r["normalised_provider_transaction_id"] for r in provisional}


def test_hostile_fault_fields_are_validated():
    with pytest.raises(BankPipelineError, match="correction_every must be a whole number >= 1"):
        FaultConfig(correction_every=0)
    with pytest.raises(BankPipelineError, match="correction_lag_days"):
        FaultConfig(correction_lag_days=None)
    assert FaultConfig().updated({"bad_row_every": 3}).bad_row_every == 3
