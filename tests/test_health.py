"""Health, not only expiry: the findings read from the objects a run already reads (Apple's terms, a token claimed
by another MDM, a failing or stale sync), each with a severity and its own fix; odd values are not judged, never a
crash."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import call_webhook, fire_timer
from tests.emulator import (
    CONFIG_READ_WRITE_ROLE,
    DEP_ID,
    READ_WRITE_ROLE,
    VPP_IDS,
    Emulator,
    android_settings,
    apns_certificate,
    autopilot_settings,
    dep_token,
    vpp_token,
)
from tests.emulator.targets import driver_profile, graph_time

APNS = "applePushNotificationCertificate"
PLAY = "androidManagedStoreAccountEnterpriseSettings"
PROFILE = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c01"


@pytest.fixture
def tenant(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """Every watched object healthy, so each test spoils one."""
    monkeypatch.setenv("SYNC_TARGETS", "exchangeConnectors")
    app_env.roles = (READ_WRITE_ROLE, CONFIG_READ_WRITE_ROLE)  # Managed Google Play and the driver profiles too
    app_env.objects[APNS] = {"c": apns_certificate()}
    app_env.objects["vppTokens"] = {VPP_IDS[0]: vpp_token(VPP_IDS[0])}
    app_env.objects["depOnboardingSettings"] = {DEP_ID: dep_token(DEP_ID)}
    app_env.objects[PLAY] = {"a": android_settings()}
    return app_env


def findings() -> list[dict[str, Any]]:
    answer = call_webhook("GET")
    assert answer.status == 200, answer.text
    return answer.json["expiry"]["findings"]


def only(target: str) -> dict[str, Any]:
    (found,) = [f for f in findings() if f["target"] == target]
    return found


def test_a_healthy_tenant_has_no_finding(tenant: Emulator) -> None:
    assert findings() == []


@pytest.mark.parametrize(("days", "severity"), [(-2.5, "critical"), (5.5, "critical"), (20.5, "warning")])
def test_an_expiry_is_critical_within_seven_days_and_a_warning_before(
    tenant: Emulator, days: float, severity: str
) -> None:
    tenant.objects[APNS] = {"c": apns_certificate(expires_in_days=days)}

    assert only(APNS)["severity"] == severity


def test_the_critical_threshold_is_a_setting(tenant: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPIRY_CRITICAL_DAYS", "3")
    tenant.objects[APNS] = {"c": apns_certificate(expires_in_days=5.5)}

    assert only(APNS)["severity"] == "warning"


def test_ade_terms_not_accepted_says_where_to_accept_them(tenant: Emulator) -> None:
    tenant.objects["depOnboardingSettings"][DEP_ID]["lastSyncErrorCode"] = 3

    found = only("depOnboardingSettings")

    assert found["severity"] == "critical"
    assert "terms and conditions" in found["problem"]
    assert "business.apple.com" in found["fix"]


def test_ade_failing_with_another_code_is_critical(tenant: Emulator) -> None:
    tenant.objects["depOnboardingSettings"][DEP_ID]["lastSyncErrorCode"] = 8

    found = only("depOnboardingSettings")

    assert (found["severity"], found["problem"]) == (
        "critical",
        "its last sync with Apple failed (Apple's error code 8)",
    )


def test_ade_not_synced_for_two_days_is_a_warning_and_the_threshold_a_setting(
    tenant: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant.objects["depOnboardingSettings"][DEP_ID]["lastSuccessfulSyncDateTime"] = graph_time(-timedelta(days=3))

    found = only("depOnboardingSettings")
    assert found["severity"] == "warning"
    assert found["problem"].startswith("it has not synced with Apple since")

    monkeypatch.setenv("ADE_SYNC_STALE_DAYS", "5")
    from shared.process import PROCESS  # noqa: PLC0415 - a new process reads the new setting

    PROCESS.reset()
    assert [f for f in findings() if f["target"] == "depOnboardingSettings"] == []


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("invalid", "Apple no longer accepts this token"),
        ("assignedToExternalMDM", "Another MDM"),
        ("duplicateLocationId", "Delete the duplicate"),
    ],
)
def test_each_vpp_state_has_its_own_fix(tenant: Emulator, state: str, said: str) -> None:
    tenant.objects["vppTokens"][VPP_IDS[0]]["state"] = state

    found = only("vppTokens")

    assert (found["severity"], found["problem"]) == ("critical", f"its state is {state}")
    assert said in found["fix"]


def test_a_vpp_licence_sync_that_failed_is_critical(tenant: Emulator) -> None:
    tenant.objects["vppTokens"][VPP_IDS[0]]["lastSyncStatus"] = "failed"

    assert only("vppTokens")["problem"] == "its last licence sync failed"


@pytest.mark.parametrize(
    "status", ["credentialsNotValid", "androidForWorkApiError", "managementServiceError", "unknownError"]
)
def test_managed_google_play_failing_its_app_sync_is_critical(tenant: Emulator, status: str) -> None:
    tenant.objects[PLAY]["a"]["lastAppSyncStatus"] = status

    found = only(PLAY)

    assert (found["severity"], found["problem"]) == ("critical", f"its last app sync failed ({status})")
    assert "Managed Google Play" in found["fix"]


def test_managed_google_play_not_synced_for_a_week_is_a_warning(tenant: Emulator) -> None:
    tenant.objects[PLAY]["a"]["lastAppSyncDateTime"] = graph_time(-timedelta(days=8))

    assert only(PLAY)["severity"] == "warning"


def test_managed_google_play_not_bound_is_no_finding(tenant: Emulator) -> None:
    tenant.objects[PLAY] = {"a": {**android_settings(bind_status="notBound"), "lastAppSyncStatus": "unknownError"}}

    assert findings() == []


def test_autopilot_and_driver_inventory_failures_are_judged_from_what_the_run_read(
    tenant: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant.objects["windowsAutopilotSettings"] = {"a": autopilot_settings(sync_status="failed")}
    profile = driver_profile(PROFILE)
    profile["inventorySyncStatus"]["driverInventorySyncState"] = "failure"
    tenant.objects["windowsDriverUpdateProfiles"] = {PROFILE: profile}

    assert {f["target"] for f in findings()} == set()  # not synced, so not read for the watch alone
    monkeypatch.setenv("SYNC_TARGETS", "windowsAutopilotSettings windowsDriverUpdateProfiles")
    from shared.process import PROCESS  # noqa: PLC0415 - a new process reads the new setting

    PROCESS.reset()
    found = {f["target"]: f for f in findings()}
    assert found["windowsAutopilotSettings"]["severity"] == "critical"
    assert found["windowsDriverUpdateProfiles"]["problem"] == "its last driver inventory sync failed"


@pytest.mark.parametrize(
    ("target", "key", "field", "value"),
    [
        ("depOnboardingSettings", DEP_ID, "lastSyncErrorCode", "3"),
        ("depOnboardingSettings", DEP_ID, "lastSyncErrorCode", None),
        ("depOnboardingSettings", DEP_ID, "lastSyncErrorCode", True),
        ("depOnboardingSettings", DEP_ID, "lastSuccessfulSyncDateTime", 17),
        ("vppTokens", VPP_IDS[0], "state", "unknownFutureValue"),
        ("vppTokens", VPP_IDS[0], "state", ["valid"]),
        (PLAY, "a", "lastAppSyncStatus", "unknownFutureValue"),
        (PLAY, "a", "bindStatus", 7),
        (PLAY, "a", "lastAppSyncDateTime", "yesterday"),
    ],
)
def test_an_odd_value_is_not_judged_and_never_a_crash(
    tenant: Emulator, target: str, key: str, field: str, value: object
) -> None:
    tenant.objects[target][key][field] = value

    assert [f for f in findings() if f["target"] == target] == []


def test_the_timers_line_for_a_finding_carries_its_severity(tenant: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    tenant.objects["depOnboardingSettings"][DEP_ID]["lastSyncErrorCode"] = 3
    caplog.set_level("INFO")

    fire_timer()

    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("expiry-warning")]
    assert f"target=depOnboardingSettings id={DEP_ID} severity=critical" in line
