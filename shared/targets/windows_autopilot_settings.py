"""Windows Autopilot device sync (beta, one object per tenant): ``POST .../windowsAutopilotSettings/sync``,
answered 204; 409 while a sync runs, 429 within 10 minutes of the previous one. Both are Autopilot's own rules,
not failures and not throttling of the tenant: they become skips, and are never retried.
https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotsettings-sync
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.errors import GraphError, GraphThrottled
from shared.targets.base import (
    SERVICE_CONFIG_READ_WRITE,
    Skip,
    Standing,
    SyncObject,
    Target,
    WatchRules,
    graph_datetime,
    later,
    too_soon,
)

MANUAL_SYNC_INTERVAL = timedelta(minutes=10)


class WindowsAutopilotSettings(Target):
    name = "windowsAutopilotSettings"
    version = "beta"
    path = "/deviceManagement/windowsAutopilotSettings"
    action = "sync"
    permission = SERVICE_CONFIG_READ_WRITE
    single = True
    own_statuses = frozenset({409, 429})
    state_fields = ("syncStatus", "lastSyncDateTime", "lastManualSyncTriggerDateTime")
    noun = "Windows Autopilot settings"

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        if obj.text("syncStatus") == "inProgress":
            return Skip("alreadyRunning", "an Autopilot sync is already in progress")
        return too_soon(
            obj.fields.get("lastManualSyncTriggerDateTime"), MANUAL_SYNC_INTERVAL, now, "Autopilot allows a sync"
        )

    def after_refusal(self, error: GraphError, obj: SyncObject, now: datetime) -> Skip | None:
        if error.status == 409:
            return Skip("alreadyRunning", "Graph answered 409: an Autopilot sync is already in progress")
        if error.status == 429:
            last = graph_datetime(obj.fields.get("lastManualSyncTriggerDateTime"))
            wait = timedelta(seconds=error.retry_after if isinstance(error, GraphThrottled) else 600)
            due = later(last, MANUAL_SYNC_INTERVAL) if last else None
            allowed = due if due and due > now else now + wait
            return Skip("tooSoon", "Graph answered 429: Autopilot allows a sync at most once every 10 minutes", allowed)
        return None

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing:
        """Judged from what the run read when it synced Autopilot: a failed sync is a finding."""
        failed = obj.text("syncStatus") == "failed"
        fix = (
            "Check Windows Autopilot in the Intune admin center (Devices > Enrollment > Windows Autopilot > Devices) "
            "and sync again (POST /api/sync/windowsAutopilotSettings)."
        )
        problem = "its last Autopilot sync failed" if failed else None
        return Standing(
            self.name,
            obj.id,
            "Windows Autopilot",
            None,
            problem,
            fix if failed else None,
            "critical" if failed else None,
        )


TARGET = WindowsAutopilotSettings()
