"""A local stand-in for Microsoft Graph and the App Service managed-identity endpoint.

A real HTTP/1.1 server on 127.0.0.1 speaking the documented protocols, so the app runs unpatched against
it (real azure-identity, real requests, real sockets):

- identity: ``GET /msi/token?api-version=2019-08-01&resource=...[&client_id=...]`` with the
  ``X-IDENTITY-HEADER`` header, answering ``access_token``, ``expires_on`` (epoch seconds, a string),
  ``resource``, ``token_type``, ``client_id``
  (https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference);
- Graph: list (paged with ``@odata.nextLink``), get and sync of ``/v1.0/deviceManagement/exchangeConnectors``,
  checking the token's audience and roles, with Graph's error bodies and ``request-id`` headers
  (https://learn.microsoft.com/graph/errors);
- Graph's own service principal and ``appRoleAssignedTo``, for granting the app role
  (https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto).

With ``entra=True``, an Entra stand-in serves HTTPS on its own loopback port, with a certificate from a test CA
(``ca_bundle``, for ``REQUESTS_CA_BUNDLE``): tenant discovery and the token endpoint's client-assertion grant
(https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow#third-case-access-token-request-with-a-federated-credential),
checking the managed identity's assertion (audience, issuer, subject) and each customer tenant's consent, and
minting Graph tokens whose ``tid`` is the tenant. Customer tenants (:meth:`Emulator.add_tenant`) keep their own
objects; Graph serves a token only its own tenant's data.

Faults are queued per route with :meth:`Emulator.fault`. Every request is recorded in ``received``.
Run it standalone with ``python -m tests.emulator`` (``--tenants 2`` adds the Entra stand-in and two tenants).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import re
import secrets
import shlex
import socket
import ssl
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import trustme

READ_WRITE_ROLE = "DeviceManagementServiceConfig.ReadWrite.All"
READ_ROLE = "DeviceManagementServiceConfig.Read.All"
CONNECTORS_PATH = "/v1.0/deviceManagement/exchangeConnectors"
SERVICE_PRINCIPALS_PATH = "/v1.0/servicePrincipals"
IDENTITY_PATH = "/msi/token"
STATS_PATH = "/_emulator/stats"
SYSTEM_ASSIGNED_CLIENT_ID = "5f0d7c2e-1b3a-4c8e-9d6f-0a1b2c3d4e5f"
IDENTITY_OBJECT_ID = "3c2b1a09-8f7e-6d5c-4b3a-291807f6e5d4"
SYSTEM_ASSIGNED_PRINCIPAL_ID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SP_ID = "9e1f6f0c-6a3e-4d7e-8c7b-2f0d8a1b2c3d"
READ_WRITE_ROLE_ID = "5ac13192-7ace-4fcf-b828-1a26f28068ee"
READ_ROLE_ID = "06a5fe6d-c49d-46a7-b082-56b1b14103c7"
CONFIG_READ_WRITE_ROLE = "DeviceManagementConfiguration.ReadWrite.All"
CONFIG_READ_ROLE = "DeviceManagementConfiguration.Read.All"
CONFIG_READ_WRITE_ROLE_ID = "9241abd9-d0e6-425a-bd4f-47ba86e767a4"
CONFIG_READ_ROLE_ID = "dc377aa6-52d8-4e23-b271-2a7ae04cedf3"
MANAGED_READ_ROLE = "DeviceManagementManagedDevices.Read.All"
PRIVILEGED_ROLE = "DeviceManagementManagedDevices.PrivilegedOperations.All"
MANAGED_READ_ROLE_ID = "2f51be20-0bb4-4fed-bf7b-db946066c75e"
PRIVILEGED_ROLE_ID = "5b07b0dd-2377-4e44-a38d-703f09a0dc3c"
GRANT_SCOPE = "AppRoleAssignment.ReadWrite.All"
# A user-assigned identity the emulator treats as a directory administrator, so `python -m shared grant` can be
# tried against it: AZURE_CLIENT_ID=<this> python -m shared grant --principal-id <IDENTITY_OBJECT_ID>.
DEMO_ADMIN_CLIENT_ID = "ad0a1b2c-3d4e-4f50-8a61-7b8c9d0e1f2a"
DEMO_ADMIN_OBJECT_ID = "ad0b2c3d-4e5f-4061-9b72-8c9d0e1f2a3b"
DEMO_ADMIN_ROLES = (GRANT_SCOPE, "Application.Read.All")
SYNC_TYPES = ("fullSync", "deltaSync")
# Many tenants: the app's home tenant, its user-assigned identity, the multi-tenant app that trusts it.
HOME_TENANT_ID = "00000000-0000-0000-0000-00000000e1e1"
USER_ASSIGNED_CLIENT_ID = "7d8e9f10-1112-4314-9516-171819202122"
TENANT_APP_CLIENT_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
CUSTOMER_TENANT_IDS = (
    "c0000001-0000-4000-8000-000000000001",
    "c0000002-0000-4000-8000-000000000002",
    "c0000003-0000-4000-8000-000000000003",
    "c0000004-0000-4000-8000-000000000004",
    "c0000005-0000-4000-8000-000000000005",
    "c0000006-0000-4000-8000-000000000006",
)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ENTRA_ROUTES = ("entra_token", "entra_discovery")
HOLD_LIMIT = 30.0


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    roles: tuple[str, str]  # (read, read-write): reading takes either, the action the second
    success: int = 204


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
        "v1.0", "/deviceManagement/managedDevices", "syncDevice", False, (MANAGED_READ_ROLE, PRIVILEGED_ROLE)
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


@dataclass
class CustomerTenant:
    """A customer's tenant: its own Intune objects, and what its administrator consented to for the app."""

    tenant_id: str
    connectors: dict[str, dict[str, Any]]
    objects: dict[str, dict[str, dict[str, Any]]]
    devices: DeviceFleet
    roles: tuple[str, ...]
    consented: bool = True


def tenant_connectors(tenant_id: str, count: int = 1) -> list[dict[str, Any]]:
    """Connectors whose ids show their tenant: the tenant's first 8 hex digits, then a number."""
    return [
        connector(f"{tenant_id[:8]}-0000-4000-8000-{index:012d}", server_name=f"EXCH{index:02d}")
        for index in range(1, count + 1)
    ]


@dataclass
class Fault:
    """One queued misbehaviour; ``times`` answers are spoilt, then the route behaves again."""

    status: int | None = None
    code: str = "UnknownError"
    message: str = "Emulated failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # The answer waits until the test sets this (at most HOLD_LIMIT seconds): a call kept in flight on purpose.
    hold: threading.Event | None = None
    drop: bool = False
    drop_midway: bool = False
    body: bytes | None = None
    inner_error_key: str = "innerError"
    times: int = 1
    # Send the answer one byte every ``trickle`` seconds: the body only, or everything from the status line on.
    trickle: float = 0.0
    trickle_headers: bool = False
    # An answer of this many bytes, streamed: with Content-Length, chunked (no length), or gzip that expands to it.
    size: int = 0
    chunked: bool = False
    gzip: bool = False
    # An identity answer around a real token: "truncated", "trailing" bytes after it, or "crlf" inside the token.
    token_body: str | None = None
    # Graph's error message repeats the request's Authorization header back, as a careless proxy might.
    echo_authorization: bool = False


@dataclass(frozen=True)
class Received:
    route: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class IssuedToken:
    value: str
    audience: str
    roles: tuple[str, ...]
    client_id: str | None
    expires_on: int
    scopes: tuple[str, ...] = ()
    tenant: str | None = None  # a customer tenant's Graph token (from the Entra stand-in); None: the home tenant
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def permissions(self) -> set[str]:
        """Application roles and delegated scopes alike: Graph accepts either for these calls."""
        return {*self.roles, *self.scopes}


class Emulator:
    """Graph plus the identity endpoint on one loopback port."""

    def __init__(
        self,
        connectors: list[dict[str, Any]] | None = None,
        *,
        objects: dict[str, list[dict[str, Any]]] | None = None,
        page_size: int = 100,
        devices: DeviceFleet | None = None,
        roles: tuple[str, ...] = (READ_WRITE_ROLE,),
        token_lifetime: int = 3600,
        latency: float = 0.0,
        port: int = 0,
        entra: bool = False,
    ) -> None:
        self.connectors = {c["id"]: c for c in (sample_connectors() if connectors is None else connectors)}
        self.devices = devices or DeviceFleet()
        # The other targets' objects by id; a one-object target holds at most one.
        self.objects = {
            name: {o["id"]: o for o in found} for name, found in {**sample_objects(), **(objects or {})}.items()
        }
        self.page_size = page_size
        self.roles = roles
        self.token_lifetime = token_lifetime
        self.latency = latency
        self.identity_header = secrets.token_urlsafe(24)
        self.received: list[Received] = []
        self.tokens: list[IssuedToken] = []
        self.connections = 0
        self.graph_connections = 0
        self.assignments: list[dict[str, str]] = []
        self.syncs_in_flight: dict[str, int] = {}
        self.most_syncs_in_flight: dict[str, int] = {}
        self.principals = {IDENTITY_OBJECT_ID}
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.emulator = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="emulator", daemon=True
        )
        self.customers: dict[str, CustomerTenant] = {}
        self.entra: _EntraServer | None = _EntraServer(self) if entra else None

    @property
    def url(self) -> str:
        """The Graph root (``GRAPH_ENDPOINT``), which is also the audience of the tokens it accepts."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.url}{IDENTITY_PATH}"

    @property
    def authority(self) -> str:
        """The Entra stand-in's authority (``AZURE_AUTHORITY_HOST``)."""
        assert self.entra is not None, "Emulator(entra=True) serves Entra"
        return f"https://127.0.0.1:{self.entra.server_address[1]}"

    @property
    def ca_bundle(self) -> str:
        """The test CA's certificate, for ``REQUESTS_CA_BUNDLE``."""
        assert self.entra is not None, "Emulator(entra=True) serves Entra"
        return self.entra.ca_file

    def add_tenant(
        self,
        tenant_id: str,
        *,
        connectors: list[dict[str, Any]] | None = None,
        objects: dict[str, list[dict[str, Any]]] | None = None,
        roles: tuple[str, ...] = (READ_WRITE_ROLE,),
        consented: bool = True,
        devices: DeviceFleet | None = None,
    ) -> CustomerTenant:
        """A customer tenant; ``consented`` False: the app has no service principal there (no admin consent)."""
        found = {name: {o["id"]: o for o in items} for name, items in (objects or {}).items()}
        customer = CustomerTenant(
            tenant_id,
            {c["id"]: c for c in (tenant_connectors(tenant_id) if connectors is None else connectors)},
            {name: found.get(name, {}) for name in SERVED},
            devices or DeviceFleet(),
            roles,
            consented,
        )
        self.customers[tenant_id] = customer
        return customer

    def start(self) -> Emulator:
        self._thread.start()
        if self.entra is not None:
            self.entra.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.entra is not None:
            self.entra.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault(self, route: str, **options: Any) -> Fault:
        """Queue a fault for ``route``: ``identity``, ``list``, ``get`` or ``sync``."""
        spoilt = Fault(**options)
        if spoilt.gzip and spoilt.size:
            _gzipped_spaces(spoilt.size)
        with self._lock:
            self._faults.setdefault(route, []).append(spoilt)
        return spoilt

    def mend(self, route: str) -> None:
        """Drop the faults still queued for ``route``: it behaves again from now on."""
        with self._lock:
            self._faults.pop(route, None)

    def calls(self, route: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if route is None or r.route == route]

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(route)
            if not queue:
                return None
            spoilt = queue[0]
            spoilt.times -= 1
            if spoilt.times <= 0:
                queue.pop(0)
            return spoilt

    def stats(self) -> dict[str, int]:
        """What a benchmark in another process needs: ``GET /_emulator/stats``."""
        return {
            "token_requests": len(self.calls("identity")),
            "graph_calls": len(self.graph_calls()),
            "graph_connections": self.graph_connections,
            "device_writes": len(self.calls("managedDevices.sync")) - self.devices.throttled,
            "device_throttled": self.devices.throttled,
        }

    def graph_calls(self) -> list[Received]:
        return [r for r in self.calls() if r.route not in ("identity", "stats", *ENTRA_ROUTES)]

    def _count_sync(self, connector_id: str, change: int) -> None:
        """How many syncs of one connector Graph is handling at once: what coalescing keeps at 1."""
        with self._lock:
            now = self.syncs_in_flight.get(connector_id, 0) + change
            self.syncs_in_flight[connector_id] = now
            self.most_syncs_in_flight[connector_id] = max(now, self.most_syncs_in_flight.get(connector_id, 0))

    def _record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def issue_token(self, resource: str, client_id: str | None) -> IssuedToken:
        """A managed identity's token: application roles, as granted to the identity."""
        if client_id == DEMO_ADMIN_CLIENT_ID:
            claims = {"appid": client_id, "oid": DEMO_ADMIN_OBJECT_ID, "roles": list(DEMO_ADMIN_ROLES)}
            return self._issue(resource, claims, roles=DEMO_ADMIN_ROLES, client_id=client_id)
        role_values = {r["id"]: r["value"] for r in _graph_service_principal()["appRoles"]}
        granted = tuple(role_values[a["appRoleId"]] for a in self.assignments if a["principalId"] == IDENTITY_OBJECT_ID)
        roles = tuple(dict.fromkeys((*self.roles, *granted)))
        claims = {
            "appid": client_id or SYSTEM_ASSIGNED_CLIENT_ID,
            "oid": IDENTITY_OBJECT_ID,
            "roles": list(roles),
            "xms_mirid": "/subscriptions/emulated/resourcegroups/rg/providers/Microsoft.Web/sites/intune-sync",
        }
        if resource == EXCHANGE_AUDIENCE and self.entra is not None:
            # A managed identity's token as Entra issues it for the exchange audience: v2 issuer, its own subject.
            # A managed identity's token as Entra issues it for the exchange audience: v2 issuer, and the principal
            # id as subject (the federated credential names the user-assigned identity's; the system one differs).
            subject = IDENTITY_OBJECT_ID if client_id == USER_ASSIGNED_CLIENT_ID else SYSTEM_ASSIGNED_PRINCIPAL_ID
            claims |= {"iss": f"{self.authority}/{HOME_TENANT_ID}/v2.0", "sub": subject}
        return self._issue(resource, claims, roles=roles, client_id=client_id)

    def issue_tenant_token(self, customer: CustomerTenant) -> IssuedToken:
        """A Graph token of a customer tenant for the multi-tenant app: the roles its administrator consented to."""
        claims = {
            "appid": TENANT_APP_CLIENT_ID,
            "oid": f"{customer.tenant_id[:8]}-5e00-4000-8000-000000000001",
            "roles": list(customer.roles),
            "tid": customer.tenant_id,
            "iss": f"https://sts.windows.net/{customer.tenant_id}/",
        }
        return self._issue(
            self.url, claims, roles=customer.roles, client_id=TENANT_APP_CLIENT_ID, tenant=customer.tenant_id
        )

    def issue_user_token(self, resource: str, scopes: tuple[str, ...]) -> IssuedToken:
        """A signed-in administrator's token (what ``az account get-access-token`` gives): delegated scopes."""
        claims = {
            "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
            "oid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "upn": "admin@contoso.example",
            "scp": " ".join(scopes),
        }
        return self._issue(resource, claims, scopes=scopes)

    def _issue(
        self,
        resource: str,
        claims: dict[str, Any],
        *,
        roles: tuple[str, ...] = (),
        scopes: tuple[str, ...] = (),
        client_id: str | None = None,
        tenant: str | None = None,
    ) -> IssuedToken:
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{HOME_TENANT_ID}/",
            "tid": HOME_TENANT_ID,
            "iat": now,
            "exp": now + self.token_lifetime,
            **claims,
        }
        token = IssuedToken(
            value=".".join([_b64({"typ": "JWT", "alg": "RS256"}), _b64(claims), secrets.token_urlsafe(32)]),
            audience=resource,
            roles=roles,
            client_id=client_id,
            expires_on=now + self.token_lifetime,
            scopes=scopes,
            tenant=tenant,
            claims=claims,
        )
        with self._lock:
            self.tokens.append(token)
        return token

    def find_token(self, value: str) -> IssuedToken | None:
        with self._lock:
            return next((t for t in self.tokens if t.value == value), None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    emulator: Emulator

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.emulator._lock:
            self.emulator.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here, not an error worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read ``received`` instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route, connector_id = self._route(self.command, parts.path)
        emulator._record(
            Received(
                route=route,
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
        )
        if route == "sync" and connector_id:
            emulator._count_sync(connector_id, +1)
        try:
            self._answer(route, connector_id, parts.path, parts.query, body)
        finally:
            if route == "sync" and connector_id:
                emulator._count_sync(connector_id, -1)

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None]:
        return _route(method, path)

    def _answer(self, route: str, connector_id: str | None, path: str, query: str, body: bytes) -> None:
        emulator = self.server.emulator
        if route == "stats":
            self._send_json(200, emulator.stats())
            return
        if route != "identity":
            if not getattr(self, "_graph_connection", False):
                self._graph_connection = True
                with emulator._lock:
                    emulator.graph_connections += 1
            time.sleep(emulator.latency)  # Graph's own processing time, so overlapping calls can be seen
        spoilt = emulator._next_fault(route)
        if spoilt is not None and self._apply(spoilt):
            return
        if route == "identity":
            self._identity(query)
        elif route == "unknown":
            self._graph_error(404, "ResourceNotFound", f"Resource not found for the segment '{path}'.")
        elif self._authorised(route):
            if "." in route:
                self._served(route, connector_id, parse_qs(query))
            else:
                getattr(self, f"_{route}")(connector_id, parse_qs(query), body)

    def _apply(self, spoilt: Fault) -> bool:
        """Carry out a fault; True when it has answered (or hung up) instead of the route."""
        if spoilt.delay:
            time.sleep(spoilt.delay)
        if spoilt.hold is not None:
            spoilt.hold.wait(HOLD_LIMIT)
        with contextlib.suppress(OSError):  # the app hanging up mid-answer is what several faults test
            return self._misbehave(spoilt)
        self.close_connection = True
        return True

    def _misbehave(self, spoilt: Fault) -> bool:
        if spoilt.token_body is not None:
            spoilt.body = self._spoilt_token_answer(spoilt.token_body)
        if spoilt.trickle:
            self._trickle(spoilt)
        elif spoilt.size:
            self._oversized(spoilt)
        elif spoilt.drop:
            self.close_connection = True
        elif spoilt.drop_midway:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"value": [')
            self.wfile.flush()
            self.close_connection = True
        elif spoilt.body is not None:
            self._send(spoilt.status or 200, spoilt.body, spoilt.headers)
        elif spoilt.status is not None:
            echoed = f" ({self.headers.get('Authorization')})" if spoilt.echo_authorization else ""
            self._graph_error(
                spoilt.status, spoilt.code, spoilt.message + echoed, spoilt.headers, spoilt.inner_error_key
            )
        else:
            return False
        return True

    def _spoilt_token_answer(self, how: str) -> bytes:
        """An identity answer around a real token: cut in half, with bytes after the JSON, or a CR/LF in the token."""
        emulator = self.server.emulator
        token = emulator.issue_token(emulator.url, None)
        value = f"{token.value}\r\nX-Injected: 1" if how == "crlf" else token.value
        answer = json.dumps(
            {
                "access_token": value,
                "expires_on": str(token.expires_on),
                "resource": emulator.url,
                "token_type": "Bearer",
            }
        ).encode()
        if how == "truncated":
            return answer[: len(answer) // 2]
        return answer + b"}garbage" if how == "trailing" else answer

    def _trickle(self, spoilt: Fault) -> None:
        body = spoilt.body if spoilt.body is not None else json.dumps({"value": []}).encode()
        head = (
            f"HTTP/1.1 {spoilt.status or 200} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        slow = head + body if spoilt.trickle_headers else body
        if not spoilt.trickle_headers:
            self.wfile.write(head)
        for index in range(len(slow)):
            self.wfile.write(slow[index : index + 1])
            self.wfile.flush()
            time.sleep(spoilt.trickle)

    def _oversized(self, spoilt: Fault) -> None:
        """A JSON-looking answer of ``size`` bytes, made as it is sent: the emulator holds at most 1 MiB of it."""
        self.send_response(spoilt.status or 200)
        self.send_header("Content-Type", "application/json")
        if spoilt.gzip:
            compressed = _gzipped_spaces(spoilt.size)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(compressed)))
            self.end_headers()
            self.wfile.write(compressed)
            return
        chunk = b" " * (1024 * 1024)
        if spoilt.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(spoilt.size))
        self.end_headers()
        left = spoilt.size
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if spoilt.chunked else piece)
            left -= len(piece)
        if spoilt.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _identity(self, query_string: str) -> None:
        emulator = self.server.emulator
        query = {k: v[0] for k, v in parse_qs(query_string).items()}
        if self.headers.get("X-IDENTITY-HEADER") != emulator.identity_header:
            self._send_json(401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or wrong."})
        elif query.get("api-version") != "2019-08-01" or not query.get("resource"):
            self._send_json(400, {"statusCode": 400, "message": "api-version=2019-08-01 and resource are required."})
        else:
            token = emulator.issue_token(query["resource"], query.get("client_id"))
            self._send_json(
                200,
                {
                    "access_token": token.value,
                    "expires_on": str(token.expires_on),
                    "resource": token.audience,
                    "token_type": "Bearer",
                    "client_id": token.client_id or SYSTEM_ASSIGNED_CLIENT_ID,
                },
            )

    def _authorised(self, route: str) -> bool:
        emulator = self.server.emulator
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        token = emulator.find_token(value) if scheme == "Bearer" else None
        if token is None or token.expires_on < time.time():
            self._graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
            return False
        if token.audience != emulator.url:
            self._graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
            return False
        # Whose data this call sees: the token's tenant's, and no other.
        self._data: Emulator | CustomerTenant = emulator.customers[token.tenant] if token.tenant else emulator
        target, _, kind = route.partition(".")
        if kind:
            read, write = SERVED[target].roles
            needed = {write} if kind == "sync" else {read} if target == "managedDevices" else {read, write}
        else:
            needed = {
                "sync": {READ_WRITE_ROLE},
                "service_principals": {"Application.Read.All", GRANT_SCOPE},
                "role_assignments": {"Application.Read.All", GRANT_SCOPE},
                "assign_role": {GRANT_SCOPE},
            }.get(route, {READ_ROLE, READ_WRITE_ROLE})
        if not needed & token.permissions:
            self._graph_error(
                403,
                "Forbidden",
                "Application is not authorized to perform this operation. Application must have one of the "
                f"following scopes: {', '.join(sorted(needed))}",
            )
            return False
        return True

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

    def _served(self, route: str, object_id: str | None, query: dict[str, list[str]]) -> None:
        """A target other than the Exchange connectors: its list (paged), its one object, or its sync action."""
        emulator = self.server.emulator
        name, _, kind = route.partition(".")
        if name == "managedDevices":
            self._device_route(kind, object_id, query)
            return
        served = SERVED[name]
        objects = self._data.objects[name]
        if kind == "list":
            start = int((query.get("$skiptoken") or ["0"])[0])
            items = list(objects.values())
            page: dict[str, Any] = {"value": items[start : start + emulator.page_size]}
            if start + emulator.page_size < len(items):
                page["@odata.nextLink"] = (
                    f"{emulator.url}/{served.version}{served.path}?$skiptoken={start + emulator.page_size}"
                )
            self._send_json(200, page)
            return
        found = next(iter(objects.values()), None) if served.single else objects.get(object_id or "")
        if found is None:
            self._graph_error(404, "ResourceNotFound", f"No {name} object {object_id or ''} in this tenant.")
        elif kind == "get":
            self._send_json(200, found)
        elif (refusal := _refusal(name, found)) is not None:
            self._graph_error(*refusal)
        else:
            _synced(name, found)
            if served.success == 200:
                self._send_json(200, found)
            else:
                self._send(204, b"")

    def _device_route(self, kind: str, device_id: str | None, query: dict[str, list[str]]) -> None:
        fleet = self._data.devices
        if kind == "list":
            self._device_page(fleet, query)
            return
        index = fleet.index_of(device_id or "")
        if index is None or index >= fleet.count:
            self._graph_error(404, "ResourceNotFound", f"No managed device {device_id}.")
        elif kind == "get":
            self._send_json(200, _selected(fleet.device(index), query))
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
                page += [_selected(fleet.device(index), query)] * fleet.repeated.get(index, 1)
            index += 1
        body: dict[str, Any] = {"value": page}
        if index < fleet.count:
            kept = "&".join(f"{k}={quote(v[0])}" for k, v in query.items() if k != "$skiptoken")
            body["@odata.nextLink"] = (
                f"{self.server.emulator.url}/v1.0/deviceManagement/managedDevices?{kept}&$skiptoken={index}"
            )
        self._send_json(200, body)

    def _service_principals(self, _id: str | None, query: dict[str, list[str]], _body: bytes) -> None:
        wanted = (query.get("$filter") or [""])[0]
        found = [_graph_service_principal()] if wanted == f"appId eq '{GRAPH_APP_ID}'" else []
        self._send_json(200, {"value": found})

    def _role_assignments(self, principal_id: str | None, _query: dict[str, list[str]], _body: bytes) -> None:
        emulator = self.server.emulator
        if principal_id not in emulator.principals:
            self._graph_error(404, "Request_ResourceNotFound", f"Resource '{principal_id}' does not exist.")
            return
        self._send_json(200, {"value": [a for a in emulator.assignments if a["principalId"] == principal_id]})

    def _assign_role(self, resource_id: str | None, _query: dict[str, list[str]], body: bytes) -> None:
        emulator = self.server.emulator
        try:
            wanted = json.loads(body)
        except ValueError:
            wanted = None
        role_ids = {r["id"] for r in _graph_service_principal()["appRoles"]}
        if resource_id != GRAPH_SP_ID or not isinstance(wanted, dict) or wanted.get("resourceId") != GRAPH_SP_ID:
            self._graph_error(400, "Request_BadRequest", "resourceId must be the Graph service principal.")
        elif wanted.get("appRoleId") not in role_ids:
            self._graph_error(400, "Request_BadRequest", "Permission being assigned was not found on application")
        elif wanted.get("principalId") not in emulator.principals:
            self._graph_error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{wanted.get('principalId')}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        elif any(
            a["principalId"] == wanted["principalId"] and a["appRoleId"] == wanted["appRoleId"]
            for a in emulator.assignments
        ):
            self._graph_error(
                400,
                "Request_BadRequest",
                "Permission being assigned already exists on the object",
            )
        else:
            assignment = {
                "id": secrets.token_urlsafe(16),
                "principalId": wanted["principalId"],
                "resourceId": GRAPH_SP_ID,
                "appRoleId": wanted["appRoleId"],
            }
            emulator.assignments.append(assignment)
            self._send_json(201, assignment)

    def _graph_error(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner_error_key: str = "innerError",
    ) -> None:
        request_id = str(uuid.uuid4())
        body = {
            "error": {
                "code": code,
                "message": message,
                inner_error_key: {
                    "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": self.headers.get("client-request-id") or request_id,
                },
            }
        }
        self._send(status, json.dumps(body).encode(), {"request-id": request_id, **(headers or {})})

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("request-id", str(uuid.uuid4()))
        if self.headers.get("client-request-id"):
            headers.setdefault("client-request-id", self.headers["client-request-id"])
        if body:
            headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
        headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class _EntraServer(_Server):
    """Entra's v2 endpoints over HTTPS, with a certificate from a test CA generated for this run."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(("127.0.0.1", 0), _EntraHandler)
        self.emulator = emulator
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        # The handshake happens in the request's own thread (_EntraHandler.setup), never in the accepting one.
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as ca_file:
            ca_file.write(ca.cert_pem.bytes())
        self.ca_file = ca_file.name
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, name="emulator-entra", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with contextlib.suppress(OSError):
            os.unlink(self.ca_file)


class _EntraHandler(_Handler):
    """``/{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/oauth2/v2.0/token``."""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.do_handshake()

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None]:
        for verb, pattern, name in ENTRA_PATHS:
            found = pattern.fullmatch(path)
            if verb == method and found:
                return name, found.group(1)
        return "unknown", None

    def _answer(self, route: str, tenant: str | None, path: str, query: str, body: bytes) -> None:
        spoilt = self.server.emulator._next_fault(route)
        if spoilt is not None and self._apply(spoilt):
            return
        if route == "entra_discovery":
            self._discovery(tenant or "")
        elif route == "entra_token":
            self._token(tenant or "", {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
        else:
            self._entra_error(404, "invalid_request", 90002, "The requested endpoint does not exist.")

    def _discovery(self, tenant: str) -> None:
        emulator = self.server.emulator
        if tenant not in emulator.customers and tenant != HOME_TENANT_ID:
            self._entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            return
        issuer = f"{emulator.authority}/{tenant}/v2.0"
        self._send_json(
            200,
            {
                "issuer": issuer,
                "token_endpoint": f"{emulator.authority}/{tenant}/oauth2/v2.0/token",
                "authorization_endpoint": f"{emulator.authority}/{tenant}/oauth2/v2.0/authorize",
                "tenant_region_scope": "EU",
            },
        )

    def _token(self, tenant: str, form: dict[str, str]) -> None:
        """The client-credentials grant with a federated assertion, checked as Entra checks it."""
        emulator = self.server.emulator
        customer = emulator.customers.get(tenant)
        assertion = emulator.find_token(form.get("client_assertion", ""))
        claims = assertion.claims if assertion is not None else {}
        expected_issuer = f"{emulator.authority}/{HOME_TENANT_ID}/v2.0"
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != JWT_BEARER:
            self._entra_error(400, "invalid_request", 900144, "The request body must contain client_assertion_type.")
        elif customer is None:
            self._entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        elif form.get("client_id") != TENANT_APP_CLIENT_ID:
            self._entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )
        elif assertion is None or assertion.expires_on < time.time():
            self._entra_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        elif claims.get("aud") != EXCHANGE_AUDIENCE:
            self._entra_error(
                401,
                "invalid_client",
                700212,
                "No matching federated identity record found for presented assertion audience.",
            )
        elif claims.get("iss") != expected_issuer or claims.get("sub") != IDENTITY_OBJECT_ID:
            self._entra_error(
                401,
                "invalid_client",
                70021,
                f"No matching federated identity record found for presented assertion. Assertion Issuer: "
                f"'{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'.",
            )
        elif not customer.consented:
            self._entra_error(
                401,
                "invalid_client",
                7000229,
                f"The client application {TENANT_APP_CLIENT_ID} is missing service principal in the tenant {tenant}.",
            )
        elif form.get("scope") != f"{emulator.url}/.default":
            self._entra_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not valid."
            )
        else:
            token = emulator.issue_tenant_token(customer)
            self._send_json(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": emulator.token_lifetime,
                    "ext_expires_in": emulator.token_lifetime,
                    "access_token": token.value,
                },
            )

    def _entra_error(self, status: int, error: str, code: int, description: str) -> None:
        """Entra's OAuth error body: ``error``, ``error_description`` that starts with the AADSTS code."""
        trace = str(uuid.uuid4())
        self._send_json(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
                "error_codes": [code],
                "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": trace,
                "correlation_id": str(uuid.uuid4()),
            },
        )


ENTRA_PATHS = [
    ("GET", re.compile(r"/([^/]+)/v2\.0/\.well-known/openid-configuration"), "entra_discovery"),
    ("POST", re.compile(r"/([^/]+)/oauth2/v2\.0/token"), "entra_token"),
]


ROUTES = [
    ("GET", re.compile(re.escape(STATS_PATH)), "stats"),
    ("GET", re.compile(re.escape(IDENTITY_PATH)), "identity"),
    ("GET", re.compile(re.escape(CONNECTORS_PATH)), "list"),
    ("GET", re.compile(rf"{re.escape(CONNECTORS_PATH)}/([^/]+)"), "get"),
    ("POST", re.compile(rf"{re.escape(CONNECTORS_PATH)}/([^/]+)/sync"), "sync"),
    ("GET", re.compile(re.escape(SERVICE_PRINCIPALS_PATH)), "service_principals"),
    ("POST", re.compile(rf"{re.escape(SERVICE_PRINCIPALS_PATH)}/([^/]+)/appRoleAssignedTo"), "assign_role"),
    ("GET", re.compile(rf"{re.escape(SERVICE_PRINCIPALS_PATH)}/([^/]+)/appRoleAssignments"), "role_assignments"),
]


def _selected(device: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    fields = (query.get("$select") or [""])[0]
    return {k: v for k, v in device.items() if k in fields.split(",")} if fields else device


for _name, _served in SERVED.items():
    if _name == "managedDevices":
        _root = re.escape(f"/{_served.version}{_served.path}")
        ROUTES += [
            ("GET", re.compile(_root), "managedDevices.list"),
            ("GET", re.compile(rf"{_root}/([^/]+)"), "managedDevices.get"),
            ("POST", re.compile(rf"{_root}/([^/]+)/syncDevice"), "managedDevices.sync"),
        ]
        continue
    _root = re.escape(f"/{_served.version}{_served.path}")
    if _served.single:
        ROUTES.append(("GET", re.compile(_root), f"{_name}.get"))
        if _served.action:
            ROUTES.append(("POST", re.compile(rf"{_root}/{_served.action}"), f"{_name}.sync"))
    else:
        ROUTES += [
            ("GET", re.compile(_root), f"{_name}.list"),
            ("POST", re.compile(rf"{_root}/([^/]+)/{_served.action}"), f"{_name}.sync"),
        ]


def _refusal(name: str, found: dict[str, Any]) -> tuple[int, str, str] | None:
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


def _synced(name: str, found: dict[str, Any]) -> None:
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


def _route(method: str, path: str) -> tuple[str, str | None]:
    """The route's name and the id in the path, if any."""
    for verb, pattern, name in ROUTES:
        found = pattern.fullmatch(path)
        if verb == method and found:
            return name, found.group(1) if pattern.groups else None
    return "unknown", None


def _graph_service_principal() -> dict[str, Any]:
    def role(role_id: str, value: str) -> dict[str, Any]:
        return {"id": role_id, "value": value, "allowedMemberTypes": ["Application"], "isEnabled": True}

    return {
        "id": GRAPH_SP_ID,
        "appId": GRAPH_APP_ID,
        "displayName": "Microsoft Graph",
        "appRoles": [
            role("df021288-bdef-4463-88db-98f22de89214", "User.Read.All"),
            role(READ_ROLE_ID, READ_ROLE),
            role(READ_WRITE_ROLE_ID, READ_WRITE_ROLE),
            role(CONFIG_READ_ROLE_ID, CONFIG_READ_ROLE),
            role(CONFIG_READ_WRITE_ROLE_ID, CONFIG_READ_WRITE_ROLE),
            role(MANAGED_READ_ROLE_ID, MANAGED_READ_ROLE),
            role(PRIVILEGED_ROLE_ID, PRIVILEGED_ROLE),
        ],
    }


@functools.cache
@functools.cache
def _gzipped_spaces(size: int) -> bytes:
    """gzip of ``size`` spaces: a few hundred KiB that expand to ``size`` bytes. Made once, when the fault is
    queued: compressing 300 MB takes seconds on a busy machine, which the app would take for a hung answer."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1024 * 1024)
    parts = [packer.compress(chunk[: min(size - done, len(chunk))]) for done in range(0, size, len(chunk))]
    return b"".join([*parts, packer.flush()])


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def emulator_settings(emulator: Emulator) -> dict[str, str]:
    """The app settings that point the app at ``emulator``, as Azure would set them, plus a schedule; with its
    customer tenants, the many-tenants settings and the test CA too."""
    settings = {
        "GRAPH_ENDPOINT": emulator.url,
        "IDENTITY_ENDPOINT": emulator.identity_endpoint,
        "IDENTITY_HEADER": emulator.identity_header,
        "SYNC_SCHEDULE": "0 */15 * * * *",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if emulator.customers:
        settings |= tenant_settings(emulator)
    return settings


def tenant_settings(emulator: Emulator) -> dict[str, str]:
    """Many tenants: every customer tenant, through the multi-tenant app and the user-assigned identity."""
    return {
        "TENANT_IDS": ",".join(emulator.customers),
        "TENANT_APP_CLIENT_ID": TENANT_APP_CLIENT_ID,
        "AZURE_CLIENT_ID": USER_ASSIGNED_CLIENT_ID,
        "AZURE_AUTHORITY_HOST": emulator.authority,
        "REQUESTS_CA_BUNDLE": emulator.ca_bundle,
    }


def read_exports(lines: Iterable[str]) -> dict[str, str]:
    """What ``main`` prints, read back as a shell would: the ``export`` lines up to the end of start-up."""
    settings = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            settings[name] = shlex.split(value)[0]
        if "Ctrl-C" in line:  # the last line of start-up
            break
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Graph and managed-identity emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--tenants",
        type=int,
        default=0,
        choices=range(len(CUSTOMER_TENANT_IDS) + 1),
        help="customer tenants, served through the Entra stand-in",
    )
    args = parser.parse_args()
    emulator = Emulator(port=args.port, entra=args.tenants > 0)
    for tenant_id in CUSTOMER_TENANT_IDS[: args.tenants]:
        emulator.add_tenant(tenant_id, objects=sample_objects())
    with emulator:
        print("# Emulator for Microsoft Graph and the managed-identity endpoint. Paste these lines into a shell:")
        for name, value in emulator_settings(emulator).items():
            print(f"export {name}={shlex.quote(value)}")
        print("# Then: .venv/bin/python -m shared doctor   (or status, sync --dry-run)")
        print("# To try grant, as the emulator's demo administrator:")
        print(
            f"#   AZURE_CLIENT_ID={DEMO_ADMIN_CLIENT_ID} .venv/bin/python -m shared grant --principal-id "
            f"{IDENTITY_OBJECT_ID}"
        )
        print("# Connectors:", ", ".join(emulator.connectors))
        print("# Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
