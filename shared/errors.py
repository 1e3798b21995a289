"""The errors this app raises, typed so callers branch on the class, never on a message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


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
    status: int | None = None
    code: str | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    retry_after: int | None = None  # seconds to wait before trying again, where waiting helps

    @property
    def kind(self) -> str:
        """A stable name for callers of the webhook to branch on, such as ``graphForbidden``."""
        name = type(self).__name__
        return self._kind or name[0].lower() + name[1:]


class ConfigurationError(SyncAppError):
    """App settings are missing or invalid: ``setting`` names the first, ``problems`` every one, as (setting,
    message), so that one look names them all."""

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

    retry_after: int | None = 60


class TenantNotConsented(IdentityUnavailable):
    """Entra has no service principal of the multi-tenant app in this customer tenant: nobody consented there yet.
    Not transient, so no ``Retry-After``: the tenant's administrator must open ``consent_url``."""

    retry_after = None

    def __init__(self, message: str, *, tenant: str, consent_url: str) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.consent_url = consent_url


class UnknownTenant(SyncAppError):
    """A tenant id that ``TENANT_IDS`` does not list."""


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


class GraphUnauthorized(GraphError):
    """401: the token was refused (wrong audience, expired, or for another cloud)."""


class GraphForbidden(GraphError):
    """403: the identity lacks the Graph application permission (or Intune licence)."""


class GraphNotFound(GraphError):
    """404: no such resource in this tenant."""


class GraphThrottled(GraphError):
    """429/503 that outlasted the retries or the time budget; ``retry_after`` is Graph's own wait."""

    def __init__(self, message: str, *, retry_after: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after: int = retry_after


class GraphUnreachable(GraphError):
    """No answer from Graph: connection failures or timeouts that outlasted the retries."""


class GraphProtocolError(GraphError):
    """Graph answered something this app cannot use (malformed JSON, a paging link to another host)."""


class TimeBudgetExhausted(GraphError):
    """The run's time budget ran out before a call could be made."""

    retry_after = 60


class OutOfTime(TimeBudgetExhausted):
    """The next paced call would fall past the run's budget, so it is not made: the next run carries on. Not a
    failure, unlike a budget that Graph used up."""


class UnknownObject(SyncAppError):
    """Requested ids that are not a target's objects: outside its configured ids, or not in the tenant."""

    def __init__(self, ids: list[str], reason: str, *, target: str, kind: str = "unknownObject") -> None:
        super().__init__(f"{reason}: {', '.join(ids)}")
        self.ids = ids
        self.target = target
        self._kind = kind


class NothingToSync(SyncAppError):
    """The run's targets have no object in the tenant, so there is nothing to sync."""

    def __init__(self, message: str, *, target: str | None, kind: str = "nothingToSync") -> None:
        super().__init__(message)
        self.target = target
        self._kind = kind


class UnknownTarget(SyncAppError):
    """A name that is no sync target."""


class TargetNotEnabled(SyncAppError):
    """A sync target that ``SYNC_TARGETS`` does not enable."""


class InternalError(SyncAppError):
    """An exception this app did not expect (a defect), caught around one object or one target's listing so that
    it is that object's or target's result, never the whole run's. Its trace is logged where it is caught."""

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__(f"unexpected failure in this app {where} ({type(exc).__name__}); the trace is in the log")


class SyncFailed(SyncAppError):
    """A run in which some connector was not synced; raised after every connector was tried."""


class InvalidRequest(SyncAppError):
    """A webhook request this app will not act on; ``field`` names what is wrong."""

    status: int  # the HTTP status it is answered with

    def __init__(self, field: str, message: str, *, status: int = 400, allowed: tuple[str, ...] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status
        self.allowed = allowed


class InvalidSignature(InvalidRequest):
    """The webhook's signature is missing, stale, replayed or does not match; ``field`` names the header."""

    def __init__(self, header: str, message: str) -> None:
        super().__init__(header, message, status=401)


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
