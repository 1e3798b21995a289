"""A sync run: which targets and objects, sync each, and one report.

One object's failure never stops the others, and one target's never stops the other targets. Only what would
fail every further call stops the run (no token, the time budget used up); throttling stops the rest of its own
target, whose resource Graph is throttling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from shared import tenants as tenancy
from shared.clients import client_for
from shared.coalescing import Deferred, SyncGate
from shared.errors import (
    LISTER,
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
from shared.settings import Settings, load_settings
from shared.targets import TARGETS, Skip, SyncObject, Target

if TYPE_CHECKING:
    from shared.watch import WatchReport

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "failed", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "failed", "skipped")
# After these, every further call would fail the same way: stop sending for the rest of the run.
RUN_STOPPING = (IdentityUnavailable, OutOfTime)
# After this, further calls to the same target would only add to the throttling of its resource.
TARGET_STOPPING = (GraphThrottled,)
# Per process: requests for a sync already in flight join it; SYNC_MIN_INTERVAL_SECONDS paces each object.


class ObjectResult(NamedTuple):
    """One object's outcome. ``id`` is None when the target's objects could not be read at all."""

    target: str
    id: str | None
    outcome: Outcome
    duration_ms: int
    graph_status: int | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    coalesced: bool = False
    next_allowed: str | None = None
    reason: str | None = None
    detail: str | None = None
    error: SyncAppError | None = None
    tenant: str | None = None  # with TENANT_IDS: the customer tenant it belongs to

    @property
    def error_code(self) -> str | None:
        """This app's own code; Graph's code, when Graph gave one, is ``graph_error_code``."""
        if self.error is None:
            return None
        return "notAttempted" if self.outcome == "skipped" else self.error.kind

    @property
    def graph_error_code(self) -> str | None:
        return self.error.code if self.outcome == "failed" and self.error is not None else None

    @property
    def message(self) -> str | None:
        if self.detail is not None:
            return self.detail
        if self.error is None:
            return None
        if self.outcome == "skipped":
            return f"not attempted: an earlier call stopped the run ({self.error.kind})"
        return str(self.error)

    def as_dict(self) -> dict[str, object]:
        return {
            **({"tenant": self.tenant} if self.tenant else {}),
            "target": self.target,
            "id": self.id,
            "outcome": self.outcome,
            "reason": self.reason,
            "graphStatus": self.graph_status,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
            "errorCode": self.error_code,
            "graphErrorCode": self.graph_error_code,
            "message": self.message,
            "durationMs": self.duration_ms,
            "coalesced": self.coalesced,
            "nextAllowedAt": self.next_allowed,
        }


@dataclass(frozen=True)
class SyncReport:
    targets: tuple[str, ...]
    sync_type: str | None
    results: tuple[ObjectResult, ...]
    duration_ms: int
    # What Graph said of each whole target the run read, by tenant, for the expiry watch to reuse.
    read: Mapping[str | None, Mapping[str, tuple[SyncObject, ...]]] = field(default_factory=dict, compare=False)
    tenants: tuple[str | None, ...] = tenancy.HOME

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        """Nothing failed: every object was accepted, or deliberately skipped."""
        return all(r.outcome != "failed" and r.error is None for r in self.results)

    def remedies(self, lister: str = LISTER) -> list[str]:
        """What to do, once per kind of problem, for every object that failed or was not attempted."""
        found = (r.error.remedy(TARGETS[r.target], lister, r.tenant) for r in self.results if r.error is not None)
        return sorted({text for text in found if text})

    def failures(self) -> list[str]:
        """The targets whose objects could not even be read, with why."""
        return [r.message for r in self.results if r.id is None and r.outcome == "failed" and r.message]

    def __str__(self) -> str:
        """The one-line summary, formatted only when a log line is actually written."""
        return self.summary()

    def summary(self) -> str:
        names = ", ".join(f"{t} ({self.sync_type})" if TARGETS[t].takes_sync_type else t for t in self.targets)
        if self.tenants != tenancy.HOME:
            names += f" in {len(self.tenants)} tenant{'s' if len(self.tenants) != 1 else ''}"
        return (
            f"Sync of {names}: {self.count('accepted')} accepted, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped in {self.duration_ms} ms"
        )


class TargetState(NamedTuple):
    """A target's objects as the tenant has them now; configured ids it does not have; or why it could not be read."""

    target: str
    objects: Sequence[SyncObject] = ()
    missing: tuple[str, ...] = ()
    error: SyncAppError | None = None
    tenant: str | None = None

    def as_dict(self) -> dict[str, object]:
        target = TARGETS[self.target]
        body: dict[str, object] = {
            "version": target.version,
            "permission": target.permission,
            **target.summary(self.objects),
        }
        if target.ids_setting:
            body["missing"] = list(self.missing)
        if self.error is not None:
            body["error"] = {"code": self.error.kind, "message": str(self.error)}
        return body


def target_states(
    settings: Settings,
    targets: Sequence[str] | None = None,
    requested: Sequence[str] | None = None,
    tenant: str | None = None,
    deadline: Deadline | None = None,
) -> list[TargetState]:
    """Each target's objects in ``tenant``, read from Graph (one listing or one GET each); ``requested`` narrows a
    single target to these ids, which must exist. A target that cannot be read is reported with its error."""
    graph = client_for(settings.graph, tenant)
    deadline = deadline or Deadline(settings.graph.time_budget)
    states = []
    for name in targets or settings.targets:
        target = TARGETS[name]
        configured = settings.ids_for(name)
        try:
            objects = contained(
                log,
                f"reading {name}" + (f" in tenant {tenant}" if tenant else ""),
                partial(resolve_objects, graph, settings, target, requested or None, deadline, read_configured=True),
            )
        except (GraphError, IdentityUnavailable, InternalError) as exc:
            states.append(TargetState(name, error=exc, tenant=tenant))
            continue
        found = {o.id for o in objects}
        states.append(TargetState(name, objects, tuple(i for i in configured if i not in found), tenant=tenant))
    return states


class TenantReport(NamedTuple):
    """What ``GET /api/sync`` and ``status`` show of one tenant: each target's state, and the expiry watch."""

    tenant: str | None
    states: list[TargetState]
    expiry: WatchReport | None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"targets": {state.target: state.as_dict() for state in self.states}}
        if self.expiry is not None:
            body["expiry"] = self.expiry.as_dict()
        return body


def tenant_reports(
    settings: Settings,
    tenants: Sequence[str | None],
    targets: Sequence[str] | None = None,
    requested: Sequence[str] | None = None,
    *,
    watch: bool = True,
) -> list[TenantReport]:
    """Each tenant's targets (see ``target_states``) and, with ``watch`` and EXPIRY_WARNING_DAYS, its expiry watch,
    all inside one time budget: an HTTP answer must come within 230 s, however many tenants there are. What the
    budget did not leave time to read is in the report as not read, with its error."""
    deadline = Deadline(settings.graph.time_budget)

    def report(tenant: str | None) -> TenantReport:
        states = target_states(settings, targets, requested, tenant, deadline)
        expiry = expiry_watch(settings, states, tenant, deadline) if watch and settings.expiry_warning_days else None
        return TenantReport(tenant, states, expiry)

    return tenancy.for_each(settings, tenants, report)


def expiry_watch(
    settings: Settings, states: Sequence[TargetState], tenant: str | None = None, deadline: Deadline | None = None
) -> WatchReport:
    """The expiry watch over what ``target_states`` already read; the other watched resources are read once."""
    from shared import watch  # noqa: PLC0415 - not on the webhook's POST path, whose every cold start it would slow

    read = {state.target: state.objects for state in states if state.error is None and not state.missing}
    return watch.check(
        client_for(settings.graph, tenant),
        settings.expiry_warning_days,
        deadline or Deadline(settings.graph.time_budget),
        read,
    )


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


def scheduled_sync(*, past_due: bool) -> SyncReport:
    """The timer's run: every target in ``SYNC_TARGETS``, in every tenant; raises :class:`SyncFailed` after trying
    them all."""
    PROCESS.start()
    if past_due:
        log.warning("The sync timer is past due: the previous run was missed or overran (host restart, scale-in)")
    settings = load_settings()
    deadline = Deadline(settings.graph.time_budget)  # one budget for the syncs and the watch together
    report = run_sync(settings, deadline=deadline)
    log.info("%s", report)
    if settings.expiry_warning_days:
        from shared import watch  # noqa: PLC0415 - as in expiry_watch

        # The watch never fails the invocation: that is kept for failed syncs.
        def check(tenant: str | None) -> None:
            graph = client_for(settings.graph, tenant)
            found = watch.check(graph, settings.expiry_warning_days, deadline, report.read.get(tenant), tenant)
            watch.log_findings(found)

        tenancy.for_each(settings, report.tenants, check)
    if not report.ok:
        raise SyncFailed(" ".join([report.summary(), *report.failures(), *report.remedies()]))
    return report


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
        decision = PROCESS.held("sync gate", SyncGate[ObjectResult]).submit(
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
