"""Load test through the real worker (not part of the test suite): ``make load-test``.

1,000 webhook requests at concurrency 16 against the emulator, then on to 5,000 in all while the worker's
memory is read after every 1,000. Checks what the app promises: every request answered, no 5xx, never more
than one sync of a connector in flight (coalescing), and memory that stays flat. Exit code 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

from harness import fire, machine, median, percentile, progress, publish, rss_mib, worker_stack

from tests.emulator import sample_connectors

A = sample_connectors()[0]["id"]
BODIES = [b"{}", json.dumps({"connectorIds": [A]}).encode(), json.dumps({"syncType": "deltaSync"}).encode()]
MEMORY_GROWTH_LIMIT_MIB = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--total", type=int, default=5000, help="requests in all, for the memory reading")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="Graph's simulated time per call, seconds")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()

    with worker_stack(latency=args.latency) as stack:
        pid = stack.host.worker_pid
        if pid is None:
            raise SystemExit("the worker did not start")
        bodies = [BODIES[i % len(BODIES)] for i in range(args.requests)]
        progress(f"{args.requests} requests at concurrency {args.concurrency}, then to {args.total} for memory")
        started = time.perf_counter()
        first = fire(stack.url, bodies, args.concurrency)
        wall = time.perf_counter() - started
        syncs_first = len(stack.emulator.calls("sync"))
        memory = [rss_mib(pid)]
        sent = args.requests
        while sent < args.total:
            batch = min(args.requests, args.total - sent)
            fire(stack.url, [BODIES[i % len(BODIES)] for i in range(batch)], args.concurrency)
            sent += batch
            memory.append(rss_mib(pid))
        most_in_flight = dict(stack.emulator.most_syncs_in_flight)

    statuses = Counter(o.status for o in first)
    seconds = [o.seconds for o in first]
    growth = memory[-1] - memory[0]
    checks = {
        "every request answered": statuses.get(0, 0) == 0 and sum(statuses.values()) == args.requests,
        "no 5xx": not any(status >= 500 for status in statuses),
        "at most one sync of a connector in flight": max(most_in_flight.values()) == 1,
        f"memory flat (growth under {MEMORY_GROWTH_LIMIT_MIB} MiB)": growth < MEMORY_GROWTH_LIMIT_MIB,
    }
    table = "\n".join(
        [
            f"Measured on {machine()}; Graph emulated with {args.latency * 1000:.0f} ms per call.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| requests (concurrency {args.concurrency}) | {args.requests} |",
            f"| answers | {', '.join(f'{n} x {s}' for s, n in sorted(statuses.items()))} |",
            f"| 5xx answers | {sum(n for s, n in statuses.items() if s >= 500)} |",
            f"| syncs Graph received | {syncs_first} (coalesced from {args.requests} requests for 2 connectors) |",
            f"| most syncs of one connector in flight | {max(most_in_flight.values())} |",
            f"| latency p50 / p99 | {median(seconds) * 1000:.0f} ms / {percentile(seconds, 0.99) * 1000:.0f} ms |",
            f"| throughput | {args.requests / wall:.0f} requests/s |",
            f"| worker RSS after {args.requests} ... {args.total} requests | "
            + " / ".join(f"{m:.1f}" for m in memory)
            + f" MiB (growth {growth:+.1f} MiB) |",
        ]
    )
    for name, held in checks.items():
        print(f"{'ok  ' if held else 'FAIL'}  {name}")
    missed = [name for name, held in checks.items() if not held]
    return publish("load-test", table, None, missed, write_readme=args.write_readme)


if __name__ == "__main__":
    sys.exit(main())
