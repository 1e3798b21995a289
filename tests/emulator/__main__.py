"""``python -m tests.emulator``: the emulator alone, printing the settings that point the app at it."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import threading

from tests.emulator.core import Emulator, emulator_settings
from tests.emulator.names import CUSTOMER_TENANT_IDS, DEMO_ADMIN_CLIENT_ID, IDENTITY_OBJECT_ID
from tests.emulator.targets import sample_objects


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Graph and managed-identity emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--tenants",
        type=int,
        default=0,
        choices=range(len(CUSTOMER_TENANT_IDS) + 1),
        help="customer tenants, served through the Entra stand-in",
    )
    args = parser.parse_args()
    emulator = Emulator(port=args.port, entra=args.tenants > 0)
    for tenant_id in CUSTOMER_TENANT_IDS[: args.tenants]:
        emulator.add_tenant(tenant_id, objects=sample_objects())
    with emulator:
        print("# Emulator for Microsoft Graph and the managed-identity endpoint. Paste these lines into a shell:")
        for name, value in emulator_settings(emulator).items():
            print(f"export {name}={shlex.quote(value)}")
        print("# Then: .venv/bin/python -m shared doctor   (or status, sync --dry-run)")
        print("# To try grant, as the emulator's demo administrator:")
        print(
            f"#   AZURE_CLIENT_ID={DEMO_ADMIN_CLIENT_ID} .venv/bin/python -m shared grant --principal-id "
            f"{IDENTITY_OBJECT_ID}"
        )
        print("# Connectors:", ", ".join(emulator.connectors))
        print("# Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
