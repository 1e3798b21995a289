"""HTTP trigger ``/api/sync/{target?}`` (function key required): POST syncs (with ``TENANT_IDS`` and no tenant named,
queues one ``sync-tenants`` message per tenant), GET reports the targets' state."""

import typing

import azure.functions as func

# Every request reaches Graph through these, so they are imported first and at this module's own depth, as a script
# would, rather than seven imports down. CPython 3.13 before 3.13.13 (python/cpython#146123, its fix) unmaps and
# maps a data-stack chunk each time a call crosses a chunk's edge; compiling urllib3's regexes at the deeper point
# cost about 5,600 munmap/mmap pairs and 40 ms of each cold start (benchmarks/README.md).
import requests  # noqa: F401
from azure.identity import ManagedIdentityCredential  # noqa: F401

from shared import webhook


# typing.List: the worker checks an output binding's type with typing_inspect, which refuses list[str].
def main(req: func.HttpRequest, tenantqueue: func.Out[typing.List[str]]) -> func.HttpResponse:  # noqa: UP006
    answer = webhook.handle(req.method, req.get_body(), req.params, req.headers, req.route_params.get("target"))
    if answer.messages:
        tenantqueue.set(list(answer.messages))
    return func.HttpResponse(
        answer.json(), status_code=answer.status, headers=answer.headers, mimetype="application/json"
    )
