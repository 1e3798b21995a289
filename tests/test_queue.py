"""Many tenants on the queue, in the app's own process: what the timer and the webhook put on sync-tenants, and what
sync_tenant does with each message (tests/test_worker_queue.py runs the same through the real worker and Azurite)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from shared import dispatch
from shared.errors import ConfigurationError
from shared.tenant_run import RetryLater
from tests.conftest import call_webhook, deliver, fire_timer, use
from tests.emulator import CUSTOMER_TENANT_IDS, Emulator
from tests.emulator.targets import tenant_connectors

T1, T2, T3, *_ = CUSTOMER_TENANT_IDS
OUTSIDER = "d0000009-0000-4000-8000-000000000009"


@pytest.fixture
def tenants(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(entra=True) as running:
        for tenant in (T1, T2, T3):
            running.add_tenant(tenant)
        yield use(running, monkeypatch)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_with_tenant_ids_the_timer_queues_one_message_per_tenant_and_asks_no_one(tenants: Emulator) -> None:
    messages = [json.loads(m) for m in fire_timer()]

    assert [m["tenant"] for m in messages] == [T1, T2, T3]
    assert len({m["runId"] for m in messages}) == 1
    assert all(m["queuedAt"].endswith("+00:00") for m in messages)
    assert tenants.calls() == []  # neither the identity, nor Entra, nor Graph


def test_without_tenant_ids_the_timer_syncs_inline_and_queues_nothing(app_env: Emulator) -> None:
    assert fire_timer() == []
    assert len(app_env.calls("sync")) == 2


def test_a_timer_with_a_wrong_setting_fails_naming_it_and_queues_nothing(
    tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANT_APP_CLIENT_ID", "not-a-guid")

    with pytest.raises(ConfigurationError) as failed:
        fire_timer()

    assert failed.value.setting == "TENANT_APP_CLIENT_ID"
    assert tenants.calls() == []


def test_a_webhook_naming_no_tenant_queues_every_tenant_and_answers_202_with_the_count(tenants: Emulator) -> None:
    answer = call_webhook(body={"syncType": "fullSync"})

    assert answer.status == 202
    assert answer.json["queued"] == 3
    assert answer.json["queue"] == "sync-tenants"
    messages = [json.loads(m) for m in answer.queued]
    assert [m["tenant"] for m in messages] == [T1, T2, T3]
    assert {m["runId"] for m in messages} == {answer.json["runId"]}
    assert {m["syncType"] for m in messages} == {"fullSync"}
    assert tenants.calls() == []


def test_a_webhook_on_a_target_route_queues_that_target_only(
    tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_TARGETS", "exchangeConnectors vppTokens")

    answer = call_webhook(target="vppTokens")

    assert answer.status == 202
    assert {tuple(json.loads(m)["targets"]) for m in answer.queued} == {("vppTokens",)}


def test_a_webhook_naming_its_tenants_runs_them_at_once(tenants: Emulator) -> None:
    answer = call_webhook(body={"tenants": [T1, T2]})

    assert answer.status == 202
    assert answer.queued == ()
    assert {r["tenant"] for r in answer.json["results"]} == {T1, T2}


@pytest.mark.parametrize("where", ["body", "query"])
def test_a_webhook_naming_more_than_ten_tenants_is_400_naming_tenants(tenants: Emulator, where: str) -> None:
    eleven = [f"c00000{n:02d}-0000-4000-8000-0000000000{n:02d}" for n in range(1, 12)]

    if where == "body":
        answer = call_webhook(body={"tenants": eleven})
    else:
        answer = call_webhook(params={"tenant": ",".join(eleven)})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "tenants"
    assert tenants.calls() == []


def test_a_queued_tenant_is_synced_alone_with_every_target(tenants: Emulator) -> None:
    messages = fire_timer()

    deliver(messages[1])

    synced = {call.path for call in tenants.calls("sync")}
    assert synced == {f"/v1.0/deviceManagement/exchangeConnectors/{c['id']}/sync" for c in tenant_connectors(T2)}


def test_a_message_for_one_target_syncs_that_target(tenants: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TARGETS", "exchangeConnectors vppTokens")

    deliver(json.dumps({"tenant": T1, "targets": ["vppTokens"]}))

    assert tenants.calls("sync") == []  # the exchange connectors' sync route
    assert all("vppTokens" in call.path for call in tenants.calls() if call.route in ("list", "get"))


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b"[1, 2]", "not an array"),
        (b"{}", '"tenant" is missing'),
        (b'{"tenant": "../../users"}', "not a tenant id"),
        (json.dumps({"tenant": OUTSIDER}).encode(), f"tenant {OUTSIDER} is not one of this deployment's tenants"),
        (json.dumps({"tenant": T1, "targets": ["users"]}).encode(), "'users' is not an enabled target"),
        (json.dumps({"tenant": T1, "syncType": "everything"}).encode(), '"syncType" must be one of'),
        (b" " * 5000, "characters long"),
    ],
)
def test_a_message_the_app_cannot_use_is_logged_once_and_completed_without_a_request(
    tenants: Emulator, caplog: pytest.LogCaptureFixture, body: bytes, said: str
) -> None:
    deliver(body)  # does not raise: the host deletes it rather than retrying it

    (logged,) = errors(caplog)
    assert said in logged
    assert "not retried" in logged
    assert tenants.calls() == []


def test_a_bad_message_names_its_tenant_when_it_has_one(tenants: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    deliver(json.dumps({"tenant": OUTSIDER.upper()}))

    (logged,) = errors(caplog)
    assert logged.startswith(f"tenant={OUTSIDER} ")


def test_a_message_without_tenant_ids_is_refused(app_env: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    deliver(json.dumps({"tenant": T1}))

    assert "TENANT_IDS is not set" in errors(caplog)[0]
    assert app_env.calls() == []


def test_an_unavailable_identity_fails_the_invocation_so_the_host_retries_it(
    tenants: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    tenants.fault("identity", status=500, times=10)

    with pytest.raises(RetryLater, match=f"tenant {T1}, try 1 of 5"):
        deliver(json.dumps({"tenant": T1}), dequeue_count=1)

    assert errors(caplog) == []  # an ERROR is for the last try, when the message is poisoned
    assert tenants.calls("sync") == []


def test_the_last_try_logs_that_the_message_goes_to_the_poison_queue(
    tenants: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    tenants.fault("sync", status=429, headers={"Retry-After": "0"}, times=50)

    with pytest.raises(RetryLater):
        deliver(json.dumps({"tenant": T2}), dequeue_count=dispatch.MAX_DEQUEUE_COUNT)

    (logged,) = errors(caplog)
    assert logged.startswith(f"tenant={T2} Not synced after 5 tries: the host moves its message to sync-tenants-poison")
    assert "throttling" in logged


def test_graph_failing_with_a_5xx_is_retried(tenants: Emulator) -> None:
    tenants.fault("list", status=500, times=50)

    with pytest.raises(RetryLater):
        deliver(json.dumps({"tenant": T3}))


def test_a_missing_permission_completes_with_the_permission_to_grant(
    tenants: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    tenants.fault("list", status=403, code="Forbidden")

    deliver(json.dumps({"tenant": T1}))

    (logged,) = errors(caplog)
    assert logged.startswith(f"tenant={T1} Not synced, and trying again cannot fix it")
    assert "DeviceManagementServiceConfig.ReadWrite.All" in logged
