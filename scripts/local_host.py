"""Serve the app on http://localhost:7071 through the real Azure Functions Python worker, without Core Tools.

By default it also starts the bundled emulator (Graph + the managed-identity endpoint on 127.0.0.1), so no
Azure is needed, and prints what Graph received after every call. ``--live`` uses this machine's settings and
``az login`` sign-in against the real tenant instead.

- ``GET|POST http://localhost:7071/api/sync``: the webhook (function keys are not checked locally, as with
  ``func start``).
- ``POST http://localhost:7071/admin/functions/sync_timer``: fire the timer now, as the host's admin API does.
- ``--once``: fire the timer, post one webhook and read the state, then stop (what ``make demo`` runs).
- ``--tenants 2``: many tenants: the emulator adds its Entra stand-in (HTTPS, a test CA) and two customer tenants,
  and the app acts in both through the multi-tenant app (``make demo TENANTS=2``).

Needs Python 3.13 with ``requirements-dev.txt`` installed (``make serve`` / ``make demo`` take care of it).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.emulator import (  # noqa: E402
    CUSTOMER_TENANT_IDS,
    VPP_IDS,
    Emulator,
    Received,
    apns_certificate,
    connector,
    emulator_settings,
    sample_connectors,
    vpp_token,
)

# The targets the demo enables: all that need only DeviceManagementServiceConfig.ReadWrite.All, which the
# emulator's identity holds.
DEMO_TARGETS = "exchangeConnectors,vppTokens,depOnboardingSettings,windowsAutopilotSettings"
from tests.functions_host.frontend import FrontEnd  # noqa: E402
from tests.functions_host.host import FunctionsHost, Invocation  # noqa: E402


class Reporter:
    """Prints each invocation's log lines and, with the emulator, what Graph received because of it."""

    def __init__(self, emulator: Emulator | None) -> None:
        self.emulator = emulator
        self.seen = 0

    def __call__(self, what: str, invocation: Invocation) -> None:
        outcome = "succeeded" if invocation.succeeded else f"FAILED: {invocation.error}"
        print(f"\n== {what}: {outcome}")
        for line in invocation.logs:
            if line.category.startswith(("shared", "azure.identity")):
                print(f"  log {line.level}: {line.message}")
        if self.emulator is not None:
            received = self.emulator.calls()[self.seen :]
            self.seen += len(received)
            print("  What Graph received:" if received else "  Graph received nothing.")
            for call in received:
                body = f" {shown_body(call)}" if call.body else ""
                query = "&".join(f"{k}={v[0]}" for k, v in call.query.items() if k != "resource")
                print(f"    {call.route:<30} {call.method} {call.path}{'?' + query if query else ''}{body}")
        sys.stdout.flush()


def shown_body(call: Received) -> str:
    """A request's body as sent; of Entra's token requests, the form's names, since its assertion is a token."""
    if call.route != "entra_token":
        return call.body.decode()
    form = parse_qs(call.body.decode())
    return "&".join(
        f"{name}={values[0] if name != 'client_assertion' else '<the identity token>'}" for name, values in form.items()
    )


def call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=240) as answer:
            status, text = answer.status, answer.read().decode()
    except HTTPError as failed:
        status, text = failed.code, failed.read().decode()
    print(f"  -> HTTP {status}\n{text}" if text else f"  -> HTTP {status}")


def run_once(port: int, tenants: int) -> None:
    call(port, "POST", "/admin/functions/sync_timer", {"input": ""})
    if tenants:
        second = CUSTOMER_TENANT_IDS[1]
        call(port, "POST", "/api/sync", {"tenants": [second]})
        call(port, "GET", f"/api/sync/vppTokens?tenant={second}")
        return
    call(port, "POST", "/api/sync", {"syncType": "fullSync", "connectorIds": [sample_connectors()[0]["id"]]})
    call(port, "POST", "/api/sync/vppTokens", {"ids": [VPP_IDS[1]]})
    call(port, "GET", "/api/sync/vppTokens")


def demo_emulator(tenants: int) -> Emulator:
    """The demo's tenant: three connectors, one VPP token expired (a target's own rule at work: it is skipped,
    not failed) and a push certificate close to its end (so the expiry watch has something to say). With
    ``tenants``, as many customer tenants hold those objects instead, reached through the Entra stand-in."""
    extra = connector("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e03", server_name="EXCH03")
    tokens = [vpp_token(VPP_IDS[0], state="expired", expires_in_days=-3), vpp_token(VPP_IDS[1])]
    watched = {"vppTokens": tokens, "applePushNotificationCertificate": [apns_certificate(expires_in_days=12)]}
    if not tenants:
        return Emulator([*sample_connectors(), extra], objects=watched, page_size=2)
    emulator = Emulator(entra=True)
    for tenant in CUSTOMER_TENANT_IDS[:tenants]:
        emulator.add_tenant(tenant, objects=watched)
    return emulator


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT") or 7071), help="default 7071, or the PORT variable"
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
    if not args.live:
        emulator = demo_emulator(args.tenants).start()
        settings = {**emulator_settings(emulator), "SYNC_TARGETS": DEMO_TARGETS}
        print(f"Emulator for Graph and the managed-identity endpoint: {emulator.url}")
        if args.tenants:
            print(f"Entra stand-in: {emulator.authority}; tenants: {', '.join(emulator.customers)}")
    stop: list[Callable[[], None]] = [emulator.stop] if emulator else []
    try:
        host = FunctionsHost(ROOT, env=settings)
        stop.insert(0, host.stop)
        host.start()
        for name, result in host.loaded.items():
            print(f"Loaded {name} in the Python worker: {'ok' if result.succeeded else result.error}")
        if not all(result.succeeded for result in host.loaded.values()):
            return 1
        server = FrontEnd(host, args.port, Reporter(emulator)).serve()
        print(f"Serving http://localhost:{args.port}/api/sync (fire the timer: POST /admin/functions/sync_timer)")
        if args.once:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            run_once(args.port, args.tenants)
            server.shutdown()
            return 0
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("\nStopping.")
        return 0
    finally:
        for step in stop:
            step()


if __name__ == "__main__":
    sys.exit(main())
