"""The webhook's contract: statuses, JSON answers, and what reaches Graph for each request."""

from __future__ import annotations

import uuid

import pytest

from shared.errors import ConfigurationError
from tests.conftest import call_webhook, closed_port_url, fire_timer
from tests.emulator import READ_ROLE, Emulator, connector

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"


def synced(emulator: Emulator) -> list[tuple[str, str]]:
    """(connector id, syncType) of every sync Graph received, in order."""
    return [(r.path.split("/")[-2], r.json()["syncType"]) for r in emulator.calls("sync")]


def test_post_with_empty_body_syncs_every_discovered_connector_and_answers_202(app_env: Emulator) -> None:
    answer = call_webhook()

    assert answer.status == 202
    assert answer.mimetype == "application/json"
    assert synced(app_env) == [(A, "deltaSync"), (B, "deltaSync")]
    assert [c["outcome"] for c in answer.json["connectors"]] == ["accepted", "accepted"]
    assert answer.json["summary"] == {"accepted": 2, "failed": 0, "skipped": 0}


def test_sync_call_carries_bearer_token_json_body_and_a_fresh_client_request_id(app_env: Emulator) -> None:
    answer = call_webhook(body={"syncType": "fullSync"})

    calls = app_env.calls("sync")
    token = app_env.tokens[0].value
    assert [c.header("authorization") for c in calls] == [f"Bearer {token}"] * 2
    assert all(c.header("content-type") == "application/json" for c in calls)
    assert [c.json() for c in calls] == [{"syncType": "fullSync"}] * 2
    ids = [c.header("client-request-id") for c in app_env.graph_calls()]
    assert len(set(ids)) == len(ids) == 3
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)  # a GUID, as Graph documents
    reported = answer.json["connectors"][0]
    assert reported["clientRequestId"] == calls[0].header("client-request-id")
    assert reported["requestId"] and reported["graphStatus"] == 204


def test_query_parameters_choose_sync_type_and_connector(app_env: Emulator) -> None:
    answer = call_webhook(params={"syncType": "fullSync", "connectorId": B})

    assert answer.status == 202
    assert synced(app_env) == [(B, "fullSync")]


def test_sync_type_defaults_to_the_sync_type_setting(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TYPE", "fullSync")

    call_webhook(body={"connectorIds": [A]})

    assert synced(app_env) == [(A, "fullSync")]


def test_configured_connectors_are_synced_without_listing_the_tenant(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", f"{B}, {A}")

    answer = call_webhook()

    assert answer.status == 202
    assert [r.route for r in app_env.graph_calls()] == ["sync", "sync"]
    assert synced(app_env) == [(B, "deltaSync"), (A, "deltaSync")]


def test_requested_connector_outside_the_configured_ids_is_404_and_nothing_is_synced(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", A)

    answer = call_webhook(body={"connectorIds": [B]})

    assert answer.status == 404
    assert B in answer.json["error"]["message"]
    assert app_env.graph_calls() == []


def test_requested_connector_unknown_to_the_tenant_is_404_and_nothing_is_synced(app_env: Emulator) -> None:
    answer = call_webhook(body={"connectorIds": [A, "11111111-2222-3333-4444-555555555555"]})

    assert answer.status == 404
    assert answer.json["error"]["code"] == "unknownConnector"
    assert app_env.calls("sync") == []


def test_no_connector_in_the_tenant_is_404(app_env: Emulator) -> None:
    app_env.connectors.clear()

    answer = call_webhook()

    assert answer.status == 404
    assert answer.json["error"]["code"] == "noConnectors"
    assert "19 February 2024" in answer.json["error"]["remedy"]


def test_configured_connector_that_graph_does_not_know_is_404_with_detail(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", "99999999-2222-3333-4444-555555555555")

    answer = call_webhook()

    assert answer.status == 404
    assert answer.json["connectors"][0]["graphStatus"] == 404
    assert answer.json["connectors"][0]["errorCode"] == "graphNotFound"
    assert answer.json["connectors"][0]["graphErrorCode"] == "ResourceNotFound"


def test_other_body_fields_are_ignored_and_listed_back(app_env: Emulator) -> None:
    answer = call_webhook(body={"event": "push", "repository": {"name": "x"}, "syncType": "deltaSync"})

    assert answer.status == 202
    assert answer.json["ignoredFields"] == ["event", "repository"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        ('"deltaSync"', "body"),
        (b"\xff\xfe{}", "body"),
        ("[" * 50_000, "body"),
        ('{"n": ' + "9" * 5000 + "}", "body"),
        ('{"n": 1e999}', "body"),
        ('{"n": NaN}', "body"),
        ('{"n": -Infinity}', "body"),
        ('{"note": "\\ud800"}', "body"),
        ('{"\\udfff": 1}', "body"),
        ({"syncType": "weekly"}, "syncType"),
        ({"syncType": 1}, "syncType"),
        ({"connectorIds": A}, "connectorIds"),
        ({"connectorIds": []}, "connectorIds"),
        ({"connectorIds": [A, "../../users"]}, "connectorIds[1]"),
        ({"connectorIds": [None]}, "connectorIds[0]"),
    ],
)
def test_invalid_body_is_400_naming_the_field_and_reaches_no_graph(app_env: Emulator, body: object, field: str) -> None:
    answer = call_webhook(body=body)  # type: ignore[arg-type]

    assert answer.status == 400
    assert answer.json["error"]["field"] == field
    assert app_env.calls() == []


def test_invalid_sync_type_lists_the_allowed_values(app_env: Emulator) -> None:
    answer = call_webhook(params={"syncType": "FULLSYNC"})

    assert answer.status == 400
    assert answer.json["error"]["allowedValues"] == ["deltaSync", "fullSync"]


@pytest.mark.parametrize("bad_id", ["../../users", "a/b", "%2e%2e", "?", "#", "a b", " ", "x" * 129])
def test_unsafe_connector_id_in_the_query_is_400_and_no_request_leaves(app_env: Emulator, bad_id: str) -> None:
    answer = call_webhook(params={"connectorId": bad_id})

    assert answer.status == 400
    assert answer.json["error"]["field"].startswith("connectorId")
    assert app_env.calls() == []


def test_body_and_query_that_disagree_are_400(app_env: Emulator) -> None:
    answer = call_webhook(body={"syncType": "fullSync"}, params={"syncType": "deltaSync"})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "syncType"


def test_body_over_64_kib_is_413_and_not_parsed(app_env: Emulator) -> None:
    answer = call_webhook(body=b'{"syncType": "deltaSync", "pad": "' + b"x" * 65536 + b'"}')

    assert answer.status == 413
    assert answer.json["error"]["field"] == "body"
    assert app_env.calls() == []


def test_get_reports_connector_state_and_syncs_nothing(app_env: Emulator) -> None:
    answer = call_webhook("GET")

    assert answer.status == 200
    assert answer.json["connectors"][0] == {
        "id": A,
        "status": "connected",
        "lastSyncDateTime": app_env.connectors[A]["lastSyncDateTime"],
        "serverName": "EXCH01",
        "primarySmtpAddress": "intune-connector@contoso.example",
        "version": "19.9.2.0",
    }
    assert {r.method for r in app_env.graph_calls()} == {"GET"}


def test_get_with_only_read_permission_works(emulator: Emulator, app_env: Emulator) -> None:
    emulator.roles = (READ_ROLE,)

    assert call_webhook("GET").status == 200


def test_get_names_configured_connectors_missing_from_the_tenant(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = "99999999-2222-3333-4444-555555555555"
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", f"{A},{gone}")

    answer = call_webhook("GET")

    assert [c["id"] for c in answer.json["connectors"]] == [A]
    assert answer.json["missing"] == [gone]


def test_get_one_unknown_connector_is_404(app_env: Emulator) -> None:
    assert call_webhook("GET", params={"connectorId": "99999999-2222-3333-4444-555555555555"}).status == 404


def test_missing_permission_is_502_and_says_how_to_grant_it(emulator: Emulator, app_env: Emulator) -> None:
    emulator.roles = (READ_ROLE,)

    answer = call_webhook()

    assert answer.status == 502
    assert [c["graphStatus"] for c in answer.json["connectors"]] == [403, 403]
    assert answer.json["error"]["code"] == "graphForbidden"
    assert "DeviceManagementServiceConfig.ReadWrite.All" in answer.json["error"]["remedy"]
    assert "managed identity" in answer.json["error"]["remedy"]


def test_one_failing_connector_does_not_stop_the_others(app_env: Emulator) -> None:
    app_env.fault("sync", status=500, code="InternalServerError")

    answer = call_webhook()

    assert answer.status == 502
    assert [c["outcome"] for c in answer.json["connectors"]] == ["failed", "accepted"]
    assert answer.json["connectors"][0]["errorCode"] == "graphError"
    assert answer.json["connectors"][0]["graphErrorCode"] == "InternalServerError"
    assert synced(app_env) == [(A, "deltaSync"), (B, "deltaSync")]


def test_throttled_past_the_budget_is_503_at_once_and_stops_sending(app_env: Emulator) -> None:
    app_env.fault("sync", status=429, code="TooManyRequests", headers={"Retry-After": "600"})

    answer = call_webhook()

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "600"
    assert [c["outcome"] for c in answer.json["connectors"]] == ["failed", "skipped"]
    assert len(app_env.calls("sync")) == 1


def test_identity_endpoint_down_is_503_with_retry_after(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", closed_port_url())

    answer = call_webhook()

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "60"
    assert answer.json["error"]["code"] == "identityUnavailable"
    assert "system-assigned managed identity" in answer.json["error"]["message"]
    assert app_env.graph_calls() == []


def test_bad_setting_is_503_naming_the_setting(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TYPE", "hourly")

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["setting"] == "SYNC_TYPE"
    assert app_env.calls() == []


def test_discovery_failure_is_answered_not_raised(app_env: Emulator) -> None:
    app_env.fault("list", status=403, code="Forbidden")

    answer = call_webhook()

    assert answer.status == 502
    assert answer.json["error"]["code"] == "graphForbidden"
    assert app_env.calls("sync") == []


def test_paging_is_followed_to_every_connector(monkeypatch: pytest.MonkeyPatch, app_env: Emulator) -> None:
    ids = [f"c{i:03d}" for i in range(5)]
    app_env.connectors = {i: connector(i) for i in ids}
    app_env.page_size = 2

    answer = call_webhook()

    assert answer.status == 202
    assert len(app_env.calls("list")) == 3
    assert [c for c, _ in synced(app_env)] == ids


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"null", "must be a JSON object, not null"),
        (b"[]", "must be a JSON object, not an array"),
        (b'"x"', "must be a JSON object, not a string"),
        (b"7", "must be a JSON object, not a number"),
        (b'{"connectorIds": "x"}', "must be an array of ids, not a string"),
        (b'{"connectorIds": {}}', "must be an array of ids, not an object"),
        (b'{"connectorIds": [1]}', "an id must be a string, not a number"),
        (b'{"connectorIds": [null]}', "an id must be a string, not null"),
        (b'{"connectorIds": [true]}', "an id must be a string, not a boolean"),
    ],
)
def test_type_errors_are_told_in_jsons_words(app_env: Emulator, body: bytes, said: str) -> None:
    answer = call_webhook(body=body)

    assert answer.status == 400
    assert said in answer.json["error"]["message"]
    for python_name in ("NoneType", "list", "str", "int", "dict", "bool"):
        assert f"not {python_name}" not in answer.json["error"]["message"]


def test_every_invalid_setting_is_named_in_the_503_and_the_timer_failure(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_TYPE", "turbo")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "abc")
    monkeypatch.setenv("SYNC_TARGETS", "storeForBusiness")

    answer = call_webhook()
    with pytest.raises(ConfigurationError) as timer:
        fire_timer()

    assert answer.status == 503
    assert answer.json["error"]["setting"] == "GRAPH_TIMEOUT_SECONDS"
    assert answer.json["error"]["settings"] == ["GRAPH_TIMEOUT_SECONDS", "SYNC_TYPE", "SYNC_TARGETS"]
    assert all(
        name in answer.json["error"]["message"] for name in ("SYNC_TYPE", "GRAPH_TIMEOUT_SECONDS", "SYNC_TARGETS")
    )
    assert timer.value.settings == answer.json["error"]["settings"]
    assert app_env.calls() == []
