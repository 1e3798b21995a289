"""The process's Graph clients, one per tenant, built on first use and reused across invocations."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from shared.graph import GraphClient, GraphSettings
from shared.process import PROCESS

if TYPE_CHECKING:
    from shared.federation import Assertion


class Clients:
    """One :class:`GraphClient` per tenant (None: the app's own), built on first use; every client is rebuilt if
    the settings change. Customer tenants share one assertion, so the identity is asked once for them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str | None, GraphClient] = {}
        self._settings: GraphSettings | None = None
        self._assertion: Assertion | None = None

    def get(self, settings: GraphSettings, tenant: str | None) -> GraphClient:
        with self._lock:
            if settings != self._settings:
                self._close_all()
                self._settings = settings
            held = self._held.get(tenant)
            if held is None:
                if tenant is not None and self._assertion is None:
                    from shared.federation import assertion_for  # noqa: PLC0415 - only with TENANT_IDS

                    self._assertion = assertion_for(settings)
                held = self._held[tenant] = GraphClient(settings, tenant, self._assertion if tenant else None)
            return held

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        for client in self._held.values():
            client.close()
        self._held.clear()
        self._assertion = None


def client_for(settings: GraphSettings, tenant: str | None = None) -> GraphClient:
    """The process's client for ``tenant`` (None: the app's own tenant)."""
    return PROCESS.held("graph clients", Clients).get(settings, tenant)
