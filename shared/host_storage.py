"""The Function App's storage account (``AzureWebJobsStorage``) as the app's identity reaches it: where its queue
service is, and whether the identity may use the tenants' queue (``doctor``). The queue itself is the host's: the
app reads and writes it only through bindings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NamedTuple

import requests

from shared.dispatch import QUEUE
from shared.errors import IdentityUnavailable
from shared.graph import GraphSettings
from shared.identity import credential_for, no_token
from shared.transport import USER_AGENT, Deadline, bounded_by, current_exchange, session_for

STORAGE_SCOPE = "https://storage.azure.com/.default"
# OAuth needs 2017-11-09 or later: https://learn.microsoft.com/rest/api/storageservices/authorize-with-azure-active-directory
STORAGE_VERSION = "2021-08-06"
QUEUE_ROLE = "Storage Queue Data Contributor"


class QueueAccess(NamedTuple):
    ok: bool
    detail: str
    fix: str | None = None


def service_uri(env: Mapping[str, str], service: Literal["queue", "table"]) -> str | None:
    """A storage service as the host reaches it through the identity: ``AzureWebJobsStorage__{service}ServiceUri``,
    or the public cloud's for ``AzureWebJobsStorage__accountName``; None with a connection string, or nothing set."""
    uri = env.get(f"AzureWebJobsStorage__{service}ServiceUri", "").strip().rstrip("/")
    if uri:
        return uri
    account = env.get("AzureWebJobsStorage__accountName", "").strip()
    return f"https://{account}.{service}.core.windows.net" if account else None


def check_queue(settings: GraphSettings, env: Mapping[str, str]) -> QueueAccess:
    """Whether the identity can reach the ``sync-tenants`` queue: Storage's Get Queue Metadata, with its token."""
    service = service_uri(env, "queue")
    if service is None:
        if env.get("AzureWebJobsStorage"):
            return QueueAccess(
                True, "AzureWebJobsStorage is a connection string (an account key); the identity is not used"
            )
        return QueueAccess(
            False,
            "the storage account is not set, so the timer cannot dispatch the tenants",
            "Set AzureWebJobsStorage__queueServiceUri (and __credential=managedidentity), as infra/main.bicep does.",
        )
    if not service.startswith("https://") and not service.startswith(("http://127.0.0.1", "http://localhost")):
        return QueueAccess(
            False,
            f"AzureWebJobsStorage__queueServiceUri {service[:100]!r} is not an https:// URL",
            "Set it to the account's queue endpoint, such as https://<account>.queue.core.windows.net.",
        )
    deadline = Deadline(settings.time_budget)
    session = session_for(service, USER_AGENT)
    try:
        with bounded_by(deadline):
            try:
                token = credential_for(settings, session).get_token_info(STORAGE_SCOPE).token
            except Exception as exc:  # any failure of the credential means no token, in our words
                raise no_token("No Storage token from the identity", exc, settings, current_exchange()) from None
            answer = session.get(
                f"{service}/{QUEUE}",
                params={"comp": "metadata"},
                headers={"Authorization": f"Bearer {token}", "x-ms-version": STORAGE_VERSION},
                timeout=(min(5.0, settings.timeout), settings.timeout),
            )
    except IdentityUnavailable as exc:
        return QueueAccess(False, str(exc))
    except requests.RequestException as exc:
        return QueueAccess(
            False,
            f"the queue service {service} could not be reached ({type(exc).__name__})",
            "Check AzureWebJobsStorage__queueServiceUri and the app's outbound network.",
        )
    finally:
        session.close()
    return _answered(service, answer.status_code, answer.headers.get("x-ms-error-code"))


def _answered(service: str, status: int, code: str | None) -> QueueAccess:
    if status == 200:
        return QueueAccess(True, f"the identity can reach it at {service}")
    said = f"at {service}, Storage answered {status}" + (f" {code}" if code else "")
    if code == "QueueNotFound":
        return QueueAccess(False, said, f"Create the queue {QUEUE} (infra/main.bicep does), or let the host create it.")
    if status in (401, 403):
        return QueueAccess(
            False,
            said,
            f"Give the Function App's managed identity the {QUEUE_ROLE} role on the storage account (infra/main.bicep "
            "does); a new role assignment can take a few minutes.",
        )
    return QueueAccess(False, said)
