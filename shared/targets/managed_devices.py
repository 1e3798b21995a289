"""Stale managed devices (v1.0): ``POST /deviceManagement/managedDevices/{id}/syncDevice``, answered 204, for the
devices that have not checked in for ``DEVICE_STALE_HOURS``, stalest first, at most ``DEVICE_SYNC_MAX_PER_RUN``.

Built for tenants with 100,000 devices: pages are consumed as they come and only the candidates are kept (a
bounded heap), so memory does not grow with the tenant; sync calls are paced under Intune's device write limit
(200 per 20 s per app per tenant) rather than sent until Graph answers 429.
https://learn.microsoft.com/graph/api/intune-devices-manageddevice-syncdevice
https://learn.microsoft.com/graph/throttling-limits#intune-device-management-service-limits
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from shared.errors import GraphNotFound, InvalidObjectId, OutOfTime
from shared.graph import Deadline, GraphClient, GraphResponse
from shared.targets.base import SyncObject, Target, graph_datetime, validate_object_id

# Graph documents eq for operatingSystem; the values Intune reports.
OPERATING_SYSTEMS = ("Windows", "iOS", "iPadOS", "macOS", "Android", "Linux")
SELECT = "id,deviceName,lastSyncDateTime,operatingSystem"
WRITES_PER_WINDOW = 200  # Intune: devices, per app per tenant, per 20 s window
PACE_MARGIN = 0.97  # stay a little under the limit, so clock skew and jitter provoke no 429
WRITE_RESERVE = 1.0  # seconds of the budget a write needs after its slot: no slot is taken without them
NEVER = datetime(1, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class DeviceSelection:
    """Which devices a run syncs, from the DEVICE_* settings."""

    stale_after: timedelta
    most: int
    operating_systems: tuple[str, ...]
    window_seconds: float = 20.0


class Candidates(list[SyncObject]):
    """The stalest devices of a listing, with what was counted on the way: how many Graph listed, how many were
    stale. A list, so the run treats it as any target's objects."""

    listed: int = 0
    stale: int = 0


class Pacer:
    """Spaces this process's device writes evenly under Intune's limit, whichever runs send them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self, interval: float, deadline: Deadline) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            if slot - now + WRITE_RESERVE >= deadline.remaining():
                raise OutOfTime(
                    f"the run's time budget of {deadline.seconds:g} s (GRAPH_TIME_BUDGET_SECONDS) ends before the next "
                    "paced device write; the next run carries on with the stalest"
                )
            self._next = slot + interval
        time.sleep(slot - now)


class ManagedDevices(Target):
    name = "managedDevices"
    version = "v1.0"
    path = "/deviceManagement/managedDevices"
    action = "syncDevice"
    permission = "DeviceManagementManagedDevices.PrivilegedOperations.All"
    read_permission = "DeviceManagementManagedDevices.Read.All"
    state_fields = ("deviceName", "operatingSystem", "lastSyncDateTime")
    noun = "managed device"

    def __init__(self) -> None:
        self._pacer = Pacer()

    def read(self, graph: GraphClient, deadline: Deadline, options: Any = None) -> Candidates:
        """The ``options.most`` stalest devices not synced for ``options.stale_after``, in stalest-first order.

        Graph filters by ``lastSyncDateTime lt`` (and one operating system, with ``and``), but silently ignores a
        filter it does not support and lists every device: so each device is checked here as well.
        """
        selection: DeviceSelection = options
        now = datetime.now(timezone.utc)
        cutoff = now - selection.stale_after
        clauses = [f"lastSyncDateTime lt {cutoff.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
        if len(selection.operating_systems) == 1:
            clauses.append(f"operatingSystem eq '{selection.operating_systems[0]}'")  # from a fixed list only
        query = f"$select={SELECT}&$filter={quote(' and '.join(clauses))}"
        wanted = {system.lower() for system in selection.operating_systems}
        heap: list[tuple[float, str, dict[str, Any]]] = []  # (-last sync, id, device): the freshest on top
        found = Candidates()
        seen: set[str] = set()
        for page in graph.pages(graph.url(f"/{self.version}{self.path}?{query}"), deadline):
            for device in page.body["value"]:
                found.listed += 1
                candidate = _candidate(device, cutoff, wanted)
                if candidate is None or candidate[1] in seen:
                    continue
                seen.add(candidate[1])
                found.stale += 1
                if len(heap) < selection.most:
                    heapq.heappush(heap, candidate)
                elif candidate > heap[0]:  # staler than the freshest kept
                    heapq.heapreplace(heap, candidate)
        found.extend(SyncObject(self.name, device_id, device) for _, device_id, device in sorted(heap, reverse=True))
        return found

    def find(self, graph: GraphClient, deadline: Deadline, ids: Sequence[str], options: Any = None) -> list[SyncObject]:
        """Explicitly requested devices, stale or not: one GET each (Graph's filter cannot ``or`` ids)."""
        found = []
        for device_id in ids:
            url = graph.url(
                f"/{self.version}{self.path}/{quote(validate_object_id(device_id), safe='')}?$select={SELECT}"
            )
            try:
                device = graph.request("GET", url, deadline=deadline).body
            except GraphNotFound:
                continue
            found.append(SyncObject(self.name, device_id, device if isinstance(device, dict) else {}))
        return found

    def sync(
        self,
        graph: GraphClient,
        obj: SyncObject,
        deadline: Deadline,
        sync_type: str | None = None,
        options: Any = None,
    ) -> GraphResponse:
        selection: DeviceSelection = options
        self._pacer.wait(selection.window_seconds / (WRITES_PER_WINDOW * PACE_MARGIN), deadline)
        return super().sync(graph, obj, deadline, sync_type, options)

    def summary(self, objects: Sequence[SyncObject]) -> dict[str, object]:
        """Counts, not 100,000 devices: how many Graph listed, how many are stale, how many a run would sync."""
        return {
            "listed": getattr(objects, "listed", len(objects)),
            "stale": getattr(objects, "stale", len(objects)),
            "toSync": len(objects),
            "stalest": [self.state(o) for o in objects[:5]],
        }


def _candidate(device: object, cutoff: datetime, wanted: set[str]) -> tuple[float, str, dict[str, Any]] | None:
    """(-last sync, id, the device) for a stale device of a wanted system; None for anything else."""
    if not isinstance(device, dict):
        return None
    try:
        device_id = validate_object_id(device.get("id"))
    except InvalidObjectId:
        return None
    system = device.get("operatingSystem")
    if wanted and (not isinstance(system, str) or system.lower() not in wanted):
        return None
    last = graph_datetime(device.get("lastSyncDateTime")) or NEVER
    if last >= cutoff:
        return None
    kept = {key: device.get(key) for key in ("id", "deviceName", "lastSyncDateTime", "operatingSystem")}
    return (-last.timestamp(), device_id, kept)


TARGET = ManagedDevices()
