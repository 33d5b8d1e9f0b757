"""Pooled SQLAlchemy engines of Dagster's storages, made safe across `fork`.

Why: the storages in sqlite_storage.py and postgres_storage.py keep connections open (Dagster's
stock ones open one per statement). A process forked after they connected (a Celery prefork
worker, a multiprocess executor) must neither use nor close its parent's connections: it drops
them from its pools at fork and opens its own (SQLAlchemy's documented `dispose(close=False)`).
"""

from __future__ import annotations

import os
import weakref

import sqlalchemy as sa

_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def forget_at_fork(engine: sa.Engine) -> sa.Engine:
    """Register `engine` so that a forked child starts with an empty pool; returns it."""
    _ENGINES.add(engine)
    return engine


def _forget_parent_connections() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parent_connections)
