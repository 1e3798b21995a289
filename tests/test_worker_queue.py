"""Many tenants through the real worker and Azurite: the timer's and the webhook's queue output bindings, and
sync_tenant's queue trigger with the host's retries and poison queue (tests/functions_host/queues.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("azure_functions_runtime_v1", reason="the worker tests run in the Python 3.13 pass of `make test`")

from tests.conftest import empty_tables, wait_for
from tests.emulator import (
    CUSTOMER_TENANT_IDS,
    MANAGED_READ_ROLE,
    PRIVILEGED_ROLE,
    DeviceFleet,
    Emulator,
    emulator_settings,
)
from tests.functions_host.host import FunctionsHost, Invocation
from tests.functions_host.queues import QueueOptions, Queues
from tests.functions_host.storage import Azurite

APP_ROOT = Path(__file__).resolve().parent.parent
T1, T2, T3, *_ = CUSTOMER_TENANT_IDS
OUTSIDER = "d0000009-0000-4000-8000-000000000009"
QUEUE, POISON = "sync-tenants", "sync-tenants-poison"
WAIT = 60.0


@pytest.fixture
def queues(azurite: Azurite) -> Queues:
    """host.json's queue options, with the back-off between tries at 0 s: the retries are what is tested, not
    two minutes of waiting."""
    found = Queues(azurite.connection_string, QueueOptions.from_host_json(APP_ROOT, visibility_timeout=0.0))
    for name in (QUEUE, POISON):
        found.client(name).clear_messages()
    return found


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(entra=True) as running:
        for tenant in (T1, T2, T3):
            running.add_tenant(tenant)
        yield running


def start(emulator: Emulator, queues: Queues, azurite: Azurite, **settings: str) -> FunctionsHost:
    env = {
        **emulator_settings(emulator),
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_RETRY_BACKOFF_SECONDS": "0.01",
        "GRAPH_MAX_RETRIES": "0",
        "EXPIRY_WARNING_DAYS": "0",
        **settings,
    }
    return FunctionsHost(APP_ROOT, env=env, queues=queues).__enter__()


@pytest.fixture
def host(emulator: Emulator, queues: Queues, azurite: Azurite) -> Iterator[FunctionsHost]:
    running = start(emulator, queues, azurite)
    yield running
    running.stop()


def ended(host: FunctionsHost, count: int) -> list[Invocation]:
    """Once ``count`` queue-triggered invocations have ended and none runs: the host's settling included."""
    wait_for(lambda: len(host.queue_invocations) >= count and host.queues_idle, f"{count} invocations", WAIT)
    return list(host.queue_invocations)


def errors(invocation: Invocation) -> list[str]:
    return [line.message for line in invocation.logs if line.level in ("Error", "Critical")]


def test_the_timer_dispatches_one_message_per_tenant_and_each_is_synced_in_its_own_invocation(
    host: FunctionsHost, emulator: Emulator, queues: Queues
) -> None:
    fired = host.invoke_timer("sync_timer")

    assert fired.succeeded, fired.error
    assert emulator.calls() == []  # the dispatch asked no one for anything
    assert sorted(json.loads(m)["tenant"] for m in queues.texts(QUEUE)) == [T1, T2, T3]

    host.listen()
    runs = ended(host, 3)

    assert all(run.succeeded for run in runs)
    assert len({run.invocation_id for run in runs}) == 3
    summaries = sorted(line.message for run in runs for line in run.logs if line.message.startswith("Sync of"))
    assert [s.split(" in tenant ")[1][:36] for s in summaries] == [T1, T2, T3]
    assert len(emulator.calls("sync")) == 3
    assert queues.count(QUEUE) == 0


def test_a_webhook_naming_no_tenant_queues_every_tenant_through_its_output_binding(
    host: FunctionsHost, queues: Queues
) -> None:
    answer = host.invoke_http("sync_http", "POST", "http://localhost/api/sync", body=b"{}").http

    assert answer is not None and answer.status == 202
    assert answer.json()["queued"] == 3
    assert {json.loads(m)["runId"] for m in queues.texts(QUEUE)} == {answer.json()["runId"]}


def test_a_webhook_naming_eleven_tenants_is_400_naming_tenants(host: FunctionsHost, emulator: Emulator) -> None:
    eleven = [f"c00000{n:02d}-0000-4000-8000-0000000000{n:02d}" for n in range(1, 12)]
    body = json.dumps({"tenants": eleven}).encode()

    answer = host.invoke_http("sync_http", "POST", "http://localhost/api/sync", body=body).http

    assert answer is not None and answer.status == 400
    assert answer.json()["error"]["field"] == "tenants"
    assert emulator.calls() == []


def test_messages_the_app_cannot_use_are_completed_once_and_reach_no_one(
    host: FunctionsHost, emulator: Emulator, queues: Queues
) -> None:
    queues.put(QUEUE, ["not json", json.dumps({"tenant": OUTSIDER}), json.dumps(["tenant"])])

    host.listen()
    runs = ended(host, 3)

    assert all(run.succeeded for run in runs)  # completed: the host deletes them rather than retrying
    assert sorted(len(errors(run)) for run in runs) == [1, 1, 1]
    assert any(f"tenant={OUTSIDER} " in errors(run)[0] for run in runs)
    assert emulator.calls() == []
    assert queues.count(QUEUE) == 0
    assert queues.count(POISON) == 0


def test_a_transient_failure_is_retried_and_after_the_last_try_poisoned(
    host: FunctionsHost, emulator: Emulator, queues: Queues
) -> None:
    emulator.fault("identity", status=500, times=1000)
    queues.put(QUEUE, [json.dumps({"tenant": T1})])

    host.listen()
    wait_for(lambda: queues.count(POISON) == 1, "the message in the poison queue", WAIT)
    runs = ended(host, 5)

    assert [run.succeeded for run in runs] == [False] * 5
    assert [len(errors(run)) for run in runs] == [0, 0, 0, 0, 1]
    assert "the host moves its message to sync-tenants-poison" in errors(runs[-1])[0]
    assert any("Moving message to queue 'sync-tenants-poison'" in line.message for line in host.logs)
    assert json.loads(queues.texts(POISON)[0])["tenant"] == T1
    assert emulator.calls("sync") == []


def test_a_failure_that_clears_is_synced_on_the_next_try(
    host: FunctionsHost, emulator: Emulator, queues: Queues
) -> None:
    emulator.fault("list", status=503, headers={"Retry-After": "0"})
    queues.put(QUEUE, [json.dumps({"tenant": T2})])

    host.listen()
    runs = ended(host, 2)

    assert [run.succeeded for run in runs] == [False, True]
    assert len(emulator.calls("sync")) == 1
    assert queues.count(POISON) == 0


def test_a_permanent_failure_is_completed_once_with_the_remedy(
    emulator: Emulator, queues: Queues, azurite: Azurite
) -> None:
    emulator.add_tenant(T3, consented=False)
    host = start(emulator, queues, azurite)
    try:
        queues.put(QUEUE, [json.dumps({"tenant": T3})])
        host.listen()
        (run,) = ended(host, 1)
    finally:
        host.stop()

    assert run.succeeded
    (logged,) = errors(run)
    assert "adminconsent?client_id=" in logged
    assert queues.count(QUEUE) == 0
    assert queues.count(POISON) == 0


def test_two_tenants_device_writes_in_one_worker_each_fill_their_own_window(queues: Queues, azurite: Azurite) -> None:
    """Intune's limit is per app per tenant: two queued tenants in one process each get about 97% of it."""
    window_scale = 0.1  # Intune's 20 s window as 2 s, the app told the same
    with Emulator(entra=True) as emulator:
        fleets = {tenant: DeviceFleet(450, time_scale=window_scale) for tenant in (T1, T2)}
        for tenant, fleet in fleets.items():
            emulator.add_tenant(tenant, devices=fleet, roles=(MANAGED_READ_ROLE, PRIVILEGED_ROLE))
        host = start(
            emulator,
            queues,
            azurite,
            SYNC_TARGETS="managedDevices",
            DEVICE_SYNC_MAX_PER_RUN="300",
            DEVICE_SYNC_WINDOW_SECONDS=str(20 * window_scale),
        )
        try:
            assert host.invoke_timer("sync_timer").succeeded
            host.listen()
            runs = ended(host, 2)
        finally:
            host.stop()

        assert all(run.succeeded for run in runs), [run.error for run in runs]
        for tenant, fleet in fleets.items():
            written = sorted(
                c.at
                for c in emulator.calls("managedDevices.sync")
                if emulator.find_token((c.header("Authorization") or "")[7:]).tenant == tenant  # type: ignore[union-attr]
            )
            busiest = max(sum(1 for t in written if first <= t < first + fleet.window) for first in written)
            assert len(written) == 300
            assert fleet.throttled == 0
            assert busiest > 150  # a pace shared by the process would give each tenant about 97 a window


def test_the_status_page_shows_what_the_queued_invocations_stored(
    host: FunctionsHost, queues: Queues, azurite: Azurite
) -> None:
    empty_tables(azurite)
    assert host.invoke_timer("sync_timer").succeeded
    host.listen()
    ended(host, 3)

    page = host.invoke_http("status_page", "GET", "http://localhost/api/status?code=function-key").http

    assert page is not None and page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<li><b>3</b>tenants</li>" in page.body.decode()
    assert "<li><b>0</b>failures</li>" in page.body.decode()


def test_a_queued_tenants_changed_findings_reach_teams_once(
    emulator: Emulator, queues: Queues, azurite: Azurite
) -> None:
    from tests.emulator import apns_certificate  # noqa: PLC0415
    from tests.emulator.receiver import Receiver  # noqa: PLC0415

    empty_tables(azurite)
    emulator.customers[T1].objects["applePushNotificationCertificate"] = {"c": apns_certificate(expires_in_days=3.5)}
    with Receiver().running() as teams:
        host = start(emulator, queues, azurite, EXPIRY_WARNING_DAYS="30", NOTIFY_TEAMS_WEBHOOK_URL=teams.url("/flow"))
        try:
            host.listen()
            for cycle in (1, 2):  # two cycles: the same finding is sent once
                assert host.invoke_timer("sync_timer").succeeded
                ended(host, 3 * cycle)
        finally:
            host.stop()

    (message,) = [p.json() for p in teams.posted]
    card = message["attachments"][0]["content"]
    assert T1 in card["body"][0]["text"]
    assert any(f.get("value", "").startswith("expires in 3 day") for b in card["body"] for f in b.get("facts", []))
