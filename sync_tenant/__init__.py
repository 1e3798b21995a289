"""Queue trigger ``sync-tenants``: one message, one tenant's sync; fails only when a retry may succeed."""

import azure.functions as func

from shared import tenant_run


def main(msg: func.QueueMessage) -> None:
    tenant_run.sync_queued(msg.get_body(), dequeue_count=msg.dequeue_count or 1)
