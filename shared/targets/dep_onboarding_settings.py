"""Apple Automated Device Enrollment (ADE/DEP) tokens (beta):
``POST .../depOnboardingSettings/{id}/syncWithAppleDeviceEnrollmentProgram``, answered 204. Intune allows a
manual sync at most once every 15 minutes; Graph's own ``lastSyncTriggeredDateTime`` says when the last was.
https://learn.microsoft.com/graph/api/intune-enrollment-deponboardingsetting-syncwithappledeviceenrollmentprogram
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.targets.base import SERVICE_CONFIG_READ_WRITE, Skip, SyncObject, Target, too_soon

MANUAL_SYNC_INTERVAL = timedelta(minutes=15)


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


TARGET = DepOnboardingSettings()
