"""Graph's answers: a :class:`GraphResponse`, or the typed error it means (Graph's error body, throttling with
its Retry-After, the failure that outlasted the retries, a budget used up).

https://learn.microsoft.com/graph/errors
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import requests

from shared.errors import (
    GraphError,
    GraphForbidden,
    GraphNotFound,
    GraphProtocolError,
    GraphThrottled,
    GraphUnauthorized,
    GraphUnreachable,
    OutOfTime,
)
from shared.redaction import redact
from shared.transport import parse_retry_after

if TYPE_CHECKING:
    from shared.transport import Deadline

THROTTLE_STATUSES = frozenset({429, 503})
# What to tell a caller to wait when Graph throttled without saying for how long.
DEFAULT_THROTTLE_WAIT = 30


class GraphResponse(NamedTuple):
    status: int
    body: Any
    request_id: str | None
    client_request_id: str


def budget_exhausted(deadline: Deadline, client_request_id: str) -> OutOfTime:
    return OutOfTime(
        f"the run's time budget of {deadline.seconds:g} s (GRAPH_TIME_BUDGET_SECONDS) is used up",
        client_request_id=client_request_id,
    )


def request_id_of(response: requests.Response | None) -> str | None:
    return response.headers.get("request-id") if response is not None else None


def request_id_text(response: requests.Response | None) -> str:
    request_id = request_id_of(response)
    return f", request-id={request_id}" if request_id else ""


def retry_after_of(response: requests.Response | None) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After")) if response is not None else None


def answer_result(response: requests.Response, client_request_id: str, token_context: str) -> GraphResponse:
    if not 200 <= response.status_code < 300:
        raise error_from_response(response, client_request_id, token_context if response.status_code == 401 else "")
    body = None
    if response.content:
        try:
            body = response.json()
        except (ValueError, RecursionError):
            raise GraphProtocolError(
                "Graph answered with a body that is not JSON",
                status=response.status_code,
                request_id=request_id_of(response),
                client_request_id=client_request_id,
            ) from None
    return GraphResponse(response.status_code, body, request_id_of(response), client_request_id)


def final_error(
    response: requests.Response | None,
    failure: requests.RequestException | None,
    client_request_id: str,
    why: str,
) -> GraphError:
    if response is not None:
        return error_from_response(response, client_request_id, f" (gave up {why})")
    kind = "timed out" if isinstance(failure, requests.Timeout) else "connection failed"
    return GraphUnreachable(f"Graph could not be reached: {kind} (gave up {why})", client_request_id=client_request_id)


def error_from_response(response: requests.Response, client_request_id: str, suffix: str = "") -> GraphError:
    """Graph's error body: ``{"error": {"code", "message", "innerError": {"request-id", ...}}}``.

    https://learn.microsoft.com/graph/errors
    """
    code, message, inner = None, None, {}
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError, RecursionError):
        error = None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        found = error.get("innerError", error.get("innererror"))
        inner = found if isinstance(found, dict) else {}
    status = response.status_code
    details: dict[str, Any] = {
        "status": status,
        "code": redact(code[:100]) if code else None,
        "request_id": request_id_of(response) or _str_or_none(inner.get("request-id")),
        "client_request_id": client_request_id,
    }
    text = " ".join(filter(None, [f"Graph answered {status}", details["code"]]))
    if message:
        text += f": {redact(message[:500])}"
    if status in THROTTLE_STATUSES:
        seconds = retry_after_of(response)
        retry_after = max(1, round(seconds)) if seconds is not None else DEFAULT_THROTTLE_WAIT
        return GraphThrottled(f"{text}{suffix}", retry_after=retry_after, **details)
    error_class = {401: GraphUnauthorized, 403: GraphForbidden, 404: GraphNotFound}.get(status, GraphError)
    return error_class(f"{text}{suffix}", **details)


def _str_or_none(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None
