"""Many tenants (`make benchmark-tenants`): one webhook run naming 6 tenants whose every Graph answer takes a second,
against the same run over one of them, and over the 6 with TENANT_CONCURRENCY=1; then 1,000 tenants on the queue
(benchmarks/fleet.py).

Each run is a fresh process holding only the app, so every run also gets its tokens: one identity request and one
Entra request per tenant, which the figures count. The emulator (with its Entra stand-in) stays in this process.
Wall time is the webhook call, the median of the runs. Exits 1 when a target is missed.

Targets: 6 tenants finish within 1.5x the time of one; the identity is asked once per run; and fleet.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import fleet
from harness import ROOT, machine, median, progress, publish, targets_table

from tests.emulator import CUSTOMER_TENANT_IDS, Emulator, emulator_settings

LATENCY = 1.0  # seconds for every Graph answer
APP = """
import json, os, time
from tests.conftest import call_webhook
started = time.perf_counter()
answer = call_webhook(body={"tenants": os.environ["TENANT_IDS"].split(",")})
print(json.dumps({"seconds": time.perf_counter() - started, "status": answer.status}))
"""


def run(emulator: Emulator, **extra: str) -> dict[str, float]:
    """One webhook run in a fresh process; what Graph, the identity and Entra received for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "IDENTITY_", "SYNC_", "TENANT_"))}
    env |= emulator_settings(emulator) | {"EXPIRY_WARNING_DAYS": "0"} | extra
    before = {route: len(emulator.calls(route)) for route in ("identity", "entra_token")}
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", textwrap.dedent(APP)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["status"] != 202:
        raise SystemExit(f"the run answered {figures['status']}: {done.stdout}{done.stderr}")
    return figures | {route: len(emulator.calls(route)) - count for route, count in before.items()}


def measure(runs: int) -> dict[str, dict[str, float]]:
    with Emulator(entra=True, latency=LATENCY) as emulator:
        for tenant in CUSTOMER_TENANT_IDS:
            emulator.add_tenant(tenant)
        cases = {
            "1 tenant": {"TENANT_IDS": CUSTOMER_TENANT_IDS[0]},
            "6 tenants": {},
            "6 tenants, TENANT_CONCURRENCY=1": {"TENANT_CONCURRENCY": "1"},
        }
        samples: dict[str, list[dict[str, float]]] = {case: [] for case in cases}
        for round_number in range(runs):  # interleaved, so drift in the machine's speed falls on every case alike
            progress(f"round {round_number + 1} of {runs}: {', '.join(cases)}")
            for case, extra in cases.items():
                samples[case].append(run(emulator, **extra))
    return {
        case: {key: median([s[key] for s in found]) for key in ("seconds", "identity", "entra_token")}
        for case, found in samples.items()
    }


def report(figures: dict[str, dict[str, float]], queued: dict[str, Any]) -> tuple[str, str, list[str]]:
    one, six = figures["1 tenant"]["seconds"], figures["6 tenants"]["seconds"]
    identity = max(f["identity"] for f in figures.values())
    drains = {count: queued[f"drain {count}"] for count in fleet.CONSUMERS}
    speedups = {count: drains[1] / seconds for count, seconds in drains.items()}
    cycles, inline, stored = queued["cycles"], queued["inline"], queued["stored get"]
    rss = max(queued[f"rss {count}"] for count in fleet.CONSUMERS)
    lines = [
        f"Measured on {machine()}, against the bundled emulator on loopback.",
        "",
        f"**A webhook naming its tenants**, every Graph answer {LATENCY:g} s late; each tenant has one Exchange "
        "connector (a listing and a sync: two Graph calls). Median of the runs:",
        "",
        "| run | wall | identity requests | Entra requests |",
        "|---|---|---|---|",
        *(
            f"| {case} | {f['seconds']:.2f} s | {f['identity']:.0f} | {f['entra_token']:.0f} |"
            for case, f in figures.items()
        ),
        "",
        f"**{fleet.TENANTS:,} tenants on the queue**, every Graph answer {fleet.LATENCY:g} s late, Azurite as the "
        "storage account. Each consumer is a worker process running sync_tenant (host.json: 16 messages at once), "
        "as a Flex Consumption instance would:",
        "",
        "| consumers | every tenant synced in | vs 1 consumer | peak RSS of a consumer |",
        "|---|---|---|---|",
        *(
            f"| {count} | {drains[count]:.1f} s | {speedups[count]:.2f}x | {queued[f'rss {count}']:.0f} MiB |"
            for count in fleet.CONSUMERS
        ),
        "",
        f"- The timer's dispatch: {queued['dispatch']:.2f} s (worst {queued['dispatch max']:.2f} s) from starting the "
        f"worker process to {fleet.TENANTS:,} messages on the queue; of that, about 2.5 s is this machine's local host "
        "writing them to Azurite one request each.",
        f"- {fleet.CYCLES} cycles in a row with {fleet.CONSUMERS[-1]} consumers: {cycles['exactly once']:,} of "
        f"{fleet.TENANTS * fleet.CYCLES:,} (run, tenant) pairs synced exactly once, over {cycles['runs']} runs.",
        f"- `GET /api/sync` over the {fleet.TENANTS:,} tenants the consumers stored: {stored['median'] * 1000:.0f} ms "
        f"(median of 5; the first, which opens the store, {stored['first'] * 1000:.0f} ms), "
        f"{stored['graph calls']:.0f} Graph calls.",
        f"- The inline run (every tenant in one invocation, the default 120 s budget, TENANT_CONCURRENCY 8) over the "
        f"same fleet reached {inline['reached']:,} of {fleet.TENANTS:,} tenants in {inline['seconds']:.0f} s; the "
        "rest waited for the next cycle, and the next run started from the top again.",
        f"- This machine has {os.cpu_count()} cores for the consumers, the emulator and Azurite together: past 2 "
        "consumers the figures measure the machine. On Flex Consumption each instance has its own.",
        "",
    ]
    exact = cycles["exactly once"] == cycles["pairs"] == fleet.TENANTS * fleet.CYCLES
    targets, missed = targets_table(
        [
            ("6 tenants vs 1 tenant", "≤ 1.5x", f"{six / one:.2f}x", six / one <= 1.5),
            ("identity requests per run", "1", f"{identity:.0f}", identity == 1),
            (
                "the timer's dispatch of 1,000 tenants",
                "< 5 s",
                f"{queued['dispatch max']:.2f} s",
                queued["dispatch max"] < 5,
            ),
            ("2 consumers vs 1", "≥ 1.7x", f"{speedups[2]:.2f}x", speedups[2] >= 1.7),
            ("every tenant synced once per cycle, 3 cycles", "all", f"{cycles['exactly once']:,}", exact),
            ("RSS of a consumer after 1,000 tenants", "< 150 MiB", f"{rss:.0f} MiB", rss < 150),
            ("GET /api/sync, 1,000 stored tenants", "< 1 s", f"{stored['median']:.2f} s", stored["median"] < 1),
            ("Graph calls of that GET", "0", f"{stored['graph calls']:.0f}", stored["graph calls"] == 0),
        ]
    )
    return "\n".join(lines) + "\n" + targets, targets, missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    return publish("tenants", *report(measure(args.runs), fleet.measure()), write_readme=args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
