"""Windows driver update profiles (beta): ``POST .../windowsDriverUpdateProfiles/{id}/syncInventory``, answered
204: Intune refreshes the drivers applicable to the profile's devices.
https://learn.microsoft.com/graph/api/intune-softwareupdate-windowsdriverupdateprofile-syncinventory
"""

from __future__ import annotations

from shared.targets.base import CONFIGURATION_READ_WRITE, Target


class WindowsDriverUpdateProfiles(Target):
    name = "windowsDriverUpdateProfiles"
    version = "beta"
    path = "/deviceManagement/windowsDriverUpdateProfiles"
    action = "syncInventory"
    permission = CONFIGURATION_READ_WRITE
    state_fields = ("displayName", "approvalType", "inventorySyncStatus")
    noun = "driver update profile"


TARGET = WindowsDriverUpdateProfiles()
