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
from array import array
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import quote

from shared.errors import ConfigurationError, GraphNotFound, OutOfTime
from shared.graph import Deadline, GraphClient, GraphResponse
from shared.process import PROCESS
from shared.setting_reader import Setting, SettingReader, listed
from shared.targets.base import (
    OBJECT_ID_PATTERN,
    SyncObject,
    Target,
    canonical_id,
    graph_datetime,
    validate_object_id,
)

# Graph documents eq for operatingSystem; the values Intune reports.
OPERATING_SYSTEMS = ("Windows", "iOS", "iPadOS", "macOS", "Android", "Linux")
FIELDS = ("id", "deviceName", "lastSyncDateTime", "operatingSystem")
SELECT = ",".join(FIELDS)
WRITES_PER_WINDOW = 200  # Intune: devices, per app per tenant, per 20 s window
PACE_MARGIN = 0.97  # stay a little under the limit, so clock skew and jitter provoke no 429
WRITE_RESERVE = 1.0  # seconds of the budget a write needs after its slot: no slot is taken without them


class DeviceSelection(NamedTuple):
    """Which devices a run syncs, from the DEVICE_* settings."""

    stale_after: timedelta
    most: int
    operating_systems: tuple[str, ...]
    window_seconds: float = 20.0


class DistinctCount:
    """How many different device ids were added, in 8 bytes an entry: a set of 100,000 ids would hold every id
    (about 120 bytes each) for the whole listing. Each id is kept as its 64-bit hash, in one of 64 arrays by the
    hash's low bits, and the arrays are counted one at a time. Intune's device ids are GUIDs, so case is folded;
    two different ids share a hash about once in 10^9 listings of 100,000 devices."""

    SHARDS = 64

    def __init__(self) -> None:
        self._shards = [array("q") for _ in range(self.SHARDS)]

    def add(self, device_id: str) -> None:
        hashed = hash(device_id.lower())
        self._shards[hashed % self.SHARDS].append(hashed)

    def __len__(self) -> int:
        return sum(len(set(shard)) for shard in self._shards)


class Candidates(list[SyncObject]):
    """The stalest devices of a listing, with what was counted on the way: how many Graph listed, how many were
    stale. A list, so the run treats it as any target's objects."""

    listed: int = 0
    stale: int = 0


class Pacer:
    """Spaces one tenant's device writes from this process evenly under Intune's limit, whichever runs send them."""

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
                    "paced device write; the next run carries on with the stalest",
                    paced=True,
                )
            self._next = slot + interval
        time.sleep(slot - now)

    def idle(self) -> bool:
        """No write is waiting for a slot: forgetting this pacer now changes no pace."""
        return self._next <= time.monotonic()


class Pacers:
    """One :class:`Pacer` per tenant, since Intune's limit is per app **per tenant**; idle ones are forgotten once
    more than ``most`` are held, so a process that serves thousands of tenants keeps only the busy ones."""

    def __init__(self, most: int = 256) -> None:
        self._most = most
        self._lock = threading.Lock()
        self._held: dict[str | None, Pacer] = {}

    def __call__(self, tenant: str | None) -> Pacer:
        with self._lock:
            pacer = self._held.get(tenant)
            if pacer is None:
                if len(self._held) >= self._most:
                    self._held = {t: p for t, p in self._held.items() if not p.idle()}
                pacer = self._held[tenant] = Pacer()
            return pacer


class ManagedDevices(Target):
    name = "managedDevices"
    version = "v1.0"
    path = "/deviceManagement/managedDevices"
    action = "syncDevice"
    permission = "DeviceManagementManagedDevices.PrivilegedOperations.All"
    read_permission = "DeviceManagementManagedDevices.Read.All"
    state_fields = ("deviceName", "operatingSystem", "lastSyncDateTime")
    noun = "managed device"
    settings = (
        Setting(
            "DEVICE_STALE_HOURS",
            "`24`",
            "For `managedDevices`: a device whose last sync is older than this many hours is stale, 1\u20138760.",
        ),
        Setting(
            "DEVICE_SYNC_MAX_PER_RUN",
            "`100`",
            "For `managedDevices`: the most devices one run syncs, stalest first, 1\u20131000.",
        ),
        Setting(
            "DEVICE_OPERATING_SYSTEMS",
            "empty (all)",
            "For `managedDevices`: only these systems, separated by commas or spaces, from "
            + ", ".join(f"`{name}`" for name in OPERATING_SYSTEMS)
            + " (any other value is a configuration error).",
        ),
        Setting(
            "DEVICE_SYNC_WINDOW_SECONDS",
            "`20`",
            f"For `managedDevices`: the length of Intune's device-write window, in which the app sends at most "
            f"{WRITES_PER_WINDOW} device writes (paced evenly, {100 - PACE_MARGIN * 100:.0f}% under). Leave it at 20 "
            "against Graph; the emulator and the benchmark shrink it. 0.01\u201320.",
        ),
    )

    def options(self, read: SettingReader) -> DeviceSelection:
        return DeviceSelection(
            stale_after=timedelta(hours=read.number("DEVICE_STALE_HOURS", default=24, low=1, high=8760)),
            most=int(read.number("DEVICE_SYNC_MAX_PER_RUN", default=100, low=1, high=1000, whole=True)),
            operating_systems=read.check(lambda: _operating_systems(read.env.get("DEVICE_OPERATING_SYSTEMS", "")), ()),
            window_seconds=read.number("DEVICE_SYNC_WINDOW_SECONDS", default=20, low=0.01, high=20),
        )

    def read(self, graph: GraphClient, deadline: Deadline, options: Any = None) -> Candidates:
        """The ``options.most`` stalest devices not synced for ``options.stale_after``, in stalest-first order.

        Graph filters by ``lastSyncDateTime lt`` (and one operating system, with ``and``), but silently ignores a
        filter it does not support and lists every device: so each device is checked here as well. This loop
        runs once per device in the tenant, so it does the least it can: a device is copied and its id checked
        only when it joins the candidates.
        """
        selection: DeviceSelection = options
        cutoff = datetime.now(timezone.utc) - selection.stale_after
        clauses = [f"lastSyncDateTime lt {cutoff.strftime('%Y-%m-%dT%H:%M:%SZ')}"]
        if len(selection.operating_systems) == 1:
            clauses.append(f"operatingSystem eq '{selection.operating_systems[0]}'")  # from a fixed list only
        query = f"$select={SELECT}&$filter={quote(' and '.join(clauses))}"
        wanted = {system.lower() for system in selection.operating_systems}
        stale_before = _sync_key(cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"))
        heap: list[tuple[int, str, dict[str, Any]]] = []  # (-last sync, id, device): the freshest kept on top
        kept: set[str] = set()  # the ids in the heap: a device evicted once is never staler than the heap again
        listed, stale = DistinctCount(), DistinctCount()  # Graph may list a device on two pages
        for page in graph.pages(graph.url(f"/{self.version}{self.path}?{query}"), deadline):
            for device in page.body["value"]:
                device_id = device.get("id") if isinstance(device, dict) else None
                if not isinstance(device_id, str):
                    continue
                listed.add(device_id)
                key = _sync_key(device.get("lastSyncDateTime"))
                if key >= stale_before:
                    continue
                if wanted and str(device.get("operatingSystem")).lower() not in wanted:
                    continue
                stale.add(device_id)
                if len(heap) == selection.most and -key <= heap[0][0]:
                    continue  # not staler than the freshest candidate
                if not OBJECT_ID_PATTERN.fullmatch(device_id):
                    continue
                device_id = canonical_id(device_id)
                if device_id in kept:
                    continue
                entry = (-key, device_id, {name: device.get(name) for name in FIELDS})
                if len(heap) < selection.most:
                    heapq.heappush(heap, entry)
                else:
                    kept.discard(heapq.heapreplace(heap, entry)[1])
                kept.add(device_id)
        found = Candidates(
            SyncObject(self.name, device_id, device) for _, device_id, device in sorted(heap, reverse=True)
        )
        found.listed, found.stale = len(listed), len(stale)
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
        PROCESS.held("device pacers", Pacers)(graph.tenant).wait(
            selection.window_seconds / (WRITES_PER_WINDOW * PACE_MARGIN), deadline
        )
        return super().sync(graph, obj, deadline, sync_type, options)

    def summary(self, objects: Sequence[SyncObject]) -> dict[str, object]:
        """Counts, not 100,000 devices: how many Graph listed, how many are stale, how many a run would sync."""
        return {
            "listed": getattr(objects, "listed", len(objects)),
            "stale": getattr(objects, "stale", len(objects)),
            "toSync": len(objects),
            "stalest": [self.state(o) for o in objects[:5]],
        }


def _sync_key(value: object) -> int:
    """A last sync as a number that sorts as time does (YYYYMMDDhhmmss, UTC); 0 for never or unreadable.

    Graph writes ``2026-11-24T21:00:00Z`` (or with a fraction): that form is read by slicing, which is several
    times cheaper than parsing, and this runs once per device; any other form is parsed properly.
    """
    if isinstance(value, str) and len(value) >= 20 and value[-1] in "Zz" and value[10] in "Tt":
        digits = value[0:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16] + value[17:19]
        if digits.isdigit() and value[19] in "Zz.":
            return int(digits)
    parsed = graph_datetime(value)
    return int(parsed.strftime("%Y%m%d%H%M%S")) if parsed else 0


def _operating_systems(raw: str) -> tuple[str, ...]:
    """Names from a fixed list, matched without regard to case and written as Intune writes them: never pasted
    into a Graph filter as given."""
    known = {name.lower(): name for name in OPERATING_SYSTEMS}
    names = listed(raw)
    unknown = [name for name in names if name.lower() not in known]
    if unknown:
        raise ConfigurationError(
            "DEVICE_OPERATING_SYSTEMS",
            f"{', '.join(repr(n[:40]) for n in unknown)} is not an operating system Intune reports; use "
            f"{', '.join(OPERATING_SYSTEMS)}",
        )
    return tuple(dict.fromkeys(known[name.lower()] for name in names))


TARGET = ManagedDevices()
