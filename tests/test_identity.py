"""The managed identity, through real azure-identity against the emulator's App Service endpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import call_webhook, closed_port_url
from tests.emulator import Emulator

USER_ASSIGNED = "7d8e9f10-1112-4314-9516-171819202122"


def test_token_and_connection_are_reused_across_invocations(app_env: Emulator) -> None:
    for _ in range(3):
        assert call_webhook().status == 202

    assert len(app_env.calls("identity")) == 1
    assert len({r.header("authorization") for r in app_env.graph_calls()}) == 1
    # The identity endpoint and Graph share the app's one pooled session: the emulator serves both on one port.
    assert app_env.connections == 1


def test_token_close_to_expiry_is_renewed_not_reused(app_env: Emulator) -> None:
    app_env.token_lifetime = 120  # azure-identity refreshes tokens with under 5 minutes left

    call_webhook()
    call_webhook()

    graph_tokens = [r.header("authorization") for r in app_env.graph_calls()]
    assert len(app_env.calls("identity")) == len(graph_tokens) == 6
    assert len(set(graph_tokens)) == 6


def test_identity_request_follows_the_app_service_protocol(app_env: Emulator) -> None:
    call_webhook()

    asked = app_env.calls("identity")[0]
    assert asked.header("x-identity-header") == app_env.identity_header
    assert asked.query["api-version"] == ["2019-08-01"]
    assert asked.query["resource"] == [app_env.url]
    assert "client_id" not in asked.query


def test_user_assigned_identity_sends_its_client_id(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", USER_ASSIGNED)

    assert call_webhook().status == 202
    assert app_env.calls("identity")[0].query["client_id"] == [USER_ASSIGNED]


def test_chosen_credential_is_logged(app_env: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shared")

    call_webhook()

    assert "uses the system-assigned managed identity" in caplog.text


def test_wrong_identity_header_is_503_identity_unavailable(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-platform-secret")

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["code"] == "identityUnavailable"
    assert app_env.graph_calls() == []


def test_failing_identity_endpoint_is_retried_a_bounded_number_of_times(app_env: Emulator) -> None:
    app_env.fault("identity", status=500, times=100)

    answer = call_webhook()

    assert answer.status == 503
    assert 1 <= len(app_env.calls("identity")) <= 3


def test_slow_identity_endpoint_is_abandoned(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "1")
    app_env.fault("identity", delay=1.5, times=100)

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["code"] == "identityUnavailable"
    assert app_env.graph_calls() == []


@pytest.mark.parametrize(
    "garbage",
    [b"not json", b"[]", b'{"access_token": "x", "expires_on": "soon"}', b'{"expires_on": "1"}'],
)
def test_identity_endpoint_answering_garbage_is_503(app_env: Emulator, garbage: bytes) -> None:
    app_env.fault("identity", body=garbage, times=100)

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["code"] == "identityUnavailable"


def test_identity_endpoint_down_names_the_identity_and_the_fix(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", USER_ASSIGNED)
    monkeypatch.setenv("IDENTITY_ENDPOINT", closed_port_url())

    answer = call_webhook()

    message = answer.json["error"]["message"]
    assert answer.status == 503
    assert "user-assigned managed identity named by AZURE_CLIENT_ID" in message
    assert "az functionapp identity assign" in message


def test_outside_azure_the_azure_cli_sign_in_is_used(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `az` here: the fallback must say so, not hang

    answer = call_webhook()

    assert answer.status == 503
    assert "Azure CLI" in answer.json["error"]["message"]
    assert "az login" in answer.json["error"]["message"]
    assert app_env.calls() == []


def test_token_that_cannot_be_sent_as_a_header_is_identity_unavailable(app_env: Emulator) -> None:
    app_env.fault("identity", token_body="crlf", times=10)

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["code"] == "identityUnavailable"
    assert "cannot be sent in an Authorization header" in answer.json["error"]["message"]
    assert app_env.graph_calls() == []


def test_wrong_identity_header_says_what_is_wrong_and_what_to_check(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-platform-secret")

    message = call_webhook().json["error"]["message"]

    assert "refused the request (401)" in message
    assert "IDENTITY_HEADER" in message
    assert "remove any app setting that overrides them" in message
    assert "configuration not found" not in message


def test_an_identity_failure_is_one_log_line_not_three(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """azure-identity logs each failure once per credential layer; the app says it once, with the fix."""
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("IDENTITY_ENDPOINT", closed_port_url())

    call_webhook()

    about_the_token = [r for r in caplog.records if "get_token" in r.getMessage() or "Could not get" in r.getMessage()]
    assert len(about_the_token) == 1
    assert about_the_token[0].name.startswith("shared.")


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "600"}])
def test_after_the_identity_endpoint_failed_the_next_invocation_asks_it_again(
    app_env: Emulator, headers: dict[str, str]
) -> None:
    """msal keeps a failed answer for 5 s (or its Retry-After) and would serve it again without asking."""
    app_env.fault("identity", status=500, headers=headers, times=100)
    assert call_webhook().status == 503
    app_env.mend("identity")
    asked = len(app_env.calls("identity"))

    answer = call_webhook()

    assert answer.status == 202
    assert len(app_env.calls("identity")) == asked + 1
