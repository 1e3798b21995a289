"""No access token, identity header, function key or webhook secret in any log record, exception text or answer.

Libraries log what the other side sent: azure-identity writes an identity answer it could not parse at WARNING,
token included. Setting their loggers' levels is not enough (the host, or an operator chasing a problem, may turn
DEBUG on), so every record any logger creates in this process is scrubbed once, as it is made, through the
standard :func:`logging.setLogRecordFactory` hook. What is scrubbed: the secrets this process knows (registered
with :func:`remember`) and anything shaped like a token, whoever logs it.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any

REDACTED = "<redacted>"
# A JWT (base64url of '{"' starts every one), and the value after a token's name in JSON, a form or a header.
_TOKEN_SHAPES = re.compile(
    r"(?P<jwt>eyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*){0,2})"
    r"|(?P<name>\b(?:access_token|refresh_token|client_assertion)[\"']?\s*[:=]\s*[\"']?|\bBearer\s+)"
    r"(?P<value>[^\s\"'&,}]+)"
)
# Every token shape above contains one of these: text without them needs no regex (a substring search is C-fast;
# the alternation above costs tens of microseconds on every answer).
_MARKERS = ("eyJ", "access_token", "refresh_token", "client_assertion", "Bearer")
# Secrets shorter than this are not worth a search (and would scrub ordinary words).
_SHORTEST_SECRET = 8
# Tokens are remembered as they are obtained, the newest kept: twice the Graph clients a process keeps
# (shared.clients.MOST_CLIENTS), so every token a client still holds is among them. The settings' secrets are kept
# for the process's life.
_MOST_TOKENS = 256

_lock = threading.Lock()
_settings: dict[str, None] = {}
_tokens: dict[str, None] = {}
_present: tuple[str, ...] = ()  # every known secret, longest first (one that contains another goes whole), lock-free


def remember(*secrets: str | None) -> None:
    """Scrub these values for as long as the process lives: the identity header, keys and secrets of the settings."""
    _add(_settings, secrets, None)


def remember_token(token: str) -> None:
    """Scrub this token from now on (until it is among the oldest of many: see ``_MOST_TOKENS``)."""
    _add(_tokens, (token,), _MOST_TOKENS)


def _add(kept: dict[str, None], secrets: tuple[str | None, ...], most: int | None) -> None:
    global _present
    fresh = [s for s in secrets if s and len(s) >= _SHORTEST_SECRET and s not in kept]
    if not fresh:
        return
    with _lock:
        for secret in fresh:
            kept[secret] = None
        while most is not None and len(kept) > most:
            del kept[next(iter(kept))]
        # Plain substring replacement: a pattern of every secret would be compiled anew for each token, and Python's
        # re module keeps hundreds of compiled patterns (a megabyte each, with many tenants) in its cache.
        _present = tuple(sorted({*_settings, *_tokens}, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _present:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if any(marker in text for marker in _MARKERS):
        text = _TOKEN_SHAPES.sub(_scrubbed_shape, text)
    return text


def _scrubbed_shape(found: re.Match[str]) -> str:
    return REDACTED if found["jwt"] else f"{found['name']}{REDACTED}"


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the handler's to report, not ours
        return
    record.msg, record.args = redact(message), ()
    if record.exc_info:
        # Formatted and scrubbed here; the exception object itself would carry the secret to any handler.
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install() -> None:
    """Scrub every record created from now on, whichever logger makes it; idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "scrubs_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub(record)
        return record

    factory.scrubs_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
