"""The managedDevices target: stale devices found with Graph's filter and the app's own check, the cap and
stalest-first order, the OS filter, paging, pacing under Intune's device write limit, 429s, permissions, the
webhook's explicit ids, counts on GET, and memory at 100,000 devices."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest

from shared.errors import ConfigurationError
from shared.settings import parse_settings
from shared.targets.managed_devices import _sync_key
from tests.conftest import call_webhook, fire_timer
from tests.emulator import MANAGED_READ_ROLE, PRIVILEGED_ROLE, DeviceFleet, Emulator

ROOT = Path(__file__).resolve().parent.parent
SCALE = 0.01  # the emulated write window: 20 s x 0.01 = 0.2 s


@pytest.fixture
def fleet(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> DeviceFleet:
    """2,500 devices, about three in four not synced for 24 h; an identity that may list and sync them."""
    app_env.devices = DeviceFleet(2500, time_scale=SCALE)
    app_env.roles = (MANAGED_READ_ROLE, PRIVILEGED_ROLE)
    monkeypatch.setenv("SYNC_TARGETS", "managedDevices")
    monkeypatch.setenv("DEVICE_SYNC_WINDOW_SECONDS", str(20 * SCALE))
    monkeypatch.setenv("EXPIRY_WARNING_DAYS", "0")
    return app_env.devices


def synced_ids(emulator: Emulator) -> list[str]:
    return [r.path.split("/")[-2] for r in emulator.calls("managedDevices.sync")]


def listing_filter(emulator: Emulator) -> str:
    return unquote(emulator.calls("managedDevices.list")[0].query["$filter"][0])


def stalest(fleet: DeviceFleet, count: int, hours: float = 24, systems: tuple[str, ...] = ()) -> list[str]:
    cutoff = fleet.made - timedelta(hours=hours)
    stale = [
        i
        for i in range(fleet.count)
        if fleet.last_sync(i) < cutoff and (not systems or fleet.device(i)["operatingSystem"] in systems)
    ]
    return [fleet.device_id(i) for i in sorted(stale, key=lambda i: (fleet.last_sync(i), fleet.device_id(i)))][:count]


def test_timer_syncs_the_100_stalest_devices_stalest_first(app_env: Emulator, fleet: DeviceFleet) -> None:
    expected = stalest(fleet, 100)

    fire_timer()

    assert synced_ids(app_env) == expected
    assert all(r.body == b"" for r in app_env.calls("managedDevices.sync"))


def test_listing_asks_graph_for_stale_devices_with_only_the_fields_needed(
    app_env: Emulator, fleet: DeviceFleet
) -> None:
    fire_timer()

    listed = app_env.calls("managedDevices.list")[0]
    cutoff = datetime.fromisoformat(listing_filter(app_env).removeprefix("lastSyncDateTime lt ").replace("Z", "+00:00"))
    assert listed.query["$select"] == ["id,deviceName,lastSyncDateTime,operatingSystem"]
    assert abs(datetime.now(timezone.utc) - timedelta(hours=24) - cutoff) < timedelta(minutes=1)
    assert len(app_env.calls("managedDevices.list")) == 2  # 2,500 devices, ~1,900 stale: pages of 1,000


def test_devices_that_are_not_stale_are_never_synced_when_graph_ignores_the_filter(
    app_env: Emulator, fleet: DeviceFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet.ignore_filters = True
    monkeypatch.setenv("DEVICE_SYNC_MAX_PER_RUN", "1000")
    expected = stalest(fleet, 1000)

    fire_timer()

    assert synced_ids(app_env) == expected
    assert len(app_env.calls("managedDevices.list")) == 3  # every device listed: the app checked each


@pytest.mark.parametrize(("setting", "clause"), [("Windows", "operatingSystem eq 'Windows'"), ("ios, iPadOS", None)])
def test_operating_systems_filter_the_devices(
    app_env: Emulator, fleet: DeviceFleet, monkeypatch: pytest.MonkeyPatch, setting: str, clause: str | None
) -> None:
    monkeypatch.setenv("DEVICE_OPERATING_SYSTEMS", setting)
    monkeypatch.setenv("DEVICE_SYNC_MAX_PER_RUN", "20")
    systems = parse_settings({"DEVICE_OPERATING_SYSTEMS": setting}).options_for("managedDevices").operating_systems
    expected = stalest(fleet, 20, systems=systems)

    fire_timer()

    assert (clause in listing_filter(app_env)) if clause else ("operatingSystem" not in listing_filter(app_env))
    assert synced_ids(app_env) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEVICE_OPERATING_SYSTEMS", "Windows,Solaris"),
        ("DEVICE_OPERATING_SYSTEMS", "Windows' or deviceName eq 'x"),
        ("DEVICE_SYNC_MAX_PER_RUN", "1001"),
        ("DEVICE_SYNC_MAX_PER_RUN", "0"),
        ("DEVICE_STALE_HOURS", "0"),
        ("DEVICE_STALE_HOURS", "soon"),
        ("DEVICE_SYNC_WINDOW_SECONDS", "60"),
    ],
)
def test_every_device_setting_is_checked_and_named(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as bad:
        parse_settings({name: value})

    assert bad.value.setting == name


def test_device_settings_default_and_normalise() -> None:
    devices = parse_settings({"DEVICE_OPERATING_SYSTEMS": "windows MACOS,ipados"}).options_for("managedDevices")

    assert devices.operating_systems == ("Windows", "macOS", "iPadOS")
    defaults = parse_settings({}).options_for("managedDevices")
    assert (defaults.most, defaults.stale_after) == (100, timedelta(hours=24))


def test_device_writes_are_paced_under_the_limit_without_provoking_429s(
    app_env: Emulator, fleet: DeviceFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICE_SYNC_MAX_PER_RUN", "500")

    fire_timer()

    written = sorted(r.at for r in app_env.calls("managedDevices.sync"))
    window = 20 * SCALE
    busiest = max(sum(1 for t in written if start <= t < start + window) for start in written)
    assert len(written) == 500
    assert fleet.throttled == 0
    assert busiest <= 200


def test_a_429_is_still_honoured_and_the_device_synced(
    app_env: Emulator, fleet: DeviceFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICE_SYNC_MAX_PER_RUN", "3")
    app_env.fault("managedDevices.sync", status=429, code="TooManyRequests", headers={"Retry-After": "1"})

    answer = call_webhook(target="managedDevices")

    first, second = app_env.calls("managedDevices.sync")[:2]
    assert answer.status == 202
    assert answer.json["summary"] == {"accepted": 3, "failed": 0, "skipped": 0}
    assert second.at - first.at >= 0.95


def test_run_that_reaches_its_budget_stops_cleanly_and_the_next_carries_on(
    app_env: Emulator, fleet: DeviceFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICE_SYNC_WINDOW_SECONDS", "20")  # Intune's real pace: about 10 writes a second
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", "5")
    monkeypatch.setenv("DEVICE_SYNC_MAX_PER_RUN", "100")
    expected = stalest(fleet, 100)

    answer = call_webhook(target="managedDevices")

    done = answer.json["summary"]
    skipped = [r for r in answer.json["results"] if r["outcome"] == "skipped"]
    assert answer.status == 202
    assert 0 < done["accepted"] < 100  # as many as the budget allowed: a busy machine allows fewer
    assert done["failed"] == 0
    assert {(r["reason"], r["errorCode"]) for r in skipped} == {("notAttempted", None)}
    assert synced_ids(app_env) == expected[: done["accepted"]]


def test_explicit_ids_sync_exactly_those_devices_stale_or_not(app_env: Emulator, fleet: DeviceFleet) -> None:
    fresh = next(fleet.device_id(i) for i in range(100) if fleet.last_sync(i) > fleet.made - timedelta(hours=1))
    stale = stalest(fleet, 1)[0]  # before the sync: it is synced below

    answer = call_webhook(body={"ids": [fresh, stale]}, target="managedDevices")

    assert answer.status == 202
    assert synced_ids(app_env) == [fresh, stale]
    assert app_env.calls("managedDevices.list") == []


@pytest.mark.parametrize(
    ("ids", "status"), [(["ffffffff-0000-4000-8000-0000ffffffff"], 404), ([f"d{i}" for i in range(101)], 400)]
)
def test_unknown_or_too_many_device_ids_are_refused(
    app_env: Emulator, fleet: DeviceFleet, ids: list[str], status: int
) -> None:
    answer = call_webhook(body={"ids": ids}, target="managedDevices")

    assert answer.status == status
    assert app_env.calls("managedDevices.sync") == []


def test_get_reports_counts_not_every_device(app_env: Emulator, fleet: DeviceFleet) -> None:
    every_stale = stalest(fleet, fleet.count)

    answer = call_webhook("GET", target="managedDevices")

    devices = answer.json["targets"]["managedDevices"]
    assert answer.status == 200
    assert devices["listed"] == devices["stale"] == len(every_stale)
    assert devices["toSync"] == 100
    assert [d["id"] for d in devices["stalest"]] == every_stale[:5]
    assert "objects" not in devices


def test_a_device_graph_lists_several_times_is_counted_and_synced_once(app_env: Emulator, fleet: DeviceFleet) -> None:
    app_env.devices = DeviceFleet(2, time_scale=SCALE)
    hours_ago = {0: 30, 1: 40}
    app_env.devices.written = {
        index: (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for index, hours in hours_ago.items()
    }
    app_env.devices.repeated = {0: 3, 1: 2}  # 5 entries of 2 devices

    devices = call_webhook("GET", target="managedDevices").json["targets"]["managedDevices"]
    answer = call_webhook(target="managedDevices")

    assert (devices["listed"], devices["stale"], devices["toSync"]) == (2, 2, 2)
    assert answer.json["summary"] == {"accepted": 2, "failed": 0, "skipped": 0}
    assert sorted(synced_ids(app_env)) == [DeviceFleet.device_id(0), DeviceFleet.device_id(1)]


@pytest.mark.parametrize(
    ("written", "stale"),
    [
        ("{hour_ago}z", False),  # RFC 3339 allows a lower-case z: synced an hour ago, not never
        ("{hour_ago}Z".replace("T", "t"), False),
        ("{day_and_more_ago}z", True),
        ("9999-12-31T23:59:59-01:00", False),  # past the end of year 9999 in UTC
        ("9999-12-31T23:59:59.9999999Z", False),
    ],
)
def test_a_last_sync_in_any_rfc_3339_form_decides_staleness_without_failing_the_run(
    app_env: Emulator, fleet: DeviceFleet, written: str, stale: bool
) -> None:
    fleet.ignore_filters = True  # the app's own check alone decides
    now = datetime.now(timezone.utc)
    fleet.written[0] = written.format(
        hour_ago=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        day_and_more_ago=(now - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    every_stale = {fleet.device_id(i) for i in range(1, fleet.count) if fleet.last_sync(i) < now - timedelta(hours=24)}

    devices = call_webhook("GET", target="managedDevices").json["targets"]["managedDevices"]
    answer = call_webhook(target="managedDevices")

    assert devices["stale"] == len(every_stale) + stale
    assert answer.status == 202
    assert answer.json["summary"]["accepted"] == 100


@pytest.mark.parametrize(
    ("roles", "missing"), [((MANAGED_READ_ROLE,), PRIVILEGED_ROLE), ((PRIVILEGED_ROLE,), MANAGED_READ_ROLE)]
)
def test_each_missing_device_permission_is_named(
    app_env: Emulator, fleet: DeviceFleet, roles: tuple[str, ...], missing: str
) -> None:
    app_env.roles = roles

    answer = call_webhook(target="managedDevices")

    assert answer.status == 502
    assert answer.json["error"]["code"] == "graphForbidden"
    assert missing in answer.json["error"]["remedy"]


def app_peak_listing(devices: int) -> tuple[int, int, int]:
    """In a fresh process that runs only the app (the emulator stays here): listed, to sync, peak RSS in MiB."""
    with Emulator(devices=DeviceFleet(devices), roles=(MANAGED_READ_ROLE,)) as emulator:
        script = textwrap.dedent(
            """
            import resource
            from tests.conftest import call_webhook
            devices = call_webhook("GET", target="managedDevices").json["targets"]["managedDevices"]
            print(devices["listed"], devices["toSync"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            """
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAPH_", "IDENTITY_", "SYNC_", "DEVICE_"))}
        env |= {
            "GRAPH_ENDPOINT": emulator.url,
            "IDENTITY_ENDPOINT": emulator.identity_endpoint,
            "IDENTITY_HEADER": emulator.identity_header,
            "NO_PROXY": "127.0.0.1",
            "SYNC_TARGETS": "managedDevices",
            "EXPIRY_WARNING_DAYS": "0",
        }
        done = subprocess.run(  # noqa: S603 - this interpreter, this script
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=True, cwd=ROOT, env=env
        )
    listed, to_sync, peak = map(int, done.stdout.split())
    return listed, to_sync, peak


def test_memory_stays_flat_listing_100000_devices() -> None:
    """The benchmark holds the target (under 10 MiB of growth); this keeps a grosser regression out of main."""
    small = app_peak_listing(1_000)
    large = app_peak_listing(100_000)

    assert large[0] > 70_000
    assert small[1] == large[1] == 100
    assert large[2] - small[2] < 20


@pytest.mark.parametrize(
    "written",
    [
        "2026-11-20T08:30:00Z",
        "2026-11-20T08:30:00.1234567Z",
        "2026-11-20T09:30:00+01:00",
        "2026-11-20T03:30:00.5-05:00",
        "2026-11-20T08:30:00",
    ],
)
def test_a_last_sync_in_any_iso_form_is_read_as_the_same_time(written: str) -> None:
    """Graph's own form is read by slicing (it runs once per device); any other is parsed, to the same number."""
    assert _sync_key(written) == 20261120083000
    assert _sync_key("0001-01-01T00:00:00Z") < _sync_key(written)
    assert _sync_key(None) == _sync_key("garbage") == 0
    assert _sync_key(written.replace("T", "t").replace("Z", "z")) == 20261120083000
