"""The expiry watch: the Apple push certificate, VPP and ADE tokens and Managed Google Play, read on every timer
run and in doctor, status and GET /api/sync; one WARNING line per finding; never a failed invocation."""

from __future__ import annotations

import logging

import pytest

from shared.errors import SyncFailed
from shared.watch import LOG_PREFIX
from tests.conftest import call_webhook, fire_timer
from tests.emulator import (
    CONFIG_READ_WRITE_ROLE,
    DEP_ID,
    VPP_IDS,
    Emulator,
    android_settings,
    apns_certificate,
    dep_token,
    vpp_token,
)
from tests.test_cli import cli

APNS = "applePushNotificationCertificate"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(LOG_PREFIX)]


@pytest.fixture
def watched(app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Emulator:
    monkeypatch.setenv("SYNC_SCHEDULE", "0 */15 * * * *")
    caplog.set_level(logging.INFO)
    return app_env


def test_healthy_tenant_has_no_finding_and_the_timer_reads_each_watched_resource_once(
    watched: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    fire_timer()

    assert warnings(caplog) == []
    assert [len(watched.calls(route)) for route in (f"{APNS}.get", "vppTokens.list", "depOnboardingSettings.list")] == [
        1,
        1,
        1,
    ]


def test_push_certificate_expiring_within_the_threshold_is_one_warning_with_the_fix(
    watched: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=12)}

    fire_timer()  # the finding never fails the invocation

    (line,) = warnings(caplog)
    assert f"target={APNS}" in line
    assert "days-left=11" in line or "days-left=12" in line
    assert "expires in 11 day(s)" in line or "expires in 12 day(s)" in line
    assert "Push Certificates Portal with the same Apple ID (mdm@contoso.example)" in line
    assert "Devices > Enrollment > Apple > Apple MDM Push certificate" in line


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (
            lambda emu: emu.objects["vppTokens"].update({VPP_IDS[0]: vpp_token(VPP_IDS[0], expires_in_days=-3)}),
            "expired 3 day(s) ago",
        ),
        (
            lambda emu: emu.objects["vppTokens"].update({VPP_IDS[0]: vpp_token(VPP_IDS[0], state="invalid")}),
            "its state is invalid",
        ),
        (
            lambda emu: emu.objects["depOnboardingSettings"].update({DEP_ID: dep_token(DEP_ID, expires_in_days=20)}),
            "expires in",
        ),
        (
            lambda emu: emu.objects["depOnboardingSettings"][DEP_ID].update({"lastSyncErrorCode": 7}),
            "last sync with Apple failed (Apple's error code 7)",
        ),
    ],
    ids=["vpp expired", "vpp invalid", "ade expiring", "ade sync error"],
)
def test_each_apple_token_finding_is_one_warning_naming_apple_business_manager(
    watched: Emulator, caplog: pytest.LogCaptureFixture, spoil: object, problem: str
) -> None:
    spoil(watched)  # type: ignore[operator]

    fire_timer()

    (line,) = warnings(caplog)
    assert problem in line
    assert "Apple Business Manager" in line


def test_managed_google_play_failing_app_sync_is_a_finding_and_not_bound_is_not(
    watched: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    watched.roles = (*watched.roles, CONFIG_READ_WRITE_ROLE)
    failing = android_settings()
    failing["lastAppSyncStatus"] = "credentialsNotValid"
    watched.objects["androidManagedStoreAccountEnterpriseSettings"] = {"a": failing}
    fire_timer()
    assert ["credentialsNotValid" in line for line in warnings(caplog)] == [True]

    caplog.clear()
    watched.objects["androidManagedStoreAccountEnterpriseSettings"] = {"a": android_settings(bind_status="notBound")}
    fire_timer()
    assert warnings(caplog) == []


def test_tenant_without_a_push_certificate_is_no_finding(watched: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    watched.objects[APNS] = {}

    fire_timer()

    assert warnings(caplog) == []
    assert len(watched.calls(f"{APNS}.get")) == 1


@pytest.mark.parametrize(("days", "warned"), [("5", False), ("15", True)])
def test_threshold_is_expiry_warning_days(
    watched: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, days: str, warned: bool
) -> None:
    monkeypatch.setenv("EXPIRY_WARNING_DAYS", days)
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=10)}

    fire_timer()

    assert bool(warnings(caplog)) is warned


def test_zero_turns_the_watch_off(
    watched: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPIRY_WARNING_DAYS", "0")
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=-1)}

    fire_timer()

    assert warnings(caplog) == []
    assert watched.calls(f"{APNS}.get") == []
    assert "expiry" not in call_webhook("GET").json


def test_what_the_token_cannot_read_is_not_checked_never_a_failure(
    watched: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The emulator's identity holds only DeviceManagementServiceConfig.ReadWrite.All: Managed Google Play's
    permission is missing, so it is reported 'not checked', and the run stays green."""
    fire_timer()

    not_checked = [r.getMessage() for r in caplog.records if "not checked" in r.getMessage()]
    assert not_checked == [
        "expiry watch: androidManagedStoreAccountEnterpriseSettings not checked: needs "
        "DeviceManagementConfiguration.ReadWrite.All"
    ]
    assert warnings(caplog) == []


def test_a_healthy_tenant_with_only_the_service_config_role_passes_doctor(watched: Emulator) -> None:
    code, out = cli("doctor")

    assert code == 0, out
    assert "ok    expiry androidManagedStoreAccountEnterpriseSettings: not checked: needs" in out
    assert (
        "ok    expiry applePushNotificationCertificate 0a1b2c3d-apns: Apple push certificate (mdm@contoso.example): "
        in out
    )


def test_doctor_fails_on_a_finding_and_prints_its_fix(watched: Emulator) -> None:
    watched.objects["vppTokens"][VPP_IDS[1]] = vpp_token(VPP_IDS[1], expires_in_days=4)

    code, out = cli("doctor")

    assert code == 1
    assert f"FAIL  expiry vppTokens {VPP_IDS[1]}: VPP token Contoso (vpp@contoso.example): expires in" in out
    assert "fix: Download a new token from Apple Business Manager" in out


def test_two_tokens_of_one_name_are_told_apart_by_their_ids(watched: Emulator) -> None:
    _, doctored = cli("doctor")
    _, status = cli("status")

    for out in (doctored, status):
        vpp_lines = [line for line in out.splitlines() if "VPP token Contoso" in line]
        assert len(vpp_lines) == 2
        assert [VPP_IDS[0] in vpp_lines[0], VPP_IDS[1] in vpp_lines[1]] == [True, True]


def test_status_shows_expiry_dates_and_days_left(watched: Emulator) -> None:
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=40)}

    code, out = cli("status")

    line = next(line for line in out.splitlines() if "Apple push certificate" in line)
    assert code == 0
    assert "days left 39" in line or "days left 40" in line
    assert line.rstrip().endswith("ok")


def test_get_includes_the_findings(watched: Emulator) -> None:
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=-2)}

    answer = call_webhook("GET")

    (finding,) = answer.json["expiry"]["findings"]
    assert answer.status == 200
    assert (finding["target"], finding["daysLeft"]) == (APNS, -2)
    assert finding["problem"].startswith("expired 2 day(s) ago")
    assert {"target": "androidManagedStoreAccountEnterpriseSettings"}.items() <= answer.json["expiry"]["notChecked"][
        0
    ].items()


def test_watch_stops_reading_once_the_identity_is_gone(watched: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    watched.fault("identity", status=500, times=100)

    with pytest.raises(SyncFailed, match="Could not get a token"):
        fire_timer()

    assert watched.graph_calls() == []
    assert len(watched.calls("identity")) <= 6  # the run's attempts and one for the watch, not one per resource
