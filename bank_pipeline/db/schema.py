"""The application database, as SQLAlchemy Core tables (one `metadata` for Alembic).

Stages hand data to each other through these tables, so a Dagster run can cover any number of
account × day partitions without an IO manager. Layers, in pipeline order:

    raw_fetches / raw_transactions   what TrueLayer sent, verbatim (audit and replay)
    staged_transactions              normalised rows of one raw row each (+ dedup key once deduped)
    quarantine                       raw rows that failed validation, with the reason (one per bad row)
    transactions                     booked transactions, unique by dedup_key
    transaction_history              earlier versions of corrected ledger rows
    pending_transactions             the account's current pending set, replaced on each fetch
    enrichments                      one categorisation per transaction
    transfers / transfer_rejections  pairs of legs between the user's own accounts; pairs refused
    bank_mandates                    direct debits and standing orders the bank listed at connect time
    recurring_payments               recurring payments found (mandates + the ledger's repeats)

Amounts are signed Decimals (debits negative). Secrets are stored only Fernet-encrypted.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

Amount = Numeric(18, 4)
# BigInteger ids that are still autoincrementing INTEGER PRIMARY KEYs on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


def _ts(name: str, nullable: bool = True) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


# --- connecting a bank -------------------------------------------------------------------

oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state", String(128), primary_key=True),
    Column("code_verifier_enc", Text, nullable=False),  # Fernet token
    Column("redirect_uri", Text, nullable=False),
    Column("providers", Text),
    _ts("created_at", False),
    _ts("expires_at", False),
    _ts("consumed_at"),
)

connections = Table(
    "connections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("provider_id", String(128)),
    Column("provider_name", String(256)),
    Column("credentials_id", String(256)),
    Column("access_token_enc", Text),  # Fernet token, never plain text
    Column("refresh_token_enc", Text),  # Fernet token, never plain text
    _ts("access_expires_at"),
    Column("scopes", Text),
    _ts("consent_created_at"),
    _ts("consent_expires_at"),
    # active | authorization_required | revoked
    Column("status", String(32), nullable=False, server_default="active"),
    Column("status_message", Text),
    # Bumped on every token write: lets concurrent refreshers detect they lost the race.
    Column("token_version", Integer, nullable=False, server_default="0"),
    _ts("created_at", False),
    _ts("updated_at", False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Short, safe Dagster partition key derived from the stable identity (never contains "|").
    Column("account_key", String(32), nullable=False, unique=True),
    # Stable across re-authentication: "iban:GB..", "sort:040004:12345678", "card:<provider>:<last4>:<name>"
    Column("identity", String(256), nullable=False, unique=True),
    Column("connection_id", Id, ForeignKey("connections.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # account | card
    Column("provider_account_id", String(256), nullable=False),  # TrueLayer's id, may change
    Column("provider_id", String(128)),
    Column("account_type", String(64)),
    Column("display_name", String(256)),
    Column("currency", String(3)),
    Column("active", Boolean, nullable=False, server_default="1"),
    _ts("last_synced_at"),
    Column("last_failure_run_id", String(64)),
    Column("last_failure_message", Text),
    _ts("last_failure_at"),
    _ts("created_at", False),
    _ts("updated_at", False),
)

# --- landing: what TrueLayer sent ------------------------------------------------------------

raw_fetches = Table(
    "raw_fetches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # booked | pending
    Column("window_from", Date, nullable=False),
    Column("window_to", Date, nullable=False),
    Column("run_id", String(64)),
    _ts("fetched_at", False),
    Column("http_status", Integer),
    Column("api_calls", Integer, nullable=False, server_default="1"),
    Column("body", Text),  # the response body exactly as received
    Column("error", Text),
    Index("ix_raw_fetches_account_window", "account_id", "kind", "window_from", "window_to"),
)

raw_transactions = Table(
    "raw_transactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fetch_id", Id, ForeignKey("raw_fetches.id"), nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("status", String(16), nullable=False),  # booked | pending
    Column("position", Integer, nullable=False),  # index in the response's results
    # Local date part of the timestamp when it parses; else the fetch window's last day.
    Column("partition_date", Date, nullable=False),
    Column("payload", Text, nullable=False),  # the row as JSON text, verbatim
    UniqueConstraint("fetch_id", "position", name="uq_raw_transactions_fetch_position"),
    Index("ix_raw_transactions_account_date", "account_id", "partition_date"),
)

# --- normalise / dedup ----------------------------------------------------------------------

staged_transactions = Table(
    "staged_transactions",
    metadata,
    Column("raw_transaction_id", Id, ForeignKey("raw_transactions.id"), primary_key=True),
    Column("fetch_id", Id, nullable=False),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("transaction_id", String(256), nullable=False),  # TrueLayer's, unstable
    Column("normalised_provider_transaction_id", String(256)),
    Column("provider_transaction_id", String(256)),
    Column("booking_date", Date, nullable=False),
    _ts("booked_at", False),  # UTC instant
    Column("amount", Amount, nullable=False),  # signed: debits negative
    Column("currency", String(3), nullable=False),
    Column("direction", String(8), nullable=False),  # debit | credit
    Column("description", Text, nullable=False),
    Column("merchant_name", Text),
    Column("transaction_category", String(32)),
    Column("transaction_classification", JSON),
    Column("running_balance", Amount),
    Column("running_balance_currency", String(3)),
    Column("dedup_key", String(128)),
    Column("dedup_status", String(16)),  # new | duplicate | corrected (filled by the dedup stage)
    # Comma-separated: text_cleaned (control characters removed), currency_mismatch (≠ the account's)
    Column("flags", String(64)),
    Index("ix_staged_account_date", "account_id", "booking_date"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("raw_transaction_id", Id, ForeignKey("raw_transactions.id"), unique=True),
    Column("fetch_id", Id, ForeignKey("raw_fetches.id")),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("partition_date", Date, nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    _ts("created_at", False),
    _ts("resolved_at"),
    Column("resolution", Text),
    # One entry per distinct bad row of an account: "<status>:n|p:<sha256 of the stable id>" or
    # "<status>:h:<sha256 of the payload without transaction_id>"; re-sightings only count.
    Column("row_key", String(128)),
    Column("seen_count", Integer, nullable=False, server_default="1"),
    _ts("last_seen_at"),
    Index("uq_quarantine_account_row_key", "account_id", "row_key", unique=True),
)

quarantine_sightings = Table(
    "quarantine_sightings",
    metadata,
    # Each raw row that was this bad row again (the first one included): makes re-counting idempotent.
    Column("raw_transaction_id", Id, ForeignKey("raw_transactions.id"), primary_key=True),
    Column("quarantine_id", Id, ForeignKey("quarantine.id"), nullable=False),
    Index("ix_quarantine_sightings_quarantine", "quarantine_id"),
)

# --- the ledger -------------------------------------------------------------------------------

transactions = Table(
    "transactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dedup_key", String(128), nullable=False, unique=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("transaction_id", String(256), nullable=False),  # TrueLayer's id when first seen
    Column("normalised_provider_transaction_id", String(256)),
    Column("provider_transaction_id", String(256)),
    Column("booking_date", Date, nullable=False),
    _ts("booked_at", False),
    Column("amount", Amount, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("description", Text, nullable=False),
    Column("merchant_name", Text),
    Column("transaction_category", String(32)),
    Column("transaction_classification", JSON),
    Column("running_balance", Amount),
    Column("running_balance_currency", String(3)),
    Column("raw_transaction_id", Id),
    Column("run_id", String(64)),
    _ts("loaded_at", False),
    Column("flags", String(64)),  # as staged_transactions.flags
    _ts("corrected_at"),  # last time the bank re-sent it with a different amount/description/date
    Index("ix_transactions_account_date", "account_id", "booking_date"),
)

transaction_history = Table(
    "transaction_history",
    metadata,
    # A ledger row's previous version, kept when the bank corrects it under the same stable id.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("transaction_id", Id, ForeignKey("transactions.id"), nullable=False),
    Column("booking_date", Date, nullable=False),
    _ts("booked_at", False),
    Column("amount", Amount, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("description", Text, nullable=False),
    Column("merchant_name", Text),
    Column("raw_transaction_id", Id),  # the raw row that version came from
    Column("replaced_by_raw_transaction_id", Id, nullable=False),
    Column("run_id", String(64)),  # the run that replaced it
    _ts("replaced_at", False),
    UniqueConstraint("transaction_id", "replaced_by_raw_transaction_id", name="uq_transaction_history_version"),
)

pending_transactions = Table(
    "pending_transactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("transaction_id", String(256), nullable=False),
    Column("booking_date", Date, nullable=False),
    _ts("booked_at", False),
    Column("amount", Amount, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("description", Text, nullable=False),
    Column("merchant_name", Text),
    Column("raw_transaction_id", Id),
    _ts("fetched_at", False),
    # Still pending longer than the configured number of days after its date (load.PendingPolicy).
    Column("stale", Boolean, nullable=False, server_default="0"),
    Index("ix_pending_account", "account_id"),
)

# --- enrichment -------------------------------------------------------------------------------

_ENRICHMENT_FIELDS = (
    ("category", String(64)),
    ("subcategory", String(64)),
    ("merchant", String(256)),
    ("merchant_type", String(64)),
    ("essential", Boolean),
    ("payment_method", String(32)),
    ("confidence", Float),
)


def _enrichment_columns() -> list[Column]:
    return [Column(name, type_) for name, type_ in _ENRICHMENT_FIELDS]


enrichments = Table(
    "enrichments",
    metadata,
    Column("transaction_id", Id, ForeignKey("transactions.id"), primary_key=True),
    *_enrichment_columns(),
    Column("source", String(16), nullable=False),  # override | rule | cache | model | provider
    Column("provider", String(32)),  # offline | anthropic | user
    Column("model", String(64)),
    Column("cache_key", String(512)),
    # Why a label is not the tier's own: "direction_coerced:<was>", "fallback:anthropic", …
    Column("flags", String(256)),
    Column("run_id", String(64)),
    _ts("updated_at", False),
)

enrichment_cache = Table(
    "enrichment_cache",
    metadata,
    Column("cache_key", String(512), primary_key=True),  # normalised description + direction
    *_enrichment_columns(),
    Column("provider", String(32)),
    Column("model", String(64)),
    Column("hit_count", Integer, nullable=False, server_default="0"),
    _ts("created_at", False),
    _ts("last_hit_at"),
)

# Transactions answered provisionally by the offline tiers, waiting for the model: sent when a
# full batch has gathered or the oldest has waited the configured delay (or as a Message Batch).
enrichment_queue = Table(
    "enrichment_queue",
    metadata,
    Column("transaction_id", Id, ForeignKey("transactions.id"), primary_key=True),
    Column("cache_key", String(512)),
    _ts("queued_at", False),
    Column("batch_id", String(128)),  # the Message Batch carrying it, once submitted
    _ts("submitted_at"),
    Index("ix_enrichment_queue_batch", "batch_id"),
)

category_rules = Table(
    "category_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("match_type", String(16), nullable=False),  # key | contains | regex
    Column("pattern", Text, nullable=False),
    Column("direction", String(8)),  # debit | credit | NULL for both
    *_enrichment_columns(),
    Column("priority", Integer, nullable=False, server_default="100"),
    Column("learned_from_transaction_id", Id),
    _ts("created_at", False),
)

category_overrides = Table(
    "category_overrides",
    metadata,
    Column("transaction_id", Id, ForeignKey("transactions.id"), primary_key=True),
    *_enrichment_columns(),
    _ts("created_at", False),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("provider", String(32), nullable=False),
    Column("model", String(64), nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("input_tokens", Integer, nullable=False, server_default="0"),
    Column("output_tokens", Integer, nullable=False, server_default="0"),
    Column("cache_creation_input_tokens", Integer, nullable=False, server_default="0"),
    Column("cache_read_input_tokens", Integer, nullable=False, server_default="0"),
    Column("cost_usd", Numeric(14, 8), nullable=False, server_default="0"),
    Column("latency_ms", Integer),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("outcome", String(32), nullable=False),  # ok | partial | error
    Column("error", Text),
    _ts("created_at", False),
)

# --- what the ledger answers ------------------------------------------------------------------

transfers = Table(
    "transfers",
    metadata,
    # One transfer between two of the user's own accounts: the leg that left and the one that arrived.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("debit_transaction_id", Id, ForeignKey("transactions.id"), nullable=False, unique=True),
    Column("credit_transaction_id", Id, ForeignKey("transactions.id"), nullable=False, unique=True),
    Column("method", String(16), nullable=False),  # identifier | reference | amount | user
    # Each leg's enrichment before it was labelled `transfers`, put back if the pair is rejected.
    Column("debit_previous", JSON),
    Column("credit_previous", JSON),
    Column("run_id", String(64)),
    _ts("created_at", False),
)

transfer_rejections = Table(
    "transfer_rejections",
    metadata,
    # A pair the user said is not a transfer: never proposed again.
    Column("debit_transaction_id", Id, ForeignKey("transactions.id"), primary_key=True),
    Column("credit_transaction_id", Id, ForeignKey("transactions.id"), primary_key=True),
    Column("transfer_id", Id),  # the id the pair had
    _ts("rejected_at", False),
)

# Direct debits and standing orders as the bank listed them (`/direct_debits`, `/standing_orders`),
# fetched at connect time while the user is present (attended calls) and replaced per account.
bank_mandates = Table(
    "bank_mandates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # direct_debit | standing_order
    Column("mandate_key", String(256), nullable=False),  # mandate id, else payee + reference
    Column("name", Text, nullable=False),  # the payee
    Column("reference", Text),
    Column("status", String(32)),
    Column("frequency", String(64)),
    Column("currency", String(3)),
    Column("next_payment_date", Date),
    Column("next_payment_amount", Amount),
    Column("previous_payment_date", Date),
    Column("previous_payment_amount", Amount),
    Column("payload", JSON, nullable=False),  # what the bank sent
    _ts("fetched_at", False),
    UniqueConstraint("account_id", "kind", "mandate_key", name="uq_bank_mandates_account_kind_key"),
)

# The `recurring_payments` asset: one row per pattern, upserted by `pattern_key` so ids (and the
# user's dismissals) survive re-runs.
recurring_payments = Table(
    "recurring_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("pattern_key", String(512), nullable=False, unique=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False),
    Column("source", String(16), nullable=False),  # direct_debit | standing_order | detected
    Column("payee", Text, nullable=False),
    Column("direction", String(8), nullable=False),  # debit | credit
    Column("cadence", String(16), nullable=False),  # weekly | monthly | quarterly | annual
    Column("state", String(8), nullable=False),  # early | mature | ended
    Column("occurrences", Integer, nullable=False),
    Column("first_date", Date, nullable=False),
    Column("last_date", Date, nullable=False),
    Column("last_amount", Amount, nullable=False),
    Column("next_date", Date, nullable=False),
    Column("next_amount", Amount, nullable=False),
    Column("variable_amount", Boolean, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("transaction_ids", JSON, nullable=False),
    Column("dismissed", Boolean, nullable=False, server_default="0"),
    _ts("dismissed_at"),
    Column("run_id", String(64)),
    _ts("computed_at", False),
)

# --- automation -------------------------------------------------------------------------------

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(256), nullable=False, unique=True),
    Column("event_type", String(128), nullable=False),
    Column("provider_account_id", String(256)),
    Column("payload", Text, nullable=False),
    _ts("received_at", False),
    _ts("processed_at"),
    Column("run_key", String(256)),
)

# Refused webhook requests, counted (never one row per request: a flood must not grow the table).
# One row per UTC day, status, reason (a fixed phrase) and source bucket (a hash of the sender's
# network, 0..63), so rows per day are bounded; sample_* hold the first sender/detail, escaped.
webhook_rejections = Table(
    "webhook_rejections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("source_bucket", Integer, nullable=False),
    Column("count", BigInteger, nullable=False),
    _ts("first_seen", False),
    _ts("last_seen", False),
    Column("sample_source", String(64)),
    Column("sample_detail", String(300)),
    Column("last_body_sha256", String(64)),
    UniqueConstraint("day", "status_code", "reason", "source_bucket", name="uq_webhook_rejections_key"),
)

api_call_budget = Table(
    "api_call_budget",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("day", Date, primary_key=True),  # UTC day
    Column("unattended_calls", Integer, nullable=False, server_default="0"),
)

account_leases = Table(
    "account_leases",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("holder", String(128), nullable=False),  # run id
    # Where the holder runs: a lease whose process on this host has died is taken over at once.
    Column("host", String(255)),
    Column("pid", Integer),
    _ts("acquired_at", False),
    _ts("expires_at", False),
)

# --- analytics (downstream of the enriched ledger) ------------------------------------------------

# The `monthly_spending` asset: one row per account × month × category × currency, replaced
# whole per account-month (its Dagster partition). Own-account transfers are left out.
monthly_spending = Table(
    "monthly_spending",
    metadata,
    Column("account_id", Id, ForeignKey("accounts.id"), primary_key=True),
    Column("month", Date, primary_key=True),  # the month's first day
    Column("category", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("income", Amount, nullable=False),  # credits, positive
    Column("spending", Amount, nullable=False),  # debits, as a positive figure
    Column("net", Amount, nullable=False),  # income - spending
    Column("transactions", Integer, nullable=False),
    Column("run_id", String(64)),
    _ts("computed_at", False),
    Index("ix_monthly_spending_month", "month"),
)

# --- alerts to the person (bank_pipeline/alerts) ----------------------------------------------------

# One row per cause (a failed run, a consent about to end, …): the unique cause is what makes an
# alert go out once across retries, partitions and sensor ticks. `delivered_to` lists the channels
# (hashes of their redacted URLs, never a secret) that have it; the rest are retried later.
alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("cause", String(512), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("delivered_to", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    _ts("created_at", False),
    _ts("next_attempt_at"),
    _ts("sent_at"),
    Index("ix_alerts_sent_at", "sent_at"),
)
