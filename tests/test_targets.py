"""Every live Intune sync target, through the functions' entry points against the emulator: what reaches Graph
for each, each target's skip rules, the webhook's target routes, and per-target permissions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared import run
from shared.errors import ConfigurationError, SyncFailed
from shared.settings import load_settings, parse_settings
from shared.targets import TARGETS
from tests.conftest import call_webhook, fire_timer
from tests.emulator import (
    CONFIG_READ_WRITE_ROLE,
    DEP_ID,
    DRIVER_ID,
    READ_WRITE_ROLE,
    VPP_IDS,
    Emulator,
    android_settings,
    autopilot_settings,
    dep_token,
    vpp_token,
)

# The targets of the sync-targets design; managedDevices has tests of its own (test_managed_devices.py).
ALL = ",".join(name for name in TARGETS if name != "managedDevices")
A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"


@pytest.fixture
def every_target(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """All six targets enabled, and an identity holding both permissions they need."""
    monkeypatch.setenv("SYNC_TARGETS", ALL)
    app_env.roles = (READ_WRITE_ROLE, CONFIG_READ_WRITE_ROLE)
    return app_env


def posted(emulator: Emulator) -> list[tuple[str, bytes]]:
    return [(r.path, r.body) for r in emulator.calls() if r.method == "POST"]


def outcomes(answer_json: dict) -> dict[tuple[str, str | None], tuple[str, str | None]]:
    return {(r["target"], r["id"]): (r["outcome"], r["reason"]) for r in answer_json["results"]}


def test_sync_targets_default_to_the_exchange_connectors_alone() -> None:
    assert parse_settings({}).targets == ("exchangeConnectors",)
    assert parse_settings({"SYNC_TARGETS": " vppTokens,exchangeConnectors vppTokens"}).targets == (
        "vppTokens",
        "exchangeConnectors",
    )


def test_unknown_target_name_is_a_configuration_error_listing_the_names() -> None:
    with pytest.raises(ConfigurationError) as bad:
        parse_settings({"SYNC_TARGETS": "exchangeConnectors,storeForBusiness"})

    assert bad.value.setting == "SYNC_TARGETS"
    assert "'storeForBusiness'" in bad.value.message
    assert all(name in bad.value.message for name in TARGETS)


def test_timer_syncs_every_enabled_target_each_at_its_own_path_and_version(every_target: Emulator) -> None:
    fire_timer()

    assert posted(every_target) == [
        (f"/v1.0/deviceManagement/exchangeConnectors/{A}/sync", b'{"syncType": "deltaSync"}'),
        (
            "/v1.0/deviceManagement/exchangeConnectors/0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02/sync",
            b'{"syncType": "deltaSync"}',
        ),
        (f"/v1.0/deviceAppManagement/vppTokens/{VPP_IDS[0]}/syncLicenses", b""),
        (f"/v1.0/deviceAppManagement/vppTokens/{VPP_IDS[1]}/syncLicenses", b""),
        (f"/beta/deviceManagement/depOnboardingSettings/{DEP_ID}/syncWithAppleDeviceEnrollmentProgram", b""),
        ("/beta/deviceManagement/windowsAutopilotSettings/sync", b""),
        ("/beta/deviceManagement/androidManagedStoreAccountEnterpriseSettings/syncApps", b""),
        (f"/beta/deviceManagement/windowsDriverUpdateProfiles/{DRIVER_ID}/syncInventory", b""),
    ]
    actions = [r for r in every_target.calls() if r.method == "POST" and "exchangeConnectors" not in r.path]
    assert all(r.header("content-type") is None for r in actions)


def test_webhook_answers_one_entry_per_object_with_its_target(every_target: Emulator) -> None:
    answer = call_webhook()

    assert answer.status == 202
    assert answer.json["summary"] == {"accepted": 8, "failed": 0, "skipped": 0}
    vpp = next(r for r in answer.json["results"] if r["target"] == "vppTokens")
    assert (vpp["id"], vpp["graphStatus"], vpp["outcome"]) == (VPP_IDS[0], 200, "accepted")
    assert [c["id"] for c in answer.json["connectors"]] == [A, "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"]
    assert answer.json["syncType"] == "deltaSync"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"state": "expired"}, "notEligible"),
        ({"state": "assignedToExternalMDM"}, "notEligible"),
        ({"last_sync_status": "inProgress"}, "alreadyRunning"),
    ],
)
def test_vpp_token_that_cannot_or_need_not_sync_is_skipped(
    every_target: Emulator, state: dict[str, str], reason: str
) -> None:
    every_target.objects["vppTokens"][VPP_IDS[0]] = vpp_token(VPP_IDS[0], **state)

    answer = call_webhook(target="vppTokens")

    assert answer.status == 202
    assert outcomes(answer.json) == {
        ("vppTokens", VPP_IDS[0]): ("skipped", reason),
        ("vppTokens", VPP_IDS[1]): ("accepted", None),
    }
    assert [p for p, _ in posted(every_target)] == [f"/v1.0/deviceAppManagement/vppTokens/{VPP_IDS[1]}/syncLicenses"]


def test_ade_token_synced_less_than_15_minutes_ago_is_too_soon_with_next_allowed_at(every_target: Emulator) -> None:
    every_target.objects["depOnboardingSettings"][DEP_ID] = dep_token(DEP_ID, triggered_minutes_ago=5)

    answer = call_webhook(target="depOnboardingSettings")

    (result,) = answer.json["results"]
    allowed = datetime.fromisoformat(result["nextAllowedAt"])
    assert answer.status == 202
    assert (result["outcome"], result["reason"]) == ("skipped", "tooSoon")
    assert timedelta(minutes=9) < allowed - datetime.now(timezone.utc) <= timedelta(minutes=10)
    assert posted(every_target) == []


@pytest.mark.parametrize(
    ("settings", "reason"),
    [({"sync_status": "inProgress"}, "alreadyRunning"), ({"triggered_minutes_ago": 3}, "tooSoon")],
)
def test_autopilot_running_or_synced_within_10_minutes_is_skipped_from_graphs_own_fields(
    every_target: Emulator, settings: dict[str, object], reason: str
) -> None:
    every_target.objects["windowsAutopilotSettings"] = {"a": autopilot_settings(**settings)}  # type: ignore[arg-type]

    answer = call_webhook(target="windowsAutopilotSettings")

    assert answer.status == 202
    assert [(r["outcome"], r["reason"]) for r in answer.json["results"]] == [("skipped", reason)]
    assert posted(every_target) == []


@pytest.mark.parametrize(("status", "reason"), [(409, "alreadyRunning"), (429, "tooSoon")])
def test_autopilot_409_or_429_is_a_skip_never_retried_and_never_stops_other_targets(
    every_target: Emulator, status: int, reason: str
) -> None:
    every_target.fault("windowsAutopilotSettings.sync", status=status, headers={"Retry-After": "600"})

    answer = call_webhook()

    autopilot = next(r for r in answer.json["results"] if r["target"] == "windowsAutopilotSettings")
    assert answer.status == 202
    assert (autopilot["outcome"], autopilot["reason"], autopilot["graphStatus"]) == ("skipped", reason, status)
    assert autopilot["nextAllowedAt"] if status == 429 else True
    assert len(every_target.calls("windowsAutopilotSettings.sync")) == 1
    assert answer.json["summary"]["accepted"] == 7


def test_managed_google_play_not_bound_is_not_eligible(every_target: Emulator) -> None:
    every_target.objects["androidManagedStoreAccountEnterpriseSettings"] = {
        "x": android_settings(bind_status="notBound")
    }

    answer = call_webhook(target="androidManagedStoreAccountEnterpriseSettings")

    assert [(r["outcome"], r["reason"]) for r in answer.json["results"]] == [("skipped", "notEligible")]
    assert posted(every_target) == []


def test_timer_stays_green_when_objects_are_skipped(every_target: Emulator) -> None:
    every_target.objects["vppTokens"][VPP_IDS[0]] = vpp_token(VPP_IDS[0], state="expired")
    every_target.objects["windowsAutopilotSettings"] = {"a": autopilot_settings(sync_status="inProgress")}

    report = run.scheduled_sync(load_settings())  # what sync_timer runs; it raises when the invocation must fail

    assert report.count("skipped") == 2
    assert report.count("failed") == 0


def test_missing_permission_fails_only_that_target_and_names_its_permission(every_target: Emulator) -> None:
    every_target.roles = (READ_WRITE_ROLE,)

    answer = call_webhook()

    failed = {r["target"] for r in answer.json["results"] if r["outcome"] == "failed"}
    assert answer.status == 502
    assert failed == {"androidManagedStoreAccountEnterpriseSettings", "windowsDriverUpdateProfiles"}
    assert answer.json["summary"]["accepted"] == 6
    assert CONFIG_READ_WRITE_ROLE in answer.json["error"]["remedy"]


def test_timer_fails_only_when_some_object_failed_after_trying_every_target(every_target: Emulator) -> None:
    every_target.fault("vppTokens.sync", status=500, times=20)

    with pytest.raises(SyncFailed) as failed:
        fire_timer()

    assert "2 failed" in str(failed.value)
    assert len(every_target.calls("windowsDriverUpdateProfiles.sync")) == 1


def test_unknown_target_route_is_404_unknown_target(every_target: Emulator) -> None:
    answer = call_webhook(target="storeForBusiness")

    assert answer.status == 404
    assert answer.json["error"]["code"] == "unknownTarget"
    assert every_target.calls() == []


def test_target_not_in_sync_targets_is_404_naming_the_setting(app_env: Emulator) -> None:
    answer = call_webhook(target="vppTokens")

    assert answer.status == 404
    assert answer.json["error"]["code"] == "targetNotEnabled"
    assert answer.json["error"]["setting"] == "SYNC_TARGETS"
    assert app_env.calls() == []


@pytest.mark.parametrize("how", ["body", "query"])
def test_ids_sync_exactly_those_objects_of_a_collection_target(every_target: Emulator, how: str) -> None:
    if how == "body":
        answer = call_webhook(body={"ids": [VPP_IDS[1]]}, target="vppTokens")
    else:
        answer = call_webhook(params={"id": VPP_IDS[1]}, target="vppTokens")

    assert answer.status == 202
    assert [p for p, _ in posted(every_target)] == [f"/v1.0/deviceAppManagement/vppTokens/{VPP_IDS[1]}/syncLicenses"]


def test_requested_id_that_is_no_object_is_404_and_nothing_is_synced(every_target: Emulator) -> None:
    answer = call_webhook(body={"ids": [VPP_IDS[0], "no-such-token"]}, target="vppTokens")

    assert answer.status == 404
    assert answer.json["error"]["code"] == "unknownObject"
    assert posted(every_target) == []


@pytest.mark.parametrize(
    ("target", "body", "field"),
    [
        ("windowsAutopilotSettings", {"ids": ["x"]}, "ids"),
        ("vppTokens", {"syncType": "fullSync"}, "syncType"),
        ("vppTokens", {"ids": "x"}, "ids"),
        ("vppTokens", {"ids": ["../x"]}, "ids[0]"),
    ],
)
def test_bad_target_requests_are_400_naming_the_field(
    every_target: Emulator, target: str, body: dict, field: str
) -> None:
    answer = call_webhook(body=body, target=target)

    assert answer.status == 400
    assert answer.json["error"]["field"] == field
    assert every_target.calls() == []


def test_ids_without_a_target_route_are_400(every_target: Emulator) -> None:
    answer = call_webhook(body={"ids": [VPP_IDS[0]]})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "ids"


def test_connector_fields_on_api_sync_cover_the_exchange_connectors_only(every_target: Emulator) -> None:
    answer = call_webhook(body={"syncType": "fullSync"})

    assert answer.status == 202
    assert {r["target"] for r in answer.json["results"]} == {"exchangeConnectors"}
    assert [b for _, b in posted(every_target)] == [b'{"syncType": "fullSync"}'] * 2


def test_get_reports_each_targets_objects_with_their_state_and_expiry(every_target: Emulator) -> None:
    answer = call_webhook("GET")

    targets = answer.json["targets"]
    assert answer.status == 200
    assert set(targets) == set(ALL.split(","))
    vpp = targets["vppTokens"]
    assert (vpp["version"], vpp["permission"]) == ("v1.0", READ_WRITE_ROLE)
    assert [t["id"] for t in vpp["objects"]] == list(VPP_IDS)
    assert vpp["objects"][0]["expirationDateTime"] and vpp["objects"][0]["state"] == "valid"
    assert targets["depOnboardingSettings"]["objects"][0]["tokenExpirationDateTime"]
    assert targets["windowsAutopilotSettings"]["objects"][0]["syncStatus"] == "completed"
    assert len(answer.json["connectors"]) == 2
    assert posted(every_target) == []


def test_get_of_one_target_reads_only_that_target(every_target: Emulator) -> None:
    answer = call_webhook("GET", target="windowsDriverUpdateProfiles")

    assert list(answer.json["targets"]) == ["windowsDriverUpdateProfiles"]
    assert [r.route for r in every_target.graph_calls()] == ["windowsDriverUpdateProfiles.list"]


def test_collection_targets_follow_paging(every_target: Emulator) -> None:
    every_target.page_size = 1

    answer = call_webhook(target="vppTokens")

    assert answer.json["summary"]["accepted"] == 2
    assert len(every_target.calls("vppTokens.list")) == 2


def test_min_interval_and_coalescing_are_kept_per_target_and_object(
    every_target: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_MIN_INTERVAL_SECONDS", "3600")
    call_webhook(target="vppTokens")

    again = call_webhook(target="vppTokens")
    driver = call_webhook(target="windowsDriverUpdateProfiles")

    assert [(r["outcome"], r["reason"]) for r in again.json["results"]] == [("skipped", "tooSoon")] * 2
    assert all(r["nextAllowedAt"] for r in again.json["results"])
    assert driver.json["summary"]["accepted"] == 1


# Graph's largest DateTimeOffset, and the same instant one hour west of UTC: past the end of year 9999 in UTC.
FAR_FUTURE = ("9999-12-31T23:59:59.9999999Z", "9999-12-31T23:59:59.9999999-01:00", "9999-12-31T23:59:59-01:00")


@pytest.mark.parametrize("when", FAR_FUTURE)
def test_far_future_trigger_dates_are_too_soon_and_every_other_object_still_syncs(
    every_target: Emulator, when: str
) -> None:
    every_target.objects["depOnboardingSettings"][DEP_ID]["lastSyncTriggeredDateTime"] = when
    every_target.objects["windowsAutopilotSettings"] = {
        "a": {**autopilot_settings(), "lastManualSyncTriggerDateTime": when}
    }

    answer = call_webhook()

    skipped = {
        (r["target"], r["reason"], r["nextAllowedAt"]) for r in answer.json["results"] if r["outcome"] == "skipped"
    }
    assert answer.status == 202
    assert skipped == {
        ("depOnboardingSettings", "tooSoon", "9999-12-31T23:59:59+00:00"),
        ("windowsAutopilotSettings", "tooSoon", "9999-12-31T23:59:59+00:00"),
    }
    assert answer.json["summary"] == {"accepted": 6, "failed": 0, "skipped": 2}
    run.scheduled_sync(load_settings())  # the timer does not raise either


@pytest.mark.parametrize("when", FAR_FUTURE)
def test_far_future_expiry_dates_are_read_by_the_watch_and_get(every_target: Emulator, when: str) -> None:
    every_target.objects["depOnboardingSettings"][DEP_ID]["tokenExpirationDateTime"] = when
    every_target.objects["vppTokens"][VPP_IDS[0]]["expirationDateTime"] = when

    answer = call_webhook("GET")

    expiring = {o["id"]: o["expires"] for o in answer.json["expiry"]["objects"] if o["id"] in (DEP_ID, VPP_IDS[0])}
    assert answer.status == 200
    assert expiring == {DEP_ID: "9999-12-31T23:59:59+00:00", VPP_IDS[0]: "9999-12-31T23:59:59+00:00"}
    assert answer.json["expiry"]["findings"] == []


@pytest.mark.parametrize("written", ["{}z", "{}Z", "{}.1234567z"])
def test_a_trigger_time_with_a_lower_case_z_keeps_the_15_minute_rule(every_target: Emulator, written: str) -> None:
    five_minutes_ago = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    every_target.objects["depOnboardingSettings"][DEP_ID]["lastSyncTriggeredDateTime"] = written.format(
        five_minutes_ago
    )

    answer = call_webhook(target="depOnboardingSettings")

    assert [(r["outcome"], r["reason"]) for r in answer.json["results"]] == [("skipped", "tooSoon")]
    assert posted(every_target) == []


@pytest.mark.parametrize("how", ["body", "query"])
def test_ids_are_guids_that_match_in_any_case(every_target: Emulator, how: str) -> None:
    shouted = VPP_IDS[1].upper()
    body, params = ({"ids": [shouted]}, None) if how == "body" else (None, {"id": shouted})

    answer = call_webhook(body=body, params=params, target="vppTokens")

    assert answer.status == 202
    assert [(r["id"], r["outcome"]) for r in answer.json["results"]] == [(VPP_IDS[1], "accepted")]
    assert [p for p, _ in posted(every_target)] == [f"/v1.0/deviceAppManagement/vppTokens/{VPP_IDS[1]}/syncLicenses"]


def test_configured_connector_ids_and_requested_ones_match_in_any_case(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", f"{A.upper()},{A}")

    answer = call_webhook(body={"connectorIds": [A.upper()]})
    state = call_webhook("GET")

    assert answer.status == 202
    assert [r["id"] for r in answer.json["results"]] == [A]
    assert state.json["missing"] == []
    assert parse_settings({"EXCHANGE_CONNECTOR_IDS": f"{A.upper()} {A}"}).ids_for("exchangeConnectors") == (A,)


class VppTokensWithADefect(type(TARGETS["vppTokens"])):  # type: ignore[misc]
    """A rule that raises for one token: what a defect in a target's code looks like to the run."""

    def before_sync(self, obj, now):  # type: ignore[no-untyped-def]
        if obj.id == VPP_IDS[0]:
            raise ValueError("a defect")
        return super().before_sync(obj, now)


def test_an_unexpected_exception_fails_only_its_object_logged_with_its_trace(
    every_target: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(TARGETS, "vppTokens", VppTokensWithADefect())

    answer = call_webhook()

    broken = next(r for r in answer.json["results"] if r["id"] == VPP_IDS[0])
    assert (broken["outcome"], broken["errorCode"]) == ("failed", "internalError")
    assert answer.json["summary"] == {"accepted": 7, "failed": 1, "skipped": 0}
    assert answer.json["error"]["code"] == "internalError"
    assert any(r.exc_text and "ValueError: a defect" in r.exc_text for r in caplog.records)
    with pytest.raises(SyncFailed, match="1 failed"):
        run.scheduled_sync(load_settings())
