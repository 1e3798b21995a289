"""What a run did: each object's result, and the run's report, with the shapes the webhook, the log and the
CLI render them in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from shared import tenants as tenancy
from shared.errors import (
    LISTER,
    SyncAppError,
)
from shared.targets import TARGETS, SyncObject

Outcome = Literal["accepted", "failed", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("accepted", "failed", "skipped")


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
    stored: bool | None = None  # None: no store; False: the store failed (logged), and the run is as it was

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
            names += f" in tenant {self.tenants[0]}" if len(self.tenants) == 1 else f" in {len(self.tenants)} tenants"
        return (
            f"Sync of {names}: {self.count('accepted')} accepted, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped in {self.duration_ms} ms"
        )
