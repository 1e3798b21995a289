"""Apple VPP / Apple Business Manager location tokens (v1.0): ``POST .../vppTokens/{id}/syncLicenses``, answered
200 with the token. https://learn.microsoft.com/graph/api/intune-onboarding-vpptoken-synclicenses
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
)

RENEW = (
    "Download a new token from Apple Business Manager (or Apple School Manager) with the same Apple ID and upload it "
    "in the Intune admin center: Tenant administration > Connectors and tokens > Apple VPP tokens."
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

    def standing(self, obj: SyncObject, now: datetime, warning: timedelta) -> Standing:
        expires = graph_datetime(obj.fields.get("expirationDateTime"))
        state = obj.text("state")
        problem = expiry_problem(expires, now, warning)
        if state != "valid" and not (state == "expired" and problem):
            problem = f"its state is {state or 'unknown'}"
        name = f"VPP token {obj.text('organizationName') or ''} ({obj.text('appleId') or 'unknown Apple ID'})"
        return Standing(self.name, obj.id, name, expires, problem, RENEW if problem else None)


TARGET = VppTokens()
