"""The ids, roles, paths and limits the emulator and the tests share."""

from __future__ import annotations

READ_WRITE_ROLE = "DeviceManagementServiceConfig.ReadWrite.All"


READ_ROLE = "DeviceManagementServiceConfig.Read.All"


SERVICE_PRINCIPALS_PATH = "/v1.0/servicePrincipals"


IDENTITY_PATH = "/msi/token"


STATS_PATH = "/_emulator/stats"


# A Storage queue service stand-in, for doctor's check that the identity reaches the tenants' queue.
QUEUE_SERVICE_PATH = "/_storage/queue"
STORAGE_AUDIENCE = "https://storage.azure.com"


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
