"""Apple Automated Device Enrollment (ADE/DEP) tokens (beta):
``POST .../depOnboardingSettings/{id}/syncWithAppleDeviceEnrollmentProgram``, answered 204. Intune allows a
manual sync at most once every 15 minutes; Graph's own ``lastSyncTriggeredDateTime`` says when the last was.
https://learn.microsoft.com/graph/api/intune-enrollment-deponboardingsetting-syncwithappledeviceenrollmentprogram
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.setting_reader import Setting, SettingReader
from shared.targets.base import (
    SERVICE_CONFIG_READ_WRITE,
    Skip,
    Standing,
    SyncObject,
    Target,
    WatchRules,
    expiry_finding,
    graph_datetime,
    stale_since,
    too_soon,
)

MANUAL_SYNC_INTERVAL = timedelta(minutes=15)
STALE = timedelta(days=2)  # ADE_SYNC_STALE_DAYS' default
RENEW = (
    "Download a new server token from Apple Business Manager (or Apple School Manager) with the same Apple ID and "
    "upload it in the Intune admin center: Devices > Enrollment > Apple > Enrollment program tokens."
)


# Apple's error code for terms and conditions an administrator has not accepted yet.
TERMS_NOT_ACCEPTED = 3
TERMS_FIX = (
    "Apple has new terms and conditions: an administrator of Apple Business Manager (or Apple School Manager) must "
    "sign in at business.apple.com (or school.apple.com) and accept them; the next sync then succeeds."
)
SYNC_FAILED_FIX = (
    "Check the token in the Intune admin center (Devices > Enrollment > Apple > Enrollment program tokens) and in "
    "Apple Business Manager; if Apple refuses it, download a new server token and upload it."
)
STALE_FIX = (
    "Intune syncs an ADE token with Apple every 12 hours on its own: check the token in the Intune admin center "
    "(Devices > Enrollment > Apple > Enrollment program tokens) and sync it (POST /api/sync/depOnboardingSettings)."
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
    settings = (
        Setting(
            "ADE_SYNC_STALE_DAYS",
            "`2`",
            "The watch warns when an ADE token's last successful sync with Apple is older than this many days "
            "(Intune syncs every 12 hours on its own), 1\u2013365.",
        ),
    )

    def options(self, read: SettingReader) -> timedelta:
        return timedelta(days=read.number("ADE_SYNC_STALE_DAYS", default=2, low=1, high=365))

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        return too_soon(obj.fields.get("lastSyncTriggeredDateTime"), MANUAL_SYNC_INTERVAL, now, "Intune allows a sync")

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing:
        expires = graph_datetime(obj.fields.get("tokenExpirationDateTime"))
        name = f"ADE token {obj.text('tokenName') or ''} ({obj.text('appleIdentifier') or 'unknown Apple ID'})"
        problem, severity = expiry_finding(expires, now, rules)
        fix = RENEW if problem else None
        error = obj.fields.get("lastSyncErrorCode")
        stale = stale_since(obj.fields.get("lastSuccessfulSyncDateTime"), now, rules.options.get(self.name) or STALE)
        if problem is None and error == TERMS_NOT_ACCEPTED and not isinstance(error, bool):
            problem, severity, fix = (
                "Apple's new terms and conditions are not accepted (Apple's error code 3)",
                "critical",
                TERMS_FIX,
            )
        elif problem is None and isinstance(error, int) and not isinstance(error, bool) and error != 0:
            problem, severity, fix = (
                f"its last sync with Apple failed (Apple's error code {error})",
                "critical",
                SYNC_FAILED_FIX,
            )
        elif problem is None and stale is not None:
            problem = f"it has not synced with Apple since {stale.date().isoformat()}"
            severity, fix = "warning", STALE_FIX
        return Standing(self.name, obj.id, name, expires, problem, fix, severity)


TARGET = DepOnboardingSettings()
