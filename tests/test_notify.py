"""Notifications: a Teams workflow's Adaptive Card and a signed webhook, sent only when a tenant's findings change,
remembered in the store (Azurite), delivered inside the run's budget, and never in a log."""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from shared.cli import main as cli_main
from shared.errors import ConfigurationError
from tests.conftest import empty_tables, fire_timer
from tests.emulator import Emulator, apns_certificate
from tests.emulator.receiver import Answer, Receiver
from tests.functions_host.storage import Azurite

APNS = "applePushNotificationCertificate"
SIGNATURE = "teams-workflow-sig-0123456789"
SECRET = "whsec_" + base64.b64encode(b"notification-signing-key-32bytes").decode()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver().running() as running:
        yield running


@pytest.fixture
def watched(app_env: Emulator, azurite: Azurite, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """A tenant whose push certificate expires in 10 days, its results stored, both destinations set."""
    empty_tables(azurite)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("NOTIFY_TEAMS_WEBHOOK_URL", receiver.url(f"/workflows/run?sig={SIGNATURE}"))
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url("/hook"))
    monkeypatch.setenv("NOTIFY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WEBSITE_HOSTNAME", "intune-sync.azurewebsites.net")
    app_env.objects[APNS] = {"c": apns_certificate(expires_in_days=10.5)}
    return app_env


def teams(receiver: Receiver) -> list[dict[str, Any]]:
    return [p.json() for p in receiver.posted if p.path.startswith("/workflows/")]


def hooks(receiver: Receiver) -> list[dict[str, Any]]:
    return [p.json() for p in receiver.posted if p.path == "/hook"]


def test_the_first_run_sends_one_message_per_destination(watched: Emulator, receiver: Receiver) -> None:
    fire_timer()

    (message,) = teams(receiver)
    (hook,) = hooks(receiver)
    assert [c["change"] for c in hook["changes"]] == ["new"]
    assert hook["changes"][0]["target"] == APNS
    assert hook["changes"][0]["severity"] == "warning"
    assert hook["statusPage"] == "https://intune-sync.azurewebsites.net/api/status"
    assert message["type"] == "message"


def test_the_teams_message_is_an_adaptive_card_with_the_schemas_required_fields(
    watched: Emulator, receiver: Receiver
) -> None:
    fire_timer()

    (message,) = teams(receiver)
    (attachment,) = message["attachments"]
    card = attachment["content"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["type"] == "AdaptiveCard"
    assert tuple(int(part) for part in card["version"].split(".")) >= (1, 4)
    required = {"TextBlock": ("text",), "FactSet": ("facts",), "Action.OpenUrl": ("url",)}
    for element in [*card["body"], *card.get("actions", [])]:
        assert all(element.get(name) for name in required[element["type"]]), element
    facts = [fact for element in card["body"] if element["type"] == "FactSet" for fact in element["facts"]]
    assert all(set(fact) == {"title", "value"} for fact in facts)
    assert any(fact["title"] == "Fix" and "Push Certificates Portal" in fact["value"] for fact in facts)
    assert card["actions"][0]["url"] == "https://intune-sync.azurewebsites.net/api/status"


def test_the_webhook_message_is_signed_with_standard_webhooks(watched: Emulator, receiver: Receiver) -> None:
    fire_timer()

    (posted,) = [p for p in receiver.posted if p.path == "/hook"]
    Webhook(SECRET).verify(posted.body, posted.headers)  # raises when the signature does not hold


def test_an_identical_second_run_sends_nothing(watched: Emulator, receiver: Receiver) -> None:
    fire_timer()
    fire_timer()

    assert len(receiver.posted) == 2  # the first run's two messages only


def test_crossing_seven_days_and_then_one_day_is_news_each_time(watched: Emulator, receiver: Receiver) -> None:
    fire_timer()
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=6.5)}
    fire_timer()
    fire_timer()
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=0.5)}
    fire_timer()

    changes = [(c["change"], c["severity"]) for hook in hooks(receiver) for c in hook["changes"]]
    assert changes == [("new", "warning"), ("worse", "critical"), ("worse", "critical")]


def test_a_finding_that_clears_is_one_resolved_message(watched: Emulator, receiver: Receiver) -> None:
    fire_timer()
    watched.objects[APNS] = {"c": apns_certificate(expires_in_days=300)}
    fire_timer()
    fire_timer()

    assert [[c["change"] for c in hook["changes"]] for hook in hooks(receiver)] == [["new"], ["resolved"]]


def test_a_receiver_that_fails_gets_the_message_again_at_the_next_run(watched: Emulator, receiver: Receiver) -> None:
    receiver.answers = [Answer(503, {"Retry-After": "0"})] * 6  # every try of both destinations in the first run

    fire_timer()  # the sync does not fail
    fire_timer()

    assert len(hooks(receiver)) == 3 + 1  # three tries, then the next run's delivery
    assert [c["change"] for c in hooks(receiver)[-1]["changes"]] == ["new"]


def test_a_receiver_that_throttles_is_tried_again_after_its_retry_after(
    watched: Emulator, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_WEBHOOK_URL")
    receiver.answers = [Answer(429, {"Retry-After": "1"})]

    fire_timer()
    fire_timer()

    assert len(receiver.posted) == 2  # the throttled try and the one after it; the second run had nothing new


def test_a_receiver_that_hangs_never_holds_the_run_past_its_budget(
    watched: Emulator, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", "5")
    monkeypatch.delenv("NOTIFY_WEBHOOK_URL")
    receiver.answers = [Answer(202, hold=30)]

    started = time.monotonic()
    fire_timer()
    elapsed = time.monotonic() - started

    assert elapsed < 5 + 2
    receiver.answers = []
    fire_timer()
    assert len(teams(receiver)) == 2  # not marked sent: sent again by the next run


def test_no_destination_url_or_signature_reaches_any_log(
    watched: Emulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("", "urllib3", "azure", "shared"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    receiver.answers = [Answer(500)]

    fire_timer()

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SIGNATURE not in text
    assert "/workflows/run" not in text
    assert "notification-signing-key" not in text


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("NOTIFY_TEAMS_WEBHOOK_URL", "http://example.com/workflows/run?sig=abcdef123456"),
        ("NOTIFY_WEBHOOK_URL", "ftp://example.com/x"),
        ("NOTIFY_WEBHOOK_SECRET", "not-a-whsec-key"),
    ],
)
def test_a_wrong_destination_is_a_configuration_error_that_does_not_repeat_it(
    watched: Emulator, monkeypatch: pytest.MonkeyPatch, setting: str, value: str
) -> None:
    monkeypatch.setenv(setting, value)

    with pytest.raises(ConfigurationError) as failed:
        fire_timer()

    assert failed.value.setting == setting
    assert value not in str(failed.value)


def test_doctor_notify_test_sends_one_message_to_each_destination_and_reports_it(
    watched: Emulator, receiver: Receiver
) -> None:
    receiver.answers = [Answer(202), Answer(403)]
    out = io.StringIO()

    code = cli_main(["doctor", "--notify-test"], out=out)

    assert code == 1
    assert "ok    notify teams: the test message answered 202" in out.getvalue()
    assert "FAIL  notify webhook: the test message answered 403" in out.getvalue()
    assert hooks(receiver)[0]["type"] == "intune-sync.test"
    assert watched.calls() == []  # no Graph call
