"""HTTP trigger ``/api/status`` (function key required; ``?code=`` works from a browser): the status page."""

import azure.functions as func

from shared import status_page


def main(req: func.HttpRequest) -> func.HttpResponse:
    page = status_page.handle(req.params)
    return func.HttpResponse(
        page.html, status_code=page.status, headers=page.headers, mimetype="text/html", charset="utf-8"
    )
