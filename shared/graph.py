"""The one way this app talks to Microsoft Graph: the client, with its credential, session and retries.

Every Graph call goes through :meth:`GraphClient.request`, so authentication, ``client-request-id``,
throttling and the run's time budget live here; tokens in shared.identity, what an answer means in
shared.graph_answers, the process's clients in shared.clients.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessTokenInfo, SupportsTokenInfo
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from shared.errors import GraphProtocolError, IdentityUnavailable
from shared.graph_answers import (
    GraphResponse,
    answer_result,
    budget_exhausted,
    final_error,
    request_id_text,
    retry_after_of,
)
from shared.identity import BEARER_TOKEN, HeldToken, credential_for, identity_fix, no_token, out_of_time, transport_for
from shared.redaction import remember_token
from shared.transport import (
    CONNECT_TIMEOUT,
    USER_AGENT,
    AnswerTooLarge,
    Deadline,
    bounded_by,
    session_for,
)

if TYPE_CHECKING:  # shared.federation is imported only where customer tenants are served (TENANT_IDS)
    from shared.federation import Assertion

__all__ = ["Deadline", "GraphClient", "GraphResponse", "GraphSettings"]

log = logging.getLogger(__name__)

# Statuses Graph documents as transient: throttling (429, sometimes 503) and gateway timeouts.
RETRY_STATUSES = frozenset({429, 503, 504})
# The longest pause between retries when Graph gives no Retry-After.
BACKOFF_MAX = 30.0
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
        self._token = HeldToken()
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
            return credential_for(self.settings, self._session)
        from shared.federation import tenant_credential  # noqa: PLC0415 - only with TENANT_IDS

        return tenant_credential(
            self.tenant,
            self.settings.app_client_id,
            self._assertion,
            authority=self.settings.authority or "",
            transport=transport_for(self.settings, self._session),
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
            # A correlation id for Microsoft's support, not a secret: random's generator spares a getrandom() call
            # per request that uuid4 makes, and the random module reseeds itself in a forked child.
            client_request_id = str(uuid.UUID(int=random.getrandbits(128), version=4))
            response, failure = self._send(
                method, url, json_body, path=path, client_request_id=client_request_id, deadline=deadline
            )
            if response is not None and response.status_code == 401 and not token_renewed:
                # A held token Graph refuses (revoked, rotated keys) is dropped; a new one is tried once.
                log.warning("Graph %s %s: 401 for the held token; trying once with a new token", method, path)
                self._drop_token()
                token_renewed = True
                continue
            wait = retry_after_of(response)
            if response is not None and (
                response.status_code in final_statuses
                or not retry.is_retry(method, response.status_code, wait is not None)
            ):
                return answer_result(response, client_request_id, self._token_context())
            try:
                retry = retry.increment(method, url, response=response.raw if response else None, error=failure)
            except MaxRetryError:
                attempts = f"after {len(retry.history) + 1} attempts"
                raise final_error(response, failure, client_request_id, attempts) from None
            if wait is None:
                wait = retry.get_backoff_time()
            if wait >= deadline.remaining():
                raise final_error(
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
                request_id_text(response),
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
            raise budget_exhausted(deadline, client_request_id)
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
                    raise budget_exhausted(deadline, client_request_id) from None
                log.debug("Graph %s %s failed: %s (client-request-id=%s)", method, path, exc, client_request_id)
                return None, exc
        log.debug(
            "Graph %s %s -> %d in %.0f ms (client-request-id=%s%s)",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
            client_request_id,
            request_id_text(response),
        )
        return response, None

    def token(self, deadline: Deadline) -> str:
        """A token for Graph, held between calls (:class:`HeldToken`). Concurrent invocations may both ask when it
        is due; each gets a valid token."""
        return self._token.get(lambda: self._new_token(deadline))

    def _drop_token(self) -> None:
        """Forget the held token and the credential's cache, so the next call fetches a new token.

        Also after a failed token request: msal keeps a failed answer (429, 5xx) and serves it again for 5 s, or
        for its Retry-After up to an hour, without asking (``msal.throttled_http_client``), where every invocation
        must ask for itself. The old credential's transport is the shared session, so it is not closed."""
        self._token.drop()
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
                if self.tenant is not None and not out_of_time(exc, exchange):
                    from shared.federation import entra_failure  # noqa: PLC0415 - only with TENANT_IDS

                    raise entra_failure(
                        exc,
                        tenant=self.tenant,
                        app_client_id=self.settings.app_client_id or "",
                        authority=self.settings.authority or "",
                    ) from None
                raise no_token(source, exc, self.settings, exchange) from None
        remember_token(info.token)
        if not BEARER_TOKEN.fullmatch(info.token):
            raise IdentityUnavailable(
                f"{source}: the identity endpoint answered with an access token that cannot be sent in an "
                f"Authorization header. {identity_fix(self.settings)}"
            )
        return info
