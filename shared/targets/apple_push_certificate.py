"""The Apple MDM push (APNs) certificate (v1.0, one object per tenant): watched, never synced. When it expires,
Apple devices stop checking in; renewing it needs the same Apple ID, so the watch names it.
https://learn.microsoft.com/graph/api/resources/intune-devices-applepushnotificationcertificate
"""

from __future__ import annotations

from datetime import datetime

from shared.targets.base import (
    SERVICE_CONFIG_READ_WRITE,
    Standing,
    SyncObject,
    Target,
    WatchRules,
    expiry_finding,
    graph_datetime,
)


class ApplePushNotificationCertificate(Target):
    name = "applePushNotificationCertificate"
    version = "v1.0"
    path = "/deviceManagement/applePushNotificationCertificate"
    action = ""  # watched only: there is no sync
    permission = SERVICE_CONFIG_READ_WRITE
    single = True
    state_fields = ("appleIdentifier", "topicIdentifier", "expirationDateTime", "certificateUploadStatus")
    noun = "Apple push certificate"

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing:
        expires = graph_datetime(obj.fields.get("expirationDateTime"))
        problem, severity = expiry_finding(expires, now, rules)
        apple_id = obj.text("appleIdentifier") or "the Apple ID that created it"
        fix = (
            f"Renew it in Apple's Push Certificates Portal with the same Apple ID ({apple_id}), then upload it in the "
            "Intune admin center: Devices > Enrollment > Apple > Apple MDM Push certificate. A new certificate from "
            "another Apple ID makes every Apple device re-enrol."
        )
        name = f"Apple push certificate ({apple_id})"
        return Standing(self.name, obj.id, name, expires, problem, fix if problem else None, severity)


TARGET = ApplePushNotificationCertificate()
