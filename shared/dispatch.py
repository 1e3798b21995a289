"""Many tenants on the Functions engine: one Storage queue message per tenant on ``sync-tenants``, each synced by its
own ``sync_tenant`` invocation. The timer and the webhook only put the messages (through their queue output
bindings); the host retries a failed invocation and, after the last try, moves its message to
``sync-tenants-poison``.

A message is read back here, strictly: ``sync_tenant`` acts on nothing this module has not accepted.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from shared.errors import SyncAppError, json_type
from shared.settings import Settings
from shared.targets import SYNC_TYPES, TARGETS
from shared.targets.base import GUID

log = logging.getLogger(__name__)

QUEUE = "sync-tenants"
POISON_QUEUE = f"{QUEUE}-poison"
# host.json's extensions.queues.maxDequeueCount (tests/test_dispatch.py keeps them equal): the try after which the
# host moves a failed message to the poison queue.
MAX_DEQUEUE_COUNT = 5
# Far more than a message needs; anything longer is not one of ours.
MAX_MESSAGE_CHARS = 4096


class BadMessage(SyncAppError):
    """A queue message ``sync_tenant`` cannot use; retrying it would fail the same way. ``tenant``: the tenant id it
    named, when it named one."""

    def __init__(self, message: str, *, tenant: str | None = None) -> None:
        super().__init__(message)
        self.tenant = tenant


class TenantMessage(NamedTuple):
    """One tenant's sync, as queued: ``targets`` None means every enabled target and the expiry watch."""

    tenant: str
    run_id: str | None = None
    queued_at: str | None = None
    targets: tuple[str, ...] | None = None
    sync_type: str | None = None


class Dispatch(NamedTuple):
    """What a dispatching invocation puts on the queue, and the run id that ties the messages together."""

    run_id: str
    messages: list[str]


def dispatch(
    tenants: Sequence[str | None],
    *,
    by: str,
    targets: Sequence[str] | None = None,
    sync_type: str | None = None,
) -> Dispatch:
    """One message per tenant, with a run id and the time they were queued; logged once, naming who queued them."""
    run_id = uuid.uuid4().hex
    queued_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    common: dict[str, Any] = {"runId": run_id, "queuedAt": queued_at}
    if targets is not None:
        common["targets"] = list(targets)
    if sync_type is not None:
        common["syncType"] = sync_type
    messages = [json.dumps({"tenant": tenant, **common}) for tenant in tenants if tenant]
    log.info("Queued %d tenants on %s (run %s, %s)", len(messages), QUEUE, run_id, by)
    return Dispatch(run_id, messages)


def parse(body: bytes | str, settings: Settings) -> TenantMessage:
    """The message as ``sync_tenant`` may act on it; :class:`BadMessage` naming what is wrong. A tenant outside
    ``TENANT_IDS`` is refused here, before anything is asked of the identity, Entra or Graph."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if len(text) > MAX_MESSAGE_CHARS:
        raise BadMessage(f"the message is {len(text)} characters long; a tenant's message is under {MAX_MESSAGE_CHARS}")
    try:
        payload = json.loads(text)
    except ValueError:
        raise BadMessage(f"the message is not JSON: {text[:60]!r}") from None
    if not isinstance(payload, dict):
        raise BadMessage(f'the message must be a JSON object with "tenant", not {json_type(payload)}')
    tenant = payload.get("tenant")
    if not isinstance(tenant, str) or not GUID.fullmatch(tenant):
        shown = "missing" if tenant is None else f"{str(tenant)[:60]!r}, not a tenant id (a GUID)"
        raise BadMessage(f'the message\'s "tenant" is {shown}')
    tenant = tenant.lower()
    if not settings.tenants:
        raise BadMessage(
            "TENANT_IDS is not set: this deployment syncs no customer tenant from the queue", tenant=tenant
        )
    if tenant not in settings.tenants:
        raise BadMessage(f"tenant {tenant} is not one of this deployment's tenants (TENANT_IDS)", tenant=tenant)
    return TenantMessage(
        tenant,
        _text(payload, "runId", tenant),
        _text(payload, "queuedAt", tenant),
        _targets(payload.get("targets"), settings, tenant),
        _sync_type(payload.get("syncType"), tenant),
    )


def _text(payload: dict[str, Any], name: str, tenant: str) -> str | None:
    value = payload.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > 64):
        raise BadMessage(f'the message\'s "{name}" must be a short string', tenant=tenant)
    return value


def _targets(value: object, settings: Settings, tenant: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise BadMessage('the message\'s "targets" must be a non-empty array of target names', tenant=tenant)
    unknown = [name for name in value if name not in TARGETS or name not in settings.targets]
    if unknown:
        raise BadMessage(
            f"{', '.join(repr(n[:60]) for n in unknown)} is not an enabled target (SYNC_TARGETS: "
            f"{', '.join(settings.targets)})",
            tenant=tenant,
        )
    return tuple(dict.fromkeys(value))


def _sync_type(value: object, tenant: str) -> str | None:
    if value is not None and value not in SYNC_TYPES:
        raise BadMessage(f'the message\'s "syncType" must be one of {", ".join(SYNC_TYPES)}', tenant=tenant)
    return value if isinstance(value, str) else None
