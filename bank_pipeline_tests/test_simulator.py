"""The TrueLayer simulator over real HTTP: OpenAPI conformance, the auth flow, the synthetic data."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from bank_pipeline.categories import DEFAULT_CATEGORIES
from bank_pipeline.config import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET
from bank_pipeline.errors import BankPipelineError
from bank_pipeline.simulator import FaultConfig, SimulatorConfig
from bank_pipeline.simulator.generator import generate_user
from bank_pipeline_tests.fixtures.simulator import (
    SIM_REDIRECT_URI,
    SIM_TODAY,
    authorize,
    connect,
    default_simulator_config,
    pkce_pair,
)

# TrueLayer's official documents, shipped with the repository (docs/truelayer/).
REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "truelayer"


class OpenAPI:
    """Validates bodies against one OpenAPI document's response schemas (resolving $refs)."""

    def __init__(self, filename: str):
        self.uri = f"urn:truelayer:{filename}"
        self.doc = json.loads((REFERENCE / filename).read_text(encoding="utf-8"))
        resource = Resource.from_contents(self.doc, default_specification=DRAFT4)
        self.registry = Registry().with_resource(self.uri, resource)

    def _pointer(self, *parts: str) -> str:
        return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)

    def _follow(self, pointer: str) -> tuple[str, dict]:
        node = self.doc
        for part in pointer.lstrip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        if "$ref" in node:
            return self._follow(node["$ref"][1:])
        return pointer, node

    def response_schema_pointer(self, path: str, status: int, method: str = "get") -> str:
        pointer, _ = self._follow(self._pointer("paths", path, method, "responses", str(status)))
        return pointer + self._pointer("content", "application/json", "schema")

    def validate_response(self, path: str, response: httpx.Response, method: str = "get") -> None:
        pointer = self.response_schema_pointer(path, response.status_code, method)
        self.validate(pointer, response.json())

    def validate(self, pointer: str, instance) -> None:
        validator = OAS30Validator({"$ref": f"{self.uri}#{pointer}"}, registry=self.registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.fixture(scope="module")
def data_api():
    return OpenAPI("data-api-v1.openapi.json")


@pytest.fixture(scope="module")
def auth_api():
    return OpenAPI("auth-api.openapi.json")


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def ids(sim, tokens, kind="accounts"):
    body = httpx.get(f"{sim.data_url}/{kind}", headers=bearer(tokens)).json()
    return {a["display_name"]: a["account_id"] for a in body["results"]}


def token_request(sim, **data) -> httpx.Response:
    data.setdefault("client_id", SIMULATOR_CLIENT_ID)
    data.setdefault("client_secret", SIMULATOR_CLIENT_SECRET)
    return httpx.post(f"{sim.auth_url}/connect/token", data=data)


# --------------------------------------------------------------------------- OpenAPI conformance


def test_every_data_endpoint_matches_the_openapi_document(simulator, data_api):
    for user in ("alice", "bob"):
        tokens = connect(simulator, user)
        h = bearer(tokens)
        for path in ("/me", "/info", "/accounts", "/cards"):
            r = httpx.get(simulator.data_url + path, headers=h)
            assert r.status_code == 200, r.text
            data_api.validate_response(path, r)
        for kind, account_id in [("accounts", i) for i in ids(simulator, tokens).values()] + [
            ("cards", i) for i in ids(simulator, tokens, "cards").values()
        ]:
            subs = ["", "/balance", "/transactions", "/transactions/pending"]
            if kind == "accounts":
                subs += ["/standing_orders", "/direct_debits"]
            for sub in subs:
                params = {"from": "2026-01-01", "to": "2026-11-20"} if sub == "/transactions" else None
                r = httpx.get(f"{simulator.data_url}/{kind}/{account_id}{sub}", headers=h, params=params)
                assert r.status_code == 200, (sub, r.text)
                data_api.validate_response(f"/{kind}/{{account_id}}{sub}", r)
                if sub == "/transactions":
                    body = r.json()
                    assert body["status"] == "Succeeded" and len(body["results"]) > 15


def test_error_responses_match_the_openapi_document(simulator, data_api, auth_api):
    tokens = connect(simulator, "alice")
    account_id = next(iter(ids(simulator, tokens).values()))
    tx = "/accounts/{account_id}/transactions"
    url = f"{simulator.data_url}/accounts/{account_id}/transactions"

    r = httpx.get(url)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    data_api.validate_response(tx, r)
    r = httpx.get(url, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    data_api.validate_response(tx, r)

    r = httpx.get(f"{simulator.data_url}/accounts/doesnotexist/transactions", headers=bearer(tokens))
    assert r.status_code == 404 and r.json()["error"] == "account_not_found"
    data_api.validate_response(tx, r)
    card_id = next(iter(ids(simulator, tokens, "cards").values()))
    r = httpx.get(f"{simulator.data_url}/accounts/{card_id}", headers=bearer(tokens))
    assert r.status_code == 404, "a card id is not an account id"

    for params in (
        {"from": "2026-11-10", "to": "2026-11-01"},
        {"from": "2026-13-01", "to": "2026-11-01"},
        {"from": "yesterday", "to": "2026-11-01"},
    ):
        r = httpx.get(url, headers=bearer(tokens), params=params)
        assert r.status_code == 400 and r.json()["error"] == "invalid_date_range", params
        data_api.validate_response(tx, r)

    r = token_request(simulator, grant_type="refresh_token", refresh_token="bogus")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    auth_api.validate_response("/connect/token", r, "post")
    r = token_request(
        simulator, grant_type="refresh_token", refresh_token=tokens["refresh_token"], client_secret="wrong"
    )
    assert r.status_code == 401 and r.json()["error"] == "unauthorized_client"
    auth_api.validate("/components/schemas/Error", r.json())


# --------------------------------------------------------------------------- auth


def test_auth_link_validates_its_parameters(simulator):
    good = {
        "response_type": "code",
        "client_id": SIMULATOR_CLIENT_ID,
        "redirect_uri": SIM_REDIRECT_URI,
        "scope": "info accounts",
        "state": "abc",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    r = httpx.get(simulator.auth_url + "/", params=good)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "alice" in r.text and 'action="/consent"' in r.text
    bad_cases = [
        {"client_id": "someone-else"},
        {"response_type": "token"},
        {"redirect_uri": ""},
        {"scope": ""},
        {"state": ""},
        {"code_challenge_method": "plain"},
    ]
    for change in bad_cases:
        r = httpx.get(simulator.auth_url + "/", params={**good, **change})
        assert r.status_code == 400, change
        assert r.json()["error"] in ("invalid_request", "unauthorized_client")
    r = authorize(simulator, "carol")
    assert r.status_code == 400 and "carol" in r.json()["error_description"]


def test_code_exchange_with_pkce_is_single_use_and_checks_the_verifier(simulator, auth_api):
    verifier, challenge = pkce_pair()
    answer = authorize(simulator, "alice", challenge=challenge, state="s-42")
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    assert str(location).startswith(SIM_REDIRECT_URI) and location.params["state"] == "s-42"
    code = location.params["code"]
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": SIM_REDIRECT_URI}

    r = token_request(simulator, **base, code_verifier="not-the-verifier")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # a failed attempt burns the code, as does a successful one
    r = token_request(simulator, **base, code_verifier=verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    code = httpx.URL(authorize(simulator, "alice", challenge=challenge).headers["location"]).params["code"]
    r = token_request(simulator, **{**base, "code": code})
    assert r.status_code == 400, "the verifier is required when the link had a challenge"
    code = httpx.URL(authorize(simulator, "alice", challenge=challenge).headers["location"]).params["code"]
    r = token_request(simulator, **{**base, "code": code}, code_verifier=verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    auth_api.validate_response("/connect/token", r, "post")
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["refresh_token"]
    r = token_request(simulator, **{**base, "code": code}, code_verifier=verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_token_endpoint_accepts_json_and_rejects_a_wrong_secret(simulator):
    code = httpx.URL(authorize(simulator, "bob").headers["location"]).params["code"]
    body = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": SIM_REDIRECT_URI,
        "client_id": SIMULATOR_CLIENT_ID,
        "client_secret": "wrong",
    }
    r = httpx.post(f"{simulator.auth_url}/connect/token", json=body)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized_client"
    r = httpx.post(
        f"{simulator.auth_url}/connect/token", json={**body, "client_secret": SIMULATOR_CLIENT_SECRET}
    )
    assert r.status_code == 200 and r.json()["access_token"]


def test_deny_and_form_post(simulator):
    r = authorize(simulator, "alice", decision="deny", state="zz")
    params = httpx.URL(r.headers["location"]).params
    assert r.status_code == 302 and params["error"] == "access_denied" and params["state"] == "zz"
    r = authorize(simulator, "alice", response_mode="form_post", state="fp")
    assert r.status_code == 200 and f'action="{SIM_REDIRECT_URI}"' in r.text
    assert 'name="code"' in r.text and 'name="state" value="fp"' in r.text and "submit()" in r.text


def test_refresh_rotates_the_pair(simulator):
    first = connect(simulator, "alice")
    r = token_request(simulator, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert httpx.get(f"{simulator.data_url}/me", headers=bearer(second)).status_code == 200
    old = httpx.get(f"{simulator.data_url}/me", headers=bearer(first))
    assert old.status_code == 401 and old.json()["error"] == "invalid_token"
    r = token_request(simulator, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


@pytest.mark.date_sensitive
def test_consent_expires_after_90_days_and_on_demand(simulator):
    tokens = connect(simulator, "alice")
    me = httpx.get(f"{simulator.data_url}/me", headers=bearer(tokens)).json()["results"][0]
    assert me["consent_expires_at"].startswith((SIM_TODAY + timedelta(days=90)).isoformat())
    assert me["provider"]["provider_id"] == "ob-lloyds" and me["credentials_id"]
    httpx.post(
        f"{simulator.base_url}/_sim/clock", json={"today": (SIM_TODAY + timedelta(days=91)).isoformat()}
    )
    r = httpx.get(f"{simulator.data_url}/me", headers=bearer(tokens))
    assert r.status_code == 403 and r.json()["error"] == "access_denied"
    r = token_request(simulator, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    fresh = connect(simulator, "bob")
    assert httpx.get(f"{simulator.data_url}/me", headers=bearer(fresh)).status_code == 200
    r = httpx.post(f"{simulator.base_url}/_sim/consent/expire", json={"user": "bob"})
    assert r.json()["expired"] == 1
    assert httpx.get(f"{simulator.data_url}/accounts", headers=bearer(fresh)).status_code == 403


def test_tokens_survive_a_restart_with_a_state_file(simulator_factory, tmp_path):
    config = default_simulator_config(state_file=tmp_path / "sim.json")
    first = simulator_factory(config)
    tokens = connect(first, "alice")
    accounts = ids(first, tokens)
    second = simulator_factory(default_simulator_config(state_file=tmp_path / "sim.json"))
    assert ids(second, tokens) == accounts
    r = token_request(second, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert r.status_code == 200


# --------------------------------------------------------------------------- synthetic data


def ground_truth(sim, user, **params):
    r = httpx.get(f"{sim.base_url}/_sim/ground_truth", params={"user": user, **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_same_seed_same_data_but_fresh_transaction_ids(simulator, simulator_factory):
    other = simulator_factory(default_simulator_config())
    a = ground_truth(simulator, "alice", **{"from": "2026-01-01", "to": "2026-11-20"})
    b = ground_truth(other, "alice", **{"from": "2026-01-01", "to": "2026-11-20"})

    def strip(gt):
        return {
            k: [{**t, "transaction_id": None} for t in v["transactions"]] for k, v in gt["accounts"].items()
        }

    assert strip(a) == strip(b)
    different = simulator_factory(default_simulator_config(seed=7))
    assert strip(ground_truth(different, "alice", **{"from": "2026-01-01", "to": "2026-11-20"})) != strip(a)

    tokens = connect(simulator, "alice")
    account_id = ids(simulator, tokens)["Club Lloyds"]
    url = f"{simulator.data_url}/accounts/{account_id}/transactions"
    params = {"from": "2026-10-01", "to": "2026-10-31"}
    one = httpx.get(url, headers=bearer(tokens), params=params).json()["results"]
    two = httpx.get(url, headers=bearer(tokens), params=params).json()["results"]
    assert len(one) == len(two) > 20
    assert not {t["transaction_id"] for t in one} & {t["transaction_id"] for t in two}
    assert [t.get("normalised_provider_transaction_id") for t in one] == [
        t.get("normalised_provider_transaction_id") for t in two
    ]
    gt = ground_truth(simulator, "alice", **params)["accounts"][account_id]
    assert gt["count"] == len(one)
    assert Decimal(gt["sum"]) == sum(Decimal(str(t["amount"])) for t in one)


def test_running_balances_are_continuous(simulator):
    tokens = connect(simulator, "alice")
    for name, account_id in ids(simulator, tokens).items():
        rows = httpx.get(
            f"{simulator.data_url}/accounts/{account_id}/transactions",
            headers=bearer(tokens),
            params={"from": "2025-01-01", "to": "2026-11-10"},
        ).json()["results"]
        assert rows, name
        balances = [Decimal(str(t["running_balance"]["amount"])) for t in rows]
        amounts = [Decimal(str(t["amount"])) for t in rows]
        for i in range(1, len(rows)):
            assert balances[i] == balances[i - 1] + amounts[i], (name, rows[i])


def test_realistic_rows(simulator):
    tokens = connect(simulator, "alice")
    rows = []
    for account_id in ids(simulator, tokens).values():
        rows += httpx.get(
            f"{simulator.data_url}/accounts/{account_id}/transactions",
            headers=bearer(tokens),
            params={"from": "2024-01-01", "to": "2026-11-20"},
        ).json()["results"]
    descriptions = " ".join(t["description"] for t in rows)
    for needle in ("ACME LTD", "OCTOPUS ENERGY", "THAMES WATER", "TESCO", "TFL", "CASH", "SAVINGS"):
        assert needle in descriptions, needle
    assert re.search(r"CARD PAYMENT TO .* ON \d\d [A-Z]{3}", descriptions)
    assert re.search(r"DD .* REF \d{7}", descriptions)
    missing = sum("normalised_provider_transaction_id" not in t for t in rows) / len(rows)
    assert 0.05 < missing < 0.15
    assert any(
        "provider_transaction_id" not in t and "normalised_provider_transaction_id" not in t for t in rows
    )
    stamps = [t["timestamp"] for t in rows]
    assert any(s.endswith("T00:00:00Z") for s in stamps)
    assert any(s.endswith("+00:00") for s in stamps) and any(s.endswith("+01:00") for s in stamps)
    assert any(re.search(r"\.\d{3}Z$", s) for s in stamps) and any(re.search(r":\d\d\+0", s) for s in stamps)
    # the local date part is the booking date: +01:00 only in British Summer Time
    for s in stamps:
        if s.endswith("+01:00"):
            assert 3 <= int(s[5:7]) <= 10, s
    twins = Counter((t["timestamp"], t["description"], t["amount"]) for t in rows)
    assert any(n >= 2 for n in twins.values()), "identical same-day transactions exist"
    credits = [t for t in rows if t["transaction_type"] == "CREDIT"]
    assert credits and all(t["amount"] > 0 for t in credits)
    assert all(t["amount"] < 0 for t in rows if t["transaction_type"] == "DEBIT")

    gt = ground_truth(simulator, "alice", **{"from": "2024-01-01", "to": "2026-11-20"})
    for account in gt["accounts"].values():
        for t in account["transactions"]:
            assert t["true_category"] in DEFAULT_CATEGORIES
            assert t["true_subcategory"] in DEFAULT_CATEGORIES[t["true_category"]].subcategories
            assert t["timestamp"][:10] == t["booking_date"]
    categories = {t["true_category"] for a in gt["accounts"].values() for t in a["transactions"]}
    assert {
        "income",
        "housing",
        "utilities",
        "groceries",
        "dining",
        "transport",
        "transfers",
        "refunds",
        "cash",
        "debt_repayment",
        "subscriptions",
    } <= categories


def test_card_sign_conventions(simulator):
    for user, purchases_positive in (("alice", True), ("bob", False)):
        tokens = connect(simulator, user)
        card_id = next(iter(ids(simulator, tokens, "cards").values()))
        rows = httpx.get(
            f"{simulator.data_url}/cards/{card_id}/transactions",
            headers=bearer(tokens),
            params={"from": "2026-01-01", "to": "2026-11-20"},
        ).json()["results"]
        purchases = [t for t in rows if t["transaction_category"] == "PURCHASE"]
        payments = [t for t in rows if "THANK YOU" in t["description"]]
        assert purchases and payments
        assert all(t["transaction_type"] == "DEBIT" for t in purchases)
        assert all((t["amount"] > 0) == purchases_positive for t in purchases), user
        assert all(
            t["transaction_type"] == "CREDIT" and (t["amount"] < 0) == purchases_positive for t in payments
        )
        assert sum(bool(t.get("merchant_name")) for t in purchases) > 0.7 * len(purchases)
        gt = ground_truth(simulator, user, **{"from": "2026-01-01", "to": "2026-11-20"})["accounts"][card_id]
        assert gt["card_sign"] == ("positive" if purchases_positive else "signed")
        assert all(Decimal(t["amount"]) < 0 for t in gt["transactions"] if t["transaction_type"] == "DEBIT")


def test_transfers_between_own_accounts_have_both_legs(simulator):
    gt = ground_truth(simulator, "alice", **{"from": "2026-10-01", "to": "2026-10-31"})
    legs = [
        (t["booking_date"], Decimal(t["amount"]))
        for a in gt["accounts"].values()
        for t in a["transactions"]
        if t["true_category"] in ("transfers", "debt_repayment")
        and t["true_subcategory"] in ("own_accounts", "credit_card")
    ]
    outs = sorted((d, -a) for d, a in legs if a < 0)
    ins = sorted((d, a) for d, a in legs if a > 0)
    assert len(outs) >= 2 and outs == ins


@pytest.mark.date_sensitive
def test_pending_transactions_book_later_with_new_ids(simulator):
    tokens = connect(simulator, "alice")
    account_id = ids(simulator, tokens)["Club Lloyds"]
    h = bearer(tokens)
    pending = httpx.get(f"{simulator.data_url}/accounts/{account_id}/transactions/pending", headers=h).json()[
        "results"
    ]
    assert pending
    pending_ids = {t["provider_transaction_id"] for t in pending}
    booked_now = ground_truth(simulator, "alice")["accounts"][account_id]["transactions"]
    assert not pending_ids & {t["pending_provider_transaction_id"] for t in booked_now}
    httpx.post(
        f"{simulator.base_url}/_sim/clock", json={"today": (SIM_TODAY + timedelta(days=4)).isoformat()}
    )
    later = ground_truth(simulator, "alice")["accounts"][account_id]["transactions"]
    booked = {t["pending_provider_transaction_id"]: t for t in later if t["pending_provider_transaction_id"]}
    assert pending_ids <= set(booked)
    rows = httpx.get(
        f"{simulator.data_url}/accounts/{account_id}/transactions",
        headers=h,
        params={"from": "2026-11-14", "to": "2026-11-24"},
    ).json()["results"]
    served_ids = {t["transaction_id"] for t in rows}
    assert not served_ids & {t["transaction_id"] for t in pending}
    for p in pending:
        b = booked[p["provider_transaction_id"]]
        assert b["description"] == p["description"]
        assert b["provider_transaction_id"] != p["provider_transaction_id"]
    # restaurant tips: somewhere in the history the booked amount differs from the pending one
    data = simulator.app_state.user_data("alice")
    tipped = [
        t
        for a in data.accounts.values()
        for t in a.txns
        if t.pending_amount is not None and t.pending_amount != t.sent_amount
    ]
    assert tipped


@pytest.mark.date_sensitive
def test_late_postings_appear_later(simulator):
    data = simulator.app_state.user_data("alice")
    today = SIM_TODAY.toordinal()
    late = [
        t
        for t in data.accounts["current"].txns
        if t.booking_day < today and t.available_day > today and t.pending_from is None
    ]
    late += [
        t
        for t in data.accounts["current"].txns
        if t.booking_day < t.available_day - 1 and today - 30 < t.booking_day < today - 5
    ]
    assert late
    t = late[0]
    day = date.fromordinal(t.booking_day).isoformat()
    clock = date.fromordinal(t.available_day - 1).isoformat()
    httpx.post(f"{simulator.base_url}/_sim/clock", json={"today": clock})
    before = ground_truth(simulator, "alice", **{"from": day, "to": day})
    httpx.post(
        f"{simulator.base_url}/_sim/clock", json={"today": date.fromordinal(t.available_day).isoformat()}
    )
    after = ground_truth(simulator, "alice", **{"from": day, "to": day})

    def key(gt):
        return {x["internal_id"] for a in gt["accounts"].values() for x in a["transactions"]}

    assert t.uid not in key(before) and t.uid in key(after)


def test_multi_users_have_their_accounts_and_cards(simulator):
    data = generate_user(42, "multi-10", SIM_TODAY - timedelta(days=3 * 365), SIM_TODAY + timedelta(days=60))
    assert len(data.accounts) == 10
    kinds = Counter(a.spec.kind for a in data.accounts.values())
    assert kinds["account"] and kinds["card"]
    tokens = connect(simulator, "multi-10")
    assert len(ids(simulator, tokens)) + len(ids(simulator, tokens, "cards")) == 10
    assert authorize(simulator, "multi-1001").status_code == 400  # the range: test_simulator_scale.py


def test_cli_flags_are_checked():
    import argparse

    from bank_pipeline.commands.simulator import build_config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "simulator",
            "--today",
            "2026-11-20",
            "--seed",
            "7",
            "--faults",
            '{"rate_limit_every": 3, "retry_after": null}',
            "--state-file",
            "x.json",
        ]
    )
    config, port = build_config(args)
    assert config.seed == 7 and config.today == SIM_TODAY and port == 8710
    assert config.faults.rate_limit_every == 3 and config.faults.retry_after is None
    assert config.state_file == Path("x.json")
    for argv, message in (
        (["--today", "20/11/2026"], "--today"),
        (["--today", "0001-01-01"], "--today must be a date from 1900-01-01"),  # 3 years of history before it
        (["--today", "9999-12-31"], "--today must be a date from 1900-01-01"),
        (["--seed", "x"], "--seed"),
        (["--port", "99999"], "--port"),
        (["--faults", "{bad"], "--faults"),
        (["--faults", '{"nope": 1}'], "nope"),
        (["--faults", '{"latency_ms": -1}'], "latency_ms"),
        (["--faults", "@/does/not/exist.json"], "cannot read"),
    ):
        with pytest.raises(BankPipelineError, match=re.escape(message)):
            build_config(parser.parse_args(["simulator", *argv]))
    assert SimulatorConfig().faults == FaultConfig()


# --------------------------------------------------------------------------- /connections/extend


def _extend(sim, tokens, **overrides) -> httpx.Response:
    body = {
        "user_has_reconfirmed_consent": True,
        "client_id": SIMULATOR_CLIENT_ID,
        "client_secret": SIMULATOR_CLIENT_SECRET,
        "user": {},
        "refresh_token": tokens["refresh_token"],
        "redirect_uri": SIM_REDIRECT_URI,
        "state": "st-1",
        "code_challenge": pkce_pair()[1],
        **overrides,
    }
    return httpx.post(f"{sim.data_url}/connections/extend", json=body, timeout=10)


def test_extend_answers_each_outcome_as_the_openapi_document_says(simulator, data_api):
    """ExtendConnection: no_action_needed renews the consent for 90 days from now with a new pair;
    the two link outcomes send the user to a page that extends the same consent; an ended consent
    or a bank that cannot extend is a 422 problem, a spent refresh token a 401."""
    tokens = connect(simulator, "alice")
    accounts_before = ids(simulator, tokens)
    httpx.post(f"{simulator.base_url}/_sim/clock", json={"advance_days": 80}).raise_for_status()
    r = _extend(simulator, tokens)
    data_api.validate_response("/connections/extend", r, "post")
    renewed = r.json()
    assert renewed["action_needed"] == "no_action_needed" and renewed["refresh_token"] != tokens["refresh_token"]
    me = httpx.get(f"{simulator.data_url}/me", headers=bearer(renewed)).json()["results"][0]
    assert me["consent_expires_at"].startswith((SIM_TODAY + timedelta(days=170)).isoformat())
    assert ids(simulator, renewed) == accounts_before  # same consent, same account ids
    spent = _extend(simulator, tokens)
    assert spent.status_code == 401 and spent.headers["content-type"].startswith("application/problem+json")
    data_api.validate("/components/schemas/Problem", spent.json())

    for outcome in ("reconfirmation_of_consent_needed", "authentication_needed"):
        httpx.post(f"{simulator.base_url}/_sim/faults", json={"extend_outcome": outcome}).raise_for_status()
        r = _extend(simulator, renewed)
        data_api.validate_response("/connections/extend", r, "post")
        assert r.json()["action_needed"] == outcome
        link = r.json()["user_input_link"]
        assert "session_id=" in link and httpx.get(link).status_code == 200

    httpx.post(f"{simulator.base_url}/_sim/faults", json={"extend_outcome": "cannot_extend"}).raise_for_status()
    r = _extend(simulator, renewed)
    assert r.status_code == 422 and r.json()["title"] == "No way to extend this connection"
    data_api.validate("/components/schemas/Problem", r.json())
    httpx.post(f"{simulator.base_url}/_sim/faults", json={"extend_outcome": "no_action_needed"}).raise_for_status()
    httpx.post(f"{simulator.base_url}/_sim/clock", json={"advance_days": 91}).raise_for_status()
    assert _extend(simulator, renewed).status_code == 422  # the consent has ended: a new consent is needed
    r = _extend(simulator, renewed, client_id="")
    assert r.status_code == 400 and "client_id" in r.json()["errors"]
