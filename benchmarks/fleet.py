"""A thousand tenants on the queue (`make benchmark-tenants`, after tenants.py): the timer's dispatch, then 1, 2 and 4
consumer processes (each a real worker running sync_tenant, as Flex Consumption instances would) draining
sync-tenants in Azurite, every Graph answer 0.5 s late; three cycles in a row, each tenant counted; the memory of a
consumer that served them all; GET /api/sync over the 1,000 stored tenants; and the inline run (what the timer did
before the queue) over the same fleet, to see how many tenants it reaches within its budget.

Every tenant has one Exchange connector (a listing and a sync: two Graph calls) and its own Entra token; the
expiry watch is off. The CA bundle is certifi's plus the emulator's test CA, so TLS costs what it costs in Azure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import certifi
from harness import ROOT, progress, rss_mib

from tests.emulator import Emulator, emulator_settings
from tests.functions_host.host import FunctionsHost
from tests.functions_host.queues import QueueOptions, Queues
from tests.functions_host.storage import Azurite

LATENCY = 0.5
TENANTS = 1000
CONSUMERS = (1, 2, 4)
CYCLES = 3
DRAIN_TIMEOUT = 900.0
INLINE = """
import json
from shared import run
from shared.settings import load_settings
report = run.sync_and_watch(load_settings())
reached = {r.tenant for r in report.results if r.outcome == "accepted"}
print(json.dumps({"reached": len(reached), "seconds": report.duration_ms / 1000}))
"""


def tenant_ids(count: int) -> list[str]:
    return [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(1, count + 1)]


class Fleet:
    """Azurite, the emulator with its tenants, and the settings every process of the app gets."""

    def __init__(self, azurite: Azurite, emulator: Emulator, bundle: Path) -> None:
        self.azurite = azurite
        self.emulator = emulator
        self.queues = Queues(azurite.connection_string, QueueOptions.from_host_json(ROOT))
        self.env = {
            **emulator_settings(emulator),
            "AzureWebJobsStorage": azurite.connection_string,
            "EXPIRY_WARNING_DAYS": "0",
            "PYTHON_THREADPOOL_THREAD_COUNT": "16",  # as infra/main.bicep sets it: host.json's batchSize at once
            "REQUESTS_CA_BUNDLE": str(bundle),
        }

    def host(self) -> FunctionsHost:
        return FunctionsHost(ROOT, env=self.env, queues=self.queues).__enter__()

    def dispatch(self) -> float:
        """Seconds from starting a worker process to its timer invocation's 1,000 messages being on the queue."""
        started = time.perf_counter()
        host = self.host()
        try:
            fired = host.invoke_timer("sync_timer")
        finally:
            host.stop()
        if not fired.succeeded or len(fired.queued.get("sync-tenants", [])) != TENANTS:
            raise SystemExit(f"the timer did not dispatch {TENANTS} tenants: {fired.error}")
        return time.perf_counter() - started

    def consumers(self, count: int) -> list[FunctionsHost]:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.host(), range(count)))


def drained(hosts: list[FunctionsHost], expected: int) -> float:
    """Seconds until ``expected`` sync_tenant invocations have ended across ``hosts``, all of them succeeded."""
    started = time.perf_counter()
    for host in hosts:
        host.listen()
    ends = started + DRAIN_TIMEOUT
    while sum(len(h.queue_invocations) for h in hosts) < expected or not all(h.queues_idle for h in hosts):
        if time.perf_counter() > ends:
            raise SystemExit(f"only {sum(len(h.queue_invocations) for h in hosts)} of {expected} tenants synced")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    failed = [i.error for h in hosts for i in h.queue_invocations if not i.succeeded]
    if failed:
        raise SystemExit(f"{len(failed)} invocations failed, such as: {failed[0]}")
    return seconds


def synced_per_cycle(hosts: list[FunctionsHost]) -> Counter[tuple[str, str]]:
    """How often each (run, tenant) was synced, from the messages the invocations received."""
    seen: Counter[tuple[str, str]] = Counter()
    for host in hosts:
        for invocation in host.queue_invocations:
            message = json.loads(invocation.message or b"{}")
            seen[(message["runId"], message["tenant"])] += 1
    return seen


def stored_get(fleet: Fleet) -> dict[str, float]:
    """``GET /api/sync`` over every tenant, answered from the store in a warm worker: seconds (the median of 5, and
    the first, which makes the store's client), and how many Graph calls it made."""
    host = fleet.host()
    try:
        before = len(fleet.emulator.calls())
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            answer = host.invoke_http("sync_http", "GET", "http://localhost/api/sync?code=k").http
            seconds.append(time.perf_counter() - started)
            if answer is None or answer.status != 200 or len(answer.json()["tenants"]) != TENANTS:
                raise SystemExit(f"GET /api/sync from the store did not answer every tenant: {answer}")
        graph_calls = len(fleet.emulator.calls()) - before
    finally:
        host.stop()
    return {"first": seconds[0], "median": sorted(seconds)[2], "graph calls": graph_calls}


def inline(fleet: Fleet) -> dict[str, float]:
    """The timer's run as it was before the queue: every tenant in one invocation, under one default budget."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "IDENTITY_", "SYNC_", "TENANT_"))}
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", textwrap.dedent(INLINE)],
        cwd=ROOT,
        env=env | fleet.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure() -> dict[str, object]:
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch, Azurite() as azurite, Emulator(entra=True, latency=LATENCY) as emu:
        for tenant in tenant_ids(TENANTS):
            emu.add_tenant(tenant)
        bundle = Path(scratch) / "ca-bundle.pem"
        bundle.write_text(Path(certifi.where()).read_text() + Path(emu.ca_bundle).read_text())
        fleet = Fleet(azurite, emu, bundle)
        dispatches = []
        for count in CONSUMERS:
            progress(f"{TENANTS} tenants, {count} consumer process(es)")
            hosts = fleet.consumers(count)
            try:
                dispatches.append(fleet.dispatch())
                figures[f"drain {count}"] = drained(hosts, TENANTS)
                figures[f"rss {count}"] = max(rss_mib(h.worker_pid or 0) for h in hosts)
            finally:
                for host in hosts:
                    host.stop()
        figures["dispatch"] = min(dispatches)
        figures["dispatch max"] = max(dispatches)
        progress(f"{CYCLES} cycles in a row, {CONSUMERS[-1]} consumers")
        hosts = fleet.consumers(CONSUMERS[-1])
        try:
            for cycle in range(CYCLES):
                fleet.dispatch()
                drained(hosts, TENANTS * (cycle + 1))
            counts = synced_per_cycle(hosts)
        finally:
            for host in hosts:
                host.stop()
        figures["stored get"] = stored_get(fleet)
        figures["cycles"] = {
            "runs": len({run for run, _ in counts}),
            "exactly once": sum(1 for seen in counts.values() if seen == 1),
            "pairs": len(counts),
        }
        progress("the inline run over the same fleet (default budget, 120 s)")
        figures["inline"] = inline(fleet)
    return figures
