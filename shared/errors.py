"""The errors this app raises, typed so callers branch on the class, never on a message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
LISTER = "GET /api/sync"  # how a webhook's caller lists a target's objects; the commands name their own


class TargetFacts(Protocol):
    """What a remedy needs of the target an error happened in (a :class:`shared.targets.base.Target`)."""

    @property
    def noun(self) -> str: ...
    @property
    def permissions(self) -> tuple[str, ...]: ...
    @property
    def ids_setting(self) -> str | None: ...
    @property
    def none_advice(self) -> str | None: ...


def json_type(value: object) -> str:
    """A value's type in JSON's own words, for messages to webhook senders who never see Python's."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


class SyncAppError(Exception):
    """Base of every error this app raises on purpose. What Graph said, where an answer came (a status, Graph's
    code and request ids), is on every one, None where none did, so callers never probe with ``getattr``."""

    _kind: str | None = None  # a code of the error's own, where its class name is not the one callers know
    # How each kind is answered, in this one table: the HTTP status of the webhook's answer, and the exit code of
    # the operator's commands (1: something is wrong out there; 2: the command line or a setting is).
    http_status: int = 502
    exit_code: int = 1
    status: int | None = None
    code: str | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    retry_after: int | None = None  # seconds to wait before trying again, where waiting helps

    @property
    def transient(self) -> bool:
        """Trying again later may succeed with nothing changed (a wait helps): a queued tenant's invocation fails, so
        that the host retries it. Otherwise someone must act first, and a retry would fail the same way."""
        return self.http_status == 503

    @property
    def kind(self) -> str:
        """A stable name for callers of the webhook to branch on, such as ``graphForbidden``."""
        name = type(self).__name__
        return self._kind or name[0].lower() + name[1:]

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str | None:
        """What an administrator should do about it, in one sentence, where there is something to do. ``lister``
        is how they list objects from where they are; ``tenant``: the customer tenant it happened in."""
        return None


class ConfigurationError(SyncAppError):
    """App settings are missing or invalid: ``setting`` names the first, ``problems`` every one, as (setting,
    message), so that one look names them all."""

    http_status = 503
    exit_code = 2

    def __init__(self, setting: str, message: str, *, more: Sequence[tuple[str, str]] = ()) -> None:
        self.problems: tuple[tuple[str, str], ...] = ((setting, message), *more)
        super().__init__("; ".join(f"{name}: {said}" for name, said in self.problems))
        self.setting = setting
        self.message = message

    @property
    def settings(self) -> list[str]:
        return [name for name, _ in self.problems]

    @classmethod
    def joined(cls, errors: Sequence[ConfigurationError]) -> ConfigurationError:
        first, *rest = errors
        return cls(first.setting, first.message, more=[problem for error in rest for problem in error.problems])


class InvalidObjectId(SyncAppError, ValueError):
    """An object id that must never reach a URL."""


class IdentityUnavailable(SyncAppError):
    """No access token could be obtained (no managed identity, or its endpoint failed)."""

    http_status = 503
    retry_after: int | None = 60


class TenantNotConsented(IdentityUnavailable):
    """Entra has no service principal of the multi-tenant app in this customer tenant: nobody consented there yet.
    Not transient, so no ``Retry-After``: the tenant's administrator must open ``consent_url``."""

    http_status = 502  # not transient: waiting will not help, the tenant's consent will
    retry_after = None

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        return f"An administrator of tenant {self.tenant} must consent to the app: open {self.consent_url}"

    def __init__(self, message: str, *, tenant: str, consent_url: str) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.consent_url = consent_url


class UnknownTenant(SyncAppError):
    """A tenant id that ``TENANT_IDS`` does not list."""

    http_status = 404
    exit_code = 2


class GraphError(SyncAppError):
    """Graph answered with an error, or could not be reached, after any retries.

    Carries what Microsoft support asks for: the status, Graph's error code, its ``request-id`` and
    the ``client-request-id`` we sent.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.client_request_id = client_request_id

    @property
    def transient(self) -> bool:
        return super().transient or (self.status or 0) >= 500


class GraphUnauthorized(GraphError):
    """401: the token was refused (wrong audience, expired, or for another cloud)."""

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        if tenant:
            return (
                f"Graph refused tenant {tenant}'s token: check that GRAPH_ENDPOINT is the Graph root of that tenant's "
                "cloud."
            )
        return (
            "Graph refused the token: check that GRAPH_ENDPOINT is the Graph root of this tenant's cloud and that the "
            "managed identity belongs to this tenant."
        )


class GraphForbidden(GraphError):
    """403: the identity lacks the Graph application permission (or Intune licence)."""

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        needed = target.permissions if target else ()
        permission = " and ".join(needed) or "the permission each target needs (README, 'Sync targets')"
        if tenant is not None:
            return (
                f"Graph refused the call in tenant {tenant}: the multi-tenant app (TENANT_APP_CLIENT_ID) needs the "
                f"Microsoft Graph application permission {permission} there. Add it to the app registration's API "
                f"permissions (a deployment with tenantIds does), then have an administrator of tenant {tenant} "
                "open the consent URL again (README, 'Many tenants'). A new grant can take up to 24 hours."
            )
        return (
            f"Graph refused the call: grant the Microsoft Graph application permission {permission} to the "
            "Function App's managed identity (README, 'Grant the Graph permission'), and check that the tenant "
            "has an active Intune licence. A new grant can take up to 24 hours to reach the identity's tokens."
        )


class GraphNotFound(GraphError):
    """404: no such resource in this tenant."""

    http_status = 404

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        return _no_such(target, lister)


class GraphThrottled(GraphError):
    """429/503 that outlasted the retries or the time budget; ``retry_after`` is Graph's own wait."""

    http_status = 503

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        return f"Graph is throttling this app: try again in {self.retry_after} s."

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after: int = retry_after


class GraphUnreachable(GraphError):
    """No answer from Graph: connection failures or timeouts that outlasted the retries."""

    @property
    def transient(self) -> bool:
        return True


class GraphProtocolError(GraphError):
    """Graph answered something this app cannot use (malformed JSON, a paging link to another host)."""


class OutOfTime(GraphError):
    """The run's time budget (GRAPH_TIME_BUDGET_SECONDS) ran out, or would before a call could end: the one "out of
    time" of the app, from Graph's calls, the identity's exchanges and the pacing of device writes alike.

    ``paced``: the next paced call would fall past the budget, so it is not made and the next run carries on with
    it; that is not a failure, unlike a budget that Graph used up."""

    _kind = "timeBudgetExhausted"
    http_status = 503
    retry_after = 60

    def __init__(self, message: str, *, paced: bool = False, **details: Any) -> None:
        super().__init__(message, **details)
        self.paced = paced


class UnknownObject(SyncAppError):
    """Requested ids that are not a target's objects: outside its configured ids, or not in the tenant."""

    http_status = 404

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        return _no_such(target, lister)

    def __init__(self, ids: list[str], reason: str, *, target: str, kind: str = "unknownObject") -> None:
        super().__init__(f"{reason}: {', '.join(ids)}")
        self.ids = ids
        self.target = target
        self._kind = kind


class NothingToSync(SyncAppError):
    """The run's targets have no object in the tenant, so there is nothing to sync."""

    http_status = 404

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str | None:
        return target.none_advice if target else None

    def __init__(self, message: str, *, target: str | None, kind: str = "nothingToSync") -> None:
        super().__init__(message)
        self.target = target
        self._kind = kind


class UnknownTarget(SyncAppError):
    """A name that is no sync target."""

    http_status = 404


class TargetNotEnabled(SyncAppError):
    """A sync target that ``SYNC_TARGETS`` does not enable."""

    http_status = 404


class InternalError(SyncAppError):
    """An exception this app did not expect (a defect), caught around one object or one target's listing so that
    it is that object's or target's result, never the whole run's. Its trace is logged where it is caught."""

    http_status = 500  # ours, not Graph's: the other objects' results are in the answer

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(f"unexpected failure in this app {where} ({type(exc).__name__}); the trace is in the log")


class StoreUnavailable(SyncAppError):
    """The store (Table storage in the host's storage account) could not be reached, refused, or is not set up."""

    http_status = 503
    retry_after = 60

    def remedy(self, target: TargetFacts | None = None, lister: str = LISTER, tenant: str | None = None) -> str:
        return (
            "GET /api/sync?live=true&tenant=<id> reads Graph instead (at most 10 tenants). Check that the app's "
            "identity holds Storage Table Data Contributor on the storage account (infra/main.bicep grants it)."
        )


class SyncFailed(SyncAppError):
    """A run in which some object was not synced; raised after every object was tried."""


class InvalidRequest(SyncAppError):
    """A webhook request this app will not act on; ``field`` names what is wrong."""

    exit_code = 2

    def __init__(self, field: str, message: str, *, status: int = 400, allowed: tuple[str, ...] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.http_status = status
        self.allowed = allowed


class InvalidSignature(InvalidRequest):
    """The webhook's signature is missing, stale, replayed or does not match; ``field`` names the header."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(header, message, status=401)


def _no_such(target: TargetFacts | None, lister: str) -> str:
    noun = target.noun if target else "object"
    where = f"{target.ids_setting} or the requested id" if target and target.ids_setting else "the requested id"
    return f"No such {noun} in this tenant: check {where} ({lister} lists them)."


def contained(log: logging.Logger, where: str, work: Callable[[], T]) -> T:
    """``work``'s result; an exception no rule expected is logged with its trace and raised as :class:`InternalError`,
    so that it stays one object's or one target's result. This app's own errors pass as they are."""
    try:
        return work()
    except SyncAppError:
        raise
    except Exception as exc:
        log.exception("Unexpected failure %s", where)
        raise InternalError(where, exc) from None
