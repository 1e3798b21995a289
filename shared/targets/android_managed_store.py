"""Managed Google Play app sync (beta, one object per tenant):
``POST .../androidManagedStoreAccountEnterpriseSettings/syncApps``, answered 204; possible only while the tenant
is bound to Managed Google Play.
https://learn.microsoft.com/graph/api/intune-androidforwork-androidmanagedstoreaccountenterprisesettings-syncapps
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.targets.base import CONFIGURATION_READ_WRITE, Skip, Standing, SyncObject, Target

BOUND = ("bound", "boundAndValidated")
HEALTHY_APP_SYNC = ("success", "none")


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

    def standing(self, obj: SyncObject, now: datetime, warning: timedelta) -> Standing:
        """Not bound is no finding (the tenant does not use Managed Google Play); a failing app sync is."""
        status = obj.text("lastAppSyncStatus")
        problem = None
        if obj.text("bindStatus") in BOUND and status not in HEALTHY_APP_SYNC:
            problem = f"its last app sync failed ({status})"
        fix = (
            "Check the binding in the Intune admin center: Tenant administration > Connectors and tokens > "
            "Managed Google Play (a credentialsNotValid status needs the owner account to sign in again)."
        )
        return Standing(self.name, obj.id, "Managed Google Play", None, problem, fix if problem else None)


TARGET = AndroidManagedStoreAccountEnterpriseSettings()
