"""`bank-pipeline webhook-server`: receive TrueLayer webhooks and store the verified ones.

Runs with the application database from BANK_PIPELINE_DATABASE_URL and the jku allow-list from
BANK_PIPELINE_WEBHOOK_JKU_ALLOWLIST. It only records events; the Dagster sensor starts runs.
"""

from __future__ import annotations

import argparse
import logging

from bank_pipeline.cli_args import int_between, port
from bank_pipeline.config import Settings

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "webhook-server",
        help="receive TrueLayer webhooks (verify Tl-Signature, store events)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8720, help="port to listen on (default 8720)")
    parser.add_argument(
        "--max-age",
        type=int_between(1, 86400, "a number of seconds"),
        default=300,
        metavar="SECONDS",
        help="reject webhooks whose X-TL-Webhook-Timestamp is older than this (default 300)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bank_pipeline.db import open_database
    from bank_pipeline.webhooks import DEFAULT_PATH, create_webhook_app, jku_allowlist_from_env, serve

    settings = Settings.from_env()
    engine = open_database(settings.database_url)
    allowlist = jku_allowlist_from_env()
    app = create_webhook_app(engine, jku_allowlist=allowlist, max_age_seconds=args.max_age)
    log.info(
        "webhooks at http://%s:%s%s; trusted jku: %s",
        args.host,
        args.port,
        DEFAULT_PATH,
        ", ".join(allowlist),
    )
    serve(app, host=args.host, port=args.port)
    return 0
