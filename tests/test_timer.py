"""The timer function: its sync type, its log lines, and when it fails the invocation."""

from __future__ import annotations

import logging

import pytest

from shared.errors import ConfigurationError, SyncFailed
from tests.conftest import fire_timer
from tests.emulator import Emulator

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"


def test_timer_syncs_every_connector_with_the_sync_type_setting(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_TYPE", "fullSync")

    fire_timer()

    assert [r.json() for r in app_env.calls("sync")] == [{"syncType": "fullSync"}] * 2


def test_timer_logs_a_summary_and_one_line_per_connector(app_env: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shared")

    fire_timer()

    lines = [r.getMessage() for r in caplog.records if r.name == "shared.run"]
    request_ids = [r.header("client-request-id") for r in app_env.calls("sync")]
    assert f"target=exchangeConnectors id={A} outcome=accepted" in lines[0]
    assert f"client-request-id={request_ids[0]}" in lines[0]
    assert f"target=exchangeConnectors id={B} outcome=accepted" in lines[1]
    assert lines[2].startswith("Sync of exchangeConnectors (deltaSync): 2 accepted, 0 failed, 0 skipped")


def test_past_due_timer_warns_and_still_syncs(app_env: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    fire_timer(past_due=True)

    assert any(r.levelno == logging.WARNING and "past due" in r.getMessage() for r in caplog.records)
    assert len(app_env.calls("sync")) == 2


def test_timer_fails_the_invocation_only_after_trying_every_connector(app_env: Emulator) -> None:
    app_env.fault("sync", status=403, code="Forbidden")

    with pytest.raises(SyncFailed) as failed:
        fire_timer()

    assert len(app_env.calls("sync")) == 2
    assert "1 accepted, 1 failed" in str(failed.value)
    assert "DeviceManagementServiceConfig.ReadWrite.All" in str(failed.value)


def test_timer_with_no_connector_in_the_tenant_warns_and_succeeds(
    app_env: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    app_env.connectors.clear()

    fire_timer()

    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "No Exchange connector found" in warning
    assert "19 February 2024" in warning


def test_timer_with_a_bad_setting_fails_naming_it(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", "../../users")

    with pytest.raises(ConfigurationError) as failed:
        fire_timer()

    assert failed.value.setting == "EXCHANGE_CONNECTOR_IDS"
    assert app_env.calls() == []


def test_timer_throttled_run_stops_sending_and_fails(app_env: Emulator) -> None:
    app_env.fault("sync", status=429, headers={"Retry-After": "900"})

    with pytest.raises(SyncFailed) as failed:
        fire_timer()

    assert len(app_env.calls("sync")) == 1
    assert "1 failed, 1 skipped" in str(failed.value)
    assert "try again in 900 s" in str(failed.value)


def test_timer_that_cannot_list_connectors_fails_with_the_fix(app_env: Emulator) -> None:
    app_env.fault("list", status=403, code="Forbidden")

    with pytest.raises(SyncFailed) as failed:
        fire_timer()

    assert "Could not list the exchangeConnectors to sync: Graph answered 403 Forbidden" in str(failed.value)
    assert "DeviceManagementServiceConfig.ReadWrite.All" in str(failed.value)
    assert app_env.calls("sync") == []
