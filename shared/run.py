"""A sync run: which targets and objects, sync each, and one report (shared.records); what GET /api/sync reads
is shared.status.

One object's failure never stops the others, and one target's never stops the other targets. Only what would
fail every further call stops the run (no token, the time budget used up); throttling stops the rest of its own
target, whose resource Graph is throttling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING

from shared import tenants as tenancy
from shared.clients import client_for
from shared.coalescing import Deferred, SyncGate
from shared.errors import (
    GraphError,
    GraphThrottled,
    IdentityUnavailable,
    InternalError,
    OutOfTime,
    SyncAppError,
    SyncFailed,
    UnknownObject,
    contained,
)
from shared.graph import Deadline, GraphClient
from shared.process import PROCESS
from shared.records import ObjectResult, SyncReport
from shared.settings import Settings, load_settings
from shared.targets import TARGETS, Skip, SyncObject, Target

if TYPE_CHECKING:
    from shared.watch import WatchReport

log = logging.getLogger(__name__)

# After these, every further call would fail the same way: stop sending for the rest of the run.
RUN_STOPPING = (IdentityUnavailable, OutOfTime)
# After this, further calls to the same target would only add to the throttling of its resource.
TARGET_STOPPING = (GraphThrottled,)
# Per process: requests for a sync already in flight join it; SYNC_MIN_INTERVAL_SECONDS paces each object.


def resolve_objects(
    graph: GraphClient,
    settings: Settings,
    target: Target,
    requested: Sequence[str] | None,
    deadline: Deadline,
    *,
    read_configured: bool = False,
) -> Sequence[SyncObject]:
    """The objects a run acts on. Configured ids need no Graph call (unless ``read_configured``, to report their
    state); requested ones must be known."""
    configured = settings.ids_for(target.name)
    options = settings.options_for(target.name)
    if configured and not read_configured:
        _check_requested(target, requested, configured, configured)
        return [SyncObject(target.name, i) for i in requested or configured]
    if configured:
        found = {o.id: o for o in target.read(graph, deadline, options)}
        _check_requested(target, requested, [i for i in configured if i in found], configured)
        return [found[i] for i in requested or configured if i in found]
    if requested:
        found = {o.id: o for o in target.find(graph, deadline, requested, options)}
        _check_requested(target, requested, tuple(found), ())
        return [found[i] for i in requested]
    return target.read(graph, deadline, options)


def _check_requested(
    target: Target, requested: Sequence[str] | None, known: Sequence[str], configured: Sequence[str]
) -> None:
    unknown = [i for i in requested or () if i not in known]
    if unknown:
        where = f"not in {target.ids_setting}" if configured else f"no {target.noun} with this id in the tenant"
        raise UnknownObject(unknown, where, target=target.name, kind=target.unknown_code)


def run_sync(
    settings: Settings,
    targets: Sequence[str] | None = None,
    *,
    ids: Sequence[str] | None = None,
    sync_type: str | None = None,
    deadline: Deadline | None = None,
    tenants: Sequence[str | None] | None = None,
) -> SyncReport:
    """Sync every object of ``targets`` (default ``SYNC_TARGETS``) in each of ``tenants`` (default: every one);
    ``ids`` narrows a single target. Raises only for requested ids that are not the target's objects."""
    started = time.monotonic()
    names = tuple(targets or settings.targets)
    deadline = deadline or Deadline(settings.graph.time_budget)
    chosen = tuple(tenants or tenancy.selected(settings))
    defaults = [TARGETS[n].default_sync_type(settings.options_for(n)) for n in names if TARGETS[n].takes_sync_type]
    kind_of_sync = (sync_type or defaults[0]) if defaults else None

    def run_tenant(tenant: str | None) -> tuple[list[ObjectResult], dict[str, tuple[SyncObject, ...]]]:
        return _run_tenant(settings, tenant, names=names, ids=ids, sync_type=kind_of_sync, deadline=deadline)

    runs = tenancy.for_each(settings, chosen, run_tenant)
    results = tuple(result for tenant_results, _ in runs for result in tenant_results)
    read = {tenant: tenant_read for tenant, (_, tenant_read) in zip(chosen, runs, strict=True)}
    return SyncReport(names, kind_of_sync, results, _ms_since(started), read, chosen)


def _run_tenant(
    settings: Settings,
    tenant: str | None,
    *,
    names: tuple[str, ...],
    ids: Sequence[str] | None,
    sync_type: str | None,
    deadline: Deadline,
) -> tuple[list[ObjectResult], dict[str, tuple[SyncObject, ...]]]:
    """One tenant's part of a run: its results, and the whole targets it read."""
    read: dict[str, tuple[SyncObject, ...]] = {}
    graph = client_for(settings.graph, tenant)
    results: list[ObjectResult] = []
    stopped_by: SyncAppError | None = None
    where = f" in tenant {tenant}" if tenant else ""

    def record(result: ObjectResult) -> None:
        results.append(result if tenant is None else result._replace(tenant=tenant))
        _log_result(results[-1])

    for name in names:
        target = TARGETS[name]
        if stopped_by is not None:
            record(ObjectResult(name, None, "skipped", 0, reason="notAttempted", error=stopped_by))
            continue
        read_started = time.monotonic()
        try:
            objects = contained(
                log, f"listing {name}{where}", partial(resolve_objects, graph, settings, target, ids, deadline)
            )
        except (GraphError, IdentityUnavailable, InternalError) as exc:
            record(
                ObjectResult(
                    name,
                    None,
                    "failed",
                    _ms_since(read_started),
                    graph_status=exc.status,
                    request_id=exc.request_id,
                    client_request_id=exc.client_request_id,
                    detail=f"Could not list the {name} to sync{where}: {exc}",
                    error=exc,
                )
            )
            stopped_by = exc if isinstance(exc, RUN_STOPPING) else None
            continue
        if ids is None and not settings.ids_for(name):
            read[name] = tuple(objects)
        if not objects:
            log.log(
                logging.WARNING if target.none_advice else logging.INFO, "%s%s: %s", name, where, target.nothing_found()
            )
        throttled: SyncAppError | None = None
        for obj in objects:
            held_by = stopped_by or throttled
            if held_by is not None:
                result = ObjectResult(name, obj.id, "skipped", 0, reason="notAttempted", error=held_by)
            else:
                result = _sync_gated(graph, settings, target, obj, sync_type=sync_type, deadline=deadline)
                if isinstance(result.error, RUN_STOPPING):
                    stopped_by = result.error
                elif isinstance(result.error, TARGET_STOPPING):
                    throttled = result.error
            record(result)
    return results, read


def on_schedule(*, past_due: bool) -> list[str]:
    """The timer's invocation. With TENANT_IDS it only dispatches: the settings are checked (a wrong one fails it,
    naming the setting), and the queue messages returned, one per tenant, asking nothing of the identity, Entra or
    Graph. Without, it syncs inline (:func:`scheduled_sync`) and returns none."""
    PROCESS.start()
    if past_due:
        log.warning("The sync timer is past due: the previous run was missed or overran (host restart, scale-in)")
    settings = load_settings()
    if not settings.tenants:
        scheduled_sync(settings)
        return []
    from shared import dispatch  # noqa: PLC0415 - only with TENANT_IDS

    return dispatch.dispatch(settings.tenants, by="timer").messages


def scheduled_sync(settings: Settings) -> SyncReport:
    """The timer's inline run: every target in ``SYNC_TARGETS``, in every tenant, and the expiry watch; raises
    :class:`SyncFailed` after trying them all."""
    report = sync_and_watch(settings)
    if not report.ok:
        raise SyncFailed(" ".join([report.summary(), *report.failures(), *report.remedies()]))
    return report


def sync_and_watch(
    settings: Settings,
    tenants: Sequence[str | None] | None = None,
    targets: Sequence[str] | None = None,
    sync_type: str | None = None,
) -> SyncReport:
    """A cycle over ``tenants`` (default: every one) inside one time budget: the ``targets`` (default: every enabled
    one) and, when all of them ran, the expiry watch; then, with a storage account, the results are stored. The
    watch never fails a run: that is kept for failed syncs."""
    deadline = Deadline(settings.graph.time_budget)
    report = run_sync(settings, targets, sync_type=sync_type, deadline=deadline, tenants=tenants)
    log.info("%s", report)
    watched: dict[str | None, WatchReport] = {}
    if targets is None and settings.expiry_warning_days:
        from shared import watch  # noqa: PLC0415 - as in expiry_watch

        def check(tenant: str | None) -> None:
            graph = client_for(settings.graph, tenant)
            found = watch.check(graph, watch.rules_for(settings), deadline, report.read.get(tenant), tenant)
            watch.log_findings(found)
            watched[tenant] = found

        tenancy.for_each(settings, report.tenants, check)
    report = stored(settings, report, watched)
    if watched and settings.stored and (settings.teams_url or settings.notify_url):
        from shared import notify  # noqa: PLC0415 - only with a destination

        notify.notify_tenants(settings, watched, deadline)
    return report


def stored(
    settings: Settings, report: SyncReport, watched: Mapping[str | None, WatchReport] | None = None
) -> SyncReport:
    """The report, written to the store when there is one (never failing the run: ``stored`` says how it went)."""
    if not settings.stored:
        return report
    from shared import store  # noqa: PLC0415 - only with a storage account

    return replace(report, stored=store.record_report(settings, report, watched))


def _new_gate() -> SyncGate[ObjectResult]:
    """Made once per process; ``SyncGate[ObjectResult]`` spelled at each call would build a typing alias each time."""
    return SyncGate()


def _sync_gated(
    graph: GraphClient,
    settings: Settings,
    target: Target,
    obj: SyncObject,
    *,
    sync_type: str | None,
    deadline: Deadline,
) -> ObjectResult:
    """One object's sync through the gate, whatever it raises: one object's trouble is that object's result."""
    where = f"syncing {target.name} {obj.id}" + (f" in tenant {graph.tenant}" if graph.tenant else "")
    sync = partial(
        _sync_one, graph, target, obj, sync_type=sync_type, deadline=deadline, options=settings.options_for(target.name)
    )
    try:
        decision = PROCESS.held("sync gate", _new_gate).submit(
            (settings.graph.endpoint, graph.tenant, target.name, obj.id),
            sync_type,
            partial(contained, log, where, sync),
            accepted=lambda result: result.outcome == "accepted",
            min_interval=settings.min_interval,
        )
    except InternalError as exc:
        return ObjectResult(target.name, obj.id, "failed", 0, error=exc)
    if isinstance(decision, Deferred):
        at = decision.next_allowed.isoformat(timespec="seconds")
        detail = (
            f"this instance synced it less than {settings.min_interval:g} s ago (SYNC_MIN_INTERVAL_SECONDS); "
            f"the next sync is allowed at {at}"
        )
        return ObjectResult(target.name, obj.id, "skipped", 0, next_allowed=at, reason="tooSoon", detail=detail)
    return decision.result._replace(coalesced=True) if decision.joined else decision.result


def _sync_one(
    graph: GraphClient, target: Target, obj: SyncObject, *, sync_type: str | None, deadline: Deadline, options: object
) -> ObjectResult:
    started = time.monotonic()
    skip = target.before_sync(obj, datetime.now(timezone.utc))
    if skip is not None:
        return _skipped(target, obj, skip, 0)
    try:
        answer = target.sync(graph, obj, deadline, sync_type, options)
    except (GraphError, IdentityUnavailable) as exc:
        if isinstance(exc, OutOfTime) and exc.paced:
            return ObjectResult(target.name, obj.id, "skipped", 0, reason="notAttempted", detail=str(exc))
        refused = target.after_refusal(exc, obj, datetime.now(timezone.utc)) if isinstance(exc, GraphError) else None
        if refused is not None:
            return _skipped(target, obj, refused, _ms_since(started))._replace(
                graph_status=exc.status,
                request_id=exc.request_id,
                client_request_id=exc.client_request_id,
            )
        return ObjectResult(
            target.name,
            obj.id,
            "failed",
            _ms_since(started),
            graph_status=exc.status,
            request_id=exc.request_id,
            client_request_id=exc.client_request_id,
            error=exc,
        )
    return ObjectResult(
        target.name,
        obj.id,
        "accepted",
        _ms_since(started),
        graph_status=answer.status,
        request_id=answer.request_id,
        client_request_id=answer.client_request_id,
    )


def _skipped(target: Target, obj: SyncObject, skip: Skip, duration_ms: int) -> ObjectResult:
    at = skip.next_allowed.isoformat(timespec="seconds") if skip.next_allowed else None
    return ObjectResult(
        target.name, obj.id, "skipped", duration_ms, next_allowed=at, reason=skip.reason, detail=skip.message
    )


def _log_result(result: ObjectResult) -> None:
    level = logging.WARNING if result.outcome == "failed" or result.error else logging.INFO
    log.log(
        level,
        "%starget=%s id=%s outcome=%s%s graph-status=%s request-id=%s client-request-id=%s duration-ms=%d%s",
        f"tenant={result.tenant} " if result.tenant else "",
        result.target,
        result.id or "-",
        result.outcome,
        f" reason={result.reason}" if result.reason else "",
        result.graph_status,
        result.request_id,
        result.client_request_id,
        result.duration_ms,
        f" error={result.error_code}: {result.message}" if result.error else _detail(result),
    )


def _detail(result: ObjectResult) -> str:
    return f" detail={result.detail}" if result.detail else ""


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
