"""Timer trigger: sync every target in ``SYNC_TARGETS`` on ``SYNC_SCHEDULE``; fails if any sync failed."""

import azure.functions as func

from shared import run


def main(mytimer: func.TimerRequest) -> None:
    run.scheduled_sync(past_due=mytimer.past_due)
