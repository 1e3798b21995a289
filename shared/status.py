"""The read model: what GET /api/sync, ``status`` and ``doctor`` show of each tenant, read from Graph (each
target's objects, and the expiry watch), inside one time budget; it never syncs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from shared import tenants as tenancy
from shared.clients import client_for
from shared.errors import (
    GraphError,
    IdentityUnavailable,
    InternalError,
    StoreUnavailable,
    SyncAppError,
    contained,
)
from shared.graph import Deadline
from shared.run import resolve_objects
from shared.settings import Settings
from shared.targets import TARGETS, SyncObject

if TYPE_CHECKING:
    from shared.watch import WatchReport

log = logging.getLogger(__name__)


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
        watch.rules_for(settings),
        deadline or Deadline(settings.graph.time_budget),
        read,
    )


def stored_tenants(settings: Settings, tenants: Sequence[str | None]) -> dict[str, Any]:
    """What the store holds of each of ``tenants`` (with ``"asOf"``, null for a tenant not yet synced), in the shape
    of a live answer, each object with its ``lastOutcome``: no Graph call. :class:`StoreUnavailable` when the store
    cannot say."""
    from shared import store  # noqa: PLC0415 - only with a storage account

    found = store.read(settings, tenants)
    return {str(tenant): _stored_tenant(settings, found.get(tenant)) for tenant in tenants}


def _stored_tenant(settings: Settings, stored: Any) -> dict[str, Any]:
    if stored is None:
        return {"asOf": None, "targets": {}, "expiry": {"findings": [], "objects": []}}
    targets: dict[str, Any] = {}
    for obj in stored.objects:
        if obj.target in settings.targets:
            shown = targets.setdefault(obj.target, {"version": TARGETS[obj.target].version, "objects": []})
            shown["objects"].append({**obj.fields, "id": obj.id, "lastOutcome": obj.last_outcome})
    findings = [standing for standing in stored.expiry if standing.get("problem")]
    return {"asOf": stored.as_of, "targets": targets, "expiry": {"findings": findings, "objects": stored.expiry}}


def last_outcomes(settings: Settings, body: dict[str, Any]) -> None:
    """The single tenant's live answer, each object given its stored ``lastOutcome`` where the store has one; a
    store that cannot say leaves the live answer as it is (logged)."""
    from shared import store  # noqa: PLC0415 - only with a storage account

    try:
        found = store.read(settings, [None]).get(None)
    except StoreUnavailable as exc:
        log.warning("The stored outcomes were not read: %s", exc)
        return
    latest = {(o.target, o.id): o.last_outcome for o in found.objects} if found else {}
    for name, shown in body.get("targets", {}).items():
        for obj in shown.get("objects", ()):
            if (name, obj.get("id")) in latest:
                obj["lastOutcome"] = latest[(name, obj["id"])]
