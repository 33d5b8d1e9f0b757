"""The simulator's mutable state: clock, consents and tokens, stats, fault counters, data cache.

Thread-safe (one lock): the HTTP server runs in its own thread while tests inspect `app_state`.
Consents and tokens are persisted to `SimulatorConfig.state_file` (when set) on every change, so
a connection made against one simulator process keeps working after a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import secrets
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bank_pipeline import clock
from bank_pipeline.simulator.config import FaultConfig, SimulatorConfig
from bank_pipeline.simulator.generator import AccountSpec, UserData, generate_user, is_valid_user

UTC = timezone.utc

log = logging.getLogger(__name__)

ACCESS_TOKEN_SECONDS = 3600
CODE_SECONDS = 300
STATE_VERSION = 1


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Consent:
    consent_id: str
    credentials_id: str
    user: str
    client_id: str
    scope: str
    created_at: str  # simulated time (ISO, UTC)
    expires_at: str  # simulated time
    generation: int  # account-id generation (rotates on re-auth when configured)
    provider_id: str
    access_token: str | None = None
    access_expires_at: str | None = None  # wall-clock time
    refresh_token: str | None = None
    revoked: bool = False
    reconfirmed_at: str | None = None  # simulated time of the last extension (reconfirmation)

    def expired(self, sim_now: datetime) -> bool:
        return self.revoked or sim_now >= _parse_iso(self.expires_at)


@dataclass
class AuthCode:
    code: str
    consent_id: str
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    created: float  # wall clock (epoch seconds)
    used: bool = False


class SimulatorState:
    def __init__(self, config: SimulatorConfig):
        self.config = config
        self.lock = threading.RLock()
        self.faults: FaultConfig = config.faults
        self._today: date | None = config.today
        self.start_date: date = (config.today or clock.today_utc()) - timedelta(days=config.history_days)
        self.base_url: str | None = None
        self.consents: dict[str, Consent] = {}
        self.codes: dict[str, AuthCode] = {}
        self.access_index: dict[str, str] = {}
        self.refresh_index: dict[str, str] = {}
        self.generations: dict[str, int] = {}  # user -> latest account-id generation
        self.extend_sessions: dict[str, tuple[str, str]] = {}  # session id -> (consent id, outcome)
        self._cache: dict[str, UserData] = {}
        self._ids: dict[tuple[str, int], dict[str, AccountSpec]] = {}
        self.request_counter = 0  # every Data API request ever (nonce source)
        self.webhook_counter = 0
        self.reset_fault_counters()
        self.reset_stats()
        self._load()

    # ------------------------------------------------------------------ clock
    @property
    def today(self) -> date:
        return self._today or clock.today_utc()

    def set_today(self, today: date) -> None:
        with self.lock:
            self._today = today

    def sim_now(self) -> datetime:
        """Simulated "now": the simulator's today at the real time of day (UTC)."""
        real = clock.now()
        return datetime.combine(self.today, real.time(), UTC)

    # ------------------------------------------------------------------ data
    def user_data(self, user: str) -> UserData:
        """`user`'s accounts up to a few days past today; cheap, as rows are generated per account
        when first read, and all again (lazily) once the clock moves past the horizon."""
        with self.lock:
            need = self.today.toordinal() + 5
            data = self._cache.get(user)
            if data is None or data.end_day < need:
                end = date.fromordinal(max(need + 60, self.start_date.toordinal() + 1))
                data = generate_user(self.config.seed, user, self.start_date, end)
                self._cache[user] = data
            return data

    def account_id(self, user: str, key: str, generation: int) -> str:
        return hashlib.sha256(f"{self.config.seed}|{user}|{key}|{generation}".encode()).hexdigest()[:32]

    def accounts_for(self, user: str, generation: int) -> dict[str, AccountSpec]:
        """provider account id -> spec, for one account-id generation of `user` (read-only: kept,
        as every Data API call looks its account up here and multi-1000 has 1,000 ids to hash)."""
        with self.lock:
            ids = self._ids.get((user, generation))
            if ids is None:
                specs = self.user_data(user).spec.accounts
                ids = {self.account_id(user, a.key, generation): a for a in specs}
                self._ids[(user, generation)] = ids
            return ids

    def latest_generation(self, user: str) -> int:
        return self.generations.get(user, 0)

    # ------------------------------------------------------------------ consents & tokens
    def new_consent(self, user: str, client_id: str, scope: str) -> Consent:
        with self.lock:
            previous = [c for c in self.consents.values() if c.user == user]
            if user not in self.generations:
                generation = 0
            elif self.faults.rotate_account_ids_on_reauth and previous:
                generation = self.generations[user] + 1
            else:
                generation = self.generations[user]
            self.generations[user] = generation
            now = self.sim_now()
            consent_id = secrets.token_hex(16)
            credentials_id = base64.b64encode(
                hashlib.sha256(f"{self.config.seed}|{consent_id}".encode()).digest()
            ).decode()
            consent = Consent(
                consent_id=consent_id,
                credentials_id=credentials_id,
                user=user,
                client_id=client_id,
                scope=scope,
                created_at=_iso(now),
                expires_at=_iso(now + timedelta(days=self.faults.consent_days)),
                generation=generation,
                provider_id=self.user_data(user).spec.provider_id,
            )
            self.consents[consent_id] = consent
            self._save()
            return consent

    def reconfirm(self, consent: Consent) -> None:
        """The user reconfirmed: the consent lives `consent_days` from now (UK rules: 90 days after
        the last reconfirmation), same consent, credentials and account ids."""
        with self.lock:
            now = self.sim_now()
            consent.reconfirmed_at = _iso(now)
            consent.expires_at = _iso(now + timedelta(days=self.faults.consent_days))
            self._save()

    def new_extend_session(self, consent: Consent, outcome: str) -> str:
        """A session of the auth dialog that extends `consent` once the user allows it."""
        with self.lock:
            session_id = "auth-" + secrets.token_urlsafe(16)
            self.extend_sessions[session_id] = (consent.consent_id, outcome)
            return session_id

    def take_extend_session(self, session_id: str) -> tuple[Consent, str] | None:
        with self.lock:
            found = self.extend_sessions.pop(session_id, None)
            if found is None or found[0] not in self.consents:
                return None
            return self.consents[found[0]], found[1]

    def new_code(self, consent: Consent, redirect_uri: str, code_challenge: str | None) -> str:
        with self.lock:
            code = secrets.token_urlsafe(32)
            self.codes[code] = AuthCode(
                code,
                consent.consent_id,
                consent.client_id,
                redirect_uri,
                code_challenge,
                clock.now().timestamp(),
            )
            return code

    def issue_tokens(self, consent: Consent) -> dict[str, Any]:
        """Rotate the consent's token pair: previous access and refresh tokens stop working."""
        with self.lock:
            if consent.access_token:
                self.access_index.pop(consent.access_token, None)
            if consent.refresh_token:
                self.refresh_index.pop(consent.refresh_token, None)
            consent.access_token = "sim-at-" + secrets.token_urlsafe(32)
            consent.access_expires_at = _iso(clock.now() + timedelta(seconds=ACCESS_TOKEN_SECONDS))
            self.access_index[consent.access_token] = consent.consent_id
            body: dict[str, Any] = {
                "access_token": consent.access_token,
                "expires_in": ACCESS_TOKEN_SECONDS,
                "token_type": "Bearer",
            }
            if "offline_access" in consent.scope.split():
                consent.refresh_token = "sim-rt-" + secrets.token_urlsafe(32)
                self.refresh_index[consent.refresh_token] = consent.consent_id
                body["refresh_token"] = consent.refresh_token
            else:
                consent.refresh_token = None
            body["scope"] = consent.scope
            self.stats["tokens_issued"] += 1
            self._save()
            return body

    def consent_for_access_token(self, token: str) -> Consent | None:
        with self.lock:
            consent_id = self.access_index.get(token)
            return self.consents.get(consent_id) if consent_id else None

    def consent_for_refresh_token(self, token: str) -> Consent | None:
        with self.lock:
            consent_id = self.refresh_index.get(token)
            return self.consents.get(consent_id) if consent_id else None

    def expire_consents(self, user: str) -> int:
        with self.lock:
            n = 0
            for consent in self.consents.values():
                if consent.user == user and not consent.revoked:
                    consent.revoked = True
                    n += 1
            self._save()
            return n

    # ------------------------------------------------------------------ faults & stats
    def set_faults(self, changes: dict[str, Any] | FaultConfig) -> FaultConfig:
        with self.lock:
            self.faults = changes if isinstance(changes, FaultConfig) else self.faults.updated(changes)
            self.reset_fault_counters()
            return self.faults

    def reset_fault_counters(self) -> None:
        self.fault_requests = 0
        self.rate_limited = 0
        self.server_errors = 0
        self.malformed = 0
        self.malformed_requests = 0

    def reset_stats(self) -> None:
        with self.lock:
            self.stats: dict[str, Any] = {
                "paths": defaultdict(int),
                "accounts": defaultdict(int),
                "unattended": defaultdict(lambda: defaultdict(int)),
                "attended": defaultdict(int),
                "statuses": defaultdict(int),
                "data_api_calls": 0,
                "token_requests": defaultdict(int),
                "tokens_issued": 0,
                "webhooks_sent": 0,
            }

    def stats_snapshot(self) -> dict[str, Any]:
        with self.lock:
            s = self.stats
            return {
                "data_api_calls": s["data_api_calls"],
                "paths": dict(s["paths"]),
                "accounts": dict(s["accounts"]),
                "unattended": {a: dict(days) for a, days in s["unattended"].items()},
                "attended": dict(s["attended"]),
                "statuses": {str(k): v for k, v in s["statuses"].items()},
                "token_requests": dict(s["token_requests"]),
                "tokens_issued": s["tokens_issued"],
                "webhooks_sent": s["webhooks_sent"],
                "today": self.today.isoformat(),
            }

    def next_nonce(self) -> str:
        with self.lock:
            self.request_counter += 1
            return f"{self.config.seed}:{self.request_counter}"

    def draw_fault(self) -> tuple[str, Any] | None:
        """Decide the injected fault for the next Data API request (counts the request)."""
        with self.lock:
            f = self.faults
            self.fault_requests += 1
            n = self.fault_requests
            if (
                f.rate_limit_every
                and n % f.rate_limit_every == 0
                and (f.rate_limit_count is None or self.rate_limited < f.rate_limit_count)
            ):
                self.rate_limited += 1
                return ("rate_limit", f.retry_after)
            if self._hit(f.server_error_rate, f.server_error_count, self.server_errors, n, "5xx"):
                status = f.server_error_statuses[self.server_errors % len(f.server_error_statuses)]
                self.server_errors += 1
                return ("server_error", status)
            return None

    def draw_malformed(self) -> str | None:
        with self.lock:
            f = self.faults
            self.malformed_requests += 1
            if self._hit(f.malformed_rate, f.malformed_count, self.malformed, self.malformed_requests, "bad"):
                kind = f.malformed_kinds[self.malformed % len(f.malformed_kinds)]
                self.malformed += 1
                return kind
            return None

    def _hit(self, rate: float, count: int | None, done: int, n: int, salt: str) -> bool:
        if count is not None and done >= count:
            return False
        if rate > 0:
            return random.Random(f"{self.config.seed}|{salt}|{n}").random() < rate
        return count is not None and done < count

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        path = self.config.state_file
        if not path or not Path(path).exists():
            return
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable simulator state file %s: %s", path, exc)
            return
        if raw.get("version") != STATE_VERSION:
            return
        for item in raw.get("consents", []):
            consent = Consent(**item)
            self.consents[consent.consent_id] = consent
            if consent.access_token:
                self.access_index[consent.access_token] = consent.consent_id
            if consent.refresh_token:
                self.refresh_index[consent.refresh_token] = consent.consent_id
        self.generations = {k: int(v) for k, v in raw.get("generations", {}).items()}
        if raw.get("start_date"):
            self.start_date = date.fromisoformat(raw["start_date"])

    def _save(self) -> None:
        path = self.config.state_file
        if not path:
            return
        path = Path(path)
        data = {
            "version": STATE_VERSION,
            "seed": self.config.seed,
            "start_date": self.start_date.isoformat(),
            "generations": self.generations,
            "consents": [asdict(c) for c in self.consents.values()],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)


def valid_user(user: str) -> bool:
    return is_valid_user(user)
