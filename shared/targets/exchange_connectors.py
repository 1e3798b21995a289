"""Intune's Exchange connector (v1.0): ``POST .../exchangeConnectors/{id}/sync`` with a sync type, answered 204.

Microsoft ended support for the on-premises connector on 19 February 2024; the action is still published.
https://learn.microsoft.com/graph/api/intune-onboarding-devicemanagementexchangeconnector-sync
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from shared.targets.base import SERVICE_CONFIG_READ_WRITE, Health, SyncObject, Target, graph_datetime

SyncType = Literal["deltaSync", "fullSync"]
SYNC_TYPES: tuple[SyncType, ...] = ("deltaSync", "fullSync")


def is_sync_type(value: object) -> bool:
    """Graph's enum is case-sensitive, so only its exact spellings pass."""
    return value in SYNC_TYPES


class ExchangeConnectors(Target):
    name = "exchangeConnectors"
    version = "v1.0"
    path = "/deviceManagement/exchangeConnectors"
    action = "sync"
    permission = SERVICE_CONFIG_READ_WRITE
    state_fields = ("status", "lastSyncDateTime", "serverName", "primarySmtpAddress", "version")
    takes_sync_type = True
    noun = "Exchange connector"
    ids_setting = "EXCHANGE_CONNECTOR_IDS"
    unknown_code = "unknownConnector"
    none_code = "noConnectors"
    none_advice = (
        "No Exchange connector found in the tenant, so nothing was synced. Likely causes: none was ever installed, "
        "or it was retired (Microsoft ended support for the on-premises Intune Exchange connector on 19 February "
        "2024). Set EXCHANGE_CONNECTOR_IDS to name connectors explicitly."
    )

    def action_body(self, sync_type: str | None) -> dict[str, Any]:
        return {"syncType": sync_type or "deltaSync"}

    def health(self, obj: SyncObject, now: datetime, max_age: timedelta) -> Health:
        status = obj.text("status")
        if status != "connected":
            return Health(
                False,
                f"status is {status or 'unknown'} (server {obj.text('serverName') or 'unknown'})",
                "Check the Intune Exchange connector service on its server. Microsoft ended support for the "
                "on-premises connector on 19 February 2024: plan the move to Exchange Online or hybrid modern auth.",
            )
        last_sync = graph_datetime(obj.fields.get("lastSyncDateTime"))
        if last_sync is None:
            return Health(False, "has never synced", "Run 'python -m shared sync' and check again later.")
        hours = (now - last_sync).total_seconds() / 3600
        if now - last_sync > max_age:
            return Health(
                False,
                f"last synced {hours:.1f} h ago, more than {max_age.total_seconds() / 3600:g} h",
                "Check the connector's server; a sync request is accepted by Intune but runs on the connector.",
            )
        return Health(True, f"connected, last synced {hours:.1f} h ago")


TARGET = ExchangeConnectors()
