"""The expiry watch: the Apple push certificate and the VPP and ADE tokens that expire unnoticed, and Managed
Google Play in an error state.

It reads each watched resource at most once per run, reusing what the sync run already read. An object the token
cannot read is "not checked", with the permission it needs: never a failure. Each finding is one WARNING line
that starts with ``expiry-warning`` (what the Azure Monitor alert in ``infra/`` queries).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, NamedTuple

from shared.errors import (
    GraphError,
    GraphForbidden,
    IdentityUnavailable,
    InternalError,
    OutOfTime,
    SyncAppError,
    contained,
)
from shared.graph import Deadline, GraphClient
from shared.settings import Settings
from shared.targets import JUDGED, WATCHED, SyncObject
from shared.targets.base import Standing, WatchRules

log = logging.getLogger(__name__)

LOG_PREFIX = "expiry-warning"


class Unchecked(NamedTuple):
    """A watched resource that could not be read: why, and the permission it needs."""

    target: str
    permission: str
    reason: str


class WatchReport(NamedTuple):
    standings: tuple[Standing, ...]
    unchecked: tuple[Unchecked, ...]
    warning_days: int
    at: datetime
    tenant: str | None = None  # with TENANT_IDS: the customer tenant watched

    @property
    def findings(self) -> list[Standing]:
        return [s for s in self.standings if s.problem]

    def as_dict(self) -> dict[str, Any]:
        named = {"tenant": self.tenant} if self.tenant else {}
        return {
            **named,
            "warningDays": self.warning_days,
            "findings": [{**named, **s.as_dict(self.at)} for s in self.findings],
            "objects": [s.as_dict(self.at) for s in self.standings],
            "notChecked": [
                {"target": u.target, "permission": u.permission, "reason": u.reason} for u in self.unchecked
            ],
        }


def rules_for(settings: Settings) -> WatchRules:
    """The watch's thresholds from the settings: EXPIRY_WARNING_DAYS, EXPIRY_CRITICAL_DAYS, each target's own."""
    return WatchRules(
        timedelta(days=settings.expiry_warning_days), timedelta(days=settings.expiry_critical_days), settings.options
    )


def check(
    graph: GraphClient,
    rules: WatchRules,
    deadline: Deadline,
    already_read: Mapping[str, Sequence[SyncObject]] | None = None,
    tenant: str | None = None,
) -> WatchReport:
    """Every watched object's standing; ``already_read`` objects (by target) are not read again, and the targets
    that are only judged (shared.targets.JUDGED) are judged from them alone."""
    now = datetime.now(timezone.utc)
    standings: list[Standing] = []
    unchecked: list[Unchecked] = []
    stopped: SyncAppError | None = None
    judged = {name: target for name, target in JUDGED.items() if name in (already_read or {})}
    for name, watched in {**WATCHED, **judged}.items():
        objects = (already_read or {}).get(name)
        if objects is None and stopped is not None:
            unchecked.append(Unchecked(name, watched.permission, f"not checked: {stopped.kind}"))
            continue
        if objects is None:
            try:
                objects = contained(log, f"reading {name}", partial(watched.read, graph, deadline))
            except GraphForbidden:
                unchecked.append(Unchecked(name, watched.permission, f"not checked: needs {watched.permission}"))
                continue
            except (GraphError, IdentityUnavailable, InternalError) as exc:
                unchecked.append(Unchecked(name, watched.permission, f"not checked: {exc}"))
                # No token, or no time left: every further read would fail the same way.
                stopped = exc if isinstance(exc, IdentityUnavailable | OutOfTime) else None
                continue
        for obj in objects:
            try:
                standing = contained(log, f"judging {name} {obj.id}", partial(watched.standing, obj, now, rules))
            except InternalError as exc:
                unchecked.append(Unchecked(name, watched.permission, f"not checked: {exc}"))
                continue
            if standing is not None:
                standings.append(standing)
    return WatchReport(tuple(standings), tuple(unchecked), rules.warning.days, now, tenant)


def log_findings(report: WatchReport) -> None:
    """One WARNING line per finding: the tenant (with TENANT_IDS), the object, its expiry and days left, the fix."""
    tenant = f" tenant={report.tenant}" if report.tenant else ""
    for finding in report.findings:
        log.warning(
            "%s%s target=%s id=%s severity=%s expires=%s days-left=%s: %s %s. Fix: %s",
            LOG_PREFIX,
            tenant,
            finding.target,
            finding.id,
            finding.severity,
            finding.expires.date().isoformat() if finding.expires else "-",
            finding.days_left(report.at) if finding.expires else "-",
            finding.name,
            finding.problem,
            finding.fix,
        )
    for skipped in report.unchecked:
        log.info("expiry watch:%s %s %s", tenant, skipped.target, skipped.reason)
