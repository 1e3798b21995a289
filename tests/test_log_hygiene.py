"""No token, identity header, function key or HMAC secret in any log line or answer, across the whole fault
matrix with every logger at DEBUG (ours, azure, urllib3); and no stack trace at the level the app runs at."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable

import pytest

from shared.errors import SyncAppError
from shared.redaction import remember_token
from tests.conftest import call_webhook, closed_port_url, fire_timer
from tests.emulator import READ_ROLE, Emulator

SECRET = "hmac-secret-7b1c9e2d4f"
FUNCTION_KEY = "function-key-secret"
LOGGERS = (
    "",
    "shared",
    "azure",
    "azure.identity",
    "azure.core.pipeline.policies.http_logging_policy",
    "msal",
    "urllib3",
    "requests",
)

SCENARIOS: dict[str, Callable[[Emulator, pytest.MonkeyPatch], object]] = {
    "accepted": lambda emu, mp: None,
    "forbidden": lambda emu, mp: setattr(emu, "roles", (READ_ROLE,)),
    "throttled then accepted": lambda emu, mp: emu.fault("sync", status=429, headers={"Retry-After": "0"}),
    "throttled past the budget": lambda emu, mp: emu.fault("sync", status=429, headers={"Retry-After": "900"}),
    "503 without retry-after": lambda emu, mp: emu.fault("sync", status=503, times=2),
    "unauthorized": lambda emu, mp: emu.fault("sync", status=401, code="InvalidAuthenticationToken"),
    "dropped": lambda emu, mp: emu.fault("sync", drop=True),
    "dropped mid-answer": lambda emu, mp: emu.fault("list", drop_midway=True),
    "malformed list": lambda emu, mp: emu.fault("list", body=b'{"value": 7}'),
    "slow graph": lambda emu, mp: (mp.setenv("GRAPH_TIMEOUT_SECONDS", "1"), emu.fault("sync", delay=1.2)),
    "identity refused": lambda emu, mp: mp.setenv("IDENTITY_HEADER", "wrong-header"),
    "identity down": lambda emu, mp: mp.setenv("IDENTITY_ENDPOINT", closed_port_url()),
    "identity garbage": lambda emu, mp: emu.fault("identity", body=b"[]", times=10),
    "identity slow": lambda emu, mp: (mp.setenv("GRAPH_TIMEOUT_SECONDS", "1"), emu.fault("identity", delay=1.2)),
    "identity token cut short": lambda emu, mp: emu.fault("identity", token_body="truncated", times=10),
    "identity token with trailing bytes": lambda emu, mp: emu.fault("identity", token_body="trailing", times=10),
    "identity token with CR/LF": lambda emu, mp: emu.fault("identity", token_body="crlf", times=10),
    "identity asks to wait": lambda emu, mp: emu.fault("identity", status=429, headers={"Retry-After": "3600"}),
    "graph echoes the request": lambda emu, mp: emu.fault("sync", status=400, echo_authorization=True, times=10),
    "bad signature": lambda emu, mp: None,
}


def signed(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO], ids=["DEBUG", "INFO"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_reaches_a_log_or_an_answer(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, scenario: str, level: int
) -> None:
    for logger in LOGGERS:
        caplog.set_level(level, logger=logger)
    monkeypatch.setenv("WEBHOOK_HMAC_SECRET", SECRET)
    SCENARIOS[scenario](app_env, monkeypatch)
    body = b'{"syncType": "deltaSync"}'
    post_headers = {"X-Hub-Signature-256": "sha256=00"} if scenario == "bad signature" else signed(body)
    function_key = {"x-functions-key": FUNCTION_KEY}

    answers = [
        call_webhook(body=body, headers={**post_headers, **function_key}).text,
        call_webhook("GET", headers={**signed(b""), **function_key}).text,
    ]
    try:
        fire_timer()
    except SyncAppError as failed:
        answers.append(str(failed))

    secrets = [SECRET, FUNCTION_KEY, app_env.identity_header]
    secrets += [token.value for token in app_env.tokens]
    secrets += [token.value.rsplit(".", 1)[-1] for token in app_env.tokens]  # the signature alone
    seen = caplog.text + "".join(answers)
    assert caplog.records, "the scenario logged nothing: the check would be empty"
    for secret in secrets:
        assert secret not in seen
    if level == logging.INFO:  # azure-identity adds its own tracebacks only when DEBUG is asked for
        assert "Traceback" not in seen


def test_the_identity_header_stays_scrubbed_however_many_tenants_tokens_came_after_it(
    app_env: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    call_webhook()  # the settings are read, and their secrets remembered
    for n in range(1000):
        remember_token(f"a-customer-tenant-token-{n:04d}")

    logging.getLogger("shared").warning("echoed %s and %s", app_env.identity_header, "a-customer-tenant-token-0999")

    assert caplog.records[-1].getMessage() == "echoed <redacted> and <redacted>"


def test_a_storage_connection_strings_account_key_never_reaches_a_log(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "c3RvcmFnZS1hY2NvdW50LWtleS1zZWNyZXQ="
    monkeypatch.setenv("AzureWebJobsStorage", f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={key};")
    call_webhook()

    logging.getLogger("shared").warning("echoed %s", key)

    assert caplog.records[-1].getMessage() == "echoed <redacted>"
