"""Intune's Exchange connector resource in Graph: list, get state, sync. No other module knows its paths.

https://learn.microsoft.com/graph/api/resources/intune-onboarding-devicemanagementexchangeconnector
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import InvalidConnectorId, json_type
from shared.graph import Deadline, GraphClient, GraphResponse

log = logging.getLogger(__name__)

CONNECTORS_PATH = "/v1.0/deviceManagement/exchangeConnectors"
# The least-privileged Graph application permission for the sync action (list and get need only Read.All).
PERMISSION = "DeviceManagementServiceConfig.ReadWrite.All"
# Graph only says the id is a string; real ids are GUIDs. Anything outside this alphabet could steer
# the URL (``/``, ``.``, ``%``, ``?``, ``#``), so it never reaches one.
CONNECTOR_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@dataclass(frozen=True)
class ExchangeConnector:
    id: str
    status: str | None
    last_sync: str | None
    server_name: str | None
    primary_smtp_address: str | None
    version: str | None

    @classmethod
    def from_graph(cls, item: dict[str, Any]) -> ExchangeConnector:
        def text(key: str) -> str | None:
            value = item.get(key)
            return value if isinstance(value, str) else None

        return cls(
            id=item["id"],
            status=text("status"),
            last_sync=text("lastSyncDateTime"),
            server_name=text("serverName"),
            primary_smtp_address=text("primarySmtpAddress"),
            version=text("version"),
        )

    def state(self) -> dict[str, str | None]:
        return {
            "id": self.id,
            "status": self.status,
            "lastSyncDateTime": self.last_sync,
            "serverName": self.server_name,
            "primarySmtpAddress": self.primary_smtp_address,
            "version": self.version,
        }


def validate_connector_id(value: object) -> str:
    """The id, if it is safe to put in a Graph URL; otherwise :class:`InvalidConnectorId`."""
    if not isinstance(value, str):
        raise InvalidConnectorId(f"a connector id must be a string, not {json_type(value)}")
    if not CONNECTOR_ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 40 else f"{value[:40]}..."
        raise InvalidConnectorId(f"{shown!r} is not a connector id (1-128 letters, digits, '-' or '_', such as a GUID)")
    return value


def connector_url(graph: GraphClient, connector_id: str) -> str:
    # Quoting is belt and braces: the id was validated, and must stay a single path segment regardless.
    return graph.url(f"{CONNECTORS_PATH}/{quote(validate_connector_id(connector_id), safe='')}")


def list_connectors(graph: GraphClient, deadline: Deadline) -> list[ExchangeConnector]:
    """Every connector in the tenant, each once even if Graph lists it on two pages."""
    connectors: dict[str, ExchangeConnector] = {}
    for page in graph.pages(graph.url(CONNECTORS_PATH), deadline):
        for connector in _usable(page.body["value"], page):
            connectors.setdefault(connector.id, connector)
    return list(connectors.values())


def sync_connector(graph: GraphClient, connector_id: str, sync_type: str, deadline: Deadline) -> GraphResponse:
    """Ask Intune to sync one connector. Graph answers 204 with no body: the sync itself happens later."""
    return graph.request(
        "POST", f"{connector_url(graph, connector_id)}/sync", json_body={"syncType": sync_type}, deadline=deadline
    )


def _usable(items: list[Any], page: GraphResponse) -> list[ExchangeConnector]:
    usable = []
    for item in items:
        item_id = item.get("id") if isinstance(item, dict) else None
        try:
            validate_connector_id(item_id)
        except InvalidConnectorId as exc:
            log.warning("Skipping an Exchange connector Graph listed: %s (request-id=%s)", exc, page.request_id)
            continue
        usable.append(ExchangeConnector.from_graph(item))
    return usable
