"""What the benchmark and the load test share: the app in the real worker behind an HTTP front end, a
concurrent client, memory readings, and rewriting a marked block of the README."""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulator import Emulator, emulator_settings, free_port  # noqa: E402
from tests.functions_host.frontend import FrontEnd  # noqa: E402
from tests.functions_host.host import FunctionsHost  # noqa: E402

README = ROOT / "README.md"
BENCHMARKS_README = ROOT / "benchmarks" / "README.md"


@dataclass(frozen=True)
class Stack:
    emulator: Emulator
    host: FunctionsHost
    url: str


@dataclass(frozen=True)
class Outcome:
    status: int
    seconds: float


def app_settings(emulator: Emulator, **extra: str) -> dict[str, str]:
    return {**emulator_settings(emulator), **extra}


@contextmanager
def worker_stack(latency: float = 0.0, **settings: str) -> Iterator[Stack]:
    """Emulator, the app in the real Python worker, and the HTTP front end on a free port."""
    with Emulator(latency=latency) as emulator, FunctionsHost(ROOT, env=app_settings(emulator, **settings)) as host:
        port = free_port()
        server = FrontEnd(host, port).serve()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield Stack(emulator, host, f"http://127.0.0.1:{port}/api/sync")
        finally:
            server.shutdown()


def fire(url: str, bodies: Sequence[bytes], concurrency: int) -> list[Outcome]:
    """Send every body as a POST, ``concurrency`` at a time, each client thread on its own keep-alive session."""
    local = threading.local()

    def one(body: bytes) -> Outcome:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False
        started = time.perf_counter()
        try:
            status = local.session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=240)
        except requests.RequestException:
            return Outcome(0, time.perf_counter() - started)
        return Outcome(status.status_code, time.perf_counter() - started)

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, bodies))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rss_mib(pid: int) -> float:
    """Resident memory of a running process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def write_readme_block(name: str, text: str, readme_path: Path = BENCHMARKS_README) -> None:
    """Replace what stands between ``<!-- name:start -->`` and ``<!-- name:end -->`` in a README."""
    readme = readme_path.read_text()
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(readme):
        raise SystemExit(f"{readme_path} has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    readme_path.write_text(pattern.sub(lambda m: f"{m.group(1)}{text.rstrip()}\n{m.group(2)}", readme))


def targets_table(rows: Sequence[tuple[str, str, str, bool]]) -> tuple[str, list[str]]:
    """The targets as a Markdown table (target, limit, measured, met), and the names of those missed."""
    lines = ["| target | limit | measured | |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {limit} | {measured} | {'met' if met else 'MISSED'} |" for name, limit, measured, met in rows
    ]
    return "\n".join(lines), [name for name, _, _, met in rows if not met]


def progress(message: str) -> None:
    """What is being measured now, on stderr: a benchmark runs for a minute or more."""
    print(f"... {message}", file=sys.stderr, flush=True)


def publish(name: str, text: str, targets: str | None, missed: list[str], *, write_readme: bool) -> int:
    """Print the figures; with ``write_readme`` (``make benchmark RECORD=1``), put them in benchmarks/README.md
    (block ``name``) and the targets in README.md (block ``name-targets``). The exit code: 1 when a target is
    missed. A miss is never recorded: the tracked figures are those of a run that met its targets."""
    print(text)
    if missed:
        print(
            f"Missed: {', '.join(missed)}. Ratios move with what else the machine is doing: on a busy or shared "
            "machine, run it once more before trusting a miss. Nothing was written."
        )
        return 1
    if write_readme:
        write_readme_block(name, text)
        if targets is not None:
            write_readme_block(f"{name}-targets", targets, README)
        print(f"Recorded in {BENCHMARKS_README.relative_to(ROOT)}" + (" and README.md." if targets else "."))
    else:
        print("Not recorded: make ... RECORD=1 writes these figures into benchmarks/README.md.")
    return 0
