"""HTTP trigger ``/api/sync/{target?}`` (function key required): POST syncs, GET reports the targets' state."""

import azure.functions as func

from shared import webhook


def main(req: func.HttpRequest) -> func.HttpResponse:
    answer = webhook.handle(req.method, req.get_body(), req.params, req.headers, req.route_params.get("target"))
    return func.HttpResponse(
        answer.json(), status_code=answer.status, headers=answer.headers, mimetype="application/json"
    )
