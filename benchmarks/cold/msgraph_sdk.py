"""Microsoft's documented path: msgraph-sdk's ``sync.post``, with the client built the way Microsoft's app-only
snippets build it (an ``azure.identity.aio`` credential, AzureIdentityAuthenticationProvider, GraphRequestAdapter,
GraphServiceClient) and the managed-identity credential. Async credentials need aiohttp, as azure-identity says.

``--sync-credential`` passes azure-identity's synchronous ManagedIdentityCredential instead, which the SDK also
accepts (no aiohttp; the token call blocks the event loop).

The SDK only sends tokens to Graph's own hosts, so the emulator's host is allowed explicitly; that changes
nothing about what is imported or sent.
"""

import asyncio
import os
import sys
from urllib.parse import urlsplit

import azure.functions  # noqa: F401 - the worker has imported it already
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.device_management.exchange_connectors.item.sync.sync_post_request_body import (
    SyncPostRequestBody,
)
from msgraph.generated.models.device_management_exchange_connector_sync_type import (
    DeviceManagementExchangeConnectorSyncType,
)

SYNC_CREDENTIAL = "--sync-credential" in sys.argv
if SYNC_CREDENTIAL:  # each variant imports only its own credential, as an application would
    from azure.identity import ManagedIdentityCredential
else:
    from azure.identity.aio import ManagedIdentityCredential

endpoint = os.environ["GRAPH_ENDPOINT"]


async def sync_once(credential: object) -> None:
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=[f"{endpoint}/.default"], allowed_hosts=[urlsplit(endpoint).hostname]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = f"{endpoint}/v1.0"
    client = GraphServiceClient(request_adapter=adapter)
    body = SyncPostRequestBody(sync_type=DeviceManagementExchangeConnectorSyncType.DeltaSync)
    connector = client.device_management.exchange_connectors.by_device_management_exchange_connector_id(
        os.environ["CONNECTOR_ID"]
    )
    await connector.sync.post(body)


async def main() -> None:
    if SYNC_CREDENTIAL:
        with ManagedIdentityCredential() as credential:
            await sync_once(credential)
    else:
        async with ManagedIdentityCredential() as credential:
            await sync_once(credential)


asyncio.run(main())
