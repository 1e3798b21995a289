"""Run the app's functions once, as the Functions host would call them, and show what Graph received.

Without arguments it starts the bundled emulator (Graph + the managed-identity endpoint on 127.0.0.1), so it
needs no Azure at all. With ``--live`` it uses this machine's settings and sign-in (``az login``) against
the real tenant instead, and runs the timer's job once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import azure.functions as func  # noqa: E402 - after the path is set
from azure.functions.timer import TimerRequest  # noqa: E402

import sync_http  # noqa: E402
import sync_timer  # noqa: E402
from shared.errors import SyncAppError  # noqa: E402
from tests.emulator import Emulator, connector, sample_connectors  # noqa: E402


def call(method: str, body: dict | None = None) -> None:
    request = func.HttpRequest(
        method=method,
        url="http://localhost:7071/api/sync",
        headers={"content-type": "application/json"},
        params={},
        body=json.dumps(body).encode() if body else b"",
    )
    response = sync_http.main(request)
    print(f"\n{method} /api/sync {json.dumps(body) if body else ''}-> {response.status_code}")
    print(response.get_body().decode())


def show_graph(emulator: Emulator, since: int) -> int:
    print("\nWhat Graph received:")
    for received in emulator.calls()[since:]:
        if received.route == "identity":
            print(f"  identity  GET {received.path} resource={received.query['resource'][0]}")
        else:
            query = "&".join(f"{k}={v[0]}" for k, v in received.query.items())
            body = f" {received.body.decode()}" if received.body else ""
            print(f"  graph     {received.method} {received.path}{'?' + query if query else ''}{body}")
    return len(emulator.calls())


def run_against_emulator() -> None:
    connectors = [*sample_connectors(), connector("3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e03", server_name="EXCH03")]
    with Emulator(connectors, page_size=2) as emulator:
        os.environ.update(
            GRAPH_ENDPOINT=emulator.url,
            IDENTITY_ENDPOINT=emulator.identity_endpoint,
            IDENTITY_HEADER=emulator.identity_header,
            NO_PROXY="127.0.0.1,localhost",
        )
        print(f"Emulator for Graph and the managed-identity endpoint at {emulator.url}")
        print("\n== The timer fires (SYNC_TYPE, every connector found in the tenant)")
        sync_timer.main(TimerRequest(past_due=False))
        seen = show_graph(emulator, 0)
        print("\n== A webhook asks for a full sync of one connector")
        call("POST", {"syncType": "fullSync", "connectorIds": [connectors[0]["id"]], "source": "demo"})
        seen = show_graph(emulator, seen)
        print("\n== The connectors' state")
        call("GET")
        show_graph(emulator, seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live", action="store_true", help="use the real tenant with this machine's sign-in")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="  log: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    if not args.live:
        run_against_emulator()
        return 0
    try:
        sync_timer.main(TimerRequest(past_due=False))
    except SyncAppError as failed:
        print(f"\nThe run failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
