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
The package: ``names`` (ids and roles), ``faults``, ``targets`` (each target's routes and sample data),
``graph`` and ``entra`` (the servers), ``core`` (:class:`Emulator`), ``__main__`` (the command).
Run it standalone with ``python -m tests.emulator`` (``--tenants 2`` adds the Entra stand-in and two tenants).
"""

from tests.emulator.core import CustomerTenant, Emulator, emulator_settings, read_exports, tenant_settings
from tests.emulator.faults import Fault, Received, free_port
from tests.emulator.names import (
    CONFIG_READ_WRITE_ROLE,
    CONFIG_READ_WRITE_ROLE_ID,
    CUSTOMER_TENANT_IDS,
    DEMO_ADMIN_CLIENT_ID,
    EXCHANGE_AUDIENCE,
    GRANT_SCOPE,
    GRAPH_APP_ID,
    GRAPH_SP_ID,
    IDENTITY_OBJECT_ID,
    MANAGED_READ_ROLE,
    PRIVILEGED_ROLE,
    READ_ROLE,
    READ_WRITE_ROLE,
    READ_WRITE_ROLE_ID,
    TENANT_APP_CLIENT_ID,
    USER_ASSIGNED_CLIENT_ID,
)
from tests.emulator.targets import (
    CONNECTORS_PATH,
    DEP_ID,
    DRIVER_ID,
    VPP_IDS,
    DeviceFleet,
    android_settings,
    apns_certificate,
    autopilot_settings,
    connector,
    dep_token,
    sample_connectors,
    vpp_token,
)

__all__ = [
    "CONFIG_READ_WRITE_ROLE",
    "CONFIG_READ_WRITE_ROLE_ID",
    "CONNECTORS_PATH",
    "CUSTOMER_TENANT_IDS",
    "DEMO_ADMIN_CLIENT_ID",
    "DEP_ID",
    "DRIVER_ID",
    "EXCHANGE_AUDIENCE",
    "GRANT_SCOPE",
    "GRAPH_APP_ID",
    "GRAPH_SP_ID",
    "IDENTITY_OBJECT_ID",
    "MANAGED_READ_ROLE",
    "PRIVILEGED_ROLE",
    "READ_ROLE",
    "READ_WRITE_ROLE",
    "READ_WRITE_ROLE_ID",
    "TENANT_APP_CLIENT_ID",
    "USER_ASSIGNED_CLIENT_ID",
    "VPP_IDS",
    "CustomerTenant",
    "DeviceFleet",
    "Emulator",
    "Fault",
    "Received",
    "android_settings",
    "apns_certificate",
    "autopilot_settings",
    "connector",
    "dep_token",
    "emulator_settings",
    "free_port",
    "read_exports",
    "sample_connectors",
    "tenant_settings",
    "vpp_token",
]
