"""The process's Graph clients, one per tenant, built on first use and reused across invocations."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from shared.graph import GraphClient, GraphSettings
from shared.process import PROCESS

if TYPE_CHECKING:
    from shared.federation import Assertion

# Twice TENANT_CONCURRENCY's largest value: a process serving thousands of tenants keeps the clients of those it
# serves now and of the last ones, not one per tenant it ever served.
MOST_CLIENTS = 128


class Clients:
    """One :class:`GraphClient` per tenant (None: the app's own), built on first use; every client is rebuilt if
    the settings change. Customer tenants share one assertion, so the identity is asked once for them all.

    At most ``most`` are kept, the least recently used forgotten first. A forgotten client is not closed: a run
    may still be using it, and its session's connections close when it is collected."""

    def __init__(self, most: int = MOST_CLIENTS) -> None:
        self._lock = threading.Lock()
        self._most = most
        self._held: OrderedDict[str | None, GraphClient] = OrderedDict()
        self._settings: GraphSettings | None = None
        self._assertion: Assertion | None = None

    def get(self, settings: GraphSettings, tenant: str | None) -> GraphClient:
        with self._lock:
            if settings != self._settings:
                self._close_all()
                self._settings = settings
            held = self._held.get(tenant)
            if held is not None:
                self._held.move_to_end(tenant)
                return held
            if tenant is not None and self._assertion is None:
                from shared.federation import assertion_for  # noqa: PLC0415 - only with TENANT_IDS

                self._assertion = assertion_for(settings)
            held = self._held[tenant] = GraphClient(settings, tenant, self._assertion if tenant else None)
            if len(self._held) > self._most:
                self._held.popitem(last=False)
            return held

    def __len__(self) -> int:
        return len(self._held)

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
