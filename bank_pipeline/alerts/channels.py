"""The alert channels: Apprise URLs from BANK_PIPELINE_ALERT_URLS (e-mail over SMTP, HTTP push to
ntfy, Gotify, a JSON webhook, Slack, Discord …), sent through Apprise rather than our own senders.

A channel URL holds secrets (an SMTP password, a webhook token in its path). It is only ever
shown as Apprise's privacy form with the path cut off; a channel is known in the database by a
hash of that form. While Apprise sends, its own debug lines (and urllib3's, which print request
paths) are held back, and every error text we keep is scrubbed of the URL's secret parts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

from bank_pipeline.config import ALERT_URLS_ENV, ConfigError, alert_urls

log = logging.getLogger(__name__)

SEND_TIMEOUT = 10  # seconds per channel: a receiver that hangs must not hold a sensor tick long
_QUIET_LOGGERS = ("apprise", "urllib3", "requests")


@dataclass(frozen=True)
class Channel:
    """One configured channel. `shown` is safe to print; `id` is safe to store."""

    shown: str
    id: str
    secrets: tuple[str, ...] = field(repr=False)
    plugin: object = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"Channel({self.shown!r})"


def _secret_parts(url: str) -> tuple[str, ...]:
    """The pieces of a channel URL that may be secret: the URL itself, its user info, path
    segments and query values (longest first, so a part never leaves a longer one half-shown)."""
    parts = {url}
    try:
        split = urlsplit(url)
        for value in (split.username, split.password, split.netloc.rpartition("@")[0]):
            if value:
                parts.update({value, unquote(value)})
        for segment in split.path.split("/"):
            if len(segment) >= 4:
                parts.update({segment, unquote(segment)})
        for _name, value in parse_qsl(split.query):
            if len(value) >= 4:
                parts.add(value)
    except ValueError:
        pass
    return tuple(sorted((p for p in parts if p), key=len, reverse=True))


def _shown(plugin: object) -> str:
    """Apprise's privacy form (passwords and tokens as ****) without path or query, which plain
    webhook URLs use for their tokens: `json://user:****@push.example.org`."""
    private = plugin.url(privacy=True)
    head = re.match(r"^[a-z0-9+.-]+://[^/?#]*", private, re.IGNORECASE)
    return head.group(0) if head else private.split("?")[0]


def parse_channels(urls: tuple[str, ...]) -> list[Channel]:
    """Validate the channel URLs; an unknown one is a ConfigError naming its position and scheme
    (never the URL, which may hold a secret)."""
    channels = []
    for position, url in enumerate(urls, 1):
        with quiet_libraries():
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else "(none)"
            raise ConfigError(
                f"{ALERT_URLS_ENV}: channel {position} is not a URL Apprise can send to (scheme {scheme[:20]!r}); "
                "see docs/consent-and-alerts.md"
            )
        plugin.socket_read_timeout = plugin.socket_connect_timeout = SEND_TIMEOUT
        shown = _shown(plugin)
        channel_id = hashlib.sha256(plugin.url(privacy=True).encode()).hexdigest()[:16]
        channels.append(Channel(shown, channel_id, _secret_parts(url), plugin))
    return channels


def channels_from_env() -> list[Channel]:
    return parse_channels(alert_urls())


def redact(text: str, channels: list[Channel]) -> str:
    """`text` without any secret part of the channels' URLs."""
    for channel in channels:
        for part in channel.secrets:
            text = text.replace(part, "***")
    return text


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Apprise and urllib3 log request URLs (webhook tokens) at debug level: held at WARNING while
    a channel is built or sends, whatever `-v` set."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def send(channel: Channel, title: str, body: str, channels: list[Channel]) -> str | None:
    """Send one alert on one channel: None when it went out, else why not (scrubbed of secrets).
    Never raises: an unreachable receiver is the outbox's to retry."""
    with quiet_libraries(), apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            # Through an Apprise object: it converts our plain text for each channel's format
            # (escaped in an HTML e-mail), which a plugin's own notify() does not.
            sender = apprise.Apprise()
            sender.add(channel.plugin)
            ok = sender.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not break the sensor
            ok, captured_error = False, f"{type(exc).__name__}: {exc}"
        else:
            captured_error = ""
        problem = (captured.getvalue().strip() + " " + captured_error).strip()
    if ok:
        return None
    return redact(" ".join(problem.split())[:500] or "the channel refused the alert", channels)
