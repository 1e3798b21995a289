"""Where the app's tokens come from: the managed identity (or the developer's Azure CLI sign-in), the
token-exchange assertion for customer tenants, one holder that keeps a token between calls, and what a failed
token request means, in our words with the fix."""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import requests
from azure.core.credentials import AccessTokenInfo, SupportsTokenInfo
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.identity import AzureCliCredential, ManagedIdentityCredential

from shared.errors import IdentityUnavailable, OutOfTime
from shared.redaction import redact
from shared.transport import (
    CONNECT_TIMEOUT,
    AnswerTooLarge,
    DeadlineTransport,
    Exchange,
)

if TYPE_CHECKING:
    from shared.graph import GraphSettings

# A held token with less left than this is renewed, as azure-core's BearerTokenCredentialPolicy does.
TOKEN_RENEW_MARGIN = 300
# RFC 6750's b64token: what an Authorization header can carry. Anything else (CR/LF, spaces) is no usable token.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# msal's report of an App Service identity error: "Token request error: (invalid_scope) 401, <message>".
_MSAL_ENDPOINT_ERROR = re.compile(r"Token request error: \(\w+\) (?P<status>\d{3}|None), (?P<message>.*)")


class HeldToken:
    """A token held between calls, the way azure-core's BearerTokenCredentialPolicy holds one: asked for again
    only at its ``refresh_on`` or in its last 5 minutes, whichever comes first.

    azure-identity caches tokens and refreshes them early, but asking it costs tens of microseconds a call even
    when its cache answers. Both the Graph token and the token-exchange assertion are held this way."""

    def __init__(self) -> None:
        self._held: AccessTokenInfo | None = None
        self._lock = threading.Lock()

    def get(self, fetch: Callable[[], AccessTokenInfo], *, wait: float | None = None) -> str:
        """The held token, or ``fetch()``'s when it is due. ``wait``: at most this long for another thread that is
        fetching it (-1: as long as it takes), so one thread asks for them all; None: no waiting, and concurrent
        callers may each ask (each gets a valid token)."""
        held = self._held
        if held is not None and not _due(held):
            return held.token
        if wait is None:
            held = self._held = fetch()
            return held.token
        if not self._lock.acquire(timeout=wait):
            raise OutOfTime("the run's time budget ran out waiting for a token another invocation is fetching")
        try:
            held = self._held
            if held is None or _due(held):
                held = self._held = fetch()
            return held.token
        finally:
            self._lock.release()

    def drop(self) -> None:
        self._held = None


def _due(held: AccessTokenInfo) -> bool:
    return time.time() >= min(held.refresh_on or held.expires_on, held.expires_on - TOKEN_RENEW_MARGIN)


# Failures whose class says it all; msal lets a malformed answer escape as a Python error.
_IDENTITY_FAILURES: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    (
        (AttributeError, KeyError, TypeError, IndexError),
        "the identity endpoint's answer is not the token JSON it documents",
    ),
    (ServiceRequestError, "the identity endpoint could not be reached (the connection failed or timed out)"),
    (ServiceResponseError, "the identity endpoint's answer broke off or did not come in time"),
)


def _identity_failure(exc: Exception) -> str:
    """What went wrong with the identity endpoint, in one line of our own words where we know them.

    msal keeps the App Service endpoint's answer only inside its error text, as ``(error) <status>, <message>``;
    azure-identity prefixes every such failure with "configuration not found in environment", which misleads.
    """
    cause = getattr(exc, "inner_exception", None)  # where azure-core keeps what the transport raised
    if isinstance(cause, AnswerTooLarge):
        return f"the identity endpoint's answer was refused: {cause}"
    known = next((said for kinds, said in _IDENTITY_FAILURES if isinstance(exc, kinds)), None)
    if known is not None:
        return known
    text = str(exc).strip()
    answered = _MSAL_ENDPOINT_ERROR.search(text)
    if answered is None:
        return redact((text.splitlines() or [type(exc).__name__])[0][:300])
    status, message = answered["status"], answered["message"].strip()
    if status in ("401", "403"):
        return (
            f"the identity endpoint refused the request ({status}): the X-IDENTITY-HEADER value (IDENTITY_HEADER) "
            "was not accepted. Azure sets IDENTITY_ENDPOINT and IDENTITY_HEADER itself: remove any app setting "
            "that overrides them, and restart the app"
        )
    said = "" if message in ("", "None") else f": {redact(message[:300])}"
    return f"the identity endpoint answered {status if status != 'None' else 'with an error'}{said}"


def out_of_time(exc: Exception, exchange: Exchange | None) -> bool:
    return isinstance(exc, OutOfTime) or (
        exchange is not None and (exchange.expired or exchange.deadline.remaining() <= 0)
    )


def no_token(source: str, exc: Exception, settings: GraphSettings, exchange: Exchange | None) -> IdentityUnavailable:
    """The identity's failure in our words: no answer within the run's budget, or what went wrong, with the fix."""
    if out_of_time(exc, exchange):
        budget = f" of {exchange.deadline.seconds:g} s" if exchange is not None else ""
        why = f"no answer within the run's time budget{budget} (GRAPH_TIME_BUDGET_SECONDS)"
    else:
        why = _identity_failure(exc)
    return IdentityUnavailable(f"{source}: {why}. {identity_fix(settings)}")


def identity_fix(settings: GraphSettings) -> str:
    if settings.identity_endpoint is None and settings.app_client_id:
        return (
            "TENANT_IDS acts through the Function App's user-assigned managed identity: run it in Azure "
            "(README, 'Many tenants'), or against the emulator (make demo)."
        )
    if settings.identity_endpoint is None and shutil.which("az") is None:
        return (
            "To try it from this machine, install the Azure CLI (https://learn.microsoft.com/cli/azure/install-azure-cli"
            ", or: pip install azure-cli) and run 'az login'; or deploy it to Azure with a managed identity."
        )
    if settings.identity_endpoint is None:
        return "Run 'az login' to try it from this machine, or deploy it to Azure with a managed identity."
    if settings.client_id:
        return (
            "Check that the identity with client id AZURE_CLIENT_ID is assigned to this Function App "
            "(az functionapp identity assign --identities <resource id>)."
        )
    return "Check that the Function App's system-assigned identity is on (az functionapp identity assign)."


def transport_for(settings: GraphSettings, session: requests.Session) -> DeadlineTransport:
    return DeadlineTransport(
        session, connection_timeout=min(CONNECT_TIMEOUT, settings.timeout), read_timeout=settings.timeout
    )


def managed_identity(settings: GraphSettings, session: requests.Session) -> ManagedIdentityCredential:
    return ManagedIdentityCredential(
        client_id=settings.client_id,
        transport=transport_for(settings, session),
        retry_total=2,
        retry_backoff_factor=0.2,
        timeout=settings.timeout * 2,
    )


def credential_for(settings: GraphSettings, session: requests.Session) -> SupportsTokenInfo:
    """Managed identity in Azure, over this app's session; the developer's own Azure CLI sign-in elsewhere."""
    if settings.identity_endpoint is not None:
        return managed_identity(settings, session)
    return AzureCliCredential(process_timeout=max(10, int(settings.timeout)))
