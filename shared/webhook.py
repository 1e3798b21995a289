"""The webhook: parse and validate a request, run, and answer JSON. Nothing here touches Graph directly."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from shared import connectors, run, signatures
from shared.errors import (
    ConfigurationError,
    GraphNotFound,
    InvalidConnectorId,
    InvalidRequest,
    NoConnectors,
    SyncAppError,
    UnknownConnector,
    json_type,
)
from shared.redaction import redact
from shared.settings import SYNC_TYPES, Settings, SyncType, is_sync_type, load_settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REQUESTED_IDS = 100
RECOGNISED_FIELDS = ("syncType", "connectorIds")


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        """Compact, as Graph answers: the C encoder writes it, where ``indent`` would take the slower Python one.
        Scrubbed last of all, so nothing the other side echoed back can carry a secret out."""
        return redact(json.dumps(self.body))


@dataclass(frozen=True)
class SyncRequest:
    sync_type: SyncType | None
    connector_ids: tuple[str, ...] | None
    ignored_fields: tuple[str, ...]


def handle(method: str, body: bytes, params: Mapping[str, str], headers: Mapping[str, str]) -> WebhookAnswer:
    """Answer one webhook call; every expected failure becomes a 4xx/5xx JSON answer, never an exception.

    Order matters: nothing of the body is parsed before its size and its signature are checked.
    """
    try:
        if method.upper() not in ("GET", "POST"):
            raise InvalidRequest("method", "use GET or POST", status=405)
        if len(body) > MAX_BODY_BYTES:
            raise InvalidRequest("body", f"is larger than {MAX_BODY_BYTES // 1024} KiB", status=413)
        settings = load_settings()
        signatures.verify_request(settings.webhook_secret, headers, body, params)
        if method.upper() == "GET":
            return _state(settings, _requested_ids(None, params))
        return _sync(settings, parse_sync_request(body, params))
    except SyncAppError as exc:
        return _error_answer(exc)
    except Exception:  # the last line of defence: log it for us, answer without internals
        log.exception("Unexpected failure in the sync webhook")
        return WebhookAnswer(500, {"error": {"code": "internalError", "message": "Unexpected failure; see logs."}})


def parse_sync_request(body: bytes, params: Mapping[str, str]) -> SyncRequest:
    """Body (a JSON object, or empty) and query together; a value given in both must agree."""
    payload = _json_object(body)
    body_type = payload.get("syncType")
    query_type = params.get("syncType")
    for name, value in (("syncType", body_type), ("syncType (query)", query_type)):
        if value is not None and not is_sync_type(value):
            raise InvalidRequest(
                name, f"must be one of {', '.join(SYNC_TYPES)}; got {_shown(value)}", allowed=SYNC_TYPES
            )
    if body_type is not None and query_type is not None and body_type != query_type:
        raise InvalidRequest("syncType", "the body and the query disagree; give it once")
    return SyncRequest(
        sync_type=cast(SyncType | None, body_type if body_type is not None else query_type),
        connector_ids=_requested_ids(payload, params),
        ignored_fields=tuple(sorted(k for k in payload if k not in RECOGNISED_FIELDS)),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("body", "is not valid UTF-8") from None
    if not text.strip():
        return {}
    try:
        payload = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
        # A lone surrogate escape (\ud800) parses, but is no character: it cannot even be written out again.
        json.dumps(payload, ensure_ascii=False).encode()
    except RecursionError:
        raise InvalidRequest("body", "is nested too deeply") from None
    except UnicodeEncodeError:
        raise InvalidRequest("body", "contains a lone surrogate escape, which is not a character") from None
    except ValueError as exc:  # JSONDecodeError, integers too long to convert, numbers out of range
        raise InvalidRequest("body", f"is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("body", f"must be a JSON object, not {json_type(payload)}")
    return payload


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _requested_ids(payload: dict[str, Any] | None, params: Mapping[str, str]) -> tuple[str, ...] | None:
    from_body = _body_ids(payload.get("connectorIds")) if payload else None
    raw_query = params.get("connectorId")
    from_query = _query_ids(raw_query) if raw_query is not None else None
    if from_body is not None and from_query is not None and set(from_body) != set(from_query):
        raise InvalidRequest("connectorIds", "the body's connectorIds and the query's connectorId disagree")
    return from_body if from_body is not None else from_query


def _body_ids(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("connectorIds", f"must be an array of connector ids, not {json_type(value)}")
    return _validated_ids("connectorIds", value)


def _query_ids(raw: str) -> tuple[str, ...]:
    return _validated_ids("connectorId", [part.strip() for part in raw.split(",")])


def _validated_ids(field_name: str, values: list[object]) -> tuple[str, ...]:
    if not values:
        raise InvalidRequest(field_name, "is empty; leave it out to sync every connector")
    if len(values) > MAX_REQUESTED_IDS:
        raise InvalidRequest(field_name, f"lists more than {MAX_REQUESTED_IDS} ids")
    ids = []
    for index, value in enumerate(values):
        try:
            ids.append(connectors.validate_connector_id(value))
        except InvalidConnectorId as exc:
            raise InvalidRequest(f"{field_name}[{index}]", str(exc)) from None
    return tuple(dict.fromkeys(ids))


def _sync(settings: Settings, request: SyncRequest) -> WebhookAnswer:
    sync_type = request.sync_type or settings.sync_type
    report = run.run_sync(settings, sync_type, request.connector_ids)
    body: dict[str, Any] = {
        "syncType": sync_type,
        "summary": {outcome: report.count(outcome) for outcome in ("accepted", "failed", "skipped")},
        "connectors": [result.as_dict() for result in report.results],
        "ignoredFields": list(request.ignored_fields),
    }
    log.info("%s (webhook)", report)
    if not report.results:
        return _error_answer(NoConnectors("there is no Exchange connector to sync in this tenant"), body)
    if report.ok:
        return WebhookAnswer(202, body)
    return _error_answer(_worst(report.errors), body)


def _state(settings: Settings, requested: tuple[str, ...] | None) -> WebhookAnswer:
    """The connectors' current state: read-only."""
    states = run.target_states(settings, requested)
    body: dict[str, Any] = {"connectors": [c.state() for c in states.connectors]}
    if settings.connector_ids:
        body["missing"] = list(states.missing)
    return WebhookAnswer(200, body)


def _worst(errors: list[SyncAppError]) -> SyncAppError:
    """The error that decides the answer's status: wait-and-retry beats Graph failure beats not-found."""
    return max(errors, key=lambda e: {503: 3, 502: 2}.get(_status(e), 1))


def _status(error: SyncAppError) -> int:
    if isinstance(error, InvalidRequest):
        return error.status
    if isinstance(error, UnknownConnector | NoConnectors | GraphNotFound):
        return 404
    if isinstance(error, (*run.RUN_STOPPING, ConfigurationError)):
        return 503
    return 502


def _error_answer(error: SyncAppError, body: dict[str, Any] | None = None) -> WebhookAnswer:
    status = _status(error)
    detail: dict[str, Any] = {"code": error.kind, "message": str(error)}
    if isinstance(error, InvalidRequest):
        detail["field"] = error.field
        if error.allowed:
            detail["allowedValues"] = list(error.allowed)
    if isinstance(error, ConfigurationError):
        detail["setting"] = error.setting
    advice = run.remedy(error)
    if advice:
        detail["remedy"] = advice
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if status == 503 and retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status >= 500:
        log.warning("Webhook answered %d: %s", status, error)
    return WebhookAnswer(status, {**(body or {}), "error": detail}, headers)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."
