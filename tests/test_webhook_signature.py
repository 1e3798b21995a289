"""WEBHOOK_HMAC_SECRET: every request must carry X-Hub-Signature-256 of its raw body; the key stays required."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

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
