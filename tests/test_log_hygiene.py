"""No token, identity header or function key in any log line or answer, even with every logger at DEBUG;
and no stack trace at the level the app runs at (INFO)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from shared.errors import SyncAppError
from tests.conftest import call_webhook, closed_port_url, fire_timer
from tests.emulator import READ_ROLE, Emulator

SCENARIOS: dict[str, Callable[[Emulator, pytest.MonkeyPatch], None]] = {
    "accepted": lambda emu, mp: None,
    "forbidden": lambda emu, mp: setattr(emu, "roles", (READ_ROLE,)),
    "throttled then accepted": lambda emu, mp: emu.fault("sync", status=429, headers={"Retry-After": "0"}),
    "unauthorized": lambda emu, mp: emu.fault("sync", status=401, code="InvalidAuthenticationToken"),
    "dropped": lambda emu, mp: emu.fault("sync", drop=True),
    "identity refused": lambda emu, mp: mp.setenv("IDENTITY_HEADER", "wrong-header"),
    "identity down": lambda emu, mp: mp.setenv("IDENTITY_ENDPOINT", closed_port_url()),
    "identity garbage": lambda emu, mp: emu.fault("identity", body=b"[]", times=10),
}


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO], ids=["DEBUG", "INFO"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_reaches_a_log_or_an_answer(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, scenario: str, level: int
) -> None:
    for logger in ("", "azure.identity", "azure.core.pipeline.policies.http_logging_policy"):
        caplog.set_level(level, logger=logger)
    secrets = [app_env.identity_header, "function-key-secret"]
    SCENARIOS[scenario](app_env, monkeypatch)

    answers = [call_webhook().text, call_webhook("GET").text]
    try:
        fire_timer()
    except SyncAppError as failed:
        answers.append(str(failed))

    secrets += [token.value for token in app_env.tokens]
    secrets += [token.value.rsplit(".", 1)[-1] for token in app_env.tokens]  # the signature alone
    seen = caplog.text + "".join(answers)
    assert caplog.records, "the scenario logged nothing: the check would be empty"
    for secret in secrets:
        assert secret not in seen
    if level == logging.INFO:  # azure-identity adds its own tracebacks only when DEBUG is asked for
        assert "Traceback" not in seen
