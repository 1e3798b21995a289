"""WEBHOOK_HMAC_SECRET: every request is signed (Standard Webhooks, or GitHub's X-Hub-Signature-256), nothing
unsigned chooses the action, and a captured Standard Webhooks request cannot be replayed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import call_webhook
from tests.emulator import Emulator

SECRET = "webhook-secret-1f2e3d4c5b6a"
BODY = json.dumps({"syncType": "fullSync"}).encode()


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def signed(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("WEBHOOK_HMAC_SECRET", SECRET)
    return app_env


def test_correctly_signed_request_syncs(signed: Emulator) -> None:
    answer = call_webhook(body=BODY, headers={"X-Hub-Signature-256": signature(BODY)})

    assert answer.status == 202
    assert len(signed.calls("sync")) == 2


def test_header_name_and_hex_case_do_not_matter(signed: Emulator) -> None:
    answer = call_webhook(body=BODY, headers={"x-hub-signature-256": signature(BODY).upper().replace("SHA", "sha")})

    assert answer.status == 202


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        signature(b'{"syncType": "deltaSync"}'),
        signature(BODY, secret="another-secret"),
        signature(BODY)[len("sha256=") :],
        "sha1=" + hashlib.sha1(BODY).hexdigest(),  # noqa: S324 - a wrong scheme on purpose
        "sha256=é",
    ],
    ids=["missing", "empty", "other-body", "other-secret", "no-prefix", "sha1", "non-ascii"],
)
def test_missing_or_wrong_signature_is_401_and_reaches_no_graph(signed: Emulator, header: str | None) -> None:
    answer = call_webhook(body=BODY, headers={} if header is None else {"X-Hub-Signature-256": header})

    assert answer.status == 401
    assert answer.json["error"]["code"] == "invalidSignature"
    assert answer.json["error"]["field"] == "X-Hub-Signature-256"
    assert signed.calls() == []
    if header is None:
        assert "webhook-signature" in answer.json["error"]["message"]


def test_signature_covers_the_raw_bytes_not_the_json(signed: Emulator) -> None:
    reformatted = json.dumps({"syncType": "fullSync"}, indent=2).encode()

    answer = call_webhook(body=reformatted, headers={"X-Hub-Signature-256": signature(BODY)})

    assert answer.status == 401


def test_unsigned_bad_json_is_refused_before_it_is_parsed(signed: Emulator) -> None:
    assert call_webhook(body=b"{not json").status == 401


def test_connector_state_needs_a_signature_too(signed: Emulator) -> None:
    assert call_webhook("GET").status == 401
    assert call_webhook("GET", headers={"X-Hub-Signature-256": signature(b"")}).status == 200


def test_oversized_body_is_413_before_the_signature_is_computed(signed: Emulator) -> None:
    assert call_webhook(body=b"x" * 70_000).status == 413


def test_without_a_secret_no_signature_is_needed(app_env: Emulator) -> None:
    assert call_webhook(body=BODY).status == 202


STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode()
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"


def standard_headers(body: bytes, secret: str = STANDARD_SECRET, *, at: float | None = None) -> dict[str, str]:
    """Headers as the Standard Webhooks reference library signs them: a sender no one here wrote."""
    webhook_id = f"msg_{secrets.token_hex(8)}"
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=timezone.utc)
    signature = Webhook(secret).sign(webhook_id, when, body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}


@pytest.fixture
def standard(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("WEBHOOK_HMAC_SECRET", STANDARD_SECRET)
    return app_env


def test_standard_webhooks_signature_from_the_reference_library_syncs(standard: Emulator) -> None:
    answer = call_webhook(body=BODY, headers=standard_headers(BODY))

    assert answer.status == 202
    assert [r.json() for r in standard.calls("sync")] == [{"syncType": "fullSync"}] * 2


def test_standard_webhooks_secret_without_the_whsec_prefix_is_read_the_same_way(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_HMAC_SECRET", STANDARD_SECRET.removeprefix("whsec_"))

    assert call_webhook(body=BODY, headers=standard_headers(BODY)).status == 202


def test_one_of_several_signatures_may_match(standard: Emulator) -> None:
    headers = standard_headers(BODY)
    headers["webhook-signature"] = f"v1,{base64.b64encode(b'x' * 32).decode()} {headers['webhook-signature']}"

    assert call_webhook(body=BODY, headers=headers).status == 202


def test_captured_standard_webhooks_request_cannot_be_replayed(standard: Emulator) -> None:
    headers = standard_headers(BODY)
    assert call_webhook(body=BODY, headers=headers).status == 202

    replayed = call_webhook(body=BODY, headers={**headers, "X-Hub-Signature-256": signature(BODY, STANDARD_SECRET)})

    assert replayed.status == 401
    assert replayed.json["error"]["field"] == "webhook-id"
    assert len(standard.calls("sync")) == 2


def test_a_delivery_answered_5xx_may_be_retried_with_the_same_webhook_id(standard: Emulator) -> None:
    """Standard Webhooks senders retry a failed delivery with the same id; our 503 asked them to."""
    standard.fault("sync", status=429, headers={"Retry-After": "120"})
    headers = standard_headers(BODY)
    first = call_webhook(body=BODY, headers=headers)

    retried = call_webhook(body=BODY, headers=headers)
    replayed = call_webhook(body=BODY, headers=headers)

    assert first.status == 503
    assert retried.status == 202
    assert (replayed.status, replayed.json["error"]["field"]) == (401, "webhook-id")


def test_a_delivery_answered_4xx_is_not_taken_again(standard: Emulator) -> None:
    body = b'{"syncType": "everything"}'
    headers = standard_headers(body)
    assert call_webhook(body=body, headers=headers).status == 400

    replayed = call_webhook(body=body, headers=headers)

    assert (replayed.status, replayed.json["error"]["field"]) == (401, "webhook-id")


def test_a_retry_while_the_first_delivery_is_handled_is_409_and_sends_nothing(standard: Emulator) -> None:
    release = threading.Event()
    standard.fault("sync", hold=release)
    headers = standard_headers(BODY)
    first: list[int] = []
    sender = threading.Thread(target=lambda: first.append(call_webhook(body=BODY, headers=headers).status))
    sender.start()
    deadline = time.monotonic() + 20
    while not standard.calls("sync") and time.monotonic() < deadline:
        time.sleep(0.01)

    meanwhile = call_webhook(body=BODY, headers=headers)
    release.set()
    sender.join(30)

    assert (meanwhile.status, meanwhile.json["error"]["field"]) == (409, "webhook-id")
    assert first == [202]
    assert len(standard.calls("sync")) == 2


@pytest.mark.parametrize("offset", [-310, 310, -3600])  # 10 s outside: a busy machine takes time to answer
def test_standard_webhooks_timestamp_outside_five_minutes_is_refused(standard: Emulator, offset: int) -> None:
    answer = call_webhook(body=BODY, headers=standard_headers(BODY, at=time.time() + offset))

    assert answer.status == 401
    assert answer.json["error"]["field"] == "webhook-timestamp"
    assert standard.calls() == []


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        ({"webhook-signature": "v1,AAAA"}, "webhook-signature"),
        ({"webhook-signature": "v2,xyz"}, "webhook-signature"),
        ({"webhook-signature": "v1,not base64!"}, "webhook-signature"),
        ({"webhook-timestamp": "yesterday"}, "webhook-timestamp"),
        ({"webhook-timestamp": "9" * 40}, "webhook-timestamp"),
        ({"webhook-id": ""}, "webhook-id"),
    ],
)
def test_spoilt_standard_webhooks_headers_are_401_naming_the_header(
    standard: Emulator, spoil: dict[str, str], field: str
) -> None:
    answer = call_webhook(body=BODY, headers={**standard_headers(BODY), **spoil})

    assert answer.status == 401
    assert answer.json["error"]["field"] == field
    assert standard.calls() == []


def test_standard_webhooks_signature_of_another_body_is_refused(standard: Emulator) -> None:
    other = json.dumps({"syncType": "deltaSync", "connectorIds": [B]}).encode()

    answer = call_webhook(body=other, headers=standard_headers(BODY))

    assert answer.status == 401
    assert standard.calls() == []


@pytest.mark.parametrize("params", [{"syncType": "fullSync"}, {"connectorId": B}, {"anything": "1"}])
def test_with_a_secret_query_parameters_other_than_the_key_are_refused(
    signed: Emulator, params: dict[str, str]
) -> None:
    """A signed empty body replayed with ?syncType=fullSync&connectorId=<other> must not choose the action."""
    answer = call_webhook(body=b"", params=params, headers={"X-Hub-Signature-256": signature(b"")})

    assert answer.status == 400
    assert answer.json["error"]["field"] == next(iter(params))
    assert signed.calls() == []


def test_with_a_secret_the_function_key_may_still_come_in_the_query(signed: Emulator) -> None:
    answer = call_webhook(body=BODY, params={"code": "another-key"}, headers={"X-Hub-Signature-256": signature(BODY)})

    assert answer.status == 202


def test_without_a_secret_query_parameters_still_choose_the_action(app_env: Emulator) -> None:
    answer = call_webhook(params={"syncType": "fullSync", "connectorId": B})

    assert answer.status == 202
    assert [r.json() for r in app_env.calls("sync")] == [{"syncType": "fullSync"}]
