"""``sync_tenant``: one queue message, one tenant, a full time budget of its own; and which failures the host retries.

The invocation fails (so the host makes the message visible again after ``visibilityTimeout`` and retries it) only
when trying again may succeed with nothing changed: the identity or Entra unavailable, Graph throttling or failing,
the budget used up with objects left. What only an administrator can fix (consent, a permission, an unknown id)
completes it with one ERROR line that says what to do; so does a message the app cannot use, which is never retried.
"""

from __future__ import annotations

import logging

from shared import dispatch, run
from shared.errors import SyncFailed
from shared.process import PROCESS
from shared.records import SyncReport
from shared.settings import load_settings

log = logging.getLogger(__name__)


class RetryLater(SyncFailed):
    """A queued tenant's sync that may succeed when tried again: failing the invocation makes the host retry it."""


def sync_queued(body: bytes | str, *, dequeue_count: int = 1) -> SyncReport | None:
    """Sync the tenant the message names. A wrong setting raises (:class:`shared.errors.ConfigurationError`): the
    message is retried, and syncs once the setting is fixed (Azure restarts the app when its settings change)."""
    PROCESS.start()
    settings = load_settings()
    try:
        message = dispatch.parse(body, settings)
    except dispatch.BadMessage as exc:
        log.error(
            "%sThe %s message cannot be used, so it is dropped, not retried: %s",
            f"tenant={exc.tenant} " if exc.tenant else "",
            dispatch.QUEUE,
            exc,
        )
        return None
    report = run.sync_and_watch(settings, (message.tenant,), message.targets, message.sync_type)
    problems = [r for r in report.results if r.error is not None]
    if not problems:
        return report
    said = " ".join([report.summary(), *report.failures(), *report.remedies()])
    if any(r.error is not None and r.error.transient for r in problems):
        if dequeue_count >= dispatch.MAX_DEQUEUE_COUNT:
            log.error(
                "tenant=%s Not synced after %d tries: the host moves its message to %s, and this tenant waits for the "
                "next cycle. %s",
                message.tenant,
                dequeue_count,
                dispatch.POISON_QUEUE,
                said,
            )
        raise RetryLater(f"tenant {message.tenant}, try {dequeue_count} of {dispatch.MAX_DEQUEUE_COUNT}: {said}")
    log.error("tenant=%s Not synced, and trying again cannot fix it: %s", message.tenant, said)
    return report
