"""The physical floor of this protocol on Python: the identity endpoint and one POST with urllib alone."""

import json
import os
import urllib.request

endpoint = os.environ["GRAPH_ENDPOINT"]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ask = urllib.request.Request(  # noqa: S310 - loopback emulator
    f"{os.environ['IDENTITY_ENDPOINT']}?api-version=2019-08-01&resource={endpoint}",
    headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]},
)
with opener.open(ask, timeout=30) as answer:
    token = json.load(answer)["access_token"]
sync = urllib.request.Request(  # noqa: S310
    f"{endpoint}/v1.0/deviceManagement/exchangeConnectors/{os.environ['CONNECTOR_ID']}/sync",
    data=b'{"syncType": "deltaSync"}',
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    method="POST",
)
with opener.open(sync, timeout=30) as answer:
    if answer.status != 204:
        raise SystemExit(answer.status)
