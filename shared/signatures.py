"""Who may trigger a sync when ``WEBHOOK_HMAC_SECRET`` is set: a request signed by a sender that holds the secret.

Two schemes, one secret:

- Standard Webhooks (https://www.standardwebhooks.com/): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``). The key is the
  base64-decoded secret after an optional ``whsec_`` prefix, as the scheme's reference libraries read it. The
  timestamp must be within 5 minutes and an id is accepted once per instance, so a captured request cannot be
  replayed (a delivery answered 5xx may be retried with its id, as the scheme's senders do). Preferred.
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
from typing import NamedTuple

from shared.errors import InvalidRequest, InvalidSignature
from shared.process import PROCESS

log = logging.getLogger(__name__)

GITHUB_HEADER = "X-Hub-Signature-256"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
TOLERANCE_SECONDS = 300
FUNCTION_KEY_PARAMETER = "code"


class ReplayGuard:
    """The ``webhook-id``s of this instance's deliveries within the timestamp tolerance (older ones need no memory,
    since their timestamps are refused anyway).

    An id is held while its delivery is handled, and kept as used only once it was answered 2xx or 4xx: a 5xx
    (Graph throttled, the identity down) tells the sender to retry, and Standard Webhooks senders retry with the
    same id, so such an id is let go again.
    """

    def __init__(self, window: float = 2 * TOLERANCE_SECONDS) -> None:
        self._window = window
        self._seen: dict[str, tuple[float, bool]] = {}  # id -> (when, still being handled)
        self._lock = threading.Lock()

    def claim(self, webhook_id: str) -> None:
        """Hold ``webhook_id`` for this delivery; raise when it was used, or is being handled right now."""
        now = time.monotonic()
        with self._lock:
            for old in [i for i, (at, _) in self._seen.items() if now - at > self._window]:
                del self._seen[old]
            held = self._seen.get(webhook_id)
            if held is None:
                self._seen[webhook_id] = (now, True)
                return
        if held[1]:
            log.warning("Webhook request refused: a delivery with the same webhook-id is being handled")
            raise InvalidRequest(
                "webhook-id", "a delivery with this id is being handled now; retry once it is answered", status=409
            )
        log.warning("Webhook request refused: a webhook-id already used on this instance")
        raise InvalidSignature("webhook-id", "was already used: a signed request is accepted once")

    def settle(self, webhook_id: str, status: int) -> None:
        """The delivery was answered ``status``: its id is used, unless the answer asked the sender to retry."""
        with self._lock:
            if status >= 500:
                self._seen.pop(webhook_id, None)
            elif webhook_id in self._seen:
                self._seen[webhook_id] = (self._seen[webhook_id][0], False)


class Delivery(NamedTuple):
    """A signed delivery being handled: :meth:`settle` it with the status it was answered."""

    webhook_id: str
    replays: ReplayGuard

    def settle(self, status: int) -> None:
        self.replays.settle(self.webhook_id, status)


def verify_request(
    secret: str | None,
    headers: Mapping[str, str],
    body: bytes,
    params: Mapping[str, str],
    replays: ReplayGuard | None = None,
) -> Delivery | None:
    """Raise unless the request is signed with ``secret`` (nothing is checked when no secret is set). A Standard
    Webhooks delivery comes back as a :class:`Delivery`, its id held until it is settled with the answer's status
    (``replays``: the process's own guard unless given)."""
    if secret is None:
        return None
    replays = replays or PROCESS.held("webhook replays", ReplayGuard)
    lowered = {name.lower(): value for name, value in headers.items()}
    delivery = None
    if any(name in lowered for name in STANDARD_HEADERS):
        delivery = Delivery(_verify_standard(secret, lowered, body), replays)
    else:
        _verify_github(secret, lowered.get(GITHUB_HEADER.lower()), body)
    unsigned = sorted(name for name in params if name != FUNCTION_KEY_PARAMETER)
    if unsigned:
        raise InvalidRequest(
            unsigned[0],
            f"query parameters ({', '.join(unsigned)}) are not covered by the signature, so with WEBHOOK_HMAC_SECRET "
            "set they are refused: put them in the signed JSON body",
        )
    if delivery is not None:
        replays.claim(delivery.webhook_id)
    return delivery


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


def _verify_standard(secret: str, headers: Mapping[str, str], body: bytes) -> str:
    """The delivery's ``webhook-id``, once its timestamp and signature are good."""
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
    expected = _standard_digest(key, webhook_id, timestamp, body) if key else None
    if expected is None or not any(_matches(expected, entry) for entry in signatures.split()):
        log.warning("Webhook request refused: webhook-signature does not match")
        raise InvalidSignature("webhook-signature", "does not match the request (v1,<base64 HMAC-SHA256>)")
    return webhook_id


def _standard_digest(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, b".".join([webhook_id.encode(), timestamp.encode(), body]), hashlib.sha256).digest()


def sign_standard(secret: str, webhook_id: str, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for a body this app sends (notifications), as it verifies those it receives."""
    key = standard_webhooks_key(secret)
    if key is None:
        raise ValueError("the secret is not a Standard Webhooks key (whsec_ and base64)")
    timestamp = str(int(time.time()))
    signature = base64.b64encode(_standard_digest(key, webhook_id, timestamp, body)).decode()
    return {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": f"v1,{signature}"}


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
