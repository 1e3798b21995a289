"""Serve the app on http://localhost:7071 through the real Azure Functions Python worker, without Core Tools.

By default it also starts the bundled emulator (Graph + the managed-identity endpoint on 127.0.0.1), so no
Azure is needed, and prints what Graph received after every call. ``--live`` uses this machine's settings and
``az login`` sign-in against the real tenant instead.

- ``GET|POST http://localhost:7071/api/sync``: the webhook (function keys are not checked locally, as with
  ``func start``).
- ``POST http://localhost:7071/admin/functions/sync_timer``: fire the timer now, as the host's admin API does.
- ``--once``: fire the timer, post one webhook and read the state, then stop (what ``make demo`` runs).
- ``--tenants 3``: many tenants: the emulator adds its Entra stand-in (HTTPS, a test CA) and three customer tenants,
  and Azurite (tests/azurite) is the storage account: the timer puts one ``sync-tenants`` message per tenant, and
  each is synced by its own ``sync_tenant`` invocation (``make demo TENANTS=3``).

Needs Python 3.13 with ``requirements-dev.txt`` installed (``make serve`` / ``make demo`` take care of it).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.settings import SETTING_NAMES  # noqa: E402
from tests.emulator import (  # noqa: E402
    CUSTOMER_TENANT_IDS,
    Emulator,
    Received,
    emulator_settings,
)
from tests.emulator.demo import demo_calls, demo_emulator, demo_settings  # noqa: E402
from tests.functions_host.frontend import FrontEnd  # noqa: E402
from tests.functions_host.host import FunctionsHost, Invocation  # noqa: E402
from tests.functions_host.queues import QueueOptions, Queues  # noqa: E402
from tests.functions_host.storage import Azurite, AzuriteMissing  # noqa: E402

# How long --once waits for the queued tenants' invocations to end.
QUEUE_WAIT_SECONDS = 120


class Reporter:
    """Prints each request with its status and log lines and, with the emulator, what Graph received because of
    it; counts what failed, for ``--once``'s exit code."""

    def __init__(self, emulator: Emulator | None) -> None:
        self.emulator = emulator
        self.shown: set[int] = set()  # the emulator's calls already printed, by their place in its record
        self.failed = 0
        self._lock = threading.Lock()

    def queued(self, invocation: Invocation) -> None:
        """A queue-triggered invocation, as the host ran it from its message."""
        self(f"{invocation.function} (from the sync-tenants queue)", invocation, 0)

    def __call__(self, what: str, invocation: Invocation | None, status: int) -> None:
        with self._lock:  # queue-triggered invocations end on the listener's threads
            self._report(what, invocation, status)

    def _report(self, what: str, invocation: Invocation | None, status: int) -> None:
        if invocation is not None and invocation.http is None:
            ok = invocation.succeeded
            outcome = "succeeded" if ok else f"FAILED: {invocation.error}"
        else:
            ok = status < 400
            outcome = f"HTTP {status}"
        self.failed += not ok
        print(f"\n== {what}: {outcome}")
        for line in invocation.logs if invocation is not None else ():
            if line.category.startswith(("shared", "azure.identity")):
                print(f"  log {line.level}: {line.message}")
        for queue, messages in (invocation.queued if invocation is not None else {}).items():
            print(f"  Put {len(messages)} messages on the {queue} queue:")
            for message in messages:
                print(f"    {message}")
        if self.emulator is not None:
            tenant = queued_tenant(invocation)
            calls = self.emulator.calls()
            received = [
                call
                for index, call in enumerate(calls)
                if index not in self.shown and (tenant is None or tenant_of(call, self.emulator) in (tenant, None))
            ]
            self.shown.update(index for index, call in enumerate(calls) if call in received)
            print("  What Graph received:" if received else "  Graph received nothing.")
            for call in received:
                body = f" {shown_body(call)}" if call.body else ""
                query = "&".join(f"{k}={v[0]}" for k, v in call.query.items() if k != "resource")
                tenant = tenant_of(call, self.emulator)
                print(
                    f"    {call.route:<30} {call.method} {call.path}{'?' + query if query else ''}{body}"
                    + (f"  (tenant {tenant})" if tenant else "")
                )
        sys.stdout.flush()


def queued_tenant(invocation: Invocation | None) -> str | None:
    """The tenant a queue-triggered invocation's message named: its calls are the ones shown with it, since the
    tenants' invocations run side by side."""
    if invocation is None or invocation.message is None:
        return None
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(invocation.message)["tenant"]).lower()
    return None


def tenant_of(call: Received, emulator: Emulator) -> str | None:
    """The customer tenant of a Graph call's token, or of an Entra token request's path."""
    if call.route.startswith("entra"):
        return call.path.split("/")[1] or None
    token = emulator.find_token((call.header("Authorization") or "").removeprefix("Bearer "))
    return token.tenant if token is not None else None


def shown_body(call: Received) -> str:
    """A request's body as sent; of Entra's token requests, the form's names, since its assertion is a token."""
    if call.route != "entra_token":
        return call.body.decode()
    form = parse_qs(call.body.decode())
    return "&".join(
        f"{name}={values[0] if name != 'client_assertion' else '<the identity token>'}" for name, values in form.items()
    )


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None, *, quiet: bool = False) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=240) as answer:
            status, text = answer.status, answer.read().decode()
    except HTTPError as failed:
        status, text = failed.code, failed.read().decode()
    print(f"  -> HTTP {status}\n{text}" if text and not quiet else f"  -> HTTP {status}")
    return status


def run_once(port: int, tenants: int, targets: tuple[str, ...], host: FunctionsHost) -> None:
    """The timer (with tenants, its queued invocations too), then the webhook: the demo's own calls
    (tests/emulator/demo.py)."""
    call(port, "POST", "/admin/functions/sync_timer", {"input": ""})
    if tenants:
        ends = time.monotonic() + QUEUE_WAIT_SECONDS
        while (len(host.queue_invocations) < tenants or not host.queues_idle) and time.monotonic() < ends:
            time.sleep(0.05)
    for method, path, body in demo_calls(tenants, targets):
        call(port, method, path, body)
    print(f"\nThe stored results, as a page: http://localhost:{port}/api/status (make serve keeps it up)")
    call(port, "GET", "/api/status", quiet=True)


def app_settings(emulator: Emulator) -> dict[str, str]:
    """The emulator's settings, under the shell's own app settings (SYNC_TARGETS, DEVICE_*, ...), which win."""
    shell = {name: os.environ[name] for name in SETTING_NAMES if os.environ.get(name)}
    shell.pop("GRAPH_ENDPOINT", None)  # these point at the emulator, or nothing would reach it
    shell.pop("IDENTITY_ENDPOINT", None)
    shell.pop("IDENTITY_HEADER", None)
    demo = demo_settings()
    return {**emulator_settings(emulator), **demo, **shell}


def port_number(text: str) -> int:
    """A TCP port, for --port and the PORT variable: a clear error, never a traceback."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def stop_at_once_on_the_next_interrupt(host: FunctionsHost) -> None:
    """Stopping waits for the worker to finish; a second Ctrl-C ends the worker and this process at once."""

    def now(_signal: int, _frame: object) -> None:
        if host.worker_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.worker_pid, signal.SIGKILL)
        print("\nStopped.", flush=True)
        os._exit(130)

    signal.signal(signal.SIGINT, now)


def port_is_free(port: int) -> bool:
    """Checked before the worker starts, so a taken port is one clear line, not a traceback after start-up."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def start_emulator(tenants: int, settings: dict[str, str], stop: list[Callable[[], None]]) -> Emulator:
    """The demo's emulator, its settings added to ``settings`` (under the shell's own)."""
    emulator = demo_emulator(tenants).start()
    stop.insert(0, emulator.stop)
    settings.update(app_settings(emulator))
    print(f"Emulator for Graph and the managed-identity endpoint: {emulator.url}")
    print(f"SYNC_TARGETS={settings['SYNC_TARGETS']} (set SYNC_TARGETS in the shell to choose others)")
    if tenants:
        print(f"Entra stand-in: {emulator.authority}; tenants: {', '.join(emulator.customers)}")
    return emulator


def storage_account(settings: dict[str, str], stop: list[Callable[[], None]]) -> Queues:
    """Azurite as the app's storage account (AzureWebJobsStorage), with host.json's queue options."""
    azurite = Azurite().start()
    stop.insert(0, azurite.stop)
    settings["AzureWebJobsStorage"] = azurite.connection_string
    print(f"Azurite (the storage account, in memory): queues at {azurite.endpoints['Queue']}")
    return Queues(azurite.connection_string, QueueOptions.from_host_json(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--port", type=port_number, default=os.environ.get("PORT") or "7071", help="default 7071, or the PORT variable"
    )
    parser.add_argument("--once", action="store_true", help="fire the timer, call the webhook twice, stop")
    parser.add_argument("--live", action="store_true", help="use the real tenant with this machine's sign-in")
    parser.add_argument(
        "--tenants",
        type=int,
        default=0,
        choices=range(len(CUSTOMER_TENANT_IDS) + 1),
        metavar="N",
        help="many tenants: N customer tenants behind the emulator's Entra stand-in",
    )
    args = parser.parse_args()
    if not port_is_free(args.port):
        print(
            f"Port {args.port} is already in use. Pick another: make demo PORT=7072 (or make serve PORT=7072, "
            "or scripts/local_host.py --port 7072).",
            file=sys.stderr,
        )
        return 1

    emulator = None
    settings = {"SYNC_SCHEDULE": "0 */15 * * * *"}
    stop: list[Callable[[], None]] = []
    try:
        try:  # against your own tenant (--live), the stored results stay off: there is no storage account here
            queues = None if args.live else storage_account(settings, stop)
        except AzuriteMissing as missing:
            print(f"{missing}.", file=sys.stderr)
            return 1
        if not args.live:
            emulator = start_emulator(args.tenants, settings, stop)
        reporter = Reporter(emulator)
        host = FunctionsHost(ROOT, env=settings, queues=queues, on_queue_invocation=reporter.queued)
        stop.insert(0, host.stop)
        host.start()
        for name, result in host.loaded.items():
            print(f"Loaded {name} in the Python worker: {'ok' if result.succeeded else result.error}")
        if not all(result.succeeded for result in host.loaded.values()):
            return 1
        if queues is not None:
            host.listen()
        server = FrontEnd(host, args.port, reporter).serve()
        stop.insert(0, server.server_close)
        print(f"Serving http://localhost:{args.port}/api/sync (fire the timer: POST /admin/functions/sync_timer)")
        if queues is not None:
            print(f"Status page: http://localhost:{args.port}/api/status")
        if args.once:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            targets = settings.get("SYNC_TARGETS", demo_settings()["SYNC_TARGETS"])
            run_once(args.port, args.tenants, tuple(targets.split(",")), host)
            server.shutdown()
            if reporter.failed:
                print(f"\n{reporter.failed} of the demo's calls failed: see above.", file=sys.stderr)
            return 1 if reporter.failed else 0
        try:
            print("Press Ctrl-C to stop.", flush=True)
            server.serve_forever()
        except KeyboardInterrupt:
            stop_at_once_on_the_next_interrupt(host)
            print("\nStopping (Ctrl-C again to stop at once).", flush=True)
        return 0
    finally:
        for step in stop:
            step()


if __name__ == "__main__":
    sys.exit(main())
