"""Stored state: every run's results and the expiry standing in Table storage (Azurite), and a store that is down
never costing a sync."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared import store
from tests.conftest import call_webhook, closed_port_url, deliver, fire_timer, use
from tests.emulator import CUSTOMER_TENANT_IDS, Emulator, apns_certificate
from tests.functions_host.storage import Azurite

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"
T1, T2, *_ = CUSTOMER_TENANT_IDS


@pytest.fixture
def stored(app_env: Emulator, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The app with the host's storage account: Azurite, its tables emptied first."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    for table in (store.STATE_TABLE, store.HISTORY_TABLE):
        service.delete_table(table)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return app_env


def tables(azurite: Azurite) -> store.Store:
    return store.Store(TableServiceClient.from_connection_string(azurite.connection_string))


def test_a_timer_run_stores_each_objects_outcome_and_the_expiry_standing(stored: Emulator, azurite: Azurite) -> None:
    stored.objects["applePushNotificationCertificate"] = {"c": apns_certificate(expires_in_days=3.5)}

    fire_timer()

    (home,) = tables(azurite).tenants().values()
    assert home.tenant is None and home.as_of is not None
    assert {(o.target, o.id, o.outcome["outcome"]) for o in home.objects} == {
        ("exchangeConnectors", A, "accepted"),
        ("exchangeConnectors", B, "accepted"),
    }
    assert all(o.outcome["graphStatus"] == 204 and o.outcome["requestId"] for o in home.objects)
    assert all(o.fields["serverName"] for o in home.objects)  # what GET shows of each
    (certificate,) = [e for e in home.expiry if e["target"] == "applePushNotificationCertificate"]
    assert certificate["daysLeft"] == 3
    assert certificate["problem"] and certificate["fix"]


def test_a_webhook_answer_says_it_was_stored(stored: Emulator) -> None:
    answer = call_webhook()

    assert answer.status == 202
    assert answer.json["stored"] is True


def test_history_keeps_the_last_50_outcomes_of_an_object_newest_first(stored: Emulator, azurite: Azurite) -> None:
    stored.fault("sync", status=500, code="InternalServerError")  # the first run fails (500 is not retried)
    for _ in range(52):
        call_webhook(body={"connectorIds": [A]})

    history = tables(azurite).history(None, "exchangeConnectors", A)

    assert len(history) == 50
    assert [h["at"] for h in history] == sorted((h["at"] for h in history), reverse=True)
    assert all(h["outcome"] == "accepted" for h in history)  # the failed first run was the oldest, pruned


def test_a_store_that_is_down_never_fails_a_sync_and_is_logged_once(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = closed_port_url().removesuffix("/msi/token")
    monkeypatch.setenv(
        "AzureWebJobsStorage",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;TableEndpoint={endpoint}/devstoreaccount1;",
    )

    answer = call_webhook()

    assert answer.status == 202
    assert answer.json["stored"] is False
    assert answer.json["summary"]["accepted"] == 2
    (logged,) = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert "the store (syncstate, synchistory in AzureWebJobsStorage) failed" in logged


def test_a_queued_tenant_writes_its_own_partition(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    for table in (store.STATE_TABLE, store.HISTORY_TABLE):
        service.delete_table(table)
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(T1)
        emulator.add_tenant(T2)
        use(emulator, monkeypatch, AzureWebJobsStorage=azurite.connection_string)

        deliver(json.dumps({"tenant": T2}))

    found: dict[Any, store.StoredTenant] = tables(azurite).tenants()
    assert list(found) == [T2]
    assert [o.outcome["outcome"] for o in found[T2].objects] == ["accepted"]
