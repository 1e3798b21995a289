"""Managed Google Play app sync (beta, one object per tenant):
``POST .../androidManagedStoreAccountEnterpriseSettings/syncApps``, answered 204; possible only while the tenant
is bound to Managed Google Play.
https://learn.microsoft.com/graph/api/intune-androidforwork-androidmanagedstoreaccountenterprisesettings-syncapps
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.setting_reader import Setting, SettingReader
from shared.targets.base import (
    CONFIGURATION_READ_WRITE,
    Skip,
    Standing,
    SyncObject,
    Target,
    WatchRules,
    stale_since,
)

BOUND = ("bound", "boundAndValidated")
HEALTHY_APP_SYNC = ("success", "none")
STALE = timedelta(days=7)  # MANAGED_PLAY_SYNC_STALE_DAYS' default
WHERE = "the Intune admin center: Tenant administration > Connectors and tokens > Managed Google Play"
# Graph's failing app sync statuses, each with what to do; any other value is "not checked", never a finding.
STATUS_FIXES = {
    "credentialsNotValid": f"The binding's Google account no longer signs in: have its owner sign in again in {WHERE}.",
    "androidForWorkApiError": f"Google's API refused the app sync: sync again in {WHERE}; if it persists, re-bind.",
    "managementServiceError": f"Intune's service failed the app sync: sync again later in {WHERE}.",
    "unknownError": f"The app sync failed for a reason Google did not give: sync again in {WHERE}.",
}


class AndroidManagedStoreAccountEnterpriseSettings(Target):
    name = "androidManagedStoreAccountEnterpriseSettings"
    version = "beta"
    path = "/deviceManagement/androidManagedStoreAccountEnterpriseSettings"
    action = "syncApps"
    permission = CONFIGURATION_READ_WRITE
    single = True
    state_fields = ("bindStatus", "lastAppSyncDateTime", "lastAppSyncStatus", "ownerUserPrincipalName")
    noun = "Managed Google Play"
    settings = (
        Setting(
            "MANAGED_PLAY_SYNC_STALE_DAYS",
            "`7`",
            "The watch warns when Managed Google Play, bound, has not synced its apps for this many days, 1\u2013365.",
        ),
    )

    def options(self, read: SettingReader) -> timedelta:
        return timedelta(days=read.number("MANAGED_PLAY_SYNC_STALE_DAYS", default=7, low=1, high=365))

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        status = obj.text("bindStatus")
        if status not in BOUND:
            return Skip(
                "notEligible",
                f"the tenant is {status or 'not bound'} to Managed Google Play (apps sync only when it is bound)",
            )
        return None

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing:
        """Not bound is no finding (the tenant does not use Managed Google Play); a failing or stale app sync is."""
        status = obj.text("lastAppSyncStatus")
        name = "Managed Google Play"
        if obj.text("bindStatus") not in BOUND:
            return Standing(self.name, obj.id, name, None)
        if status in STATUS_FIXES:
            return Standing(
                self.name, obj.id, name, None, f"its last app sync failed ({status})", STATUS_FIXES[status], "critical"
            )
        stale = stale_since(obj.fields.get("lastAppSyncDateTime"), now, rules.options.get(self.name) or STALE)
        if status in HEALTHY_APP_SYNC and stale is not None:
            problem = f"it has not synced its apps since {stale.date().isoformat()}"
            fix = f"Sync the apps (POST /api/sync/{self.name}), and check the binding in {WHERE}."
            return Standing(self.name, obj.id, name, None, problem, fix, "warning")
        return Standing(self.name, obj.id, name, None)


TARGET = AndroidManagedStoreAccountEnterpriseSettings()
