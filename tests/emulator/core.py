"""The emulator: its state (each tenant's objects, faults, tokens, requests) and the servers that serve it."""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.emulator.entra import EntraServer, b64json
from tests.emulator.faults import Fault, IssuedToken, Received, gzipped_spaces
from tests.emulator.graph import GraphHandler, GraphServer, graph_service_principal
from tests.emulator.names import (
    DEMO_ADMIN_CLIENT_ID,
    DEMO_ADMIN_OBJECT_ID,
    DEMO_ADMIN_ROLES,
    ENTRA_ROUTES,
    EXCHANGE_AUDIENCE,
    HOME_TENANT_ID,
    IDENTITY_OBJECT_ID,
    IDENTITY_PATH,
    QUEUE_SERVICE_PATH,
    READ_WRITE_ROLE,
    SYSTEM_ASSIGNED_CLIENT_ID,
    SYSTEM_ASSIGNED_PRINCIPAL_ID,
    TENANT_APP_CLIENT_ID,
    USER_ASSIGNED_CLIENT_ID,
)
from tests.emulator.targets import FLEET_NAME, SERVED, DeviceFleet, sample_connectors, sample_objects, tenant_connectors


@dataclass
class CustomerTenant:
    """A customer's tenant: its own Intune objects, and what its administrator consented to for the app."""

    tenant_id: str
    connectors: dict[str, dict[str, Any]]
    objects: dict[str, dict[str, dict[str, Any]]]
    devices: DeviceFleet
    roles: tuple[str, ...]
    consented: bool = True


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
        # The storage account's queues, and whether the identity holds a Storage Queue Data role on it.
        self.queues: set[str] = {"sync-tenants"}
        self.queue_role = True
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
        self._server = GraphServer(("127.0.0.1", port), GraphHandler)
        self._server.emulator = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="emulator", daemon=True
        )
        self.customers: dict[str, CustomerTenant] = {}
        self.entra: EntraServer | None = EntraServer(self) if entra else None

    @property
    def url(self) -> str:
        """The Graph root (``GRAPH_ENDPOINT``), which is also the audience of the tokens it accepts."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.url}{IDENTITY_PATH}"

    @property
    def queue_service_uri(self) -> str:
        """Its queue service stand-in (``AzureWebJobsStorage__queueServiceUri``)."""
        return f"{self.url}{QUEUE_SERVICE_PATH}"

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
            gzipped_spaces(spoilt.size)
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
            "device_writes": len(self.calls(f"{FLEET_NAME}.sync")) - self.devices.throttled,
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
        role_values = {r["id"]: r["value"] for r in graph_service_principal()["appRoles"]}
        granted = tuple(role_values[a["appRoleId"]] for a in self.assignments if a["principalId"] == IDENTITY_OBJECT_ID)
        roles = tuple(dict.fromkeys((*self.roles, *granted)))
        claims = {
            "appid": client_id or SYSTEM_ASSIGNED_CLIENT_ID,
            "oid": IDENTITY_OBJECT_ID,
            "roles": list(roles),
            "xms_mirid": "/subscriptions/emulated/resourcegroups/rg/providers/Microsoft.Web/sites/intune-sync",
        }
        if resource == EXCHANGE_AUDIENCE and self.entra is not None:
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
            "nbf": now,
            "exp": now + self.token_lifetime,
            **claims,
        }
        token = IssuedToken(
            value=".".join([b64json({"typ": "JWT", "alg": "RS256"}), b64json(claims), secrets.token_urlsafe(32)]),
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
        "AzureWebJobsStorage__queueServiceUri": emulator.queue_service_uri,
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
