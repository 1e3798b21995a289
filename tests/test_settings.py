"""App settings: defaults, national clouds, and errors that name the setting."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.settings import load_settings

GUID = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"


def test_defaults_target_global_graph_with_delta_sync_and_the_system_identity() -> None:
    settings = load_settings({})

    assert settings.sync_type == "deltaSync"
    assert settings.connector_ids == ()
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
    settings = load_settings({"GRAPH_ENDPOINT": endpoint})

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
    ],
)
def test_graph_endpoint_must_be_an_https_root(endpoint: str) -> None:
    with pytest.raises(ConfigurationError) as bad:
        load_settings({"GRAPH_ENDPOINT": endpoint})

    assert bad.value.setting == "GRAPH_ENDPOINT"


@pytest.mark.parametrize("host", ["127.0.0.1:8099", "localhost:8099"])
def test_plain_http_is_allowed_for_a_loopback_emulator(host: str) -> None:
    assert load_settings({"GRAPH_ENDPOINT": f"http://{host}"}).graph.endpoint == f"http://{host}"


def test_connector_ids_are_split_on_commas_and_spaces_and_deduplicated() -> None:
    settings = load_settings({"EXCHANGE_CONNECTOR_IDS": f" {GUID}, abc_1\n{GUID} ;x-2 "})

    assert settings.connector_ids == (GUID, "abc_1", "x-2")


@pytest.mark.parametrize("bad", ["../../users", "a/b", "%2e%2e", "a?b", "a#b", "a.b", "x" * 129, "é"])
def test_unsafe_connector_id_setting_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings({"EXCHANGE_CONNECTOR_IDS": f"{GUID},{bad}"})

    assert error.value.setting == "EXCHANGE_CONNECTOR_IDS"


@pytest.mark.parametrize("value", ["DeltaSync", "full", "both", "deltasync"])
def test_sync_type_setting_must_be_an_exact_graph_value(value: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings({"SYNC_TYPE": value})

    assert error.value.setting == "SYNC_TYPE"
    assert "deltaSync, fullSync" in str(error.value)


def test_user_assigned_identity_client_id_must_be_a_guid() -> None:
    assert load_settings({"AZURE_CLIENT_ID": GUID}).graph.client_id == GUID
    with pytest.raises(ConfigurationError) as error:
        load_settings({"AZURE_CLIENT_ID": "my-identity"})
    assert error.value.setting == "AZURE_CLIENT_ID"


def test_managed_identity_needs_both_platform_variables() -> None:
    endpoint = "http://localhost:8081/msi/token"

    assert load_settings({"IDENTITY_ENDPOINT": endpoint}).graph.identity_endpoint is None
    both = load_settings({"IDENTITY_ENDPOINT": endpoint, "IDENTITY_HEADER": "secret"})
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
        load_settings({setting: value})

    assert error.value.setting == setting
