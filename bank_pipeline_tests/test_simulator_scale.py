"""The simulator's `multi-N` up to 1,000 accounts (many users' worth of accounts): every account listed
with its own ids, a far account's rows the same in every simulator with the seed, nothing generated
before an account is read, and `multi-1..50` exactly what they were before rows were generated lazily."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date, timedelta

import httpx
import pytest

from bank_pipeline.simulator.generator import (
    MAX_MULTI,
    Txn,
    build_user,
    generate_user,
    is_valid_user,
    money_groups,
)
from bank_pipeline_tests.fixtures.simulator import SIM_TODAY, authorize, connect, default_simulator_config

FAR = 977  # the account read in a multi-1000, far from the first


def _get(sim, tokens: dict, path: str, **params) -> list[dict]:
    r = httpx.get(
        f"{sim.data_url}{path}", params=params, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _listed(sim, tokens: dict) -> list[dict]:
    return _get(sim, tokens, "/accounts") + _get(sim, tokens, "/cards")


def _far_rows(sim) -> tuple[str, list[dict]]:
    """(account id, booked rows of yesterday and the 3 days before) of multi-1000's FAR-th account."""
    tokens = connect(sim, "multi-1000")
    account_id = next(a["account_id"] for a in _listed(sim, tokens) if a["display_name"].endswith(f" {FAR}"))
    day_from, day_to = SIM_TODAY - timedelta(days=4), SIM_TODAY - timedelta(days=1)
    rows = _get(sim, tokens, f"/accounts/{account_id}/transactions", **{"from": str(day_from), "to": str(day_to)})
    return account_id, rows


def test_multi_1000_lists_every_account_and_card_once_and_generates_only_what_is_read(simulator):
    tokens = connect(simulator, "multi-1000")
    listed = _listed(simulator, tokens)
    assert len(listed) == 1000
    assert len({a["account_id"] for a in listed}) == 1000
    assert len({a["display_name"] for a in listed}) == 1000
    numbers = [a["account_number"]["iban"] for a in listed if "account_number" in a]
    assert len(numbers) == len(set(numbers)) == 667  # every third account is a card
    data = simulator.app_state.user_data("multi-1000")
    assert data.accounts.generated == 0  # connecting and listing generate no transactions

    account_id, rows = _far_rows(simulator)
    assert rows
    # the account, its card and the account topping it up: its money group, not the user
    assert data.accounts.generated == len(money_groups(data.spec.accounts)[f"acct{FAR}"]) == 3


def test_a_far_account_is_the_same_in_every_simulator_with_the_seed(simulator_factory):
    first = simulator_factory(default_simulator_config())
    second = simulator_factory(default_simulator_config())
    a_id, a_rows = _far_rows(first)
    b_id, b_rows = _far_rows(second)
    assert a_id == b_id
    assert len(a_rows) >= 3
    # transaction ids are fresh per response (as TrueLayer's); everything else is the seed's
    assert [{**t, "transaction_id": None} for t in a_rows] == [{**t, "transaction_id": None} for t in b_rows]


def test_multi_1000_is_independent_triples():
    spec = build_user(42, "multi-1000")
    assert [a.key for a in spec.accounts] == [f"acct{i}" for i in range(1, 1001)]
    groups = money_groups(spec.accounts)
    # accounts 3k+1 -> 3k+2 (own transfers) -> card 3k+3 (card payments); account 1000 on its own
    for key, group in groups.items():
        first = (int(key[4:]) - 1) // 3 * 3 + 1
        assert group == {f"acct{i}" for i in range(first, min(first + 3, 1001))}
    last = spec.accounts[-4:]
    assert [a.kind for a in last] == ["account", "account", "card", "account"]
    assert last[0].sends_to == "acct998" and last[1].pays_card == "acct999" and not last[-1].sends_to


@pytest.mark.parametrize("user", ["multi-1001", "multi-0", "multi-01", "multi-10000"])
def test_an_out_of_range_multi_user_is_refused(simulator, user):
    answer = authorize(simulator, user)
    assert answer.status_code == 400
    assert answer.json()["error_description"] == (
        f"unknown mock user {user!r} (alice, bob or multi-1..multi-{MAX_MULTI})"
    )
    assert httpx.get(f"{simulator.base_url}/_sim/ground_truth", params={"user": user}).status_code == 400


def test_the_range_of_multi_users():
    assert MAX_MULTI == 1000
    assert is_valid_user("multi-1") and is_valid_user("multi-51") and is_valid_user("multi-1000")
    assert not any(is_valid_user(u) for u in ("multi-0", "multi-1001", "multi-01", "multi-", "multi-1e3"))


# --------------------------------------------------------------------------- N ≤ 50 unchanged


def _user_digest(seed: int, user: str, start: date, end: date) -> str:
    """Every account's spec and every field of every generated row, in order, hashed."""
    data = generate_user(seed, user, start, end)
    h = hashlib.sha256()
    for key, acct in data.accounts.items():
        h.update(repr((key, dataclasses.astuple(acct.spec))).encode())
        for t in acct.txns:
            fields = tuple(getattr(t, f) for f in Txn.__slots__ if f not in ("static", "pending_static"))
            h.update(repr(fields).encode())
    return h.hexdigest()[:32]


# Computed by `_user_digest` (and, for the specs, the loop below) with main's generator at commit
# 676a2bf, before multi-N went past 50 and rows were generated per money group: a changed
# digest means tests and ground truths built on these users see different data.
BEFORE = {
    "alice": "5cb331cc71782de60dad1177810f5c41",
    "bob": "543af760b9b7af10b8c38f45546ef7f8",
    "multi-4": "6d05cc0d860f1809e4f6f3ee6d896865",
    "multi-50": "f11238457a9097b22dbc654e675c9f6c",
}
SPECS_1_TO_50_BEFORE = "28ce2c0b799f24c89d66c98c299f42f9"


@pytest.mark.parametrize("user", sorted(BEFORE))
def test_small_users_generate_what_they_always_did(user):
    assert _user_digest(42, user, date(2025, 11, 1), date(2026, 5, 15)) == BEFORE[user]


def test_multi_1_to_50_have_the_accounts_they_always_had():
    h = hashlib.sha256()
    for n in range(1, 51):
        h.update(repr(dataclasses.astuple(build_user(42, f"multi-{n}"))).encode())
    assert h.hexdigest()[:32] == SPECS_1_TO_50_BEFORE
