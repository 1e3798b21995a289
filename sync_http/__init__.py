"""HTTP trigger ``/api/sync/{target?}`` (function key required): POST syncs (with ``TENANT_IDS`` and no tenant named,
queues one ``sync-tenants`` message per tenant), GET reports the targets' state."""

import typing

import azure.functions as func

from shared import webhook


# typing.List: the worker checks an output binding's type with typing_inspect, which refuses list[str].
def main(req: func.HttpRequest, tenantqueue: func.Out[typing.List[str]]) -> func.HttpResponse:  # noqa: UP006
    answer = webhook.handle(req.method, req.get_body(), req.params, req.headers, req.route_params.get("target"))
    if answer.messages:
        tenantqueue.set(list(answer.messages))
    return func.HttpResponse(
        answer.json(), status_code=answer.status, headers=answer.headers, mimetype="application/json"
    )
