"""Benchmark (not part of the test suite): ``make benchmark``. Exit code 1 if a target is missed.

1. Cold: fresh processes, each performing one webhook-triggered sync against the emulator, interleaved:
   this app, msgraph-sdk (Microsoft's documented path, and the same with a synchronous credential),
   azure-identity + requests by hand, the standard library alone (the floor of the protocol), and
   ``import azure.functions`` (what the worker already paid).
2. Warm: 200 invocations in one process: token requests, Graph connections, Graph round trips per sync,
   and the time per invocation against a raw ``requests.Session`` loop with a fixed token.
3. Through the real worker: webhook requests/s and p50/p99 latency at concurrency 1 and 8.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import azure.functions as func
import requests
from harness import ROOT, fire, free_port, machine, median, percentile, progress, publish, worker_stack

import sync_http
from scripts import package
from tests.emulator import Emulator, read_exports, sample_connectors

COLD = Path(__file__).resolve().parent / "cold"


@dataclass(frozen=True)
class Variant:
    label: str
    script: tuple[str, ...]  # a script in cold/, and its arguments
    # Run from a read-only deployment package (scripts/package.py) rather than the working tree: "bytecode"
    # with the app's unchecked-hash bytecode, "source" without, so every start compiles the app's modules.
    package: str | None = None


VARIANTS = {
    "baseline": Variant("`import azure.functions` (the worker's own start)", ("baseline",)),
    "app": Variant("this app (`sync_http.main`)", ("app",)),
    "package": Variant("this app, from its read-only package with bytecode (`make package`)", ("app",), "bytecode"),
    "package_source": Variant("this app, from a read-only package without bytecode", ("app",), "source"),
    "by_hand": Variant("azure-identity + requests, by hand", ("by_hand",)),
    "msgraph_sdk": Variant("msgraph-sdk `sync.post`, as documented (async credential)", ("msgraph_sdk",)),
    "msgraph_sdk_sync": Variant(
        "msgraph-sdk `sync.post`, synchronous credential", ("msgraph_sdk", "--sync-credential")
    ),
    "stdlib": Variant("standard library only (urllib)", ("stdlib",)),
}
CONNECTOR = sample_connectors()[0]["id"]
TARGETS = {"cold vs by hand": 1.25, "cold vs msgraph-sdk": 0.45, "peak RSS vs by hand": 1.15, "warm vs raw loop": 1.2}


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_mib: float


def run_cold(name: str, env: dict[str, str], packages: dict[str, Path]) -> Run:
    """One fresh process; it reports its own peak RSS (see cold/run.py)."""
    package = VARIANTS[name].package
    if package is not None:  # read-only: nothing it compiles can be cached
        env = {**env, "APP_ROOT": str(packages[package]), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    command = [sys.executable, str(COLD / "run.py"), *VARIANTS[name].script]
    child = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - our scripts
    elapsed = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"{name} failed: {child.stderr[-2000:]}")
    return Run(elapsed, int(child.stdout.split()[-1]) / 1024)


def cold(runs: int) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    with Emulator() as emulator, tempfile.TemporaryDirectory() as built:
        packages = {
            "bytecode": package.build(Path(built) / "bytecode"),
            "source": package.build(Path(built) / "source", bytecode=False),
        }
        env = {
            **os.environ,
            "APP_ROOT": str(ROOT),
            "GRAPH_ENDPOINT": emulator.url,
            "IDENTITY_ENDPOINT": emulator.identity_endpoint,
            "IDENTITY_HEADER": emulator.identity_header,
            "EXCHANGE_CONNECTOR_IDS": CONNECTOR,
            "CONNECTOR_ID": CONNECTOR,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        # pip compiled the libraries' bytecode when it installed them; let Python cache the app's as well (its
        # default), so that no path pays for compiling. The first round, once each, writes that cache.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for name in VARIANTS:
            run_cold(name, env, packages)
        for round_number in range(runs):
            progress(f"cold: round {round_number + 1} of {runs} ({len(VARIANTS)} fresh processes each)")
            order = list(VARIANTS)
            random.shuffle(order)
            for name in order:
                results[name].append(run_cold(name, env, packages))
    return results


class Unqueued(func.Out[list[str]]):
    """The queue output binding, as the host hands it: without TENANT_IDS nothing is put on it."""

    def set(self, val: list[str]) -> None:
        raise SystemExit("a single-tenant webhook queued messages")

    def get(self) -> list[str]:
        return []


@dataclass(frozen=True)
class Warm:
    invocations: int
    tokens: int
    graph_connections: int
    round_trips_per_sync: float
    app_ms: float
    raw_ms: float


@contextmanager
def emulator_process() -> Iterator[dict[str, str]]:
    """The emulator in a process of its own, as Graph is: the client's costs are not mixed with the server's."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.emulator", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    if server.stdout is None:
        raise SystemExit("the emulator did not start")
    settings = read_exports(iter(server.stdout.readline, ""))
    try:
        yield settings
    finally:
        server.terminate()
        server.wait()


def warm(invocations: int, rounds: int = 5) -> Warm:
    with emulator_process() as emulator:
        os.environ.update(emulator, EXCHANGE_CONNECTOR_IDS=CONNECTOR, NO_PROXY="127.0.0.1,localhost")
        endpoint = emulator["GRAPH_ENDPOINT"]
        request = func.HttpRequest(method="POST", url="http://localhost/api/sync", headers={}, params={}, body=b"")
        # Set up from this machine's environment once, as the app's session is (proxies, and a CA bundle that
        # requests then checks on every call), so that what differs is the app's own work.
        raw = requests.Session()
        environment = raw.merge_environment_settings(endpoint, {}, None, None, None)
        raw.proxies.update(environment["proxies"])
        raw.verify = environment["verify"]
        raw.trust_env = False

        def app_call() -> None:
            if sync_http.main(request, Unqueued()).status_code != 202:
                raise SystemExit("the app's warm invocation failed")

        progress(f"warm: {invocations} invocations in one process, then {rounds} rounds against a raw loop")
        for _ in range(invocations):
            app_call()
        stats = raw.get(f"{endpoint}/_emulator/stats").json()
        token = raw.get(
            f"{emulator['IDENTITY_ENDPOINT']}?api-version=2019-08-01&resource={endpoint}",
            headers={"X-IDENTITY-HEADER": emulator["IDENTITY_HEADER"]},
        ).json()["access_token"]
        sync_url = f"{endpoint}/v1.0/deviceManagement/exchangeConnectors/{CONNECTOR}/sync"

        def raw_call() -> None:
            raw.post(sync_url, json={"syncType": "deltaSync"}, headers={"Authorization": f"Bearer {token}"})

        # Call by call, alternating, so drift and noise fall on both alike; medians shrug off GC and scheduler.
        app_times, raw_times = [], []
        for _ in range(invocations * rounds):
            for call, times in ((app_call, app_times), (raw_call, raw_times)):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
    return Warm(
        invocations=invocations,
        tokens=stats["token_requests"],
        graph_connections=stats["graph_connections"],
        round_trips_per_sync=stats["graph_calls"] / invocations,
        app_ms=median(app_times) * 1000,
        raw_ms=median(raw_times) * 1000,
    )


def through_worker(requests_per_level: int) -> dict[int, tuple[float, float, float]]:
    """Concurrency -> (requests/s, p50 ms, p99 ms)."""
    figures = {}
    with worker_stack(EXCHANGE_CONNECTOR_IDS=CONNECTOR) as stack:
        fire(stack.url, [b"{}"] * 20, 1)  # warm the worker: token, connection, imports
        for concurrency in (1, 8):
            progress(f"through the real worker: {requests_per_level} requests at concurrency {concurrency}")
            started = time.perf_counter()
            outcomes = fire(stack.url, [b"{}"] * requests_per_level, concurrency)
            wall = time.perf_counter() - started
            if any(o.status != 202 for o in outcomes):
                raise SystemExit("a webhook request through the worker failed")
            seconds = [o.seconds for o in outcomes]
            figures[concurrency] = (
                requests_per_level / wall,
                median(seconds) * 1000,
                percentile(seconds, 0.99) * 1000,
            )
    return figures


def report(
    cold_runs: dict[str, list[Run]], runs: int, warm_figures: Warm, worker: dict
) -> tuple[str, str, dict[str, bool]]:
    """The whole report, the targets table alone (for the main README), and which targets held."""
    wall = {name: median([r.seconds for r in rs]) * 1000 for name, rs in cold_runs.items()}
    peak = {name: median([r.peak_mib for r in rs]) for name, rs in cold_runs.items()}
    cost = {name: wall[name] - wall["baseline"] for name in VARIANTS}
    ratios = {
        "cold vs by hand": cost["app"] / cost["by_hand"],
        "cold vs msgraph-sdk": cost["app"] / cost["msgraph_sdk"],
        "peak RSS vs by hand": peak["app"] / peak["by_hand"],
        "warm vs raw loop": warm_figures.app_ms / warm_figures.raw_ms,
    }
    lines = [
        f"Measured on {machine()}, against the bundled emulator on loopback.",
        "",
        f"**Cold**: one webhook-triggered sync in a fresh process, median of {runs} interleaved runs.",
        "",
        "| path | whole process | cost over `import azure.functions` | peak RSS |",
        "|---|---|---|---|",
    ]
    for name, variant in VARIANTS.items():
        over = "—" if name in ("baseline", "stdlib") else f"+{cost[name]:.0f} ms"
        lines.append(f"| {variant.label} | {wall[name]:.0f} ms | {over} | {peak[name]:.1f} MiB |")
    lines += [
        "",
        "From a read-only package (as Flex Consumption runs one), the app's own bytecode saves "
        f"{cost['package_source'] - cost['package']:.0f} ms of compiling at each cold start: "
        f"{cost['package']:.0f} ms with it, {cost['package_source']:.0f} ms without.",
        "",
        "Cost over the baseline against msgraph-sdk with the synchronous credential: this app "
        f"{cost['app'] / cost['msgraph_sdk_sync']:.2f}x, azure-identity + requests by hand "
        f"{cost['by_hand'] / cost['msgraph_sdk_sync']:.2f}x.",
        "",
        f"**Warm**: {warm_figures.invocations} invocations in one process: {warm_figures.tokens} token request(s), "
        f"{warm_figures.graph_connections} connection(s) to Graph, {warm_figures.round_trips_per_sync:g} Graph round "
        f"trip(s) per sync; {warm_figures.app_ms:.2f} ms per invocation against {warm_figures.raw_ms:.2f} ms for a "
        "raw `requests.Session` loop with a fixed token, its proxy and CA settings taken from the environment once, "
        "as the app's are.",
        "",
        "**Through the real worker** (`azure-functions-runtime-v1` behind the local host):",
        "",
        "| concurrency | requests/s | p50 | p99 |",
        "|---|---|---|---|",
        *(f"| {c} | {rps:.0f} | {p50:.1f} ms | {p99:.1f} ms |" for c, (rps, p50, p99) in worker.items()),
        "",
    ]
    targets = [
        "| target | limit | measured | |",
        "|---|---|---|---|",
        *(
            f"| {name} | ≤ {TARGETS[name]}x | {value:.2f}x | {'met' if value <= TARGETS[name] else 'MISSED'} |"
            for name, value in ratios.items()
        ),
        f"| token requests, warm | 1 | {warm_figures.tokens} | {'met' if warm_figures.tokens == 1 else 'MISSED'} |",
        f"| Graph connections, warm | 1 | {warm_figures.graph_connections} | "
        f"{'met' if warm_figures.graph_connections == 1 else 'MISSED'} |",
        f"| Graph round trips per sync | 1 | {warm_figures.round_trips_per_sync:g} | "
        f"{'met' if warm_figures.round_trips_per_sync == 1 else 'MISSED'} |",
    ]
    lines += targets
    held = {name: value <= TARGETS[name] for name, value in ratios.items()}
    held["one token"] = warm_figures.tokens == 1
    held["one connection"] = warm_figures.graph_connections == 1
    held["one round trip"] = warm_figures.round_trips_per_sync == 1
    return "\n".join(lines), "\n".join(targets), held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="cold runs per path (at least 7)")
    parser.add_argument("--invocations", type=int, default=200)
    parser.add_argument("--worker-requests", type=int, default=400)
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    cold_runs = cold(max(7, args.runs))
    table, targets, held = report(
        cold_runs, max(7, args.runs), warm(args.invocations), through_worker(args.worker_requests)
    )
    missed = [name for name, ok in held.items() if not ok]
    return publish("benchmark", table, targets, missed, write_readme=args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
