"""The enrichment cache: normalised description + direction → the answer a model gave, with hits.

Most spending repeats (the same shops, the same bills), so after the first month nearly every
transaction is answered here instead of by a model. An entry is only reused by a model at least
as good as the one that wrote it: offline answers are tied to the knowledge base version that
made them, and an Anthropic run does not reuse offline answers (offline runs do reuse Anthropic's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from bank_pipeline.categories import Category
from bank_pipeline.db import utcnow
from bank_pipeline.db.schema import enrichment_cache
from bank_pipeline.enrich._db import chunks, insert_ignore
from bank_pipeline.enrich.types import ENRICHMENT_FIELDS, Enrichment

PROVIDER_RANK = {"offline": 1, "anthropic": 2}


def _rank(provider: str | None) -> int:
    return PROVIDER_RANK.get(provider or "", 0)


@dataclass(frozen=True)
class CacheEntry:
    key: str
    enrichment: Enrichment

    def usable_by(self, provider: str, model: str, categories: dict[str, Category]) -> bool:
        e = self.enrichment
        if e.category not in categories:
            return False  # the taxonomy changed since
        mine, theirs = _rank(provider), _rank(e.provider)
        if theirs != mine:
            return theirs > mine
        return e.provider != "offline" or e.model == model


def lookup(conn: Connection, keys: list[str]) -> dict[str, CacheEntry]:
    found: dict[str, CacheEntry] = {}
    for part in chunks(sorted(set(keys))):
        for row in conn.execute(
            select(enrichment_cache).where(enrichment_cache.c.cache_key.in_(part))
        ).mappings():
            found[row["cache_key"]] = CacheEntry(
                row["cache_key"],
                Enrichment(
                    **{f: row[f] for f in ENRICHMENT_FIELDS if f != "confidence"},
                    confidence=row["confidence"] or 0.0,
                    source="cache",
                    provider=row["provider"],
                    model=row["model"],
                ),
            )
    return found


def record_hits(conn: Connection, hits: Counter) -> None:
    """Count the hits, updating the entries in key order: runs enriching side by side (the daily
    schedule's groups) hit the same popular entries, and updates in different orders deadlocked
    on PostgreSQL (one run failed at 1,000 accounts)."""
    now = utcnow()
    for key, count in sorted(hits.items()):
        conn.execute(
            update(enrichment_cache)
            .where(enrichment_cache.c.cache_key == key)
            .values(hit_count=enrichment_cache.c.hit_count + count, last_hit_at=now)
        )


def store(conn: Connection, entries: dict[str, Enrichment]) -> int:
    """Write answers; an existing entry is replaced only by an equal or better provider."""
    if not entries:
        return 0
    now = utcnow()
    existing = lookup(conn, list(entries))
    fresh, replace = [], []
    for key, e in entries.items():
        row = {"cache_key": key, **e.fields(), "provider": e.provider, "model": e.model}
        old = existing.get(key)
        if old is None:
            fresh.append({**row, "hit_count": 0, "created_at": now})
        elif _rank(e.provider) >= _rank(old.enrichment.provider):
            replace.append(row)
    insert_ignore(conn, enrichment_cache, sorted(fresh, key=lambda r: r["cache_key"]), ["cache_key"])
    for row in sorted(replace, key=lambda r: r["cache_key"]):  # key order, as record_hits
        values = {k: v for k, v in row.items() if k != "cache_key"}
        conn.execute(
            update(enrichment_cache).where(enrichment_cache.c.cache_key == row["cache_key"]).values(**values)
        )
    return len(fresh) + len(replace)
