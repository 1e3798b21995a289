"""Timer trigger: sync the Exchange connectors on ``SYNC_SCHEDULE``; fails the invocation if any sync failed."""

import azure.functions as func

from shared import run


def main(mytimer: func.TimerRequest) -> None:
    run.scheduled_sync(past_due=mytimer.past_due)
