"""The webhook receiver: verifies TrueLayer's `Tl-Signature`, stores events, never starts work.

app = create_webhook_app(engine, jku_allowlist=jku_allowlist_from_env())
pending_events(engine, limit) / mark_processed(engine, event_ids, run_key)   # for the sensor
"""

from bank_pipeline.webhooks.app import DEFAULT_PATH, create_webhook_app
from bank_pipeline.webhooks.events import mark_processed, pending_events
from bank_pipeline.webhooks.server import RunningWebhookServer, run_webhook_server_in_thread, serve
from bank_pipeline.webhooks.settings import default_jku_allowlist, jku_allowlist_from_env

__all__ = [
    "DEFAULT_PATH",
    "RunningWebhookServer",
    "create_webhook_app",
    "default_jku_allowlist",
    "jku_allowlist_from_env",
    "mark_processed",
    "pending_events",
    "run_webhook_server_in_thread",
    "serve",
]
