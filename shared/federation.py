"""Acting in customer tenants with no secret: the managed identity's token is the client assertion of a
multi-tenant app registration whose federated identity credential trusts that identity.

Entra exchanges the assertion at ``{authority}/{tenant}/oauth2/v2.0/token`` for a Graph token of that tenant
(azure-identity's ``ClientAssertionCredential``). The assertion is one per process, shared by every tenant.
https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.identity import ClientAssertionCredential

from shared.errors import IdentityUnavailable, TenantNotConsented
from shared.identity import HeldToken, identity_fix, managed_identity, no_token
from shared.redaction import redact, remember_token
from shared.transport import USER_AGENT, DeadlineTransport, current_exchange, session_for

if TYPE_CHECKING:
    from shared.graph import GraphSettings

# The audience of the managed identity's token that Entra accepts as an assertion, by cloud.
EXCHANGE_AUDIENCES = {
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
    "login.partner.microsoftonline.cn": "api://AzureADTokenExchangeChina",
}
DEFAULT_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
# azure-identity's text for an Entra refusal: "Microsoft Entra ID error '(invalid_client) AADSTS7000229: ...'".
_ENTRA_ERROR = re.compile(r"\((?P<error>\w+)\) (?P<code>AADSTS\d+)(?P<message>[^\r\n]*)")
# Entra's codes for "this app has no service principal in the tenant": nobody there consented yet.
NOT_CONSENTED = frozenset({"AADSTS7000229", "AADSTS700016"})
# OAuth's errors for Entra's own trouble, not the request's.
TRANSIENT = frozenset({"server_error", "temporarily_unavailable"})


def exchange_audience(authority: str) -> str:
    """The token-exchange audience of the authority's cloud; asking for it would only invite a mismatch."""
    return EXCHANGE_AUDIENCES.get(urlsplit(authority).hostname or "", DEFAULT_EXCHANGE_AUDIENCE)


def consent_url(authority: str, tenant: str, app_client_id: str) -> str:
    """What a customer tenant's administrator opens to consent to the app (and so create its service principal)."""
    return f"{authority}/{tenant}/adminconsent?client_id={app_client_id}"


class Assertion:
    """The managed identity's token for the exchange audience, held for every tenant's credential.

    ``ClientAssertionCredential`` calls this whenever it needs a new Graph token; tenants run on several threads,
    so only one of them asks the identity endpoint when the held token is due, the others waiting for it within
    their run's budget.
    """

    def __init__(self, fetch: Callable[[], AccessTokenInfo]) -> None:
        self._fetch = fetch
        self._held = HeldToken()

    def __call__(self) -> str:
        exchange = current_exchange()
        return self._held.get(self._fetch, wait=exchange.deadline.remaining() if exchange is not None else -1)


def tenant_credential(
    tenant: str,
    app_client_id: str,
    assertion: Callable[[], str],
    *,
    authority: str,
    transport: DeadlineTransport,
) -> ClientAssertionCredential:
    """The tenant's Graph credential: posts the assertion to the tenant's token endpoint (no instance discovery),
    over the app's own session, so the time budget and the CA bundle hold for Entra as for Graph."""
    return ClientAssertionCredential(
        tenant,
        app_client_id,
        assertion,
        authority=authority,
        transport=transport,
        retry_total=2,
        retry_backoff_factor=0.2,
    )


def entra_failure(exc: Exception, *, tenant: str, app_client_id: str, authority: str) -> IdentityUnavailable:
    """The token exchange's failure in our words: Entra's refusal by its code, or why Entra gave no token."""
    said = _ENTRA_ERROR.search(str(exc))
    if said is None:
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            why = (
                f"Entra ({authority}) could not be reached: the connection failed, timed out or broke off, or its "
                "certificate is not trusted (REQUESTS_CA_BUNDLE). Check AZURE_AUTHORITY_HOST and the app's outbound "
                "network"
            )
        else:
            text = str(exc).strip()
            why = (
                f"Entra's answer was not a token ({redact(text.splitlines()[0][:200]) if text else type(exc).__name__})"
            )
        return IdentityUnavailable(f"No Graph token for tenant {tenant}: {why}")
    code, error = said["code"], said["error"]
    message = redact(said["message"].lstrip(": ").rstrip("'")[:300])
    url = consent_url(authority, tenant, app_client_id)
    if code in NOT_CONSENTED:
        return TenantNotConsented(
            f"tenant {tenant} has not consented to the app {app_client_id} (Entra: {error} {code}): an "
            f"administrator of that tenant must open {url} and accept",
            tenant=tenant,
            consent_url=url,
        )
    if error in TRANSIENT:
        return IdentityUnavailable(
            f"Entra could not issue a token for tenant {tenant} now ({error} {code}: {message}); the next run "
            "tries again"
        )
    return IdentityUnavailable(
        f"Entra refused the token exchange for tenant {tenant} ({error} {code}: {message}). Check that the app "
        f"{app_client_id} (TENANT_APP_CLIENT_ID) has a federated identity credential for the managed identity "
        f"AZURE_CLIENT_ID (README, 'Many tenants'), and that the tenant consented: {url}"
    )


def assertion_for(settings: GraphSettings) -> Assertion:
    """The managed identity's token for the cloud's token-exchange audience (and, with TENANT_IDS, nothing else)."""
    audience = exchange_audience(settings.authority or "")
    source = f"Could not get the token-exchange assertion ({audience}) from the user-assigned managed identity"
    session = session_for(settings.endpoint, USER_AGENT)
    credential = managed_identity(settings, session) if settings.identity_endpoint is not None else None

    def fetch() -> AccessTokenInfo:
        nonlocal credential
        if credential is None:
            raise IdentityUnavailable(f"{source}: IDENTITY_ENDPOINT is not set. {identity_fix(settings)}")
        try:
            info: AccessTokenInfo = credential.get_token_info(f"{audience}/.default")
        except Exception as exc:  # as in GraphClient._new_token: any class means no token
            credential = managed_identity(settings, session)  # as GraphClient._drop_token says
            raise no_token(source, exc, settings, current_exchange()) from None
        remember_token(info.token)
        return info

    return Assertion(fetch)
