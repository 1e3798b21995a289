"""The answer shapes that predate targets, kept for the callers built on them: the app began as the Exchange
connector sync. On ``/api/sync`` the fields ``connectorIds`` / ``connectorId`` and ``syncType`` choose that target;
its results are repeated under ``connectors``; ``sync --connector`` names its objects. The one module above the
targets that names a resource."""

from __future__ import annotations

from typing import Any

TARGET = "exchangeConnectors"
IDS_FIELD = "connectorIds"  # the body's field
IDS_PARAM = "connectorId"  # the query's
FIELDS = (IDS_FIELD, "syncType")
CLI_OPTION = "--connector"  # sync's option naming the target's objects


def sync_answer(body: dict[str, Any], targets: tuple[str, ...], results: list[dict[str, Any]]) -> None:
    """The results' older key, when the run covered the target."""
    if TARGET in targets:
        body["connectors"] = [r for r in results if r["target"] == TARGET]


def state_answer(body: dict[str, Any], part: dict[str, Any], named: tuple[str, ...]) -> None:
    """The one-tenant GET's older keys: the target's objects, and the ones its setting names that are missing."""
    objects = part["targets"].get(TARGET)
    if objects is not None and "error" not in objects:
        body["connectors"] = objects["objects"]
        if named:
            body["missing"] = objects["missing"]
