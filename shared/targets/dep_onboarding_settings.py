"""Apple Automated Device Enrollment (ADE/DEP) tokens (beta):
``POST .../depOnboardingSettings/{id}/syncWithAppleDeviceEnrollmentProgram``, answered 204. Intune allows a
manual sync at most once every 15 minutes; Graph's own ``lastSyncTriggeredDateTime`` says when the last was.
https://learn.microsoft.com/graph/api/intune-enrollment-deponboardingsetting-syncwithappledeviceenrollmentprogram
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.targets.base import (
    SERVICE_CONFIG_READ_WRITE,
    Skip,
    Standing,
    SyncObject,
    Target,
    expiry_problem,
    graph_datetime,
    too_soon,
)

MANUAL_SYNC_INTERVAL = timedelta(minutes=15)
RENEW = (
    "Download a new server token from Apple Business Manager (or Apple School Manager) with the same Apple ID and "
    "upload it in the Intune admin center: Devices > Enrollment > Apple > Enrollment program tokens."
)


class DepOnboardingSettings(Target):
    name = "depOnboardingSettings"
    version = "beta"
    path = "/deviceManagement/depOnboardingSettings"
    action = "syncWithAppleDeviceEnrollmentProgram"
    permission = SERVICE_CONFIG_READ_WRITE
    state_fields = (
        "tokenName",
        "appleIdentifier",
        "tokenType",
        "lastSuccessfulSyncDateTime",
        "lastSyncTriggeredDateTime",
        "lastSyncErrorCode",
        "syncedDeviceCount",
        "tokenExpirationDateTime",
    )
    noun = "ADE token"

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        return too_soon(obj.fields.get("lastSyncTriggeredDateTime"), MANUAL_SYNC_INTERVAL, now, "Intune allows a sync")

    def standing(self, obj: SyncObject, now: datetime, warning: timedelta) -> Standing:
        expires = graph_datetime(obj.fields.get("tokenExpirationDateTime"))
        problem = expiry_problem(expires, now, warning)
        error = obj.fields.get("lastSyncErrorCode")
        if problem is None and isinstance(error, int) and error != 0:
            problem = f"its last sync with Apple failed (Apple's error code {error})"
        name = f"ADE token {obj.text('tokenName') or ''} ({obj.text('appleIdentifier') or 'unknown Apple ID'})"
        return Standing(self.name, obj.id, name, expires, problem, RENEW if problem else None)


TARGET = DepOnboardingSettings()
