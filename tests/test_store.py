"""Stored state: every run's results and the expiry standing in Table storage (Azurite), and a store that is down
never costing a sync."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.data.tables import TableServiceClient

from shared import store
from shared.cli import main as cli_main
from tests.conftest import call_webhook, deliver, empty_tables, fire_timer, store_down, use
from tests.emulator import CUSTOMER_TENANT_IDS, Emulator, apns_certificate
from tests.functions_host.storage import Azurite

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"
T1, T2, *_ = CUSTOMER_TENANT_IDS


@pytest.fixture
def stored(app_env: Emulator, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The app with the host's storage account: Azurite, its tables emptied first."""
    empty_tables(azurite)
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
    store_down(monkeypatch)

    answer = call_webhook()

    assert answer.status == 202
    assert answer.json["stored"] is False
    assert answer.json["summary"]["accepted"] == 2
    (logged,) = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert "the store (syncstate, synchistory in AzureWebJobsStorage) failed" in logged


def test_a_queued_tenant_writes_its_own_partition(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_tables(azurite)
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(T1)
        emulator.add_tenant(T2)
        use(emulator, monkeypatch, AzureWebJobsStorage=azurite.connection_string)

        deliver(json.dumps({"tenant": T2}))

    found: dict[Any, store.StoredTenant] = tables(azurite).tenants()
    assert list(found) == [T2]
    assert [o.outcome["outcome"] for o in found[T2].objects] == ["accepted"]


@pytest.fixture
def stored_tenants(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Any:
    empty_tables(azurite)
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(T1)
        emulator.add_tenant(T2)
        yield use(emulator, monkeypatch, AzureWebJobsStorage=azurite.connection_string, EXPIRY_WARNING_DAYS="30")


def test_get_with_tenant_ids_answers_from_the_store_with_no_graph_call(stored_tenants: Emulator) -> None:
    deliver(json.dumps({"tenant": T1}))
    before = len(stored_tenants.calls())

    answer = call_webhook("GET")

    assert answer.status == 200
    assert answer.json["source"] == "store"
    first, second = answer.json["tenants"][T1], answer.json["tenants"][T2]
    assert first["asOf"] is not None
    (connector,) = first["targets"]["exchangeConnectors"]["objects"]
    assert connector["lastOutcome"]["outcome"] == "accepted"
    assert connector["serverName"]
    assert second == {"asOf": None, "targets": {}, "expiry": {"findings": [], "objects": []}}  # not synced yet
    assert len(stored_tenants.calls()) == before


def test_get_live_reads_graph_for_the_tenants_named(stored_tenants: Emulator) -> None:
    answer = call_webhook("GET", params={"live": "true", "tenant": T2})

    assert answer.status == 200
    assert "source" not in answer.json
    assert list(answer.json["tenants"]) == [T2]
    assert stored_tenants.calls("list")


def test_live_is_true_or_false(stored_tenants: Emulator) -> None:
    answer = call_webhook("GET", params={"live": "yes"})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "live"


def test_get_live_over_more_than_ten_tenants_is_400_naming_live(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulator(entra=True) as emulator:
        for n in range(1, 12):
            emulator.add_tenant(f"c00000{n:02d}-0000-4000-8000-0000000000{n:02d}")
        use(emulator, monkeypatch, AzureWebJobsStorage=azurite.connection_string)

        answer = call_webhook("GET", params={"live": "true"})

        assert answer.status == 400
        assert answer.json["error"]["field"] == "live"
        assert emulator.calls() == []


def test_a_single_tenants_live_answer_carries_each_objects_stored_last_outcome(stored: Emulator) -> None:
    call_webhook()

    answer = call_webhook("GET")

    objects = answer.json["targets"]["exchangeConnectors"]["objects"]
    assert {o["id"]: o["lastOutcome"]["outcome"] for o in objects} == {A: "accepted", B: "accepted"}


def test_history_answers_an_objects_outcomes_newest_first(stored: Emulator) -> None:
    stored.fault("sync", status=403, code="Forbidden")
    call_webhook(body={"connectorIds": [A]})
    call_webhook(body={"connectorIds": [A]})

    answer = call_webhook("GET", target="history", params={"target": "exchangeConnectors", "id": A})

    assert answer.status == 200
    assert [h["outcome"] for h in answer.json["history"]] == ["accepted", "failed"]
    assert answer.json["history"][1]["graphStatus"] == 403
    assert answer.json["history"][1]["errorCode"] == "graphForbidden"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"id": A}, "target"),
        ({"target": "exchangeConnectors"}, "id"),
        ({"target": "exchangeConnectors", "id": "../../users"}, "id"),
        ({"target": "exchangeConnectors", "id": A, "tenant": T1}, "tenant"),
    ],
)
def test_history_names_the_field_that_is_wrong(stored: Emulator, params: dict[str, str], field: str) -> None:
    answer = call_webhook("GET", target="history", params=params)

    assert answer.status == 400
    assert answer.json["error"]["field"] == field


def test_history_with_tenant_ids_needs_the_tenant(stored_tenants: Emulator) -> None:
    answer = call_webhook("GET", target="history", params={"target": "exchangeConnectors", "id": A})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "tenant"


def test_a_store_that_is_down_answers_503_with_the_live_way_round(
    stored_tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_down(monkeypatch)

    answer = call_webhook("GET")

    assert answer.status == 503
    assert answer.json["error"]["code"] == "storeUnavailable"
    assert "live=true" in answer.json["error"]["remedy"]


def test_status_reads_the_store_and_live_reads_graph(stored_tenants: Emulator) -> None:
    deliver(json.dumps({"tenant": T1}))
    before = len(stored_tenants.calls())
    out = io.StringIO()

    code = cli_main(["status"], out=out)

    assert code == 0, out.getvalue()
    assert f"tenant {T1}: stored 20" in out.getvalue()
    assert f"tenant {T2}: stored never (not synced yet)" in out.getvalue()
    assert "accepted" in out.getvalue()
    assert len(stored_tenants.calls()) == before
    assert cli_main(["status", "--live", "--tenant", T2], out=io.StringIO()) == 0
    assert len(stored_tenants.calls()) > before


def test_a_timer_run_with_the_store_down_still_syncs_and_logs_it_once(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store_down(monkeypatch)

    fire_timer()  # does not raise: every sync was accepted

    assert len(app_env.calls("sync")) == 2
    assert len([r for r in caplog.records if "not stored" in r.getMessage()]) == 1


def test_the_store_is_reached_with_the_managed_identitys_token(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As in Azure: AzureWebJobsStorage__tableServiceUri and the identity's Storage token, no key; Azurite over HTTPS
    checks the token's audience, issuer and lifetime."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, bundle = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(bundle))
    with Azurite(oauth_cert=(str(cert), str(key))) as secured:
        monkeypatch.setenv("AzureWebJobsStorage__tableServiceUri", f"{secured.endpoints['Table']}/devstoreaccount1")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

        answer = call_webhook()
        state = call_webhook("GET")

    assert answer.json["stored"] is True
    objects = state.json["targets"]["exchangeConnectors"]["objects"]
    assert {o["lastOutcome"]["outcome"] for o in objects} == {"accepted"}
    storage_tokens = [c for c in app_env.calls("identity") if c.query.get("resource") == ["https://storage.azure.com"]]
    assert len(storage_tokens) == 1  # one Storage token for the process, kept by azure-identity
