"""Property-based: no request the webhook can receive makes it fail, and no id can steer a Graph URL."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidObjectId
from shared.targets.base import validate_object_id
from tests.conftest import call_webhook
from tests.emulator import Emulator

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
SECRET = "property-secret"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from([A, "unknown-id", "../../users", "a/b", "%2e%2e", "", " ", "x" * 200]) | st.text(max_size=30)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "syncType": st.sampled_from(["deltaSync", "fullSync", "weekly", ""]) | json_values,
        "connectorIds": st.lists(ids, max_size=4) | json_values,
        "extra": json_values,
    },
)
bodies = (
    payloads.map(lambda p: json.dumps(p).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.sampled_from([b"", b"{", b"[" * 5000, b'{"a": NaN}', b'"\\ud800"', b"\xff\xfe", b" \n ", b"x" * 70_000])
)
params = st.dictionaries(st.sampled_from(["syncType", "connectorId", "code", "other"]), ids | st.text(max_size=20))
headers = st.dictionaries(
    st.sampled_from(["X-Hub-Signature-256", "content-type", "x-functions-key"]) | st.text(min_size=1, max_size=10),
    st.text(max_size=80),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["POST"] * 4 + ["GET", "PUT"]), body=bodies, query=params, sent=headers, signed=st.booleans()
)
def test_any_request_is_answered_with_2xx_or_4xx(
    app_env: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    *,
    method: str,
    body: bytes,
    query: dict[str, str],
    sent: dict[str, str],
    signed: bool,
) -> None:
    if signed:
        monkeypatch.setenv("WEBHOOK_HMAC_SECRET", SECRET)
    else:
        monkeypatch.delenv("WEBHOOK_HMAC_SECRET", raising=False)

    answer = call_webhook(method, body=body, params=query, headers=sent)
    event(f"HTTP {answer.status}")

    assert 200 <= answer.status < 500, answer.text
    assert answer.mimetype == "application/json"
    payload = answer.json
    if answer.status >= 400:
        assert payload["error"]["code"] and payload["error"]["message"]


@settings(max_examples=500)
@given(st.text(max_size=200) | st.binary(max_size=50) | st.integers() | st.none())
def test_a_connector_id_that_passes_validation_is_one_plain_path_segment(value: object) -> None:
    try:
        connector_id = validate_object_id(value)
    except InvalidObjectId:
        return

    assert quote(connector_id, safe="") == connector_id
    assert not set(connector_id) & set("/.%?#\\ \t\r\n")
    assert 1 <= len(connector_id) <= 128
