"""The one way this app talks to Microsoft Graph: credential, session, retries, errors.

Every Graph call goes through :meth:`GraphClient.request`, so authentication, ``client-request-id``,
throttling, the run's time budget and error mapping live here and nowhere else.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessTokenInfo, SupportsTokenInfo
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.identity import AzureCliCredential, ManagedIdentityCredential
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from shared.errors import (
    GraphError,
    GraphForbidden,
    GraphNotFound,
    GraphProtocolError,
    GraphThrottled,
    GraphUnauthorized,
    GraphUnreachable,
    IdentityUnavailable,
    OutOfTime,
)
from shared.federation import Assertion, entra_failure, exchange_audience, tenant_credential
from shared.redaction import redact, remember
from shared.transport import (
    AnswerTooLarge,
    Deadline,
    DeadlineTransport,
    Exchange,
    bounded_by,
    current_exchange,
    parse_retry_after,
    session_for,
)

__all__ = ["Deadline", "GraphClient", "GraphResponse", "GraphSettings", "client_for"]

log = logging.getLogger(__name__)
# azure-identity logs every token lookup at INFO ("get_token_info succeeded") and each failure at WARNING, once
# per credential layer; this app reports a failed token itself, once, with the fix. azure-core logs each identity
# request in full at INFO: noise and cost in Application Insights.
logging.getLogger("azure.identity").setLevel(logging.ERROR)
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

USER_AGENT = "intune-exchange-connector-sync/1.0"
CONNECT_TIMEOUT = 5.0
# Statuses Graph documents as transient: throttling (429, sometimes 503) and gateway timeouts.
RETRY_STATUSES = frozenset({429, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})
# What to tell a caller to wait when Graph throttled without saying for how long.
DEFAULT_THROTTLE_WAIT = 30
# The longest pause between retries when Graph gives no Retry-After.
BACKOFF_MAX = 30.0
# A held token with less left than this is renewed, as azure-core's BearerTokenCredentialPolicy does.
TOKEN_RENEW_MARGIN = 300
# RFC 6750's b64token: what an Authorization header can carry. Anything else (CR/LF, spaces) is no usable token.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# msal's report of an App Service identity error: "Token request error: (invalid_scope) 401, <message>".
_MSAL_ENDPOINT_ERROR = re.compile(r"Token request error: \(\w+\) (?P<status>\d{3}|None), (?P<message>.*)")
# A collection longer than this many pages is not one Graph would send.
MAX_PAGES = 1000


class GraphSettings(NamedTuple):
    """What the client is built from; a change of any field means a new client.

    This and the app's other result records are NamedTuples: typed and immutable like frozen dataclasses, but
    made in a tenth of the time, which every cold start pays for each of them (README, 'Performance')."""

    endpoint: str
    client_id: str | None
    identity_endpoint: str | None
    timeout: float
    time_budget: float
    max_retries: int
    backoff: float
    # With TENANT_IDS: the multi-tenant app (TENANT_APP_CLIENT_ID) and the Entra authority (AZURE_AUTHORITY_HOST).
    app_client_id: str | None = None
    authority: str | None = None

    @property
    def scope(self) -> str:
        """The token audience is the Graph root itself, so national clouds get their own scope."""
        return f"{self.endpoint}/.default"

    @property
    def identity_description(self) -> str:
        if self.app_client_id:
            return (
                f"the multi-tenant app {self.app_client_id} (TENANT_APP_CLIENT_ID), through the user-assigned "
                "managed identity named by AZURE_CLIENT_ID"
            )
        if self.identity_endpoint is None:
            return "the Azure CLI sign-in (not running in Azure: IDENTITY_ENDPOINT is not set)"
        if self.client_id:
            return "the user-assigned managed identity named by AZURE_CLIENT_ID"
        return "the system-assigned managed identity"


class GraphResponse(NamedTuple):
    status: int
    body: Any
    request_id: str | None
    client_request_id: str


class GraphRetry(Retry):
    """urllib3's retry policy with one change: urllib3 retries the first failure at once, while
    Graph asks for a pause before every retry (exponential, with jitter so instances spread out)."""

    def get_backoff_time(self) -> float:
        ceiling: float = min(BACKOFF_MAX, self.backoff_factor * 2 ** (len(self.history) - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography


class GraphClient:
    """One credential (it owns the token cache) and one pooled session, reused across invocations.

    ``tenant``: a customer tenant (TENANT_IDS), whose Graph token the multi-tenant app gets by presenting
    ``assertion``, the managed identity's token; None for the app's own tenant.
    """

    def __init__(self, settings: GraphSettings, tenant: str | None = None, assertion: Assertion | None = None) -> None:
        self.settings = settings
        self.tenant = tenant
        origin = urlsplit(settings.endpoint)
        self._origin = (origin.scheme, origin.hostname, origin.port)
        self._root = f"{settings.endpoint}/"
        self._session = session_for(settings.endpoint, USER_AGENT)
        self._assertion = assertion
        self._credential = self._new_credential()
        self._token: AccessTokenInfo | None = None
        # Sync actions only ask Intune to sync, so sending one twice is harmless: POSTs are retried like GETs,
        # including after a connection dropped before Graph's answer arrived.
        self._retry = GraphRetry(
            total=settings.max_retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
            backoff_factor=settings.backoff,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        log.info("Graph client for %s uses %s", settings.endpoint, self.identity_description)

    @property
    def identity_description(self) -> str:
        if self.tenant is None:
            return self.settings.identity_description
        return f"{self.settings.identity_description} in tenant {self.tenant}"

    def _new_credential(self) -> SupportsTokenInfo:
        if self.tenant is None or self._assertion is None or self.settings.app_client_id is None:
            return _credential_for(self.settings, self._session)
        return tenant_credential(
            self.tenant,
            self.settings.app_client_id,
            self._assertion,
            authority=self.settings.authority or "",
            transport=_transport(self.settings, self._session),
        )

    def close(self) -> None:
        self._session.close()
        self._credential.close()

    def url(self, path: str) -> str:
        return f"{self.settings.endpoint}{path}"

    def request(
        self,
        method: str,
        url: str,
        *,
        deadline: Deadline,
        json_body: Mapping[str, Any] | None = None,
        final_statuses: frozenset[int] = frozenset(),
    ) -> GraphResponse:
        """Send one Graph call, retrying what Graph documents as transient, within ``deadline``.

        ``final_statuses`` are answers this call takes as they come, never retried (a resource's own "already
        running" or "too soon"). Throttling guidance: https://learn.microsoft.com/graph/throttling
        """
        url = self._own(url)
        path = url[len(self.settings.endpoint) :]
        retry: Retry = self._retry  # immutable: each increment() returns a new policy with its history
        token_renewed = False
        while True:
            client_request_id = str(uuid.uuid4())
            response, failure = self._send(
                method, url, json_body, path=path, client_request_id=client_request_id, deadline=deadline
            )
            if response is not None and response.status_code == 401 and not token_renewed:
                # A held token Graph refuses (revoked, rotated keys) is dropped; a new one is tried once.
                log.warning("Graph %s %s: 401 for the held token; trying once with a new token", method, path)
                self._drop_token()
                token_renewed = True
                continue
            wait = _retry_after(response)
            if response is not None and (
                response.status_code in final_statuses
                or not retry.is_retry(method, response.status_code, wait is not None)
            ):
                return _result(response, client_request_id, self._token_context())
            try:
                retry = retry.increment(method, url, response=response.raw if response else None, error=failure)
            except MaxRetryError:
                attempts = f"after {len(retry.history) + 1} attempts"
                raise _final_error(response, failure, client_request_id, attempts) from None
            if wait is None:
                wait = retry.get_backoff_time()
            if wait >= deadline.remaining():
                raise _final_error(
                    response, failure, client_request_id, f"the next retry ({wait:.0f} s) would exceed the time budget"
                )
            log.warning(
                "Graph %s %s: %s; retry %d in %.1f s (client-request-id=%s%s)",
                method,
                path,
                response.status_code if response is not None else type(failure).__name__,
                len(retry.history),
                wait,
                client_request_id,
                _request_id_text(response),
            )
            time.sleep(wait)

    def pages(self, url: str, deadline: Deadline) -> Iterator[GraphResponse]:
        """Each page of a collection, following ``@odata.nextLink``; a link already followed ends it as an error."""
        followed: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in followed:
                raise GraphProtocolError(f"Graph's paging returned to a page already read ({next_url}); stopped")
            if len(followed) >= MAX_PAGES:
                raise GraphProtocolError(f"Graph returned more than {MAX_PAGES} pages; stopped")
            followed.add(next_url)
            page = self.request("GET", next_url, deadline=deadline)
            body = page.body
            next_link = body.get("@odata.nextLink") if isinstance(body, dict) else None
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("value"), list)
                or not isinstance(next_link, str | None)
            ):
                raise GraphProtocolError(
                    "Graph's answer is not a collection ({'value': [...]})",
                    status=page.status,
                    request_id=page.request_id,
                    client_request_id=page.client_request_id,
                )
            yield page
            next_url = self._own(next_link) if next_link is not None else None

    def _own(self, url: str) -> str:
        """``url`` on this client's Graph root (scheme and host compared in lower case); the token goes nowhere else."""
        if url.startswith(self._root) and "@" not in url:  # the URLs this app builds itself: no parsing needed
            return url
        try:
            parts = urlsplit(url)
            origin = (parts.scheme.lower(), parts.hostname, parts.port)
        except ValueError:
            origin = None
        if origin != self._origin or parts.username is not None or parts.password is not None:
            raise GraphProtocolError(f"refusing to send the token outside {self.settings.endpoint}: {url[:200]}")
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{self.settings.endpoint}{rest}"

    def _token_context(self) -> str:
        """Said with a 401, so the administrator sees which audience and identity Graph refused."""
        return f" (the token was for audience {self.settings.endpoint}, from {self.identity_description})"

    def _send(
        self,
        method: str,
        url: str,
        json_body: Mapping[str, Any] | None,
        *,
        path: str,
        client_request_id: str,
        deadline: Deadline,
    ) -> tuple[requests.Response | None, requests.RequestException | None]:
        authorization = f"Bearer {self.token(deadline)}"
        # Worked out after the token: a slow identity endpoint leaves less for Graph, never more.
        remaining = deadline.remaining()
        if remaining < 0.1:
            raise _budget_exhausted(deadline, client_request_id)
        headers = {"Authorization": authorization, "client-request-id": client_request_id}
        read_timeout = min(self.settings.timeout, remaining)
        started = time.monotonic()
        with bounded_by(deadline) as exchange:
            try:
                response = self._session.request(
                    method,
                    url,
                    json=json_body,
                    headers=headers,
                    timeout=(min(CONNECT_TIMEOUT, read_timeout), read_timeout),
                    allow_redirects=False,
                )
            except AnswerTooLarge as exc:
                raise GraphProtocolError(
                    f"Graph's answer to {method} {path} was refused: {exc}", client_request_id=client_request_id
                ) from None
            except requests.RequestException as exc:
                if exchange.expired:
                    raise _budget_exhausted(deadline, client_request_id) from None
                log.debug("Graph %s %s failed: %s (client-request-id=%s)", method, path, exc, client_request_id)
                return None, exc
        log.debug(
            "Graph %s %s -> %d in %.0f ms (client-request-id=%s%s)",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
            client_request_id,
            _request_id_text(response),
        )
        return response, None

    def token(self, deadline: Deadline) -> str:
        """A token for Graph, held between calls the way azure-core's BearerTokenCredentialPolicy holds one.

        azure-identity caches the token and refreshes it early, but asking it costs tens of microseconds a call
        even when its cache answers; so it is asked again only at the token's ``refresh_on`` or in its last
        5 minutes, whichever comes first. Concurrent invocations may both ask then; each gets a valid token.
        """
        held = self._token
        if held is None or time.time() >= min(held.refresh_on or held.expires_on, held.expires_on - TOKEN_RENEW_MARGIN):
            held = self._token = self._new_token(deadline)
        return held.token

    def _drop_token(self) -> None:
        """Forget the held token and the credential's cache, so the next call fetches a new token.

        Also after a failed token request: msal keeps a failed answer (429, 5xx) and serves it again for 5 s, or
        for its Retry-After up to an hour, without asking (``msal.throttled_http_client``), where every invocation
        must ask for itself. The old credential's transport is the shared session, so it is not closed."""
        self._token = None
        self._credential = self._new_credential()

    def _new_token(self, deadline: Deadline) -> AccessTokenInfo:
        source = f"Could not get a token for {self.settings.scope} from {self.identity_description}"
        with bounded_by(deadline) as exchange:
            try:
                info = self._credential.get_token_info(self.settings.scope)
            except IdentityUnavailable:  # the assertion's own failure, already in our words
                raise
            # azure-identity raises AzureError subclasses, but msal parses the identity endpoint's answer
            # without guarding it, so a malformed answer escapes as ValueError, AttributeError, ... Whatever
            # the class, it means one thing here: no token.
            except Exception as exc:
                self._drop_token()
                if self.tenant is not None and not _out_of_time(exc, exchange):
                    raise entra_failure(
                        exc,
                        tenant=self.tenant,
                        app_client_id=self.settings.app_client_id or "",
                        authority=self.settings.authority or "",
                    ) from None
                raise _no_token(source, exc, self.settings, exchange) from None
        remember(info.token)
        if not BEARER_TOKEN.fullmatch(info.token):
            raise IdentityUnavailable(
                f"{source}: the identity endpoint answered with an access token that cannot be sent in an "
                f"Authorization header. {_identity_fix(self.settings)}"
            )
        return info


def _budget_exhausted(deadline: Deadline, client_request_id: str) -> OutOfTime:
    return OutOfTime(
        f"the run's time budget of {deadline.seconds:g} s (GRAPH_TIME_BUDGET_SECONDS) is used up",
        client_request_id=client_request_id,
    )


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


def _out_of_time(exc: Exception, exchange: Exchange | None) -> bool:
    return isinstance(exc, OutOfTime) or (
        exchange is not None and (exchange.expired or exchange.deadline.remaining() <= 0)
    )


def _no_token(source: str, exc: Exception, settings: GraphSettings, exchange: Exchange | None) -> IdentityUnavailable:
    """The identity's failure in our words: no answer within the run's budget, or what went wrong, with the fix."""
    if _out_of_time(exc, exchange):
        budget = f" of {exchange.deadline.seconds:g} s" if exchange is not None else ""
        why = f"no answer within the run's time budget{budget} (GRAPH_TIME_BUDGET_SECONDS)"
    else:
        why = _identity_failure(exc)
    return IdentityUnavailable(f"{source}: {why}. {_identity_fix(settings)}")


def _identity_fix(settings: GraphSettings) -> str:
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


def _transport(settings: GraphSettings, session: requests.Session) -> DeadlineTransport:
    return DeadlineTransport(
        session, connection_timeout=min(CONNECT_TIMEOUT, settings.timeout), read_timeout=settings.timeout
    )


def _managed_identity(settings: GraphSettings, session: requests.Session) -> ManagedIdentityCredential:
    return ManagedIdentityCredential(
        client_id=settings.client_id,
        transport=_transport(settings, session),
        retry_total=2,
        retry_backoff_factor=0.2,
        timeout=settings.timeout * 2,
    )


def _credential_for(settings: GraphSettings, session: requests.Session) -> SupportsTokenInfo:
    """Managed identity in Azure, over this app's session; the developer's own Azure CLI sign-in elsewhere."""
    if settings.identity_endpoint is not None:
        return _managed_identity(settings, session)
    return AzureCliCredential(process_timeout=max(10, int(settings.timeout)))


def _assertion_for(settings: GraphSettings) -> Assertion:
    """The managed identity's token for the cloud's token-exchange audience (and, with TENANT_IDS, nothing else)."""
    audience = exchange_audience(settings.authority or "")
    source = f"Could not get the token-exchange assertion ({audience}) from the user-assigned managed identity"
    session = session_for(settings.endpoint, USER_AGENT)
    credential = _managed_identity(settings, session) if settings.identity_endpoint is not None else None

    def fetch() -> AccessTokenInfo:
        nonlocal credential
        if credential is None:
            raise IdentityUnavailable(f"{source}: IDENTITY_ENDPOINT is not set. {_identity_fix(settings)}")
        try:
            info: AccessTokenInfo = credential.get_token_info(f"{audience}/.default")
        except Exception as exc:  # as in GraphClient._new_token: any class means no token
            credential = _managed_identity(settings, session)  # as GraphClient._drop_token says
            raise _no_token(source, exc, settings, current_exchange()) from None
        return info

    return Assertion(fetch)


def _request_id(response: requests.Response | None) -> str | None:
    return response.headers.get("request-id") if response is not None else None


def _request_id_text(response: requests.Response | None) -> str:
    request_id = _request_id(response)
    return f", request-id={request_id}" if request_id else ""


def _retry_after(response: requests.Response | None) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After")) if response is not None else None


def _result(response: requests.Response, client_request_id: str, token_context: str) -> GraphResponse:
    if not 200 <= response.status_code < 300:
        raise _error_from_response(response, client_request_id, token_context if response.status_code == 401 else "")
    body = None
    if response.content:
        try:
            body = response.json()
        except (ValueError, RecursionError):
            raise GraphProtocolError(
                "Graph answered with a body that is not JSON",
                status=response.status_code,
                request_id=_request_id(response),
                client_request_id=client_request_id,
            ) from None
    return GraphResponse(response.status_code, body, _request_id(response), client_request_id)


def _final_error(
    response: requests.Response | None,
    failure: requests.RequestException | None,
    client_request_id: str,
    why: str,
) -> GraphError:
    if response is not None:
        return _error_from_response(response, client_request_id, f" (gave up {why})")
    kind = "timed out" if isinstance(failure, requests.Timeout) else "connection failed"
    return GraphUnreachable(f"Graph could not be reached: {kind} (gave up {why})", client_request_id=client_request_id)


def _error_from_response(response: requests.Response, client_request_id: str, suffix: str = "") -> GraphError:
    """Graph's error body: ``{"error": {"code", "message", "innerError": {"request-id", ...}}}``.

    https://learn.microsoft.com/graph/errors
    """
    code, message, inner = None, None, {}
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError, RecursionError):
        error = None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        found = error.get("innerError", error.get("innererror"))
        inner = found if isinstance(found, dict) else {}
    status = response.status_code
    details: dict[str, Any] = {
        "status": status,
        "code": redact(code[:100]) if code else None,
        "request_id": _request_id(response) or _str_or_none(inner.get("request-id")),
        "client_request_id": client_request_id,
    }
    text = " ".join(filter(None, [f"Graph answered {status}", details["code"]]))
    if message:
        text += f": {redact(message[:500])}"
    if status in THROTTLE_STATUSES:
        seconds = _retry_after(response)
        retry_after = max(1, round(seconds)) if seconds is not None else DEFAULT_THROTTLE_WAIT
        return GraphThrottled(f"{text}{suffix}", retry_after=retry_after, **details)
    error_class = {401: GraphUnauthorized, 403: GraphForbidden, 404: GraphNotFound}.get(status, GraphError)
    return error_class(f"{text}{suffix}", **details)


def _str_or_none(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


_clients_lock = threading.Lock()
_clients: dict[str | None, GraphClient] = {}
_clients_settings: GraphSettings | None = None
_assertion: Assertion | None = None


def client_for(settings: GraphSettings, tenant: str | None = None) -> GraphClient:
    """The process's client for ``tenant`` (None: the app's own), built on first use; every client is rebuilt
    if the settings change. Customer tenants share one assertion, so the identity is asked once for them all."""
    global _assertion, _clients_settings
    with _clients_lock:
        if settings != _clients_settings:
            for client in _clients.values():
                client.close()
            _clients.clear()
            _assertion = None
            _clients_settings = settings
        held = _clients.get(tenant)
        if held is None:
            if tenant is not None and _assertion is None:
                _assertion = _assertion_for(settings)
            held = _clients[tenant] = GraphClient(settings, tenant, _assertion if tenant is not None else None)
        return held
