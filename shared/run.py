"""A sync run: which connectors, sync each, and a report. One connector's failure never stops the others."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from shared import connectors
from shared.coalescing import Deferred, SyncGate
from shared.errors import (
    GraphError,
    GraphForbidden,
    GraphNotFound,
    GraphThrottled,
    GraphUnauthorized,
    IdentityUnavailable,
    NoConnectors,
    SyncAppError,
    SyncFailed,
    TimeBudgetExhausted,
    UnknownConnector,
)
from shared.graph import Deadline, GraphClient, client_for
from shared.settings import Settings, SyncType, load_settings

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "failed", "skipped"]
# After these, every further call would fail the same way or add to the throttling: stop sending.
RUN_STOPPING = (GraphThrottled, IdentityUnavailable, TimeBudgetExhausted)
# Per process: requests for a sync already in flight join it; SYNC_MIN_INTERVAL_SECONDS paces each connector.
_GATE: SyncGate[ConnectorResult] = SyncGate()


@dataclass(frozen=True)
class ConnectorResult:
    id: str
    outcome: Outcome
    duration_ms: int
    graph_status: int | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    coalesced: bool = False
    next_allowed: str | None = None
    reason: str | None = None
    error: SyncAppError | None = field(default=None, compare=False)

    @property
    def error_code(self) -> str | None:
        if self.error is None:
            return None
        if self.outcome == "skipped":
            return "notAttempted"
        return getattr(self.error, "code", None) or self.error.kind

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "outcome": self.outcome,
            "graphStatus": self.graph_status,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
            "errorCode": self.error_code,
            "message": self.message,
            "durationMs": self.duration_ms,
            "coalesced": self.coalesced,
            "nextAllowedAt": self.next_allowed,
        }

    @property
    def message(self) -> str | None:
        if self.error is None:
            return self.reason
        if self.outcome == "skipped":
            return f"not attempted: an earlier call stopped the run ({self.error.kind})"
        return str(self.error)


@dataclass(frozen=True)
class SyncReport:
    sync_type: SyncType
    results: tuple[ConnectorResult, ...]
    duration_ms: int

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        """Nothing failed: every connector was accepted, or deliberately skipped (SYNC_MIN_INTERVAL_SECONDS)."""
        return all(r.error is None for r in self.results)

    @property
    def errors(self) -> list[SyncAppError]:
        return [r.error for r in self.results if r.error is not None]

    def remedies(self, lister: str = "GET /api/sync") -> list[str]:
        """What to do, once per kind of problem, for every connector that failed or was not attempted."""
        return sorted({text for text in (remedy(e, lister=lister) for e in self.errors) if text})

    def __str__(self) -> str:
        """The one-line summary, formatted only when a log line is actually written."""
        return self.summary()

    def summary(self) -> str:
        return (
            f"Exchange connector sync ({self.sync_type}): {self.count('accepted')} accepted, "
            f"{self.count('failed')} failed, {self.count('skipped')} skipped in {self.duration_ms} ms"
        )


def remedy(error: SyncAppError, lister: str = "GET /api/sync") -> str | None:
    """What an administrator should do about ``error``, in one sentence; ``lister`` is how they list connectors
    from where they are (the webhook, or the command line)."""
    if isinstance(error, GraphForbidden):
        return (
            f"Graph refused the call: grant the Microsoft Graph application permission {connectors.PERMISSION} to the "
            "Function App's managed identity (README, 'Grant the Graph permission'), and check that the tenant "
            "has an active Intune licence. A new grant can take up to 24 hours to reach the identity's tokens."
        )
    if isinstance(error, GraphUnauthorized):
        return (
            "Graph refused the token: check that GRAPH_ENDPOINT is the Graph root of this tenant's cloud and "
            "that the managed identity belongs to this tenant."
        )
    if isinstance(error, NoConnectors):
        return (
            "Microsoft ended support for the on-premises Intune Exchange connector on 19 February 2024; if none "
            "was ever installed or it was retired, there is nothing to sync."
        )
    if isinstance(error, GraphNotFound | UnknownConnector):
        return (
            "No such Exchange connector in this tenant: check EXCHANGE_CONNECTOR_IDS or the requested id "
            f"({lister} lists the connectors)."
        )
    if isinstance(error, GraphThrottled):
        return f"Graph is throttling this app: try again in {error.retry_after} s."
    return None


@dataclass(frozen=True)
class TargetStates:
    """The targets as the tenant has them now, and configured ids the tenant does not have."""

    connectors: tuple[connectors.ExchangeConnector, ...]
    missing: tuple[str, ...]


def target_states(settings: Settings, requested: Sequence[str] | None = None) -> TargetStates:
    """One paged list call; ``requested`` ids must be targets that exist, else :class:`UnknownConnector`."""
    graph = client_for(settings.graph)
    found = {c.id: c for c in connectors.list_connectors(graph, Deadline(settings.graph.time_budget))}
    targets = settings.connector_ids or tuple(found)
    unknown = [i for i in requested or () if i not in found or i not in targets]
    if unknown:
        raise UnknownConnector(unknown, "no such Exchange connector among this app's targets")
    return TargetStates(
        tuple(found[i] for i in requested or targets if i in found),
        tuple(i for i in settings.connector_ids if i not in found),
    )


def resolve_targets(
    graph: GraphClient, settings: Settings, requested: Sequence[str] | None, deadline: Deadline
) -> tuple[str, ...]:
    """The connector ids a run acts on. Configured ids need no Graph call; requested ones must be known."""
    if settings.connector_ids:
        unknown = [i for i in requested or () if i not in settings.connector_ids]
        if unknown:
            raise UnknownConnector(unknown, "not in EXCHANGE_CONNECTOR_IDS")
        return tuple(requested or settings.connector_ids)
    in_tenant = [c.id for c in connectors.list_connectors(graph, deadline)]
    unknown = [i for i in requested or () if i not in in_tenant]
    if unknown:
        raise UnknownConnector(unknown, "no Exchange connector with this id in the tenant")
    return tuple(requested or in_tenant)


def run_sync(settings: Settings, sync_type: SyncType, requested: Sequence[str] | None = None) -> SyncReport:
    """Sync every target connector; raises only when the targets themselves cannot be resolved."""
    started = time.monotonic()
    deadline = Deadline(settings.graph.time_budget)
    graph = client_for(settings.graph)
    targets = resolve_targets(graph, settings, requested, deadline)
    results: list[ConnectorResult] = []
    stopped_by: SyncAppError | None = None
    for connector_id in targets:
        if stopped_by is not None:
            results.append(ConnectorResult(connector_id, "skipped", 0, error=stopped_by))
        else:
            results.append(_sync_gated(graph, settings, connector_id, sync_type, deadline))
            if isinstance(results[-1].error, RUN_STOPPING):
                stopped_by = results[-1].error
        _log_result(results[-1])
    return SyncReport(sync_type, tuple(results), _ms_since(started))


def scheduled_sync(*, past_due: bool) -> SyncReport:
    """The timer's run: ``SYNC_TYPE`` for every target; raises :class:`SyncFailed` after trying them all."""
    if past_due:
        log.warning("The sync timer is past due: the previous run was missed or overran (host restart, scale-in)")
    settings = load_settings()
    try:
        report = run_sync(settings, settings.sync_type)
    except (GraphError, IdentityUnavailable) as exc:
        raise SyncFailed(
            " ".join(filter(None, [f"Could not list the connectors to sync: {exc}", remedy(exc)]))
        ) from None
    if not report.results:
        log.warning(
            "No Exchange connector found in the tenant, so nothing was synced. Likely causes: none was ever "
            "installed, or it was retired (Microsoft ended support for the on-premises Intune Exchange connector "
            "on 19 February 2024). Set EXCHANGE_CONNECTOR_IDS to name connectors explicitly."
        )
        return report
    log.info("%s", report)
    if not report.ok:
        raise SyncFailed(" ".join([report.summary(), *report.remedies()]))
    return report


def _sync_gated(
    graph: GraphClient, settings: Settings, connector_id: str, sync_type: SyncType, deadline: Deadline
) -> ConnectorResult:
    decision = _GATE.submit(
        (settings.graph.endpoint, connector_id),
        sync_type,
        lambda: _sync_one(graph, connector_id, sync_type, deadline),
        accepted=lambda result: result.outcome == "accepted",
        min_interval=settings.min_interval,
    )
    if isinstance(decision, Deferred):
        at = decision.next_allowed.isoformat(timespec="seconds")
        reason = (
            f"this instance synced it less than {settings.min_interval:g} s ago (SYNC_MIN_INTERVAL_SECONDS); "
            f"the next sync is allowed at {at}"
        )
        return ConnectorResult(connector_id, "skipped", 0, next_allowed=at, reason=reason)
    return replace(decision.result, coalesced=True) if decision.joined else decision.result


def _sync_one(graph: GraphClient, connector_id: str, sync_type: SyncType, deadline: Deadline) -> ConnectorResult:
    started = time.monotonic()
    try:
        answer = connectors.sync_connector(graph, connector_id, sync_type, deadline)
    except (GraphError, IdentityUnavailable) as exc:
        return ConnectorResult(
            connector_id,
            "failed",
            _ms_since(started),
            graph_status=getattr(exc, "status", None),
            request_id=getattr(exc, "request_id", None),
            client_request_id=getattr(exc, "client_request_id", None),
            error=exc,
        )
    return ConnectorResult(
        connector_id,
        "accepted",
        _ms_since(started),
        graph_status=answer.status,
        request_id=answer.request_id,
        client_request_id=answer.client_request_id,
    )


def _log_result(result: ConnectorResult) -> None:
    level = logging.WARNING if result.error else logging.INFO
    log.log(
        level,
        "connector=%s outcome=%s graph-status=%s request-id=%s client-request-id=%s duration-ms=%d%s",
        result.id,
        result.outcome,
        result.graph_status,
        result.request_id,
        result.client_request_id,
        result.duration_ms,
        f" error={result.error_code}: {result.message}" if result.error else "",
    )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
