"""Who may trigger a sync when ``WEBHOOK_HMAC_SECRET`` is set: a request signed by a sender that holds the secret.

Two schemes, one secret:

- Standard Webhooks (https://www.standardwebhooks.com/): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``). The key is the
  base64-decoded secret after an optional ``whsec_`` prefix, as the scheme's reference libraries read it. The
  timestamp must be within 5 minutes and an id is accepted once per instance, so a captured request cannot be
  replayed. Preferred.
- GitHub's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``, keyed with the secret's text as is.
  It covers the body only, with no timestamp: a captured request can be replayed.

A request that carries Standard Webhooks headers is judged by them alone, so adding a GitHub signature to a
replayed request does not get it past the replay check. The query string is covered by neither scheme, so with a
secret set every query parameter except the function key (``code``) is refused: the body says what to do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Mapping

from shared.errors import InvalidRequest, InvalidSignature

log = logging.getLogger(__name__)

GITHUB_HEADER = "X-Hub-Signature-256"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
TOLERANCE_SECONDS = 300
FUNCTION_KEY_PARAMETER = "code"


class ReplayGuard:
    """The ``webhook-id``s accepted on this instance within the timestamp tolerance; older ones need no memory,
    since their timestamps are refused anyway."""

    def __init__(self, window: float = 2 * TOLERANCE_SECONDS) -> None:
        self._window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, webhook_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            for old in [i for i, at in self._seen.items() if now - at > self._window]:
                del self._seen[old]
            if webhook_id in self._seen:
                return False
            self._seen[webhook_id] = now
            return True


_REPLAYS = ReplayGuard()


def verify_request(
    secret: str | None,
    headers: Mapping[str, str],
    body: bytes,
    params: Mapping[str, str],
    replays: ReplayGuard = _REPLAYS,
) -> None:
    """Raise unless the request is signed with ``secret`` (nothing is checked when no secret is set)."""
    if secret is None:
        return
    lowered = {name.lower(): value for name, value in headers.items()}
    if any(name in lowered for name in STANDARD_HEADERS):
        _verify_standard(secret, lowered, body, replays)
    else:
        _verify_github(secret, lowered.get(GITHUB_HEADER.lower()), body)
    unsigned = sorted(name for name in params if name != FUNCTION_KEY_PARAMETER)
    if unsigned:
        raise InvalidRequest(
            unsigned[0],
            f"query parameters ({', '.join(unsigned)}) are not covered by the signature, so with WEBHOOK_HMAC_SECRET "
            "set they are refused: put them in the signed JSON body",
        )


def _verify_github(secret: str, provided: str | None, body: bytes) -> None:
    if not provided:
        log.warning("Webhook request refused: no signature")
        raise InvalidSignature(
            GITHUB_HEADER,
            "is missing: sign the request with WEBHOOK_HMAC_SECRET, with Standard Webhooks headers (webhook-id, "
            "webhook-timestamp, webhook-signature) or with X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>",
        )
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), provided.strip().lower().encode("utf-8", "replace")):
        log.warning("Webhook request refused: %s does not match the body", GITHUB_HEADER)
        raise InvalidSignature(GITHUB_HEADER, "does not match the body")


def _verify_standard(secret: str, headers: Mapping[str, str], body: bytes, replays: ReplayGuard) -> None:
    webhook_id, timestamp, signatures = (headers.get(name, "").strip() for name in STANDARD_HEADERS)
    for name, value in zip(STANDARD_HEADERS, (webhook_id, timestamp, signatures), strict=True):
        if not value:
            raise InvalidSignature(name, "is missing: a Standard Webhooks request carries all three webhook-* headers")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise InvalidSignature("webhook-timestamp", "must be Unix time in whole seconds")
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        log.warning("Webhook request refused: webhook-timestamp is more than %d s off", TOLERANCE_SECONDS)
        raise InvalidSignature(
            "webhook-timestamp", f"is more than {TOLERANCE_SECONDS // 60} minutes from this instance's clock"
        )
    key = standard_webhooks_key(secret)
    signed = b".".join([webhook_id.encode(), timestamp.encode(), body])
    expected = hmac.new(key, signed, hashlib.sha256).digest() if key else None
    if expected is None or not any(_matches(expected, entry) for entry in signatures.split()):
        log.warning("Webhook request refused: webhook-signature does not match")
        raise InvalidSignature("webhook-signature", "does not match the request (v1,<base64 HMAC-SHA256>)")
    if not replays.first_use(webhook_id):
        log.warning("Webhook request refused: a webhook-id already used on this instance")
        raise InvalidSignature("webhook-id", "was already used: a signed request is accepted once")


def standard_webhooks_key(secret: str) -> bytes | None:
    """The HMAC key the Standard Webhooks libraries derive from the secret; None if it is not base64 at all."""
    encoded = secret.removeprefix("whsec_")
    try:
        # As the reference libraries decode it: padding added, characters outside the alphabet skipped.
        return base64.b64decode(encoded + "==") or None
    except (binascii.Error, ValueError):
        return None


def _matches(expected: bytes, entry: str) -> bool:
    version, _, encoded = entry.partition(",")
    if version != "v1":
        return False
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(expected, given)
