"""Timer trigger on ``SYNC_SCHEDULE``: with ``TENANT_IDS``, one ``sync-tenants`` message per tenant; else syncs every
target in ``SYNC_TARGETS`` inline, and fails if any sync failed."""

import typing

import azure.functions as func

from shared import run


# typing.List: the worker checks an output binding's type with typing_inspect, which refuses list[str].
def main(mytimer: func.TimerRequest, tenantqueue: func.Out[typing.List[str]]) -> None:  # noqa: UP006
    messages = run.on_schedule(past_due=mytimer.past_due)
    if messages:
        tenantqueue.set(messages)
