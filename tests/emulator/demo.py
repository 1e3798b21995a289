"""The demo's tenant and calls (make demo): which targets it syncs, what its tenant holds, what it asks the
webhook. Per target, like the rest of the emulator's target files."""

from __future__ import annotations

from typing import Any

from tests.emulator.core import Emulator
from tests.emulator.names import (
    CONFIG_READ_WRITE_ROLE,
    CUSTOMER_TENANT_IDS,
    MANAGED_READ_ROLE,
    PRIVILEGED_ROLE,
    READ_WRITE_ROLE,
)
from tests.emulator.targets import VPP_IDS, DeviceFleet, apns_certificate, connector, sample_connectors, vpp_token

# What the demo syncs unless the shell sets SYNC_TARGETS: the targets of the Apple and Windows syncs the demo's
# tenant uses. The emulator serves every target (SYNC_TARGETS=managedDevices make demo tries the devices).
DEMO_TARGETS = "exchangeConnectors,vppTokens,depOnboardingSettings,windowsAutopilotSettings"
# The demo identity holds every permission a target needs, so whichever targets the shell enables can sync.
DEMO_ROLES = (READ_WRITE_ROLE, CONFIG_READ_WRITE_ROLE, MANAGED_READ_ROLE, PRIVILEGED_ROLE)
# What the README promises of the demo's push certificate.
DEMO_CERTIFICATE_DAYS = 12
# The demo's devices live in a write window scaled from Intune's 20 s to 2 s, and the app is told the same.
DEVICE_TIME_SCALE = 0.1


def demo_calls(tenants: int, targets: tuple[str, ...]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """The webhook calls the demo makes after the timer: its own where their targets are enabled, else every
    target's."""
    if tenants:
        second = CUSTOMER_TENANT_IDS[1]
        return [("POST", "/api/sync", {"tenants": [second]}), ("GET", f"/api/sync?tenant={second}", None)]
    made: list[tuple[str, str, dict[str, Any] | None]] = []
    if "exchangeConnectors" in targets:
        made.append(("POST", "/api/sync", {"syncType": "fullSync", "connectorIds": [sample_connectors()[0]["id"]]}))
    else:
        made.append(("POST", "/api/sync", None))
    if "vppTokens" in targets:
        made += [("POST", "/api/sync/vppTokens", {"ids": [VPP_IDS[1]]}), ("GET", "/api/sync/vppTokens", None)]
    else:
        made.append(("GET", "/api/sync", None))
    return made


def demo_settings() -> dict[str, str]:
    """The app settings the demo sets unless the shell does."""
    return {"SYNC_TARGETS": DEMO_TARGETS, "DEVICE_SYNC_WINDOW_SECONDS": f"{20 * DEVICE_TIME_SCALE:g}"}


def demo_emulator(tenants: int) -> Emulator:
    """The demo's tenant: three connectors, one VPP token expired (a target's own rule at work: it is skipped,
    not failed) and a push certificate close to its end (so the expiry watch has something to say). With
    ``tenants``, as many customer tenants hold those objects instead, reached through the Entra stand-in."""
    extra = connector("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e03", server_name="EXCH03")
    tokens = [vpp_token(VPP_IDS[0], state="expired", expires_in_days=-3), vpp_token(VPP_IDS[1])]
    # Half a day more, so that "12 days left" holds for the whole of the demo's run (days left count down).
    certificate = apns_certificate(expires_in_days=DEMO_CERTIFICATE_DAYS + 0.5)
    watched = {"vppTokens": tokens, "applePushNotificationCertificate": [certificate]}
    if not tenants:
        return Emulator(
            [*sample_connectors(), extra], objects=watched, page_size=2, devices=demo_devices(), roles=DEMO_ROLES
        )
    emulator = Emulator(entra=True)
    for tenant in CUSTOMER_TENANT_IDS[:tenants]:
        emulator.add_tenant(tenant, objects=watched, devices=demo_devices(), roles=DEMO_ROLES)
    return emulator


def demo_devices() -> DeviceFleet:
    """300 managed devices, about 225 of them not synced for a day: more than one run syncs (100 at the most)."""
    return DeviceFleet(300, time_scale=DEVICE_TIME_SCALE)
