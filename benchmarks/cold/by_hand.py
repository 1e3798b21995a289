"""The floor with the same libraries: azure-identity's managed identity and one requests.post, nothing else."""

import os

import azure.functions  # noqa: F401 - the worker has imported it already
import requests
from azure.identity import ManagedIdentityCredential

endpoint = os.environ["GRAPH_ENDPOINT"]
token = ManagedIdentityCredential().get_token(f"{endpoint}/.default").token
answer = requests.post(
    f"{endpoint}/v1.0/deviceManagement/exchangeConnectors/{os.environ['CONNECTOR_ID']}/sync",
    json={"syncType": "deltaSync"},
    headers={"Authorization": f"Bearer {token}"},
    timeout=30,
)
if answer.status_code != 204:
    raise SystemExit(answer.text)
