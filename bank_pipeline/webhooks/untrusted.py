"""Values from unauthenticated requests, made safe to log and store.

Anything a sender controls (a `jku`, a library message quoting the signature header, a forwarded
address) may carry NUL bytes, newlines, terminal escapes or kilobytes. Escaped to printable ASCII
and truncated it cannot forge a log line, break a PostgreSQL text column or fill a disk; the
sender's address is reduced to its network and a hash bucket, so storage per day stays bounded.
"""

from __future__ import annotations

import hashlib
import ipaddress

MAX_CHARS = 80
SOURCE_BUCKETS = 64


def escape(value: object, limit: int = MAX_CHARS) -> str:
    """Printable ASCII only: control and non-ASCII characters as Python escapes (\\x00, \\n,
    \\u202e), at most `limit` characters of the value, then its length and a SHA-256 prefix."""
    if isinstance(value, bytes):
        text = value.decode("latin-1")  # one character per byte, escaped below
    else:
        text = value if isinstance(value, str) else str(value)
    escaped = repr(text[:limit])[1:-1].encode("ascii", "backslashreplace").decode("ascii")
    if len(text) <= limit:
        return escaped
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{escaped}...(+{len(text) - limit} chars, sha256 {digest})"


def source_network(host: str | None) -> str:
    """The sender's network (/24 for IPv4, /48 for IPv6), or "unknown" for anything else."""
    try:
        address = ipaddress.ip_address((host or "").strip())
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def source_bucket(network: str, buckets: int = SOURCE_BUCKETS) -> int:
    """A stable bucket 0..buckets-1 for a network: many senders share a bucket, never a new row."""
    return int.from_bytes(hashlib.sha256(network.encode()).digest()[:4], "big") % buckets
