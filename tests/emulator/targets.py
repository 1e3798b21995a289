"""How Graph serves each sync target (routes, roles, its own refusals), and their sample data: one place per
target, so adding a target to the app adds its entry here."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from tests.emulator.names import (
    CONFIG_READ_ROLE,
    CONFIG_READ_WRITE_ROLE,
    MANAGED_READ_ROLE,
    PRIVILEGED_ROLE,
    READ_ROLE,
    READ_WRITE_ROLE,
)


def sample_connectors() -> list[dict[str, Any]]:
    return [
        connector("6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01", server_name="EXCH01", status="connected"),
        connector("0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02", server_name="EXCH02", status="connected"),
    ]


def connector(
    connector_id: str, *, server_name: str = "EXCH01", status: str = "connected", synced_hours_ago: float = 1
) -> dict[str, Any]:
    last_sync = datetime.now(timezone.utc) - timedelta(hours=synced_hours_ago)
    return {
        "@odata.type": "#microsoft.graph.deviceManagementExchangeConnector",
        "id": connector_id,
        "lastSyncDateTime": last_sync.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        "status": status,
        "primarySmtpAddress": "intune-connector@contoso.example",
        "serverName": server_name,
        "connectorServerName": "CONNECTOR01",
        "exchangeConnectorType": "onPremises",
        "version": "19.9.2.0",
        "exchangeAlias": "intune",
        "exchangeOrganization": "Contoso",
    }


@dataclass(frozen=True)
class ServedTarget:
    """How Graph serves one sync target: where, which version, one object or a collection, the action's answer."""

    version: str
    path: str
    action: str
    single: bool
    roles: tuple[str, str]  # (read, read-write): reading takes either (or read alone), the action the second
    success: int = 204
    write_covers_read: bool = True
    fleet: bool = False  # served from the tenant's DeviceFleet (DeviceRoutes) rather than from stored objects


SERVICE_CONFIG = (READ_ROLE, READ_WRITE_ROLE)


CONFIGURATION = (CONFIG_READ_ROLE, CONFIG_READ_WRITE_ROLE)


# Every target but the Exchange connectors, whose routes are "list", "get" and "sync" below.
SERVED = {
    "vppTokens": ServedTarget("v1.0", "/deviceAppManagement/vppTokens", "syncLicenses", False, SERVICE_CONFIG, 200),
    "depOnboardingSettings": ServedTarget(
        "beta", "/deviceManagement/depOnboardingSettings", "syncWithAppleDeviceEnrollmentProgram", False, SERVICE_CONFIG
    ),
    "windowsAutopilotSettings": ServedTarget(
        "beta", "/deviceManagement/windowsAutopilotSettings", "sync", True, SERVICE_CONFIG
    ),
    "androidManagedStoreAccountEnterpriseSettings": ServedTarget(
        "beta", "/deviceManagement/androidManagedStoreAccountEnterpriseSettings", "syncApps", True, CONFIGURATION
    ),
    "windowsDriverUpdateProfiles": ServedTarget(
        "beta", "/deviceManagement/windowsDriverUpdateProfiles", "syncInventory", False, CONFIGURATION
    ),
    # Listing needs the read permission; syncDevice a privileged one, which does not cover reading.
    "managedDevices": ServedTarget(
        "v1.0",
        "/deviceManagement/managedDevices",
        "syncDevice",
        False,
        (MANAGED_READ_ROLE, PRIVILEGED_ROLE),
        write_covers_read=False,
        fleet=True,
    ),
    # Watched, never synced: no action. Readable with DeviceManagementManagedDevices.Read.All too.
    "applePushNotificationCertificate": ServedTarget(
        "v1.0", "/deviceManagement/applePushNotificationCertificate", "", True, SERVICE_CONFIG
    ),
}


def graph_time(delta: timedelta = timedelta(0)) -> str:
    """Now (plus ``delta``) as Graph writes a DateTimeOffset, with its seven fractional digits."""
    return (datetime.now(timezone.utc) + delta).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def vpp_token(
    token_id: str, *, state: str = "valid", last_sync_status: str = "completed", expires_in_days: float = 200
) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.vppToken",
        "id": token_id,
        "organizationName": "Contoso",
        "appleId": "vpp@contoso.example",
        "vppTokenAccountType": "business",
        "state": state,
        "lastSyncStatus": last_sync_status,
        "lastSyncDateTime": graph_time(-timedelta(hours=3)),
        "expirationDateTime": graph_time(timedelta(days=expires_in_days)),
    }


def dep_token(token_id: str, *, triggered_minutes_ago: float = 60, expires_in_days: float = 200) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.depOnboardingSetting",
        "id": token_id,
        "tokenName": "Contoso ABM",
        "appleIdentifier": "abm@contoso.example",
        "tokenType": "dep",
        "lastSuccessfulSyncDateTime": graph_time(-timedelta(hours=12)),
        "lastSyncTriggeredDateTime": graph_time(-timedelta(minutes=triggered_minutes_ago)),
        "lastSyncErrorCode": 0,
        "syncedDeviceCount": 42,
        "tokenExpirationDateTime": graph_time(timedelta(days=expires_in_days)),
    }


def autopilot_settings(*, sync_status: str = "completed", triggered_minutes_ago: float = 60) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.windowsAutopilotSettings",
        "id": "0a1b2c3d-autopilot",
        "syncStatus": sync_status,
        "lastSyncDateTime": graph_time(-timedelta(hours=1)),
        "lastManualSyncTriggerDateTime": graph_time(-timedelta(minutes=triggered_minutes_ago)),
    }


def android_settings(*, bind_status: str = "boundAndValidated") -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.androidManagedStoreAccountEnterpriseSettings",
        "id": "0a1b2c3d-android",
        "bindStatus": bind_status,
        "lastAppSyncDateTime": graph_time(-timedelta(hours=6)),
        "lastAppSyncStatus": "success",
        "ownerUserPrincipalName": "admin@contoso.example",
    }


def driver_profile(profile_id: str, name: str = "Drivers: pilot ring") -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.windowsDriverUpdateProfile",
        "id": profile_id,
        "displayName": name,
        "approvalType": "manual",
        "inventorySyncStatus": {
            "lastSuccessfulSyncDateTime": graph_time(-timedelta(days=1)),
            "driverInventorySyncState": "success",
        },
    }


def apns_certificate(*, expires_in_days: float = 300) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.applePushNotificationCertificate",
        "id": "0a1b2c3d-apns",
        "appleIdentifier": "mdm@contoso.example",
        "topicIdentifier": "com.apple.mgmt.External.0a1b2c3d",
        "certificateSerialNumber": "5E7A",
        "expirationDateTime": graph_time(timedelta(days=expires_in_days)),
        "lastModifiedDateTime": graph_time(-timedelta(days=65)),
        "certificateUploadStatus": "success",
    }


VPP_IDS = ("7b1d9c2e-0f3a-4b5c-8d6e-1a2b3c4d5e01", "7b1d9c2e-0f3a-4b5c-8d6e-1a2b3c4d5e02")


DEP_ID = "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e01"


DRIVER_ID = "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a01"


def sample_objects() -> dict[str, list[dict[str, Any]]]:
    """A tenant that uses every live target (two VPP tokens, an ADE token, Autopilot, Managed Google Play, drivers)
    and has an Apple push certificate; none of it expires within a month."""
    return {
        "vppTokens": [vpp_token(VPP_IDS[0]), vpp_token(VPP_IDS[1])],
        "depOnboardingSettings": [dep_token(DEP_ID)],
        "windowsAutopilotSettings": [autopilot_settings()],
        "androidManagedStoreAccountEnterpriseSettings": [android_settings()],
        "windowsDriverUpdateProfiles": [driver_profile(DRIVER_ID)],
        "applePushNotificationCertificate": [apns_certificate()],
    }


DEVICE_SYSTEMS = ("Windows", "iOS", "Android", "macOS", "iPadOS", "Linux")


# A filter clause Graph supports on managedDevices: lastSyncDateTime lt|gt <time>, operatingSystem eq '<name>'.
DEVICE_CLAUSE = re.compile(r"(lastSyncDateTime) (lt|gt) (\S+)|(operatingSystem) eq '([^']*)'")


class DeviceFleet:
    """A tenant's managed devices, made up as they are listed rather than stored: device ``i`` last synced
    ``(i * 7919) % 9600 / 100`` hours before the fleet was made (0 to 96 h, so about three in four are stale
    after 24 h). Only what a sync changes is kept. Enforces Intune's device write limit: ``writes_per_window``
    per 20 s, times ``time_scale`` so tests and benchmarks need not wait 20 s windows."""

    def __init__(self, count: int = 0, *, time_scale: float = 1.0, writes_per_window: int = 200) -> None:
        self.count = count
        self.window = 20.0 * time_scale
        self.writes_per_window = writes_per_window
        self.made = datetime.now(timezone.utc)
        self.synced: dict[int, str] = {}
        self.writes: list[float] = []
        self.throttled = 0
        self.ignore_filters = False  # as Graph does with a filter it does not support
        # Device i's lastSyncDateTime written as given (any RFC 3339 form), instead of Graph's usual one.
        self.written: dict[int, str] = {}
        # Device i listed this many times, as Graph lists a device again when the listing shifts between pages.
        self.repeated: dict[int, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def device_id(index: int) -> str:
        return f"{index:08x}-0000-4000-8000-{index:012x}"

    @staticmethod
    def index_of(device_id: str) -> int | None:
        found = re.fullmatch(r"([0-9a-f]{8})-0000-4000-8000-([0-9a-f]{12})", device_id)
        return int(found[1], 16) if found and int(found[1], 16) == int(found[2], 16) else None

    def last_sync(self, index: int) -> datetime:
        synced = self.synced.get(index, self.written.get(index))
        if synced is not None:
            return datetime.fromisoformat(synced.upper().replace("Z", "+00:00"))
        return self.made - timedelta(hours=(index * 7919) % 9600 / 100)

    def device(self, index: int) -> dict[str, Any]:
        return {
            "id": self.device_id(index),
            "deviceName": f"DEVICE-{index:06d}",
            "lastSyncDateTime": self.written.get(index) or self.last_sync(index).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "operatingSystem": DEVICE_SYSTEMS[index % len(DEVICE_SYSTEMS)],
            "complianceState": "compliant",
            "managementAgent": "mdm",
            "serialNumber": f"SN{index:010d}",
            "userPrincipalName": f"user{index}@contoso.example",
        }

    def matches(self, index: int, clauses: list[tuple[str, str, str]]) -> bool:
        for field_name, operator, value in clauses:
            if field_name == "operatingSystem":
                if DEVICE_SYSTEMS[index % len(DEVICE_SYSTEMS)] != value:
                    return False
                continue
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            last = self.last_sync(index)
            if (operator == "lt" and not last < when) or (operator == "gt" and not last > when):
                return False
        return True

    def parse_filter(self, text: str) -> list[tuple[str, str, str]]:
        """The clauses of a filter Graph supports; none at all (every device) for anything else."""
        if self.ignore_filters or not text:
            return []
        clauses = []
        for part in text.split(" and "):
            found = DEVICE_CLAUSE.fullmatch(part.strip())
            if found is None:
                return []
            if found[1]:
                clauses.append((found[1], found[2], found[3]))
            else:
                clauses.append((found[4], "eq", found[5]))
        return clauses

    def write(self) -> float | None:
        """Count one syncDevice; the seconds to wait instead when the window is full."""
        now = time.monotonic()
        with self._lock:
            self.writes = [at for at in self.writes if now - at < self.window]
            if len(self.writes) >= self.writes_per_window:
                self.throttled += 1
                return self.window - (now - self.writes[0])
            self.writes.append(now)
            return None


def tenant_connectors(tenant_id: str, count: int = 1) -> list[dict[str, Any]]:
    """Connectors whose ids show their tenant: the tenant's first 8 hex digits, then a number."""
    return [
        connector(f"{tenant_id[:8]}-0000-4000-8000-{index:012d}", server_name=f"EXCH{index:02d}")
        for index in range(1, count + 1)
    ]


def selected_fields(device: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    fields = (query.get("$select") or [""])[0]
    return {k: v for k, v in device.items() if k in fields.split(",")} if fields else device


def own_refusal(name: str, found: dict[str, Any]) -> tuple[int, str, str] | None:
    """What Graph answers instead of accepting a sync, by each target's documented rule."""
    now = datetime.now(timezone.utc)

    def since(field: str) -> timedelta:
        return now - datetime.fromisoformat(found[field].replace("0Z", "+00:00").replace("Z", "+00:00"))

    if name == "windowsAutopilotSettings" and found["syncStatus"] == "inProgress":
        return 409, "Conflict", "An Autopilot sync is already in progress."
    if name == "windowsAutopilotSettings" and since("lastManualSyncTriggerDateTime") < timedelta(minutes=10):
        return 429, "TooManyRequests", "Autopilot sync was requested less than 10 minutes ago."
    if name == "depOnboardingSettings" and since("lastSyncTriggeredDateTime") < timedelta(minutes=15):
        return 400, "BadRequest", "A manual sync is allowed once every 15 minutes."
    if name == "vppTokens" and found["state"] != "valid":
        return 400, "BadRequest", f"The token is {found['state']}."
    if name == "androidManagedStoreAccountEnterpriseSettings" and found["bindStatus"] not in (
        "bound",
        "boundAndValidated",
    ):
        return 400, "BadRequest", "The tenant is not bound to Managed Google Play."
    return None


def mark_synced(name: str, found: dict[str, Any]) -> None:
    """What Intune records when it accepts a sync."""
    stamp = {
        "vppTokens": "lastSyncDateTime",
        "depOnboardingSettings": "lastSyncTriggeredDateTime",
        "windowsAutopilotSettings": "lastManualSyncTriggerDateTime",
        "androidManagedStoreAccountEnterpriseSettings": "lastAppSyncDateTime",
    }.get(name)
    if stamp:
        found[stamp] = graph_time()
    if name == "windowsDriverUpdateProfiles":
        found["inventorySyncStatus"] = {
            "lastSuccessfulSyncDateTime": graph_time(),
            "driverInventorySyncState": "pending",
        }


FLEET_NAME = next(name for name, served in SERVED.items() if served.fleet)
FLEET = SERVED[FLEET_NAME]


CONNECTORS_PATH = "/v1.0/deviceManagement/exchangeConnectors"
SYNC_TYPES = ("fullSync", "deltaSync")
CONNECTOR_ROUTES = [
    ("GET", re.compile(re.escape(CONNECTORS_PATH)), "list"),
    ("GET", re.compile(rf"{re.escape(CONNECTORS_PATH)}/([^/]+)"), "get"),
    ("POST", re.compile(rf"{re.escape(CONNECTORS_PATH)}/([^/]+)/sync"), "sync"),
]


class ConnectorRoutes:
    """The Exchange connectors' routes ("list", "get", "sync"), as they were before the other targets: a mixin of
    the Graph handler."""

    def _list(self, _connector_id: str | None, query: dict[str, list[str]], _body: bytes) -> None:
        emulator = self.server.emulator
        start = int((query.get("$skiptoken") or ["0"])[0])
        items = list(self._data.connectors.values())
        page: dict[str, Any] = {
            "@odata.context": f"{emulator.url}/v1.0/$metadata#deviceManagement/exchangeConnectors",
            "value": items[start : start + emulator.page_size],
        }
        if start + emulator.page_size < len(items):
            page["@odata.nextLink"] = f"{emulator.url}{CONNECTORS_PATH}?$skiptoken={start + emulator.page_size}"
        self._send_json(200, page)

    def _get(self, connector_id: str | None, _query: dict[str, list[str]], _body: bytes) -> None:
        found = self._data.connectors.get(connector_id or "")
        if found is None:
            self._graph_error(404, "ResourceNotFound", f"No Exchange connector with id {connector_id}.")
        else:
            self._send_json(200, found)

    def _sync(self, connector_id: str | None, _query: dict[str, list[str]], body: bytes) -> None:
        found = self._data.connectors.get(connector_id or "")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            self._graph_error(415, "UnsupportedMediaType", "Content-Type must be application/json.")
        elif not isinstance(payload, dict) or payload.get("syncType") not in SYNC_TYPES:
            self._graph_error(400, "BadRequest", "syncType must be fullSync or deltaSync.")
        elif found is None:
            self._graph_error(404, "ResourceNotFound", f"No Exchange connector with id {connector_id}.")
        else:
            found["lastSyncDateTime"] = datetime.now(timezone.utc).isoformat()
            self._send(204, b"")


class DeviceRoutes:
    """The managed devices' routes: a mixin of the Graph handler."""

    def _device_route(self, kind: str, device_id: str | None, query: dict[str, list[str]]) -> None:
        """A tenant's managed devices, from its :class:`DeviceFleet`: listed, read, or synced under the write limit."""
        fleet = self._data.devices
        if kind == "list":
            self._device_page(fleet, query)
            return
        index = fleet.index_of(device_id or "")
        if index is None or index >= fleet.count:
            self._graph_error(404, "ResourceNotFound", f"No managed device {device_id}.")
        elif kind == "get":
            self._send_json(200, selected_fields(fleet.device(index), query))
        elif (wait := fleet.write()) is not None:
            self._graph_error(429, "TooManyRequests", "Too many device writes.", {"Retry-After": f"{max(1, wait):.0f}"})
        else:
            fleet.synced[index] = graph_time()
            fleet.written.pop(index, None)
            self._send(204, b"")

    def _device_page(self, fleet: DeviceFleet, query: dict[str, list[str]]) -> None:
        """Up to 1,000 devices a page, filtered as Graph filters, fields as ``$select`` names them."""
        start = int((query.get("$skiptoken") or ["0"])[0])
        raw_filter = (query.get("$filter") or [""])[0]
        clauses = fleet.parse_filter(raw_filter)
        page, index = [], start
        while index < fleet.count and len(page) < 1000:
            if fleet.matches(index, clauses):
                page += [selected_fields(fleet.device(index), query)] * fleet.repeated.get(index, 1)
            index += 1
        body: dict[str, Any] = {"value": page}
        if index < fleet.count:
            kept = "&".join(f"{k}={quote(v[0])}" for k, v in query.items() if k != "$skiptoken")
            body["@odata.nextLink"] = (
                f"{self.server.emulator.url}/{FLEET.version}{FLEET.path}?{kept}&$skiptoken={index}"
            )
        self._send_json(200, body)
