"""Apple VPP / Apple Business Manager location tokens (v1.0): ``POST .../vppTokens/{id}/syncLicenses``, answered
200 with the token. https://learn.microsoft.com/graph/api/intune-onboarding-vpptoken-synclicenses
"""

from __future__ import annotations

from datetime import datetime

from shared.targets.base import (
    SERVICE_CONFIG_READ_WRITE,
    Skip,
    Standing,
    SyncObject,
    Target,
    WatchRules,
    expiry_finding,
    graph_datetime,
)

RENEW = (
    "Download a new token from Apple Business Manager (or Apple School Manager) with the same Apple ID and upload it "
    "in the Intune admin center: Tenant administration > Connectors and tokens > Apple VPP tokens."
)


# What each state Graph documents means for the administrator, and what to do; "valid" is fine, and a value Graph
# has not documented is "not checked", never a finding.
STATE_FIXES = {
    "expired": RENEW,
    "invalid": f"Apple no longer accepts this token. {RENEW}",
    "assignedToExternalMDM": (
        "Another MDM (or another Intune tenant) has claimed this token's location, so Intune cannot manage its "
        "licences. In Apple Business Manager, download the location's token again, upload it in the Intune admin "
        "center (Tenant administration > Connectors and tokens > Apple VPP tokens), and choose to take control."
    ),
    "duplicateLocationId": (
        "The same Apple Business Manager location is uploaded as two tokens. Delete the duplicate in the Intune "
        "admin center: Tenant administration > Connectors and tokens > Apple VPP tokens."
    ),
}
SYNC_FAILED_FIX = (
    "Sync it again (POST /api/sync/vppTokens with its id); if it keeps failing, download a new token from Apple "
    "Business Manager and upload it in the Intune admin center."
)


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
            return Skip("notEligible", f"the token's state is {state or 'unknown'}, not valid. {RENEW}")
        if obj.text("lastSyncStatus") == "inProgress":
            return Skip("alreadyRunning", "a license sync of this token is already in progress")
        return None

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing:
        expires = graph_datetime(obj.fields.get("expirationDateTime"))
        name = f"VPP token {obj.text('organizationName') or ''} ({obj.text('appleId') or 'unknown Apple ID'})"
        problem, severity = expiry_finding(expires, now, rules)
        fix = RENEW if problem else None
        state = obj.text("state")
        if state in STATE_FIXES and not (state == "expired" and problem):
            problem, severity, fix = f"its state is {state}", "critical", STATE_FIXES[state]
        elif problem is None and obj.text("lastSyncStatus") == "failed":
            problem, severity, fix = "its last licence sync failed", "critical", SYNC_FAILED_FIX
        return Standing(self.name, obj.id, name, expires, problem, fix, severity)


TARGET = VppTokens()
