"""The Enable Banking simulator's state: pending authorisations, sessions, continuation keys and
the bank's count of unattended reads. In memory only (a restart forgets every session)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from bank_pipeline.simulator.config import SimulatorConfig
from bank_pipeline.simulator.enablebanking.config import EnableBankingSimConfig
from bank_pipeline.simulator.generator import AccountSpec, Txn, UserData
from bank_pipeline.simulator.state import SimulatorState


@dataclass
class Authorization:
    authorization_id: str
    aspsp: dict
    redirect_url: str
    state: str
    valid_until: datetime
    code: str | None = None
    user: str | None = None
    used: bool = False


@dataclass
class Session:
    session_id: str
    user: str
    aspsp: dict
    valid_until: datetime
    created: datetime
    accounts: dict[str, AccountSpec] = field(default_factory=dict)  # uid -> spec
    closed: bool = False


@dataclass
class Listing:
    """Where a continuation key leads: the rest of one listing of one account in one session."""

    session_id: str
    uid: str
    query: tuple
    offset: int
    page: int  # number of the page the key asks for (1-based; the first page is 1)
    empty: bool = False  # this page is a planted empty one
    rows: list[dict] | None = field(default=None, repr=False)  # the listing, rendered at its first page


class EnableBankingState:
    def __init__(self, config: EnableBankingSimConfig):
        self.config = config
        self.lock = threading.RLock()
        # The TrueLayer simulator's users, days and clock, used as they are (its state holds no
        # consent of ours).
        self.bank = SimulatorState(
            SimulatorConfig(seed=config.seed, today=config.today, history_days=config.history_days)
        )
        self.base_url = ""
        self.authorizations: dict[str, Authorization] = {}
        self.codes: dict[str, str] = {}  # code -> authorization id
        self.sessions: dict[str, Session] = {}
        self.listings: dict[str, Listing] = {}
        self.reads: dict[tuple[str, date], int] = {}  # (identification hash, day) -> unattended reads
        self.requests = 0
        self.account_requests = 0
        self._positions: dict[tuple[str, str], dict[str, int]] = {}  # (user, key) -> uid -> index

    # --- clock and data ---------------------------------------------------------------------
    @property
    def today(self) -> date:
        return self.bank.today

    def set_today(self, today: date) -> None:
        self.bank.set_today(today)

    def now(self) -> datetime:
        """Simulated now: the simulator's today at the pipeline clock's time of day."""
        return self.bank.sim_now()

    def user_data(self, user: str) -> UserData:
        return self.bank.user_data(user)

    def identification_hash(self, user: str, key: str) -> str:
        """Stable across sessions (like Enable Banking's hash of the account number)."""
        digest = hashlib.sha256(f"{self.config.seed}|{user}|{key}|account".encode()).digest()
        return base64.b64encode(digest).decode()

    def entry_reference(self, user: str, key: str, internal_id: str, status: str) -> str:
        """Stable for a row in one status; a pending row gets another when it is booked."""
        return hashlib.blake2b(f"{self.config.seed}|{user}|{key}|{internal_id}|{status}".encode(), digest_size=10).hexdigest()

    def booked_reference(self, user: str, key: str, t: Txn) -> str:
        """A booked row's entry reference; with `shared_reference_every`, some rows reuse the
        reference of the account's row before them."""
        every = self.config.shared_reference_every
        if every and int(self.entry_reference(user, key, t.uid, "share"), 16) % every == 0:
            account = self.user_data(user).accounts[key]
            with self.lock:
                index = self._positions.setdefault((user, key), {x.uid: i for i, x in enumerate(account.txns)})
            position = index[t.uid]
            if position > 0:
                return self.entry_reference(user, key, account.txns[position - 1].uid, "BOOK")
        return self.entry_reference(user, key, t.uid, "BOOK")

    # --- consent ---------------------------------------------------------------------------
    def start(self, aspsp: dict, redirect_url: str, state: str, valid_until: datetime) -> Authorization:
        with self.lock:
            auth = Authorization(str(uuid.uuid4()), aspsp, redirect_url, state, valid_until)
            self.authorizations[auth.authorization_id] = auth
            return auth

    def grant(self, authorization_id: str, user: str) -> Authorization | None:
        with self.lock:
            auth = self.authorizations.get(authorization_id)
            if auth is None or auth.code is not None:
                return None
            auth.code, auth.user = secrets.token_hex(16), user
            self.codes[auth.code] = authorization_id
            return auth

    def redeem(self, code: str) -> Session | None:
        with self.lock:
            auth = self.authorizations.get(self.codes.get(code, ""))
            if auth is None or auth.used or auth.user is None:
                return None
            auth.used = True
            session = Session(str(uuid.uuid4()), auth.user, auth.aspsp, auth.valid_until, self.now())
            for spec in self.user_data(auth.user).spec.accounts:
                uid = str(uuid.UUID(bytes=hashlib.sha256(f"{session.session_id}|{spec.key}".encode()).digest()[:16]))
                session.accounts[uid] = spec
            self.sessions[session.session_id] = session
            return session

    def session_of(self, uid: str) -> Session | None:
        with self.lock:
            for session in self.sessions.values():
                if uid in session.accounts:
                    return session
            return None

    # --- the bank's budget ---------------------------------------------------------------------
    def count_read(self, identity: str) -> int:
        """Count one unattended read of an account today; the number it makes."""
        with self.lock:
            key = (identity, self.today)
            self.reads[key] = self.reads.get(key, 0) + 1
            return self.reads[key]

    def bank_fails(self) -> bool:
        """Whether this account request is one of the configured bank failures."""
        with self.lock:
            self.account_requests += 1
            every = self.config.bank_error_every
            return bool(every) and self.account_requests % every == 0

    def new_key(self, listing: Listing) -> str:
        with self.lock:
            key = secrets.token_urlsafe(12)
            self.listings[key] = listing
            return key
