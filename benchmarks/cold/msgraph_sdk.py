"""Microsoft's documented way: msgraph-sdk's sync.post, with the same credential type (ManagedIdentityCredential).

The SDK only sends tokens to Graph's own hosts, so the emulator's host is allowed explicitly; that changes
nothing about what is imported or sent.
"""

import asyncio
import os
from urllib.parse import urlsplit

import azure.functions  # noqa: F401 - the worker has imported it already
from azure.identity import ManagedIdentityCredential
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.device_management.exchange_connectors.item.sync.sync_post_request_body import (
    SyncPostRequestBody,
)
from msgraph.generated.models.device_management_exchange_connector_sync_type import (
    DeviceManagementExchangeConnectorSyncType,
)

endpoint = os.environ["GRAPH_ENDPOINT"]
auth = AzureIdentityAuthenticationProvider(
    ManagedIdentityCredential(), scopes=[f"{endpoint}/.default"], allowed_hosts=[urlsplit(endpoint).hostname]
)
adapter = GraphRequestAdapter(auth)
adapter.base_url = f"{endpoint}/v1.0"
client = GraphServiceClient(request_adapter=adapter)
body = SyncPostRequestBody(sync_type=DeviceManagementExchangeConnectorSyncType.DeltaSync)
connector = client.device_management.exchange_connectors.by_device_management_exchange_connector_id(
    os.environ["CONNECTOR_ID"]
)
asyncio.run(connector.sync.post(body))
