"""GRAPH_TIME_BUDGET_SECONDS is a wall clock for the whole run: every Graph and identity request, every retry and
every wait counts against it, whatever the other side trickles, withholds or asks to wait for."""

from __future__ import annotations

import os
import time

import pytest

from shared.errors import ConfigurationError, IdentityUnavailable, OutOfTime
from shared.graph import Deadline, GraphClient
from shared.settings import parse_settings
from tests.conftest import call_webhook
from tests.emulator import CONNECTORS_PATH, Emulator

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
BUDGET = 5  # the smallest the setting allows
GRACE = 2  # what the README promises on top of the budget
HTTP_LIMIT = 230  # seconds: the Functions front end's limit for an HTTP answer


@pytest.fixture
def budgeted(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", str(BUDGET))
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", A)
    return app_env


@pytest.fixture
def client(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> GraphClient:
    """A client whose per-read timeout (20 s) is far beyond the deadlines used here: only the deadline can stop it."""
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "20")
    return GraphClient(parse_settings(os.environ).graph)


def timed_webhook(**kwargs: object) -> tuple[float, object]:
    started = time.monotonic()
    answer = call_webhook(**kwargs)  # type: ignore[arg-type]
    return time.monotonic() - started, answer


def test_graph_trickling_its_headers_is_cut_off_at_the_budget(budgeted: Emulator) -> None:
    budgeted.fault("sync", status=204, body=b"", trickle=1.0, trickle_headers=True)

    elapsed, answer = timed_webhook(body={"connectorIds": [A]})

    assert elapsed < BUDGET + GRACE
    assert answer.status == 503
    assert answer.json["connectors"][0]["errorCode"] == "timeBudgetExhausted"
    assert answer.headers["Retry-After"]


def test_identity_endpoint_that_never_answers_is_cut_off_at_the_budget(budgeted: Emulator) -> None:
    budgeted.fault("identity", delay=60, times=10)

    elapsed, answer = timed_webhook()

    assert elapsed < BUDGET + GRACE
    assert answer.status == 503
    assert answer.json["error"]["code"] == "identityUnavailable"
    assert "time budget" in answer.json["error"]["message"]
    assert budgeted.graph_calls() == []


def test_graph_trickling_its_body_ends_at_the_deadline(client: GraphClient, app_env: Emulator) -> None:
    app_env.fault("list", body=b'{"value": []}' + b" " * 100, trickle=0.1)

    started = time.monotonic()
    with pytest.raises(OutOfTime):
        client.request("GET", client.url(CONNECTORS_PATH), deadline=Deadline(1.0))

    assert time.monotonic() - started < 1.0 + GRACE


@pytest.mark.parametrize("retry_after", ["60", "3600", "9" * 5000, "Mon, 01 Jan 99999999 00:00:00 GMT"])
@pytest.mark.parametrize("status", [429, 500])
def test_identity_asking_to_wait_past_the_deadline_does_not_park_the_run(
    client: GraphClient, app_env: Emulator, status: int, retry_after: str
) -> None:
    app_env.fault("identity", status=status, headers={"Retry-After": retry_after}, times=10)

    started = time.monotonic()
    with pytest.raises(IdentityUnavailable):
        client.request("GET", client.url(CONNECTORS_PATH), deadline=Deadline(1.5))

    assert time.monotonic() - started < 1.5 + GRACE
    assert app_env.graph_calls() == []


def test_slow_token_leaves_graph_only_what_is_left_of_the_budget(client: GraphClient, app_env: Emulator) -> None:
    app_env.fault("identity", delay=1.0)
    app_env.fault("list", delay=3.0)

    started = time.monotonic()
    with pytest.raises(OutOfTime):
        client.request("GET", client.url(CONNECTORS_PATH), deadline=Deadline(2.0))

    assert time.monotonic() - started < 2.0 + GRACE
    assert len(app_env.calls("list")) == 1


def test_a_deadline_does_not_outlive_its_call(client: GraphClient, app_env: Emulator) -> None:
    """The connection a cut-off call leaves behind is not reused by the next call, and a finished call's
    deadline does not cut the next one short."""
    app_env.fault("list", trickle=0.2)
    with pytest.raises(OutOfTime):
        client.request("GET", client.url(CONNECTORS_PATH), deadline=Deadline(0.5))
    client.request("GET", client.url(CONNECTORS_PATH), deadline=Deadline(5))  # time enough on a busy machine
    time.sleep(5.1)  # past that call's deadline

    answer = client.request("GET", client.url(CONNECTORS_PATH), deadline=Deadline(5))

    assert answer.status == 200


def test_no_allowed_settings_can_outlast_the_http_limit() -> None:
    largest = parse_settings(
        {"GRAPH_TIME_BUDGET_SECONDS": "200", "GRAPH_TIMEOUT_SECONDS": "120", "GRAPH_MAX_RETRIES": "10"}
    )

    assert largest.graph.time_budget + GRACE < HTTP_LIMIT
    with pytest.raises(ConfigurationError, match="GRAPH_TIME_BUDGET_SECONDS"):
        parse_settings({"GRAPH_TIME_BUDGET_SECONDS": "229"})
