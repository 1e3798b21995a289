"""Apple VPP / Apple Business Manager location tokens (v1.0): ``POST .../vppTokens/{id}/syncLicenses``, answered
200 with the token. https://learn.microsoft.com/graph/api/intune-onboarding-vpptoken-synclicenses
"""

from __future__ import annotations

from datetime import datetime

from shared.targets.base import SERVICE_CONFIG_READ_WRITE, Skip, SyncObject, Target


class VppTokens(Target):
    name = "vppTokens"
    version = "v1.0"
    path = "/deviceAppManagement/vppTokens"
    action = "syncLicenses"
    permission = SERVICE_CONFIG_READ_WRITE
    state_fields = (
        "organizationName",
        "appleId",
        "vppTokenAccountType",
        "state",
        "lastSyncStatus",
        "lastSyncDateTime",
        "expirationDateTime",
    )
    noun = "VPP token"

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        state = obj.text("state")
        if state != "valid":
            return Skip(
                "notEligible",
                f"the token's state is {state or 'unknown'}, not valid: download a new token from Apple Business "
                "Manager (or School Manager) and upload it in the Intune admin center (Tenant administration > "
                "Connectors and tokens > Apple VPP tokens)",
            )
        if obj.text("lastSyncStatus") == "inProgress":
            return Skip("alreadyRunning", "a license sync of this token is already in progress")
        return None


TARGET = VppTokens()
