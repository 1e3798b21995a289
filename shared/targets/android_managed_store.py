"""Managed Google Play app sync (beta, one object per tenant):
``POST .../androidManagedStoreAccountEnterpriseSettings/syncApps``, answered 204; possible only while the tenant
is bound to Managed Google Play.
https://learn.microsoft.com/graph/api/intune-androidforwork-androidmanagedstoreaccountenterprisesettings-syncapps
"""

from __future__ import annotations

from datetime import datetime

from shared.targets.base import CONFIGURATION_READ_WRITE, Skip, SyncObject, Target

BOUND = ("bound", "boundAndValidated")


class AndroidManagedStoreAccountEnterpriseSettings(Target):
    name = "androidManagedStoreAccountEnterpriseSettings"
    version = "beta"
    path = "/deviceManagement/androidManagedStoreAccountEnterpriseSettings"
    action = "syncApps"
    permission = CONFIGURATION_READ_WRITE
    single = True
    state_fields = ("bindStatus", "lastAppSyncDateTime", "lastAppSyncStatus", "ownerUserPrincipalName")
    noun = "Managed Google Play"

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        status = obj.text("bindStatus")
        if status not in BOUND:
            return Skip(
                "notEligible",
                f"the tenant is {status or 'not bound'} to Managed Google Play (apps sync only when it is bound)",
            )
        return None


TARGET = AndroidManagedStoreAccountEnterpriseSettings()
