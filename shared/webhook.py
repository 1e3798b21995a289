"""The webhook: parse and validate a request, run, and answer JSON. Nothing here touches Graph directly.

Routes: ``/api/sync`` covers every target in ``SYNC_TARGETS`` (or, given the fields that predate targets, the one
target they name, exactly as before: shared.legacy); ``/api/sync/{target}`` covers one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from shared import legacy, run, signatures, status
from shared import tenants as tenancy
from shared.errors import (
    LISTER,
    ConfigurationError,
    InvalidObjectId,
    InvalidRequest,
    NothingToSync,
    StoreUnavailable,
    SyncAppError,
    TargetNotEnabled,
    TenantNotConsented,
    UnknownTarget,
    UnknownTenant,
    json_type,
)
from shared.process import PROCESS
from shared.records import OUTCOMES
from shared.redaction import redact
from shared.settings import Settings, load_settings
from shared.targets import SYNC_TYPES, TARGETS, Target
from shared.targets.base import validate_object_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REQUESTED_IDS = 100
# A webhook that names its tenants runs them at once, inside one HTTP answer; more are queued (name none).
MAX_NAMED_TENANTS = 10
# GET /api/sync/history: the route's {target} segment that is no target.
HISTORY_ROUTE = "history"
RECOGNISED_FIELDS = ("ids", "tenants", *legacy.FIELDS)


class WebhookAnswer(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = MappingProxyType({})
    messages: tuple[str, ...] = ()  # for the sync-tenants queue (shared.dispatch)

    def json(self) -> str:
        """Compact, as Graph answers: the C encoder writes it, where ``indent`` would take the slower Python one.
        Scrubbed last of all, so nothing the other side echoed back can carry a secret out."""
        return redact(json.dumps(self.body))


class SyncRequest(NamedTuple):
    targets: tuple[str, ...] | None  # None: every target in SYNC_TARGETS
    ids: tuple[str, ...] | None
    sync_type: str | None
    ignored_fields: tuple[str, ...]
    tenants: tuple[str | None, ...] = tenancy.HOME
    queued: bool = False  # with TENANT_IDS and no tenant named: one queue message per tenant, not a run here


def handle(
    method: str,
    body: bytes,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    target: str | None = None,
) -> WebhookAnswer:
    """Answer one webhook call; every expected failure becomes a 4xx/5xx JSON answer, never an exception.

    Order matters: nothing of the body is parsed before its size and its signature are checked.
    """
    PROCESS.start()
    delivery = None
    try:
        if method.upper() not in ("GET", "POST"):
            raise InvalidRequest("method", "use GET or POST", status=405)
        if len(body) > MAX_BODY_BYTES:
            raise InvalidRequest("body", f"is larger than {MAX_BODY_BYTES // 1024} KiB", status=413)
        settings = load_settings()
        delivery = signatures.verify_request(settings.webhook_secret, headers, body, params)
        answer = _answer(settings, method, body, params, target)
    except SyncAppError as exc:
        answer = _error_answer(exc)
    except Exception:  # the last line of defence: log it for us, answer without internals
        log.exception("Unexpected failure in the sync webhook")
        answer = WebhookAnswer(500, {"error": {"code": "internalError", "message": "Unexpected failure; see logs."}})
    if delivery is not None:
        delivery.settle(answer.status)
    return answer


def _answer(
    settings: Settings, method: str, body: bytes, params: Mapping[str, str], target: str | None
) -> WebhookAnswer:
    if target == HISTORY_ROUTE and method.upper() == "GET":
        return _history(settings, params)
    routed = enabled_target(settings, target) if target else None
    if method.upper() == "GET":
        ids = _ids(routed, None, params) if routed else _legacy_ids(None, params)
        if routed is None and ids is not None:
            routed = enabled_target(settings, legacy.TARGET)
        tenants = _tenants(settings, None, params, ids)
        live = _flag(params, "live")
        if settings.tenants and settings.stored and not live and ids is None:
            return _stored_state(settings, routed.name if routed else None, tenants)
        if live and len(tenants) > MAX_NAMED_TENANTS:
            raise InvalidRequest(
                "live", f"reads Graph for at most {MAX_NAMED_TENANTS} tenants: name them with ?tenant=<id>,<id>"
            )
        return _state(settings, routed.name if routed else None, ids, tenants)
    return _sync(settings, parse_sync_request(body, params, settings, routed))


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None or value.lower() in ("false", "0", ""):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise InvalidRequest(name, f"must be true or false, not {_shown(value)}", allowed=("true", "false"))


def _stored_state(settings: Settings, target: str | None, tenants: tuple[str | None, ...]) -> WebhookAnswer:
    """With TENANT_IDS and a storage account: the store's view of each tenant, no Graph call (``?live=true`` reads
    Graph)."""
    found = status.stored_tenants(settings, tenants)
    if target is not None:
        for tenant in found.values():
            tenant["targets"] = {name: shown for name, shown in tenant["targets"].items() if name == target}
    return WebhookAnswer(200, {"source": "store", "tenants": found})


def _history(settings: Settings, params: Mapping[str, str]) -> WebhookAnswer:
    """``GET /api/sync/history?tenant=&target=&id=``: an object's stored outcomes, newest first."""
    from shared import store  # noqa: PLC0415 - only on this route

    name = params.get("target")
    if not name:
        raise InvalidRequest("target", "is required: the target whose object's history to show")
    target = enabled_target(settings, name)
    raw_id = params.get("id")
    if raw_id is None:
        raise InvalidRequest("id", f"is required: the id of the {target.noun} ({LISTER} lists them)")
    try:
        object_id = validate_object_id(raw_id)
    except InvalidObjectId as exc:
        raise InvalidRequest("id", str(exc)) from None
    if settings.tenants and params.get("tenant") is None:
        raise InvalidRequest("tenant", "is required with TENANT_IDS: the tenant the object belongs to")
    (tenant,) = tenancy.selected(settings, [params["tenant"]] if "tenant" in params else None, "tenant")
    if not settings.stored:
        raise StoreUnavailable("no storage account is set (AzureWebJobsStorage), so no history is kept")
    entries = store.object_history(settings, tenant, target.name, object_id)
    body: dict[str, Any] = {"tenant": tenant, "target": target.name, "id": object_id, "history": entries}
    return WebhookAnswer(200, body if tenant else {k: v for k, v in body.items() if k != "tenant"})


def enabled_target(settings: Settings, name: str) -> Target:
    """The target a route names: one that exists (else 404 unknownTarget) and SYNC_TARGETS enables (else 404)."""
    target = TARGETS.get(name)
    if target is None:
        raise UnknownTarget(f"{name[:60]!r} is no sync target; the targets are {', '.join(TARGETS)}")
    if name not in settings.targets:
        raise TargetNotEnabled(
            f"{name} is not enabled: add it to SYNC_TARGETS (now {', '.join(settings.targets)}) to sync it"
        )
    return target


def parse_sync_request(
    body: bytes, params: Mapping[str, str], settings: Settings, routed: Target | None = None
) -> SyncRequest:
    """Body (a JSON object, or empty) and query together; a value given in both must agree."""
    payload = _json_object(body)
    sync_type = _sync_type(payload, params)
    ignored = tuple(sorted(k for k in payload if k not in RECOGNISED_FIELDS))
    if routed is None:
        if "ids" in payload or "id" in params:
            raise InvalidRequest("ids", "name the target in the route: POST /api/sync/{target} with ids")
        ids = _legacy_ids(payload, params)
        tenants = _tenants(settings, payload, params, ids)
        queued = _queued(settings, payload, params, ids)
        if ids is None and sync_type is None:
            return SyncRequest(None, None, None, ignored, tenants, queued)
        return SyncRequest((enabled_target(settings, legacy.TARGET).name,), ids, sync_type, ignored, tenants, queued)
    if sync_type is not None and not routed.takes_sync_type:
        taking = ", ".join(name for name, target in TARGETS.items() if target.takes_sync_type)
        raise InvalidRequest("syncType", f"is accepted for {taking} only, not {routed.name}")
    ids = _ids(routed, payload, params)
    tenants = _tenants(settings, payload, params, ids)
    return SyncRequest((routed.name,), ids, sync_type, ignored, tenants, _queued(settings, payload, params, ids))


def _queued(
    settings: Settings, payload: dict[str, Any], params: Mapping[str, str], ids: tuple[str, ...] | None
) -> bool:
    """Every tenant of TENANT_IDS, none named: queued, one invocation each, as the timer does."""
    return bool(settings.tenants) and ids is None and "tenants" not in payload and "tenant" not in params


def _tenants(
    settings: Settings, payload: dict[str, Any] | None, params: Mapping[str, str], ids: tuple[str, ...] | None
) -> tuple[str | None, ...]:
    """``tenants`` (body) or ``tenant`` (query): the tenants a call covers, each one of TENANT_IDS."""
    from_body = (payload or {}).get("tenants")
    if from_body is not None and (not isinstance(from_body, list) or not from_body):
        raise InvalidRequest("tenants", f"must be a non-empty array of tenant ids, not {_shown(from_body)}")
    raw_query = params.get("tenant")
    from_query = None if raw_query is None else [part.strip() for part in raw_query.split(",")]
    if max(len(from_body or ()), len(from_query or ())) > MAX_NAMED_TENANTS:
        raise InvalidRequest(
            "tenants",
            f"names more than {MAX_NAMED_TENANTS} tenants, which one answer cannot wait for: name none, and every "
            "tenant is queued (one invocation each; README, 'Many tenants')",
        )
    chosen = tenancy.selected(settings, from_body, "tenants") if from_body is not None else None
    if from_query is not None:
        asked = tenancy.selected(settings, from_query, "tenant")
        if chosen is not None and set(chosen) != set(asked):
            raise InvalidRequest("tenants", "the body and the query name different tenants; give them once")
        chosen = asked
    chosen = chosen or tenancy.selected(settings)
    if ids is not None and len(chosen) > 1:
        raise InvalidRequest("tenant", 'ids belong to one tenant: name it with ?tenant=<id> or "tenants": [<id>]')
    return chosen


def _sync_type(payload: dict[str, Any], params: Mapping[str, str]) -> str | None:
    body_type = payload.get("syncType")
    query_type = params.get("syncType")
    for name, value in (("syncType", body_type), ("syncType (query)", query_type)):
        if value is not None and value not in SYNC_TYPES:
            raise InvalidRequest(
                name, f"must be one of {', '.join(SYNC_TYPES)}; got {_shown(value)}", allowed=SYNC_TYPES
            )
    if body_type is not None and query_type is not None and body_type != query_type:
        raise InvalidRequest("syncType", "the body and the query disagree; give it once")
    return body_type if body_type is not None else query_type


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


def _ids(target: Target, payload: dict[str, Any] | None, params: Mapping[str, str]) -> tuple[str, ...] | None:
    """``ids`` (body) or ``id`` (query) for a routed target; the legacy target also takes its older names."""
    ids = _agreed("ids", _body_ids("ids", (payload or {}).get("ids")), _query_ids("id", params.get("id")))
    if target.name == legacy.TARGET:
        ids = _agreed("ids", ids, _legacy_ids(payload, params))
    if ids is not None and target.single:
        raise InvalidRequest("ids", f"{target.name} is one object per tenant: leave ids out")
    return ids


def _legacy_ids(payload: dict[str, Any] | None, params: Mapping[str, str]) -> tuple[str, ...] | None:
    from_body = _body_ids(legacy.IDS_FIELD, (payload or {}).get(legacy.IDS_FIELD))
    return _agreed(legacy.IDS_FIELD, from_body, _query_ids(legacy.IDS_PARAM, params.get(legacy.IDS_PARAM)))


def _agreed(name: str, first: tuple[str, ...] | None, second: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if first is not None and second is not None and set(first) != set(second):
        raise InvalidRequest(name, "the body and the query name different ids; give them once")
    return first if first is not None else second


def _body_ids(field_name: str, value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest(field_name, f"must be an array of ids, not {json_type(value)}")
    return _validated_ids(field_name, value)


def _query_ids(field_name: str, raw: str | None) -> tuple[str, ...] | None:
    return None if raw is None else _validated_ids(field_name, [part.strip() for part in raw.split(",")])


def _validated_ids(field_name: str, values: list[object]) -> tuple[str, ...]:
    if not values:
        raise InvalidRequest(field_name, "is empty; leave it out to sync every object")
    if len(values) > MAX_REQUESTED_IDS:
        raise InvalidRequest(field_name, f"lists more than {MAX_REQUESTED_IDS} ids")
    ids = []
    for index, value in enumerate(values):
        try:
            ids.append(validate_object_id(value))
        except InvalidObjectId as exc:
            raise InvalidRequest(f"{field_name}[{index}]", str(exc)) from None
    return tuple(dict.fromkeys(ids))


def _sync(settings: Settings, request: SyncRequest) -> WebhookAnswer:
    if request.queued:
        return _queue(settings, request)
    report = run.run_sync(
        settings, request.targets, ids=request.ids, sync_type=request.sync_type, tenants=request.tenants
    )
    report = run.stored(settings, report)
    results = [result.as_dict() for result in report.results]
    body: dict[str, Any] = {"syncType": report.sync_type} if report.sync_type else {}
    if settings.tenants:
        body["tenants"] = list(report.tenants)
    body["summary"] = {outcome: report.count(outcome) for outcome in OUTCOMES}
    body["results"] = results
    legacy.sync_answer(body, report.targets, results)
    body["ignoredFields"] = list(request.ignored_fields)
    if report.stored is not None:
        body["stored"] = report.stored
    log.info("%s (webhook)", report)
    if not report.results:
        only = report.targets[0] if len(report.targets) == 1 else None
        kind = TARGETS[only].none_code if only else "nothingToSync"
        names = ", ".join(report.targets)
        return _error_answer(
            NothingToSync(f"there is nothing to sync in this tenant ({names})", target=only, kind=kind), body
        )
    if report.ok:
        return WebhookAnswer(202, body)
    worst = _worst([r for r in report.results if r.error is not None])
    return _error_answer(worst.error, body, TARGETS[worst.target], logged=True, tenant=worst.tenant)


def _queue(settings: Settings, request: SyncRequest) -> WebhookAnswer:
    from shared import dispatch  # noqa: PLC0415 - only with TENANT_IDS

    queued = dispatch.dispatch(settings.tenants, by="webhook", targets=request.targets, sync_type=request.sync_type)
    body = {
        "queued": len(queued.messages),
        "runId": queued.run_id,
        "queue": dispatch.QUEUE,
        "ignoredFields": list(request.ignored_fields),
    }
    return WebhookAnswer(202, body, messages=tuple(queued.messages))


def _state(
    settings: Settings, target: str | None, requested: tuple[str, ...] | None, tenants: tuple[str | None, ...]
) -> WebhookAnswer:
    """Each target's objects and their state, per tenant with TENANT_IDS: read-only."""
    reports = status.tenant_reports(settings, tenants, (target,) if target else None, requested, watch=target is None)
    states = [state for report in reports for state in report.states]
    body: dict[str, Any] = {}
    if settings.tenants:
        body["tenants"] = {report.tenant: report.as_dict() for report in reports}
    else:
        part = reports[0].as_dict()
        legacy.state_answer(body, part, settings.ids_for(legacy.TARGET))
        body.update(part)
        if settings.stored:
            status.last_outcomes(settings, body)
    failed = [state for state in states if state.error is not None]
    if failed and len(failed) == len(states):
        worst = _worst(failed)
        return _error_answer(worst.error, body, TARGETS[worst.target], tenant=worst.tenant)
    return WebhookAnswer(200, body)


def _worst(failures: list[Any]) -> Any:
    """The failure that decides the answer's status: wait-and-retry beats Graph failure beats not-found."""
    return max(failures, key=lambda f: {503: 3, 502: 2, 500: 2}.get(f.error.http_status, 1))


def _error_answer(
    error: SyncAppError,
    body: dict[str, Any] | None = None,
    target: Target | None = None,
    *,
    logged: bool = False,
    tenant: str | None = None,
) -> WebhookAnswer:
    """``logged``: the run already wrote a line for this error; one line per event is enough. ``tenant``: the
    customer tenant it happened in, for the remedy."""
    status = error.http_status
    detail: dict[str, Any] = {"code": error.kind, "message": str(error)}
    if isinstance(error, InvalidRequest):
        detail["field"] = error.field
        if error.allowed:
            detail["allowedValues"] = list(error.allowed)
    if isinstance(error, ConfigurationError):
        detail["setting"] = error.setting
        detail["settings"] = error.settings
    if isinstance(error, TargetNotEnabled):
        detail["setting"] = "SYNC_TARGETS"
    if isinstance(error, UnknownTenant):
        detail["setting"] = "TENANT_IDS"
    if isinstance(error, TenantNotConsented):
        detail["tenant"] = error.tenant
        detail["consentUrl"] = error.consent_url
    named = getattr(error, "target", None)
    advice = error.remedy(target or (TARGETS.get(named) if isinstance(named, str) else None), tenant=tenant)
    if advice:
        detail["remedy"] = advice
    headers = {}
    if status == 503 and error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if status >= 500 and not logged:
        log.warning("Webhook answered %d: %s", status, error)
    return WebhookAnswer(status, {**(body or {}), "error": detail}, headers)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."
