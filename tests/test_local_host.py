"""``make demo`` and ``make serve`` as a newcomer runs them: scripts/local_host.py in its own process, through the
real worker (Python 3.13), against the bundled emulator."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("azure_functions_runtime_v1", reason="the local host runs the v1 worker, which needs Python 3.13")

from tests.emulator import free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "scripts" / "local_host.py")


def local_host_env(**settings: str) -> dict[str, str]:
    """This machine's environment without the app's settings, plus ``settings``: what a shell would pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "GRAPH_", "DEVICE_", "TENANT_"))}
    return {**env, **settings}


def demo(**settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script
        [sys.executable, SCRIPT, "--once", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=local_host_env(**settings),
    )


class Served:
    """``make serve`` in its own process group, as a terminal runs it; its output gathered as it comes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, SCRIPT, "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=local_host_env(),
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._ready.wait(60), "\n".join(self.lines)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C to stop."):
                self._ready.set()

    def request(self, method: str, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path)
            return connection.getresponse().status
        finally:
            connection.close()

    def request_refused(self) -> bool:
        """Nothing holds the port any more."""
        try:
            self.request("GET", "/api/sync")
        except ConnectionRefusedError:
            return True
        return False

    def interrupt(self) -> None:
        """Ctrl-C at a terminal: SIGINT to the whole foreground process group, the worker too."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait_for_line(self, text: str, timeout: float = 20) -> None:
        ends = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < ends, f"no line with {text!r} in:\n" + "\n".join(self.lines)
            time.sleep(0.02)


@pytest.fixture
def served() -> Iterator[Served]:
    running = Served()
    try:
        yield running
    finally:
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()


def test_serve_logs_every_call_with_its_status_whatever_the_method(served: Served) -> None:
    assert served.request("DELETE", "/api/sync") == 405
    assert served.request("HEAD", "/api/sync") == 405
    assert served.request("GET", "/api/elsewhere") == 404
    assert served.request("POST", "/api/sync/storeForBusiness") == 404
    assert served.request("POST", "/api/sync") == 202

    for line in (
        "== DELETE /api/sync: HTTP 405",
        "== HEAD /api/sync: HTTP 405",
        "== GET /api/elsewhere: HTTP 404",
        "== POST /api/sync/storeForBusiness: HTTP 404",
        "== POST /api/sync: HTTP 202",
    ):
        served.wait_for_line(line)
    assert not any("succeeded" in line for line in served.lines if line.startswith("== POST /api/sync/"))


def test_a_second_ctrl_c_stops_serve_at_once_and_frees_its_port(served: Served) -> None:
    served.interrupt()
    served.wait_for_line("Ctrl-C again to stop at once")
    served.interrupt()

    served.process.wait(timeout=15)
    assert served.request_refused()


def test_one_ctrl_c_stops_serve_and_frees_its_port(served: Served) -> None:
    served.interrupt()

    served.process.wait(timeout=30)
    assert served.process.returncode == 0
    assert served.request_refused()


def test_demo_runs_as_the_readme_describes_it() -> None:
    run = demo()
    readme = (ROOT / "README.md").read_text()
    days = re.search(r"a push certificate that expires in (\d+) days", readme)

    assert run.returncode == 0, run.stdout + run.stderr
    assert days is not None
    assert f"expires in {days[1]} day(s)" in run.stdout
    assert "expiry-warning target=vppTokens" in run.stdout
    assert "== sync_timer (fired by hand): succeeded" in run.stdout
    assert '"stored": true' in run.stdout  # Azurite is the demo's storage account
    assert "The stored results, as a page: http://localhost:" in run.stdout
    assert "== GET /api/status: HTTP 200" in run.stdout


def test_demo_exits_non_zero_when_its_calls_fail() -> None:
    run = demo(GRAPH_TIMEOUT_SECONDS="abc")

    assert run.returncode == 1
    assert "== sync_timer (fired by hand): FAILED" in run.stdout
    assert "== POST /api/sync: HTTP 503" in run.stdout
    assert "of the demo's calls failed" in run.stderr


def test_demo_honours_the_shells_sync_targets() -> None:
    run = demo(SYNC_TARGETS="managedDevices,windowsDriverUpdateProfiles")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "SYNC_TARGETS=managedDevices,windowsDriverUpdateProfiles" in run.stdout
    assert "/syncDevice" in run.stdout
    assert "/syncInventory" in run.stdout
    assert "/exchangeConnectors/" not in run.stdout


def test_demo_with_tenants_shows_the_timer_dispatching_and_each_tenants_own_invocation() -> None:
    run = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, SCRIPT, "--once", "--tenants", "3", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=local_host_env(),
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "Put 3 messages on the sync-tenants queue:" in run.stdout
    assert run.stdout.count("== sync_tenant (from the sync-tenants queue): succeeded") == 3
    graph_lines = [line for line in run.stdout.splitlines() if "GET /v1.0/deviceManagement/exchangeConnectors" in line]
    assert graph_lines
    assert all("(tenant c000000" in line for line in graph_lines)


@pytest.mark.parametrize("how", [["--port", "abc"], []])
def test_a_port_that_is_no_number_is_one_clear_line(how: list[str]) -> None:
    run = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, SCRIPT, *how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=local_host_env(PORT="abc"),
    )

    assert run.returncode == 2
    assert "'abc' is not a port number" in run.stderr
    assert "Traceback" not in run.stderr
