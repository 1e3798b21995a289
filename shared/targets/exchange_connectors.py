"""Intune's Exchange connector (v1.0): ``POST .../exchangeConnectors/{id}/sync`` with a sync type, answered 204.

Microsoft ended support for the on-premises connector on 19 February 2024; the action is still published.
https://learn.microsoft.com/graph/api/intune-onboarding-devicemanagementexchangeconnector-sync
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from shared.errors import ConfigurationError, InvalidObjectId
from shared.setting_reader import Setting, SettingReader, listed
from shared.targets.base import (
    SERVICE_CONFIG_READ_WRITE,
    Health,
    SyncObject,
    Target,
    graph_datetime,
    validate_object_id,
)

SYNC_TYPES = ("deltaSync", "fullSync")  # Graph's enum is case-sensitive, so only its exact spellings pass


class ConnectorSettings(NamedTuple):
    """EXCHANGE_CONNECTOR_IDS and SYNC_TYPE."""

    ids: tuple[str, ...] = ()
    sync_type: str = SYNC_TYPES[0]


class ExchangeConnectors(Target):
    name = "exchangeConnectors"
    version = "v1.0"
    path = "/deviceManagement/exchangeConnectors"
    action = "sync"
    permission = SERVICE_CONFIG_READ_WRITE
    state_fields = ("status", "lastSyncDateTime", "serverName", "primarySmtpAddress", "version")
    sync_types = SYNC_TYPES
    settings = (
        Setting(
            "EXCHANGE_CONNECTOR_IDS",
            "empty",
            "For `exchangeConnectors`: connector ids separated by commas or spaces. When empty, every connector is "
            "discovered (`GET /deviceManagement/exchangeConnectors`, following `@odata.nextLink`). When set, no "
            "discovery call is made, and the webhook may only target these ids.",
        ),
        Setting(
            "SYNC_TYPE",
            "`deltaSync`",
            "For `exchangeConnectors`: `deltaSync` or `fullSync`, exactly; the timer's sync type and the webhook's "
            "default.",
        ),
    )
    noun = "Exchange connector"
    ids_setting = "EXCHANGE_CONNECTOR_IDS"
    unknown_code = "unknownConnector"
    none_code = "noConnectors"
    none_advice = (
        "No Exchange connector found in the tenant, so nothing was synced. Likely causes: none was ever installed, "
        "or it was retired (Microsoft ended support for the on-premises Intune Exchange connector on 19 February "
        "2024). Set EXCHANGE_CONNECTOR_IDS to name connectors explicitly."
    )

    def options(self, read: SettingReader) -> ConnectorSettings:
        return ConnectorSettings(
            read.check(lambda: _connector_ids(read.env.get("EXCHANGE_CONNECTOR_IDS", "")), ()),
            read.check(lambda: _sync_type(read.text("SYNC_TYPE") or SYNC_TYPES[0]), SYNC_TYPES[0]),
        )

    def configured_ids(self, options: ConnectorSettings | None) -> tuple[str, ...]:
        return options.ids if options else ()

    def shown_settings(self, options: ConnectorSettings | None) -> dict[str, str]:
        chosen = options or ConnectorSettings()
        return {
            "EXCHANGE_CONNECTOR_IDS": ",".join(chosen.ids) or f"(every {self.noun})",
            "SYNC_TYPE": chosen.sync_type,
        }

    def default_sync_type(self, options: ConnectorSettings | None) -> str:
        return options.sync_type if options else SYNC_TYPES[0]

    def action_body(self, sync_type: str | None) -> dict[str, Any]:
        return {"syncType": sync_type or SYNC_TYPES[0]}

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


def _connector_ids(raw: str) -> tuple[str, ...]:
    try:
        return tuple(dict.fromkeys(validate_object_id(i) for i in listed(raw)))
    except InvalidObjectId as exc:
        raise ConfigurationError("EXCHANGE_CONNECTOR_IDS", str(exc)) from None


def _sync_type(raw: str) -> str:
    if raw not in SYNC_TYPES:
        raise ConfigurationError("SYNC_TYPE", f"must be one of {', '.join(SYNC_TYPES)}; got {raw!r}")
    return raw


TARGET = ExchangeConnectors()
