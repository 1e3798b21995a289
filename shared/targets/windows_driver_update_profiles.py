"""Windows driver update profiles (beta): ``POST .../windowsDriverUpdateProfiles/{id}/syncInventory``, answered
204: Intune refreshes the drivers applicable to the profile's devices.
https://learn.microsoft.com/graph/api/intune-softwareupdate-windowsdriverupdateprofile-syncinventory
"""

from __future__ import annotations

from datetime import datetime

from shared.targets.base import CONFIGURATION_READ_WRITE, Standing, SyncObject, Target, WatchRules


class WindowsDriverUpdateProfiles(Target):
    name = "windowsDriverUpdateProfiles"
    version = "beta"
    path = "/deviceManagement/windowsDriverUpdateProfiles"
    action = "syncInventory"
    permission = CONFIGURATION_READ_WRITE
    state_fields = ("displayName", "approvalType", "inventorySyncStatus")
    noun = "driver update profile"

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing:
        """Judged from what the run read when it synced the profiles: a failed inventory sync is a finding."""
        status = obj.fields.get("inventorySyncStatus")
        failed = isinstance(status, dict) and status.get("driverInventorySyncState") == "failure"
        fix = (
            "Sync the profile's inventory again (POST /api/sync/windowsDriverUpdateProfiles with its id), and check "
            "the profile in the Intune admin center: Devices > Windows updates > Driver updates."
        )
        name = f"driver update profile {obj.text('displayName') or obj.id}"
        problem = "its last driver inventory sync failed" if failed else None
        return Standing(self.name, obj.id, name, None, problem, fix if failed else None, "critical" if failed else None)


TARGET = WindowsDriverUpdateProfiles()
