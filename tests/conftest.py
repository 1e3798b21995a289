"""Fixtures: a fresh emulator per test, and the app's settings pointing at it, as Azure would set them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

import status_page
import sync_http
import sync_tenant
import sync_timer
from shared.process import PROCESS
from shared.settings import SETTING_NAMES, STORAGE_SETTINGS
from tests.emulator import Emulator, emulator_settings, free_port

# Everything the app reads, plus what the platform sets, so no value from this machine leaks into a test.
APP_SETTINGS = (
    *SETTING_NAMES,
    *STORAGE_SETTINGS,
    "AzureWebJobsStorage__queueServiceUri",
    "SYNC_SCHEDULE",
    "IDENTITY_SERVER_THUMBPRINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


class QueueOut(func.Out[list[str]]):
    """What the host hands a function for its queue output binding: what is set is what the host would put."""

    def __init__(self) -> None:
        self.value: list[str] = []

    def set(self, val: list[str]) -> None:
        self.value = val

    def get(self) -> list[str]:
        return self.value


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    mimetype: str
    text: str
    queued: tuple[str, ...] = ()  # the messages for the sync-tenants queue

    @property
    def json(self) -> Any:
        return json.loads(self.text)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    """One Azurite per test process (tests/functions_host/storage.py): the storage account's queues and tables."""
    from tests.functions_host.storage import Azurite  # noqa: PLC0415 - only the tests that use storage start it

    with Azurite() as running:
        yield running


def empty_tables(azurite: Any) -> None:
    """The stored state forgotten (the app creates its tables again on first use)."""
    from azure.data.tables import TableServiceClient  # noqa: PLC0415 - only the tests that use storage

    from shared import store  # noqa: PLC0415

    service = TableServiceClient.from_connection_string(azurite.connection_string)
    for table in (store.STATE_TABLE, store.HISTORY_TABLE):
        service.delete_table(table)


def store_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """AzureWebJobsStorage pointing at a table endpoint where nothing listens."""
    endpoint = closed_port_url().removesuffix("/msi/token")
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint={endpoint}/devstoreaccount1;",
    )


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """The app keeps its settings, clients, gate and guards for the process's life (Azure restarts it when its
    settings change); each test is a new process (PROCESS.reset), reading the environment as the test set it."""
    PROCESS.reset()
    yield
    PROCESS.reset()


@pytest.fixture
def app_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The app's environment in Azure with a managed identity, pointed at the emulator."""
    for name in APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", emulator.identity_header)
    monkeypatch.setenv("GRAPH_ENDPOINT", emulator.url)
    monkeypatch.setenv("GRAPH_RETRY_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return emulator


def use(emulator: Emulator, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Emulator:
    """The app's environment in Azure, pointed at the emulator and its customer tenants."""
    for name in (*APP_SETTINGS, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        **emulator_settings(emulator),
        "GRAPH_RETRY_BACKOFF_SECONDS": "0.01",
        "GRAPH_TIMEOUT_SECONDS": "2",
        "EXPIRY_WARNING_DAYS": "0",
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    return emulator


def call_webhook(
    method: str = "POST",
    body: bytes | str | dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    target: str | None = None,
) -> Answer:
    """Invoke ``sync_http.main`` as the Functions host does, with a function key in the query; ``target`` is the
    route's ``{target}`` segment (``/api/sync/{target}``)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    request = func.HttpRequest(
        method=method,
        url=f"https://intune-sync.azurewebsites.net/api/sync{f'/{target}' if target else ''}",
        headers={"content-type": "application/json", **(headers or {})},
        params={"code": "function-key-secret", **(params or {})},
        body=body or b"",
        route_params={"target": target} if target else {},
    )
    queue = QueueOut()
    response = sync_http.main(request, queue)
    body = response.get_body().decode()
    return Answer(response.status_code, dict(response.headers), response.mimetype, body, tuple(queue.get()))


def open_status(params: dict[str, str] | None = None) -> Answer:
    """``GET /api/status`` as the host invokes it, with a function key in the query."""
    request = func.HttpRequest(
        method="GET",
        url="https://intune-sync.azurewebsites.net/api/status",
        headers={},
        params={"code": "function-key-secret", **(params or {})},
        body=b"",
    )
    response = status_page.main(request)
    return Answer(response.status_code, dict(response.headers), response.mimetype, response.get_body().decode())


def fire_timer(past_due: bool = False) -> list[str]:
    """The timer's invocation; what it put on the sync-tenants queue."""
    queue = QueueOut()
    sync_timer.main(TimerRequest(past_due=past_due), queue)
    return queue.get()


def deliver(message: str | bytes, dequeue_count: int = 1) -> None:
    """``sync_tenant``'s invocation for one sync-tenants message, as the host hands it over on its try
    ``dequeue_count``; it raises where the invocation fails (and the host would retry)."""
    body = message.encode() if isinstance(message, str) else message
    sync_tenant.main(QueueMessage(id="message-1", body=body, dequeue_count=dequeue_count))


def closed_port_url() -> str:
    """An address where nothing listens, for an identity endpoint that is down."""
    return f"http://127.0.0.1:{free_port()}/msi/token"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Until ``condition`` holds: an event to wait for, never a guess at how long a busy machine takes."""
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, f"timed out waiting for {what}"
        time.sleep(0.01)
