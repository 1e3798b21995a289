"""Stale devices at tenant scale (`make benchmark-devices`): listing 1,000 / 10,000 / 100,000 managed devices against
a raw `requests` paging loop over the same emulator, and 1,000 device syncs under the emulated write limit.

Each listing runs in a fresh process with only the app (or the loop) in it; the emulator stays in this one. Wall
time is the listing alone, after the token is held: the median of 5 interleaved runs. Exits 1 when a target is missed.

Targets: listing within 1.2x of the raw loop; peak RSS growing under 10 MiB from 1,000 to 100,000 devices; syncs
at 90% or more of the write ceiling, with under 1% of the calls answered 429.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

from harness import ROOT, machine, median, progress, publish, targets_table

from tests.emulator import MANAGED_READ_ROLE, PRIVILEGED_ROLE, DeviceFleet, Emulator, emulator_settings

SIZES = (1_000, 10_000, 100_000)
WINDOW = 2.0  # the emulated write window (Intune's 20 s, scaled by 0.1): a ceiling of 100 writes a second
APP = """
import json, resource, time
from tests.conftest import call_webhook
call_webhook("GET", target="vppTokens")  # the token, held from here on
started = time.perf_counter()
devices = call_webhook("GET", target="managedDevices").json["targets"]["managedDevices"]
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "listed": devices["listed"],
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
RAW = """
import json, os, resource, time, requests
from datetime import datetime, timedelta, timezone
from urllib.parse import quote
graph = os.environ["GRAPH_ENDPOINT"]
session = requests.Session()
settings = session.merge_environment_settings(graph, {}, None, None, None)
session.proxies.update(settings["proxies"]); session.verify = settings["verify"]; session.trust_env = False
token = session.get(os.environ["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": graph},
                    headers={"X-IDENTITY-HEADER": os.environ["IDENTITY_HEADER"]}).json()["access_token"]
session.headers["Authorization"] = f"Bearer {token}"
cutoff = (datetime.now(timezone.utc) - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
url = (f"{graph}/v1.0/deviceManagement/managedDevices?$select=id,deviceName,lastSyncDateTime,operatingSystem"
       f"&$filter={quote(f'lastSyncDateTime lt {cutoff}')}")
started = time.perf_counter()
listed = 0
while url:
    page = session.get(url).json()
    listed += len(page["value"])
    url = page.get("@odata.nextLink")
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "listed": listed,
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, emulator: Emulator, **extra: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "IDENTITY_", "SYNC_", "DEVICE_"))}
    env |= emulator_settings(emulator) | {"SYNC_TARGETS": "vppTokens,managedDevices", "EXPIRY_WARNING_DAYS": "0"}
    env |= extra
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def listing(runs: int) -> dict[int, dict[str, float]]:
    figures = {}
    for size in SIZES:
        with Emulator(
            devices=DeviceFleet(size), roles=(MANAGED_READ_ROLE, "DeviceManagementServiceConfig.ReadWrite.All")
        ) as emu:
            app, raw = [], []
            progress(f"listing {size:,} devices: {runs} runs each of the app and the raw loop")
            for _ in range(runs):  # interleaved, so drift in the machine's speed falls on both alike
                app.append(child(APP, emu))
                raw.append(child(RAW, emu))
        figures[size] = {
            "listed": app[0]["listed"],
            "app": median([r["seconds"] for r in app]),
            "raw": median([r["seconds"] for r in raw]),
            "app_peak": median([r["peak"] for r in app]),
            "raw_peak": median([r["peak"] for r in raw]),
        }
    return figures


def syncing(count: int) -> dict[str, float]:
    """``count`` stale devices synced in one run, paced by the app under an emulated window of WINDOW seconds."""
    fleet = DeviceFleet(count * 2, time_scale=WINDOW / 20)
    with Emulator(devices=fleet, roles=(MANAGED_READ_ROLE, PRIVILEGED_ROLE)) as emu:
        progress(f"syncing {count} stale devices under the emulated write limit")
        started = time.perf_counter()
        child(
            "from shared import run\nfrom shared.settings import load_settings\n"
            "run.scheduled_sync(load_settings())\nprint('{}')",
            emu,
            SYNC_TARGETS="managedDevices",
            DEVICE_SYNC_MAX_PER_RUN=str(count),
            DEVICE_SYNC_WINDOW_SECONDS=str(WINDOW),
            GRAPH_TIME_BUDGET_SECONDS="200",
        )
        wall = time.perf_counter() - started
        calls = sorted(r.at for r in emu.calls("managedDevices.sync"))
    writes = len(calls) - fleet.throttled
    span = calls[-1] - calls[0]
    return {
        "writes": writes,
        "calls": len(calls),
        "throttled": fleet.throttled,
        "rate": (writes - 1) / span,
        "ceiling": fleet.writes_per_window / fleet.window,
        "wall": wall,
    }


def report(figures: dict[int, dict[str, float]], sync: dict[str, float]) -> tuple[str, str, list[str]]:
    ratio = max(f["app"] / f["raw"] for f in figures.values())
    growth = figures[SIZES[-1]]["app_peak"] - figures[SIZES[0]]["app_peak"]
    share = sync["rate"] / sync["ceiling"]
    throttled = sync["throttled"] / sync["calls"]
    lines = [
        f"Measured on {machine()}, against the bundled emulator on loopback (in its own process).",
        "",
        "**Listing stale devices** (`GET /api/sync/managedDevices`: every page, the 100 stalest kept), each in a "
        "fresh process, median of the runs:",
        "",
        "| devices in the tenant | stale, listed | app | raw `requests` loop | ratio | app peak RSS | loop peak RSS |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {size:,} | {f['listed']:,.0f} | {f['app'] * 1000:.0f} ms | {f['raw'] * 1000:.0f} ms | "
            f"{f['app'] / f['raw']:.2f}x | {f['app_peak']:.1f} MiB | {f['raw_peak']:.1f} MiB |"
            for size, f in figures.items()
        ),
        "",
        f"**Syncing {sync['writes']:.0f} stale devices** under the emulated limit (200 writes per {WINDOW:g} s, "
        f"Intune's 20 s window scaled): {sync['rate']:.1f} writes/s against a ceiling of {sync['ceiling']:.0f}, "
        f"{sync['throttled']:.0f} of {sync['calls']:.0f} calls answered 429.",
        "",
    ]
    targets, missed = targets_table(
        [
            ("device listing vs raw loop (worst size)", "≤ 1.2x", f"{ratio:.2f}x", ratio <= 1.2),
            ("peak RSS growth, 1,000 → 100,000 devices", "< 10 MiB", f"{growth:.1f} MiB", growth < 10),
            ("device writes vs the ceiling", "≥ 90%", f"{share:.0%}", share >= 0.9),
            ("device calls answered 429", "< 1%", f"{throttled:.1%}", throttled < 0.01),
        ]
    )
    return "\n".join(lines) + "\n" + targets, targets, missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--syncs", type=int, default=1000)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    return publish("devices", *report(listing(args.runs), syncing(args.syncs)), write_readme=args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
