"""Within an instance: concurrent identical syncs are joined; SYNC_MIN_INTERVAL_SECONDS paces each connector."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from shared.coalescing import Deferred, SyncGate
from tests.conftest import Answer, call_webhook, fire_timer, wait_for
from tests.emulator import Emulator

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"


def concurrently(emulator: Emulator, bodies: list[dict], **fault: object) -> list[Answer]:
    """The first request's sync is held in flight at Graph (with ``fault``) while the others arrive; it is let go
    once every other request has read its objects, the last step before the sync itself."""
    release = threading.Event()
    emulator.fault("sync", hold=release, **fault)
    answers: list[Answer | None] = [None] * len(bodies)

    def post(index: int) -> None:
        answers[index] = call_webhook(body=bodies[index])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    threads[0].start()
    wait_for(lambda: len(emulator.calls("sync")) == 1, "the first sync to reach Graph")
    for thread in threads[1:]:
        thread.start()
    wait_for(lambda: len(emulator.calls("list")) == len(bodies), "every request to read its objects")
    time.sleep(0.3)  # from the listing's answer to the gate is a few lines of Python
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def test_requests_arriving_during_a_sync_join_it_and_share_its_result(app_env: Emulator) -> None:
    answers = concurrently(app_env, [{"connectorIds": [A]}] * 5)

    assert [a.status for a in answers] == [202] * 5
    assert len(app_env.calls("sync")) == 1
    results = [a.json["connectors"][0] for a in answers]
    assert len({r["requestId"] for r in results}) == 1
    assert [r["coalesced"] for r in results] == [False, True, True, True, True]
    assert app_env.most_syncs_in_flight == {A: 1}


def test_different_sync_types_are_not_joined(app_env: Emulator) -> None:
    concurrently(
        app_env, [{"connectorIds": [A], "syncType": "deltaSync"}, {"connectorIds": [A], "syncType": "fullSync"}]
    )

    assert sorted(r.json()["syncType"] for r in app_env.calls("sync")) == ["deltaSync", "fullSync"]


def test_joined_requests_share_a_failure_too(app_env: Emulator) -> None:
    answers = concurrently(app_env, [{"connectorIds": [A]}] * 3, status=500)

    assert [a.status for a in answers] == [502] * 3
    assert len(app_env.calls("sync")) == 1


def test_repeat_sync_within_the_minimum_interval_is_skipped_with_when_it_is_allowed(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_MIN_INTERVAL_SECONDS", "60")
    call_webhook(body={"connectorIds": [A]})

    answer = call_webhook(body={"connectorIds": [A]})

    result = answer.json["connectors"][0]
    assert answer.status == 202
    assert result["outcome"] == "skipped"
    assert "SYNC_MIN_INTERVAL_SECONDS" in result["message"]
    allowed = datetime.fromisoformat(result["nextAllowedAt"])
    expected = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert abs((allowed - expected).total_seconds()) < 5
    assert len(app_env.calls("sync")) == 1


def test_minimum_interval_is_per_connector(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_MIN_INTERVAL_SECONDS", "60")
    call_webhook(body={"connectorIds": [A]})

    answer = call_webhook()

    assert [c["outcome"] for c in answer.json["connectors"]] == ["skipped", "accepted"]


def test_a_failed_sync_does_not_start_the_interval(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_MIN_INTERVAL_SECONDS", "60")
    app_env.fault("sync", status=500)
    call_webhook(body={"connectorIds": [A]})

    answer = call_webhook(body={"connectorIds": [A]})

    assert answer.json["connectors"][0]["outcome"] == "accepted"
    assert len(app_env.calls("sync")) == 2


def test_interval_is_off_by_default(app_env: Emulator) -> None:
    call_webhook(body={"connectorIds": [A]})
    call_webhook(body={"connectorIds": [A]})

    assert len(app_env.calls("sync")) == 2


def test_timer_paced_by_the_interval_does_not_fail(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SYNC_MIN_INTERVAL_SECONDS", "60")
    call_webhook()
    caplog.set_level(logging.INFO, logger="shared")

    fire_timer()

    assert "0 accepted, 0 failed, 2 skipped" in caplog.text
    assert len(app_env.calls("sync")) == 2


def test_the_gate_remembers_nothing_without_an_interval_and_only_the_interval_with_one() -> None:
    gate: SyncGate[str] = SyncGate(most_remembered=2)
    for name in ("a", "b", "c"):
        gate.submit(name, None, lambda: "ok", accepted=lambda _: True)
    assert len(gate) == 0

    for name in ("a", "b"):
        gate.submit(name, None, lambda: "ok", accepted=lambda _: True, min_interval=0.05)
    time.sleep(0.06)  # a lower bound only: both are older than the interval from now on
    gate.submit("c", None, lambda: "ok", accepted=lambda _: True, min_interval=0.05)

    assert len(gate) == 1
    assert isinstance(gate.submit("c", None, lambda: "again", accepted=lambda _: True, min_interval=60), Deferred)
