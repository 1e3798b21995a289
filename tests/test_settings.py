"""App settings: defaults, national clouds, errors that name the setting, and when they are read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.errors import ConfigurationError
from shared.settings import SETTING_NAMES, STORAGE_SETTINGS, parse_settings
from shared.targets.exchange_connectors import ConnectorSettings
from tests.conftest import call_webhook
from tests.emulator import Emulator

GUID = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"


def test_defaults_target_global_graph_with_delta_sync_and_the_system_identity() -> None:
    settings = parse_settings({})

    assert settings.options_for("exchangeConnectors") == ConnectorSettings((), "deltaSync")
    assert settings.graph.endpoint == "https://graph.microsoft.com"
    assert settings.graph.scope == "https://graph.microsoft.com/.default"
    assert settings.graph.client_id is None
    assert settings.graph.identity_endpoint is None
    assert (settings.graph.timeout, settings.graph.time_budget, settings.graph.max_retries) == (20, 120, 4)


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn/",
    ],
)
def test_national_cloud_endpoint_sets_the_token_scope(endpoint: str) -> None:
    settings = parse_settings({"GRAPH_ENDPOINT": endpoint})

    assert settings.graph.scope == f"{endpoint.rstrip('/')}/.default"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://graph.microsoft.com",
        "graph.microsoft.com",
        "https://graph.microsoft.com/v1.0",
        "https://graph.microsoft.com?x=1",
        "https://user:pw@graph.microsoft.com",
        "ftp://graph.microsoft.com",
        "https://graph.microsoft.com?",
        "https://graph.microsoft.com#",
        "https://graph.microsoft.com/#top",
        "https://graph.microsoft.com;params",
        "https://graph.microsoft.com/;x",
        "https://@graph.microsoft.com",
        "https://graph.microsoft.com//",
        "https://graph.microsoft.com/v1.0/",
        "https://graph.microsoft.com:notaport",
        "https://graph.microsoft.com:99999",
    ],
)
def test_graph_endpoint_must_be_an_https_root(endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as bad:
        parse_settings({"GRAPH_ENDPOINT": endpoint})

    assert bad.value.setting == "GRAPH_ENDPOINT"


@pytest.mark.parametrize("host", ["127.0.0.1:8099", "localhost:8099"])
def test_plain_http_is_allowed_for_a_loopback_emulator(host: str) -> None:
    assert parse_settings({"GRAPH_ENDPOINT": f"http://{host}"}).graph.endpoint == f"http://{host}"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("https://GRAPH.Microsoft.com", "https://graph.microsoft.com"),
        ("https://Graph.Microsoft.US:443/", "https://graph.microsoft.us:443"),
        ("http://LOCALHOST:8099", "http://localhost:8099"),
        ("http://[::1]:8099", "http://[::1]:8099"),
    ],
)
def test_graph_endpoint_host_is_used_in_lower_case(given: str, used: str) -> None:
    settings = parse_settings({"GRAPH_ENDPOINT": given})

    assert settings.graph.endpoint == used
    assert settings.graph.scope == f"{used}/.default"


def test_connector_ids_are_split_on_commas_and_spaces_and_deduplicated() -> None:
    settings = parse_settings({"EXCHANGE_CONNECTOR_IDS": f" {GUID}, abc_1\n{GUID} ;x-2 "})

    assert settings.ids_for("exchangeConnectors") == (GUID, "abc_1", "x-2")


@pytest.mark.parametrize("bad", ["../../users", "a/b", "%2e%2e", "a?b", "a#b", "a.b", "x" * 129, "é"])
def test_unsafe_connector_id_setting_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        parse_settings({"EXCHANGE_CONNECTOR_IDS": f"{GUID},{bad}"})

    assert error.value.setting == "EXCHANGE_CONNECTOR_IDS"


@pytest.mark.parametrize("value", ["DeltaSync", "full", "both", "deltasync"])
def test_sync_type_setting_must_be_an_exact_graph_value(value: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        parse_settings({"SYNC_TYPE": value})

    assert error.value.setting == "SYNC_TYPE"
    assert "deltaSync, fullSync" in str(error.value)


def test_user_assigned_identity_client_id_must_be_a_guid() -> None:
    assert parse_settings({"AZURE_CLIENT_ID": GUID}).graph.client_id == GUID
    with pytest.raises(ConfigurationError) as error:
        parse_settings({"AZURE_CLIENT_ID": "my-identity"})
    assert error.value.setting == "AZURE_CLIENT_ID"


@pytest.mark.parametrize("wrapped", [f"{{{GUID}}}", f"urn:uuid:{GUID}"])
def test_client_id_in_braces_or_as_a_urn_is_refused_with_a_message_saying_so(wrapped: str) -> None:
    with pytest.raises(ConfigurationError) as bad:
        parse_settings({"AZURE_CLIENT_ID": wrapped})

    assert bad.value.setting == "AZURE_CLIENT_ID"
    assert "without braces or a urn:uuid: prefix" in bad.value.message


def test_managed_identity_needs_both_platform_variables() -> None:
    endpoint = "http://localhost:8081/msi/token"

    assert parse_settings({"IDENTITY_ENDPOINT": endpoint}).graph.identity_endpoint is None
    both = parse_settings({"IDENTITY_ENDPOINT": endpoint, "IDENTITY_HEADER": "secret"})
    assert both.graph.identity_endpoint == endpoint


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("GRAPH_TIMEOUT_SECONDS", "0"),
        ("GRAPH_TIMEOUT_SECONDS", "soon"),
        ("GRAPH_TIME_BUDGET_SECONDS", "300"),
        ("GRAPH_MAX_RETRIES", "2.5"),
        ("GRAPH_MAX_RETRIES", "11"),
        ("GRAPH_RETRY_BACKOFF_SECONDS", "-1"),
    ],
)
def test_tuning_setting_out_of_range_names_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        parse_settings({setting: value})

    assert error.value.setting == setting


def test_settings_are_read_once_and_kept_for_the_process(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TYPE", "fullSync")
    call_webhook()
    monkeypatch.setenv("SYNC_TYPE", "deltaSync")  # in Azure, changing a setting restarts the app
    call_webhook()

    assert [r.json()["syncType"] for r in app_env.calls("sync")] == ["fullSync"] * 2 * len(app_env.connectors)


def test_invalid_setting_is_not_kept_so_its_fix_applies(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "eleven")
    refused = call_webhook()
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "2")

    assert (refused.status, refused.json["error"]["setting"]) == (503, "GRAPH_MAX_RETRIES")
    assert call_webhook().status == 202


class _Recording(dict[str, str]):
    """An environment that notes each name asked for."""

    def __init__(self, **values: str) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("settings are read by name, never by listing the environment")


def test_setting_names_lists_every_setting_read() -> None:
    environment = _Recording(
        IDENTITY_ENDPOINT="http://localhost:8081/msi/token",  # so its header is read too
        TENANT_IDS="c0000001-0000-4000-8000-000000000001",  # so the many-tenants settings are read too
        TENANT_APP_CLIENT_ID="a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        AZURE_CLIENT_ID="7d8e9f10-1112-4314-9516-171819202122",
    )
    parse_settings(environment)

    assert environment.read == {*SETTING_NAMES, *STORAGE_SETTINGS}  # the latter the platform's, not the table's
