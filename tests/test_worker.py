"""The app inside the real Azure Functions Python worker (``azure-functions-runtime-v1``, Python 3.13).

These catch what calling ``main()`` directly cannot: a binding name that does not match ``main()``, shared
code that imports in tests but not in the worker, a return value the worker cannot convert.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("grpc", reason="the worker tests run in the Python 3.13 pass of `make test`")
pytest.importorskip("azure_functions_runtime_v1", reason="the v1 worker library needs Python 3.13")

from tests.emulator import (
    CONFIG_READ_WRITE_ROLE,
    CUSTOMER_TENANT_IDS,
    READ_ROLE,
    TENANT_APP_CLIENT_ID,
    Emulator,
    emulator_settings,
    free_port,
)
from tests.functions_host.frontend import FrontEnd
from tests.functions_host.host import FunctionsHost

APP_ROOT = Path(__file__).resolve().parent.parent
APP_FILES = ("host.json", "shared", "status_page", "sync_http", "sync_tenant", "sync_timer")
URL = "http://localhost:7071/api/sync?code=function-key-secret"


def app_settings(emulator: Emulator) -> dict[str, str]:
    return {**emulator_settings(emulator), "GRAPH_RETRY_BACKOFF_SECONDS": "0.01"}


@pytest.fixture
def host(emulator: Emulator) -> Iterator[FunctionsHost]:
    with FunctionsHost(APP_ROOT, env=app_settings(emulator)) as running:
        yield running


def app_copy(tmp_path: Path) -> Path:
    for name in APP_FILES:
        source = APP_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def test_every_function_loads_in_the_worker(host: FunctionsHost) -> None:
    assert {name: result.error for name, result in host.loaded.items()} == {
        "status_page": None,
        "sync_http": None,
        "sync_tenant": None,
        "sync_timer": None,
    }


def test_binding_renamed_in_function_json_fails_to_load(emulator: Emulator, tmp_path: Path) -> None:
    app = app_copy(tmp_path)
    config = app / "sync_http" / "function.json"
    config.write_text(config.read_text().replace('"name": "req"', '"name": "request"'))

    with FunctionsHost(app, env=app_settings(emulator)) as host:
        assert host.loaded["sync_timer"].succeeded
        assert not host.loaded["sync_http"].succeeded
        assert "FunctionLoadError" in (host.loaded["sync_http"].error or "")


def test_shared_import_that_fails_in_the_worker_fails_to_load(emulator: Emulator, tmp_path: Path) -> None:
    app = app_copy(tmp_path)
    script = app / "sync_timer" / "__init__.py"
    script.write_text(script.read_text().replace("from shared import run", "from shared import runner as run"))

    with FunctionsHost(app, env=app_settings(emulator)) as host:
        assert not host.loaded["sync_timer"].succeeded
        assert "runner" in (host.loaded["sync_timer"].error or "")


def test_webhook_through_the_worker_syncs_and_answers_json(host: FunctionsHost, emulator: Emulator) -> None:
    invocation = host.invoke_http("sync_http", "POST", URL, body=b'{"syncType": "fullSync", "sender": "ci"}')

    assert invocation.succeeded, invocation.error
    assert invocation.http is not None
    assert invocation.http.status == 202
    assert invocation.http.headers["content-type"] == "application/json"
    assert invocation.http.json()["ignoredFields"] == ["sender"]
    identity = emulator.calls("identity")[0]
    assert identity.header("x-identity-header") == emulator.identity_header
    assert identity.query["resource"] == [emulator.url]
    syncs = emulator.calls("sync")
    assert [s.json() for s in syncs] == [{"syncType": "fullSync"}] * 2
    assert {s.header("authorization") for s in syncs} == {f"Bearer {emulator.tokens[0].value}"}


def test_webhook_errors_keep_their_status_and_headers_through_the_worker(
    host: FunctionsHost, emulator: Emulator
) -> None:
    emulator.fault("sync", status=429, headers={"Retry-After": "600"})

    throttled = host.invoke_http("sync_http", "POST", URL)
    invalid = host.invoke_http("sync_http", "POST", URL, body=b"[1]")

    assert throttled.http is not None and invalid.http is not None
    assert (throttled.http.status, throttled.http.headers["retry-after"]) == (503, "600")
    assert (invalid.http.status, invalid.http.json()["error"]["field"]) == (400, "body")


def test_connector_state_through_the_worker(host: FunctionsHost, emulator: Emulator) -> None:
    invocation = host.invoke_http("sync_http", "GET", URL)

    assert invocation.http is not None
    assert invocation.http.status == 200
    assert len(invocation.http.json()["connectors"]) == 2
    assert emulator.calls("sync") == []


def test_timer_through_the_worker_syncs_and_logs_as_rpclogs(host: FunctionsHost, emulator: Emulator) -> None:
    invocation = host.invoke_timer("sync_timer", past_due=True)

    assert invocation.succeeded, invocation.error
    assert [s.json() for s in emulator.calls("sync")] == [{"syncType": "deltaSync"}] * 2
    messages = [(line.level, line.message) for line in invocation.logs]
    assert any(level == "Warning" and "past due" in text for level, text in messages)
    assert any(text.startswith("Sync of exchangeConnectors (deltaSync): 2 accepted") for _, text in messages)
    assert sum("outcome=accepted" in text for _, text in messages) == 2


def test_failed_timer_run_is_a_failed_invocation(host: FunctionsHost, emulator: Emulator) -> None:
    emulator.roles = (READ_ROLE,)

    invocation = host.invoke_timer("sync_timer")

    assert not invocation.succeeded
    assert "DeviceManagementServiceConfig.ReadWrite.All" in (invocation.error or "")
    assert len(emulator.calls("sync")) == 2


def test_no_token_or_identity_header_in_worker_logs(host: FunctionsHost, emulator: Emulator) -> None:
    host.invoke_http("sync_http", "POST", URL)
    emulator.fault("sync", status=401, code="InvalidAuthenticationToken")
    host.invoke_timer("sync_timer")

    seen = "\n".join(line.message for line in host.logs) + host.worker_stderr
    assert "outcome=accepted" in seen
    for secret in [emulator.identity_header, "function-key-secret", *(t.value for t in emulator.tokens)]:
        assert secret not in seen


def test_local_host_serves_the_webhook_and_fires_the_timer_through_the_worker() -> None:
    run = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(APP_ROOT / "scripts" / "local_host.py"), "--once", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "Loaded sync_http in the Python worker: ok" in run.stdout
    assert "== sync_timer (fired by hand): succeeded" in run.stdout
    assert '/sync {"syncType": "fullSync"}' in run.stdout
    assert "-> HTTP 202" in run.stdout
    assert "-> HTTP 200" in run.stdout


@pytest.fixture
def local_host(host: FunctionsHost) -> Iterator[int]:
    """``make serve``'s front end over the real worker; yields its port."""
    front = FrontEnd(host, free_port())
    server = front.serve()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield front.port
    finally:
        server.shutdown()
        server.server_close()


def send(
    port: int, method: str, path: str, body: bytes | None = None, chunked: bool = False
) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if chunked:
            connection.request(method, path, body=iter([body or b""]), encode_chunked=True)
        else:
            connection.request(method, path, body=body)
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def test_local_host_passes_a_chunked_body_to_the_function_whole(local_host: int, emulator: Emulator) -> None:
    status, _, body = send(local_host, "POST", "/api/sync", b'{"syncType":"turbo"}', chunked=True)

    assert status == 400
    assert json.loads(body)["error"]["field"] == "syncType"
    assert emulator.calls("sync") == []


def test_local_host_gives_an_oversized_chunked_body_the_apps_413(local_host: int, emulator: Emulator) -> None:
    status, _, body = send(local_host, "POST", "/api/sync", b"x" * 70_000, chunked=True)

    assert status == 413
    assert json.loads(body)["error"]["field"] == "body"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"])
def test_local_host_answers_other_methods_405_in_json_with_allow(local_host: int, method: str) -> None:
    status, headers, body = send(local_host, method, "/api/sync")

    assert status == 405
    assert headers["Allow"] == "GET, POST"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["field"] == "method"


def test_local_host_admin_endpoint_fires_only_non_http_functions(local_host: int, emulator: Emulator) -> None:
    http_function = send(local_host, "POST", "/admin/functions/sync_http", b'{"input": ""}')
    unknown = send(local_host, "POST", "/admin/functions/nothing", b'{"input": ""}')
    timer = send(local_host, "POST", "/admin/functions/sync_timer", b'{"input": ""}')

    assert http_function[0] == 400
    assert "/api/sync" in json.loads(http_function[2])["error"]["message"]
    assert unknown[0] == 404
    assert json.loads(unknown[2])["error"]["code"] == "notFound"
    assert timer[0] == 202
    assert len(emulator.calls("sync")) == 2


def test_local_host_on_a_taken_port_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = subprocess.run(  # noqa: S603 - our own script
            [
                sys.executable,
                str(APP_ROOT / "scripts" / "local_host.py"),
                "--once",
                "--port",
                str(taken.getsockname()[1]),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "already in use" in run.stderr
    assert "PORT=" in run.stderr and "--port" in run.stderr


def test_a_target_route_reaches_the_function_through_the_worker(emulator: Emulator) -> None:
    """/api/sync/{target} through the real worker: the route parameter arrives, and only that target is synced."""
    emulator.roles = (*emulator.roles, CONFIG_READ_WRITE_ROLE)
    settings = {**app_settings(emulator), "SYNC_TARGETS": "exchangeConnectors,windowsDriverUpdateProfiles"}
    with FunctionsHost(APP_ROOT, env=settings) as running:
        front = FrontEnd(running, free_port())
        server = front.serve()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            status, _, body = send(front.port, "POST", "/api/sync/windowsDriverUpdateProfiles")
            timer = running.invoke_timer("sync_timer")
        finally:
            server.shutdown()
            server.server_close()

    assert status == 202, body
    assert [r["target"] for r in json.loads(body)["results"]] == ["windowsDriverUpdateProfiles"]
    assert timer.succeeded, timer.error
    assert len(emulator.calls("windowsDriverUpdateProfiles.sync")) == 2
    assert len(emulator.calls("sync")) == 2


def test_many_tenants_through_the_worker() -> None:
    """Two tenants through the real worker: the webhook's tenant filter, and a webhook naming both, one of which has
    not consented. Each tenant's lines are filed under the invocation that ran them, though tenants run on threads
    (the queue's own path is tests/test_worker_queue.py)."""
    first, second = CUSTOMER_TENANT_IDS[:2]
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(first)
        emulator.add_tenant(second, consented=False)
        with FunctionsHost(APP_ROOT, env=app_settings(emulator)) as running:
            webhook = running.invoke_http("sync_http", "POST", f"{URL}&tenant={first}")
            both = json.dumps({"tenants": [first, second]}).encode()
            named = running.invoke_http("sync_http", "POST", URL, body=both)
        synced = [call.path for call in emulator.calls("sync")]

    assert webhook.http is not None
    assert webhook.http.status == 202, webhook.http.json()
    assert {r["tenant"] for r in webhook.http.json()["results"]} == {first}
    assert named.http is not None
    assert named.http.status == 502
    assert (
        named.http.json()["error"]["consentUrl"]
        == f"{emulator.authority}/{second}/adminconsent?client_id={TENANT_APP_CLIENT_ID}"
    )
    messages = [line.message for line in named.logs]
    assert any(m.startswith(f"tenant={first} target=exchangeConnectors") and "outcome=accepted" in m for m in messages)
    assert any(m.startswith(f"tenant={second} target=exchangeConnectors") and "outcome=failed" in m for m in messages)
    assert len(synced) == 2 and all(first[:8] in path for path in synced)
