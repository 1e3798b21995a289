"""Retries, throttling, timeouts and Graph error bodies, seen through the webhook against the emulator."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from email.utils import formatdate
from pathlib import Path

import pytest

from shared.errors import SyncFailed
from tests.conftest import call_webhook, fire_timer
from tests.emulator import CONNECTORS_PATH, Emulator

ROOT = Path(__file__).resolve().parent.parent

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
ONE = {"connectorIds": [A]}


@pytest.fixture
def configured(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """One configured connector, so each test sees only sync calls."""
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", A)
    return app_env


def gaps(emulator: Emulator) -> list[float]:
    times = [r.at for r in emulator.calls("sync")]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_throttled_sync_waits_for_retry_after_seconds(configured: Emulator) -> None:
    configured.fault("sync", status=429, code="TooManyRequests", headers={"Retry-After": "1"})

    answer = call_webhook(body=ONE)

    assert answer.status == 202
    assert len(configured.calls("sync")) == 2
    assert gaps(configured)[0] >= 0.95


def test_retry_after_given_as_an_http_date_is_honoured(configured: Emulator) -> None:
    configured.fault("sync", status=503, headers={"Retry-After": formatdate(timeval=None, usegmt=True)})

    answer = call_webhook(body=ONE)

    assert answer.status == 202
    assert len(configured.calls("sync")) == 2


def planned_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The pauses the app chose before each retry, as its log lines say them (a busy machine can only lengthen
    the pauses that follow, never change what was chosen)."""
    return [float(found) for found in re.findall(r"; retry \d+ in ([\d.]+) s", caplog.text)]


def test_throttling_without_retry_after_backs_off_exponentially(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GRAPH_RETRY_BACKOFF_SECONDS", "0.2")
    configured.fault("sync", status=429, code="TooManyRequests", times=3)

    answer = call_webhook(body=ONE)

    assert answer.status == 202
    chosen = planned_waits(caplog)
    # Each pause lies in [ceiling/2, ceiling] with the ceiling doubling: 0.2, 0.4, 0.8 s (logged to 0.1 s).
    assert len(chosen) == 3
    assert 0.1 <= chosen[0] <= 0.2
    assert 0.2 <= chosen[1] <= 0.4
    assert 0.4 <= chosen[2] <= 0.8
    assert all(waited >= wait - 0.05 for waited, wait in zip(gaps(configured), chosen, strict=True))


@pytest.mark.parametrize("status", [503, 504])
def test_transient_gateway_errors_are_retried(configured: Emulator, status: int) -> None:
    configured.fault("sync", status=status, times=2)

    answer = call_webhook(body=ONE)

    assert answer.status == 202
    assert len(configured.calls("sync")) == 3


@pytest.mark.parametrize(("status", "answered"), [(400, 502), (403, 502), (404, 404), (500, 502)])
def test_client_errors_are_never_retried(configured: Emulator, status: int, answered: int) -> None:
    configured.fault("sync", status=status, code="Refused")

    answer = call_webhook(body=ONE)

    assert answer.status == answered
    assert len(configured.calls("sync")) == 1
    assert answer.json["connectors"][0]["graphStatus"] == status


def test_retries_stop_after_graph_max_retries(configured: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "2")
    configured.fault("sync", status=504, times=10)

    answer = call_webhook(body=ONE)

    assert answer.status == 502
    assert len(configured.calls("sync")) == 3
    assert "gave up after 3 attempts" in answer.json["connectors"][0]["message"]


def test_throttling_that_outlasts_the_retries_is_503_with_graphs_retry_after(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "1")
    configured.fault("sync", status=429, headers={"Retry-After": "0"}, times=2)

    answer = call_webhook(body=ONE)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "1"
    assert len(configured.calls("sync")) == 2


def test_retry_after_beyond_the_time_budget_answers_at_once(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", "5")
    configured.fault("sync", status=429, headers={"Retry-After": "7"})

    answer = call_webhook(body=ONE)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "7"
    assert len(configured.calls("sync")) == 1
    assert "would exceed the time budget" in answer.json["error"]["message"]


def test_dropped_connection_is_retried(configured: Emulator) -> None:
    configured.fault("sync", drop=True)

    answer = call_webhook(body=ONE)

    assert answer.status == 202
    assert len(configured.calls("sync")) == 2


def test_connection_dropped_during_the_answer_is_retried(app_env: Emulator) -> None:
    app_env.fault("list", drop_midway=True)

    answer = call_webhook()

    assert answer.status == 202
    assert len(app_env.calls("list")) == 2


def test_answer_slower_than_the_timeout_is_abandoned_and_retried(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "1")
    first_answer = threading.Event()
    configured.fault("sync", hold=first_answer)  # Graph's first answer comes only when the test lets it

    answer = call_webhook(body=ONE)
    retried_while_held = not first_answer.is_set() and len(configured.calls("sync")) == 2
    first_answer.set()

    assert answer.status == 202
    assert retried_while_held
    assert gaps(configured)[0] >= 0.95


def test_graph_that_never_answers_in_time_is_reported_within_the_budget(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "1")
    configured.fault("sync", delay=1.5, times=2)

    answer = call_webhook(body=ONE)

    assert answer.status == 502
    assert answer.json["connectors"][0]["errorCode"] == "graphUnreachable"
    assert "timed out" in answer.json["connectors"][0]["message"]


@pytest.mark.parametrize("inner_key", ["innerError", "innererror"])
def test_graph_error_body_reaches_the_report(configured: Emulator, inner_key: str) -> None:
    configured.fault("sync", status=400, code="BadRequest", message="Connector is offline", inner_error_key=inner_key)

    answer = call_webhook(body=ONE)

    reported = answer.json["connectors"][0]
    sent = configured.calls("sync")[0]
    assert reported["errorCode"] == "graphError"
    assert reported["graphErrorCode"] == "BadRequest"
    assert "Connector is offline" in reported["message"]
    assert reported["clientRequestId"] == sent.header("client-request-id")
    assert reported["requestId"]


def test_request_id_is_taken_from_the_error_body_when_the_header_is_missing(configured: Emulator) -> None:
    body = b'{"error": {"code": "Gone", "message": "x", "innererror": {"request-id": "body-request-id"}}}'
    configured.fault("sync", status=410, body=body, headers={"request-id": ""})

    answer = call_webhook(body=ONE)

    assert answer.json["connectors"][0]["requestId"] == "body-request-id"


def test_error_answer_that_is_not_json_is_still_a_clear_failure(configured: Emulator) -> None:
    configured.fault("sync", status=502, body=b"<html>Bad gateway</html>", headers={"Content-Type": "text/html"})

    answer = call_webhook(body=ONE)

    assert answer.status == 502
    assert answer.json["connectors"][0]["message"] == "Graph answered 502"


def test_malformed_list_answer_is_a_clear_502(app_env: Emulator) -> None:
    app_env.fault("list", body=b'{"value": "not a list"}')

    answer = call_webhook()

    assert answer.status == 502
    assert answer.json["error"]["code"] == "graphProtocolError"


def test_list_answer_that_is_not_json_is_a_clear_502(app_env: Emulator) -> None:
    app_env.fault("list", body=b"{truncated")

    answer = call_webhook()

    assert answer.status == 502
    assert "not JSON" in answer.json["error"]["message"]


@pytest.mark.parametrize("status", [200, 500])
def test_absurdly_nested_json_from_graph_is_a_clear_502(app_env: Emulator, status: int) -> None:
    app_env.fault("list", status=status, body=b"[" * 100_000 + b"]" * 100_000)

    answer = call_webhook()

    assert answer.status == 502
    assert answer.json["error"]["code"] in ("graphProtocolError", "graphError")


def test_paging_link_to_another_host_is_never_followed(app_env: Emulator) -> None:
    app_env.fault("list", body=b'{"value": [], "@odata.nextLink": "https://attacker.example/v1.0/deviceManagement/x"}')

    answer = call_webhook()

    assert answer.status == 502
    assert "refusing to send the token" in answer.json["error"]["message"]
    assert len(app_env.calls("list")) == 1


def test_listed_connector_with_an_unsafe_id_is_skipped_not_used(app_env: Emulator) -> None:
    app_env.connectors["../../users"] = {"id": "../../users", "status": "connected"}

    answer = call_webhook()

    assert answer.status == 202
    assert len(app_env.calls("sync")) == 2
    assert all("users" not in r.path for r in app_env.calls("sync"))


def test_unauthorized_names_the_token_audience_and_the_identity(configured: Emulator) -> None:
    configured.fault(
        "sync", status=401, code="InvalidAuthenticationToken", message="Access token has expired.", times=2
    )

    answer = call_webhook(body=ONE)

    message = answer.json["connectors"][0]["message"]
    assert answer.status == 502
    assert f"the token was for audience {configured.url}" in message
    assert "from the system-assigned managed identity" in message
    assert len(configured.calls("sync")) == 2


def test_held_token_refused_with_401_is_replaced_once_and_the_call_tried_again(configured: Emulator) -> None:
    call_webhook(body=ONE)
    configured.fault("sync", status=401, code="InvalidAuthenticationToken", message="Access token has expired.")

    answer = call_webhook(body=ONE)

    refused, retried = configured.calls("sync")[1:]
    assert answer.status == 202
    assert len(configured.calls("identity")) == 2
    assert refused.header("authorization") != retried.header("authorization")
    assert retried.header("authorization") == f"Bearer {configured.tokens[-1].value}"


UNUSABLE_RETRY_AFTER = ["Mon, 01 Jan 99999999 00:00:00 GMT", "9" * 5000, "-5", "soon", "1e9", "86401", "0x10", " "]


@pytest.mark.parametrize("value", UNUSABLE_RETRY_AFTER, ids=range(len(UNUSABLE_RETRY_AFTER)))
def test_unusable_retry_after_is_treated_as_absent(
    configured: Emulator, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    configured.fault("sync", status=429, code="TooManyRequests", headers={"Retry-After": value})

    answer = call_webhook(body=ONE)

    assert answer.status == 202
    assert len(configured.calls("sync")) == 2
    assert planned_waits(caplog) == [0.0]  # the backoff (0.01 s here), not the header


@pytest.mark.parametrize("value", UNUSABLE_RETRY_AFTER[:3], ids=range(3))
def test_throttling_with_unusable_retry_after_answers_with_the_default_wait(
    configured: Emulator, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "0")
    configured.fault("sync", status=429, code="TooManyRequests", headers={"Retry-After": value})

    answer = call_webhook(body=ONE)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "30"


def test_unusable_retry_after_never_stops_the_timer_before_the_next_connector(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "0")
    app_env.fault("sync", status=500, headers={"Retry-After": "9" * 5000})

    with pytest.raises(SyncFailed):
        fire_timer()

    assert len(app_env.calls("sync")) == 2


@pytest.mark.parametrize(
    "fault",
    [{"size": 300_000_000}, {"size": 300_000_000, "chunked": True}, {"size": 300_000_000, "gzip": True}],
    ids=["declared", "chunked", "gzip"],
)
def test_oversized_graph_answer_is_a_clear_502_and_is_not_read_whole(
    app_env: Emulator, fault: dict[str, object]
) -> None:
    app_env.fault("list", **fault)

    answer = call_webhook()

    assert answer.status == 502
    assert answer.json["error"]["code"] == "graphProtocolError"
    assert "MiB" in answer.json["error"]["message"] or "declares" in answer.json["error"]["message"]
    assert len(app_env.calls("list")) == 1


@pytest.mark.parametrize("fault", [{"size": 300_000_000, "chunked": True}, {"size": 300_000_000, "gzip": True}])
def test_oversized_identity_answer_is_identity_unavailable(app_env: Emulator, fault: dict[str, object]) -> None:
    app_env.fault("identity", **fault, times=10)

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["code"] == "identityUnavailable"
    assert "larger than 4 MiB" in answer.json["error"]["message"]
    assert app_env.graph_calls() == []


def test_memory_stays_flat_whatever_size_the_answers_claim() -> None:
    """In a fresh process: 300 MB from Graph (chunked, and as gzip) and from the identity endpoint, then the peak."""
    script = textwrap.dedent(
        """
        import os, resource
        from tests.conftest import call_webhook
        from tests.emulator import Emulator
        with Emulator() as emu:
            os.environ.update(GRAPH_ENDPOINT=emu.url, IDENTITY_ENDPOINT=emu.identity_endpoint,
                              IDENTITY_HEADER=emu.identity_header, NO_PROXY="127.0.0.1", GRAPH_MAX_RETRIES="0")
            emu.fault("identity", size=300_000_000, chunked=True, times=3)
            first = call_webhook().status
            emu.fault("list", size=300_000_000, chunked=True)
            emu.fault("list", size=300_000_000, gzip=True)
            statuses = [first, call_webhook().status, call_webhook().status]
        print(statuses, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GRAPH_ENDPOINT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    done = subprocess.run(  # noqa: S603 - this interpreter, this script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT, env=env
    )
    statuses, peak_mib = done.stdout.strip().rsplit(" ", 1)

    assert statuses == "[503, 502, 502]"
    assert int(peak_mib) < 150


def test_object_listed_twice_across_pages_is_synced_once(app_env: Emulator) -> None:
    app_env.page_size = 1
    first = json.dumps(
        {"value": [app_env.connectors[A]], "@odata.nextLink": f"{app_env.url}{CONNECTORS_PATH}?$skiptoken=0"}
    )
    app_env.fault("list", body=first.encode())

    answer = call_webhook()

    assert answer.status == 202
    assert len(app_env.calls("list")) == 3
    assert sorted(r.path.split("/")[-2] for r in app_env.calls("sync")) == sorted(app_env.connectors)


def test_paging_link_already_followed_stops_the_listing_at_once(app_env: Emulator) -> None:
    back_to_start = {"value": [], "@odata.nextLink": f"{app_env.url}{CONNECTORS_PATH}?$skiptoken=7"}
    app_env.fault("list", body=json.dumps(back_to_start).encode())
    back_to_start["@odata.nextLink"] = f"{app_env.url}{CONNECTORS_PATH}"
    app_env.fault("list", body=json.dumps(back_to_start).encode())

    answer = call_webhook()

    assert answer.status == 502
    assert answer.json["error"]["code"] == "graphProtocolError"
    assert "already read" in answer.json["error"]["message"]
    assert len(app_env.calls("list")) == 2
    assert app_env.calls("sync") == []


def test_paging_link_with_the_host_in_capitals_stays_on_graph(app_env: Emulator) -> None:
    app_env.page_size = 1
    shouting = app_env.url.replace("http://", "HTTP://")
    app_env.fault(
        "list",
        body=json.dumps({"value": [], "@odata.nextLink": f"{shouting}{CONNECTORS_PATH}?$skiptoken=0"}).encode(),
    )

    answer = call_webhook()

    assert answer.status == 202
    assert len(app_env.calls("sync")) == 2


def test_retry_lines_leave_out_a_request_id_graph_never_sent(
    configured: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="shared")
    configured.fault("sync", drop=True)

    call_webhook(body=ONE)

    retry_line = next(r.getMessage() for r in caplog.records if "retry 1" in r.getMessage())
    assert "client-request-id=" in retry_line
    assert "request-id=None" not in retry_line
