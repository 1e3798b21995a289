"""infra/: parsed with pycep-parser (Bicep cannot be compiled here) and checked against what it promises."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared import dispatch
from shared.errors import SyncFailed
from shared.targets import TARGETS, permissions_for
from tests.conftest import deliver, fire_timer, use
from tests.emulator import CUSTOMER_TENANT_IDS, Emulator, apns_certificate

INFRA = Path(__file__).resolve().parent.parent / "infra"
ROLE_VALUE = "DeviceManagementServiceConfig.ReadWrite.All"


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return BicepParser().parse(text=(INFRA / "main.bicep").read_text())


@pytest.fixture(scope="module")
def grant() -> dict[str, Any]:
    return BicepParser().parse(text=(INFRA / "graph-permission.bicep").read_text())


@pytest.fixture(scope="module")
def multi_tenant() -> dict[str, Any]:
    return BicepParser().parse(text=(INFRA / "multi-tenant-app.bicep").read_text())


def config(tree: dict[str, Any], resource: str) -> dict[str, Any]:
    return tree["resources"][resource]["config"]


def conditional(value: dict[str, Any]) -> tuple[Any, Any, Any]:
    operands = value["operator"]["operands"]
    return operands["condition"], operands["true_value"], operands["false_value"]


def test_function_app_is_linux_flex_consumption_python_3_13(main: dict[str, Any]) -> None:
    plan = config(main, "plan")
    app = config(main, "app")

    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True
    assert app["kind"] == "functionapp,linux"
    assert app["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.13"}


def test_app_is_https_only_with_tls_1_2_and_no_ftp_or_basic_auth(main: dict[str, Any]) -> None:
    app = config(main, "app")["properties"]

    assert app["httpsOnly"] is True
    assert app["siteConfig"]["minTlsVersion"] == "1.2"
    assert app["siteConfig"]["ftpsState"] == "Disabled"
    for policy in ("ftpBasicAuth", "scmBasicAuth"):
        assert config(main, policy)["properties"] == {"allow": False}


def test_identity_is_system_assigned_unless_a_user_assigned_one_is_asked_for(main: dict[str, Any]) -> None:
    condition, user_assigned, system_assigned = conditional(config(main, "app")["identity"])

    assert condition == "userAssigned"
    assert main["variables"]["userAssigned"]["value"]["operator"] == {
        "type": "or",
        "operands": {"operand_1": "useUserAssignedIdentity", "operand_2": "manyTenants"},
    }
    assert main["parameters"]["useUserAssignedIdentity"]["default"] is False
    assert user_assigned["type"] == "UserAssigned"
    assert system_assigned == {"type": "SystemAssigned"}
    condition, user_settings, none = conditional(main["variables"]["userIdentitySettings"]["value"])
    assert user_settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert none == {}


def test_storage_takes_no_account_keys_and_the_host_uses_the_identity(main: dict[str, Any]) -> None:
    storage = config(main, "storage")["properties"]
    host = main["variables"]["hostSettings"]["value"]

    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "AzureWebJobsStorage" not in host
    deployment = config(main, "app")["properties"]["functionAppConfig"]["deployment"]["storage"]
    _, by_user_identity, by_system_identity = conditional(deployment["authentication"])
    assert by_system_identity == {"type": "SystemAssignedIdentity"}
    assert by_user_identity["type"] == "UserAssignedIdentity"


def test_identity_gets_blob_owner_queue_and_table_contributor_and_metrics_publisher(main: dict[str, Any]) -> None:
    assignments = {
        name: config(main, name)["properties"]
        for name, resource in main["resources"].items()
        if resource["type"] == "Microsoft.Authorization/roleAssignments"
    }

    assert {a["principalId"] for a in assignments.values()} == {"identityPrincipalId"}
    assert main["variables"]["storageBlobDataOwner"]["value"] == "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
    assert main["variables"]["monitoringMetricsPublisher"]["value"] == "3913510d-42f4-4e42-8a64-420c390055eb"
    assert main["variables"]["storageQueueDataContributor"]["value"] == "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
    queue_role = assignments["queueAccess"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    assert queue_role == "storageQueueDataContributor"
    assert main["variables"]["storageTableDataContributor"]["value"] == "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
    table_role = assignments["tableAccess"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    assert table_role == "storageTableDataContributor"
    assert len(assignments) == 4
    assert "AzureWebJobsStorage__tableServiceUri" in main["variables"]["hostSettings"]["value"]


def test_the_tenants_queue_and_its_poison_queue_exist_and_the_host_reaches_them_by_identity(
    main: dict[str, Any],
) -> None:
    host = main["variables"]["hostSettings"]["value"]
    queues = [r["config"] for r in main["resources"].values() if r["type"].endswith("/queueServices/queues")]

    assert {queue["name"] for queue in queues} == {"sync-tenants", "sync-tenants-poison"}
    assert "AzureWebJobsStorage__queueServiceUri" in host
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert host["PYTHON_THREADPOOL_THREAD_COUNT"] == "16"  # host.json's batchSize, run at once


def test_maximum_instance_count_is_a_parameter(main: dict[str, Any]) -> None:
    scale = config(main, "app")["properties"]["functionAppConfig"]["scaleAndConcurrency"]

    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    assert main["parameters"]["maximumInstanceCount"]["default"] == 40


def test_application_insights_sits_on_log_analytics_with_entra_auth_only(main: dict[str, Any]) -> None:
    insights = config(main, "insights")["properties"]

    assert insights["WorkspaceResourceId"]["operator"]["operands"] == {"operand_1": "workspace", "operand_2": "id"}
    assert insights["DisableLocalAuth"] is True
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in main["variables"]["hostSettings"]["value"]


def test_app_settings_default_to_every_15_minutes_and_delta_sync(main: dict[str, Any]) -> None:
    sync = main["variables"]["syncSettings"]["value"]
    params = main["parameters"]

    assert sync["SYNC_TARGETS"]["function"]["type"] == "join"
    del sync["SYNC_TARGETS"]
    assert sync == {
        "SYNC_SCHEDULE": "syncSchedule",
        "SYNC_TYPE": "syncType",
        "EXCHANGE_CONNECTOR_IDS": "exchangeConnectorIds",
        "GRAPH_ENDPOINT": "graphEndpoint",
    }
    assert params["syncSchedule"]["default"] == "0 */15 * * * *"
    assert params["syncType"]["default"] == "deltaSync"
    assert params["graphEndpoint"]["default"] == "https://graph.microsoft.com"
    settings = config(main, "appSettings")["properties"]["function"]
    assert settings["type"] == "union"
    assert set(settings["parameters"].values()) == {
        "hostSettings",
        "syncSettings",
        "userIdentitySettings",
        "tenantSettings",
        "notifySettings",
    }


def test_notification_destinations_are_secure_parameters_never_output(main: dict[str, Any]) -> None:
    for parameter in ("notifyTeamsWebhookUrl", "notifyWebhookUrl", "notifyWebhookSecret"):
        assert any(d["type"] == "secure" for d in main["parameters"][parameter]["decorators"])
        assert main["parameters"][parameter]["default"] == ""
    outputs = (INFRA / "main.bicep").read_text().split("\noutput ", 1)[1]
    assert "notify" not in outputs.lower()


def test_graph_permission_is_granted_behind_a_parameter(main: dict[str, Any]) -> None:
    module = main["modules"]["graphPermission"]

    assert module["detail"]["path"] == "graph-permission.bicep"
    assert module["config"]["condition"]["operator"]["operands"] == {
        "operand_1": "grantGraphPermission",
        "operand_2": {"operator": {"type": "not", "operands": {"bool_value": "manyTenants"}}},
    }
    assert module["config"]["config"]["params"] == {"principalId": "identityPrincipalId", "appRoles": "graphAppRoles"}


def test_sync_targets_parameter_grants_exactly_the_roles_its_targets_need(main: dict[str, Any]) -> None:
    """The Bicep's target -> permission map is the app's own, and each role is granted once (union)."""
    parameter = main["parameters"]["syncTargets"]
    allowed = next(d["argument"] for d in parameter["decorators"] if d["type"] == "allowed")
    permissions = main["variables"]["targetPermissions"]["value"]
    roles = main["variables"]["graphAppRoles"]["value"]["function"]

    assert parameter["default"] == ["exchangeConnectors"]
    assert allowed == list(TARGETS)
    assert permissions == {name: list(permissions_for((name,))) for name in TARGETS}
    assert roles["type"] == "union"
    flattened = roles["parameters"]["arg_1"]["function"]
    assert flattened["type"] == "flatten"
    mapped = flattened["parameters"]["array_to_flattern"]["function"]  # pycep-parser's own spelling
    assert (mapped["type"], mapped["parameters"]["arg_1"]) == ("map", "syncTargets")


def test_graph_app_role_is_resolved_by_value_through_the_graph_extension(grant: dict[str, Any]) -> None:
    graph = grant["resources"]["graph"]
    assignment = grant["resources"]["grants"]
    assert assignment["config"]["loop_type"]["detail"] == {"item_name": "appRole", "array_name": "appRoles"}
    assignment = {**assignment, "config": assignment["config"]["config"]}
    lookup = assignment["config"]["appRoleId"]["operator"]["operands"]["operand_1"]["operator"]["operands"]
    role_filter = lookup["operand_1"]["function"]

    assert "microsoftGraphV1" in grant["extensions"]
    assert graph["type"] == "Microsoft.Graph/servicePrincipals"
    assert graph["existing"] is True
    assert graph["config"] == {"appId": "00000003-0000-0000-c000-000000000000"}
    assert assignment["type"] == "Microsoft.Graph/appRoleAssignedTo"
    assert assignment["config"]["principalId"] == "principalId"
    assert role_filter["type"] == "filter"
    assert role_filter["parameters"]["input_array"]["operator"]["operands"] == {
        "operand_1": "graph",
        "operand_2": "appRoles",
    }
    assert grant["parameters"]["appRoles"]["default"] == [ROLE_VALUE]
    guid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    code = "\n".join(
        line for line in (INFRA / "graph-permission.bicep").read_text().splitlines() if "appId" not in line
    )
    assert not guid.search(code), "the app role id must be looked up, not hard-coded"


def test_bicepconfig_declares_the_graph_extension() -> None:
    extensions = json.loads((INFRA / "bicepconfig.json").read_text())["extensions"]

    assert extensions["microsoftGraphV1"].startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")


def test_parameters_file_names_only_declared_parameters(main: dict[str, Any]) -> None:
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]

    assert set(given) <= set(main["parameters"])
    assert given["name"]["value"] == "${AZURE_ENV_NAME}"


def test_azd_deploys_this_folder_to_the_tagged_function_app(main: dict[str, Any]) -> None:
    azure_yaml = (INFRA.parent / "azure.yaml").read_text()
    tags = config(main, "app")["tags"]["function"]["parameters"]["arg_2"]

    assert re.search(r"services:\n  sync:\n    project: \.\n    language: python\n    host: function", azure_yaml)
    assert "path: infra" in azure_yaml
    assert tags == {"'azd-service-name'": "sync"}


def test_outputs_give_the_principal_id_for_the_grant_command(main: dict[str, Any]) -> None:
    assert {"functionAppName", "webhookUrl", "identityPrincipalId"} <= set(main["outputs"])


def test_many_tenants_creates_a_multi_tenant_app_trusting_the_user_assigned_identity(
    main: dict[str, Any], multi_tenant: dict[str, Any]
) -> None:
    module = main["modules"]["multiTenantApp"]
    app = multi_tenant["resources"]["multiTenantApp"]["config"]
    credential = multi_tenant["resources"]["multiTenantApp__managedIdentityCredential"]["config"]
    access = app["requiredResourceAccess"][0]

    assert main["parameters"]["tenantIds"]["default"] == []
    assert main["variables"]["manyTenants"]["value"]["operator"]["type"] == "not"
    assert module["detail"]["path"] == "multi-tenant-app.bicep"
    assert module["config"]["condition"] == "manyTenants"
    assert module["config"]["config"]["params"]["identityPrincipalId"] == "identityPrincipalId"
    assert module["config"]["config"]["params"]["appRoles"] == "graphAppRoles"
    assert "microsoftGraphV1" in multi_tenant["extensions"]
    assert app["signInAudience"] == "AzureADMultipleOrgs"
    assert access["resourceAppId"] == "graphAppId"
    assert access["resourceAccess"]["loop_type"]["detail"] == {"item_name": "appRole", "array_name": "appRoles"}
    assert access["resourceAccess"]["config"]["type"] == "Role"
    assert credential["issuer"] == "${authority}/${tenant().tenantId}/v2.0"
    assert credential["subject"] == "identityPrincipalId"
    assert credential["audiences"] == ["exchangeAudience"]
    audiences = json.dumps(multi_tenant["variables"]["exchangeAudience"])
    for audience in (
        "api://AzureADTokenExchange",
        "api://AzureADTokenExchangeUSGov",
        "api://AzureADTokenExchangeChina",
    ):
        assert audience in audiences


def test_many_tenants_sets_the_tenant_settings_and_outputs_each_consent_url(main: dict[str, Any]) -> None:
    condition, tenant_settings, none = conditional(main["variables"]["tenantSettings"]["value"])
    consent = main["outputs"]["consentUrls"]

    assert condition == "manyTenants"
    assert none == {}
    assert set(tenant_settings) == {"TENANT_IDS", "TENANT_APP_CLIENT_ID", "TENANT_CONCURRENCY", "AZURE_AUTHORITY_HOST"}
    assert tenant_settings["AZURE_AUTHORITY_HOST"] == "https://${authority}"
    assert consent["value"]["loop_type"]["detail"] == {"item_name": "tenantId", "array_name": "tenantIds"}
    assert consent["value"]["config"].startswith("https://${authority}/${tenantId}/adminconsent?client_id=")
    assert "tenantAppClientId" in main["outputs"]


def query_literal(main: dict[str, Any], variable: str, pattern: str) -> str:
    found = re.search(pattern, main["variables"][variable]["value"])
    assert found, main["variables"][variable]["value"]
    return found.group(1)


def test_alert_rules_watch_the_apps_application_insights(main: dict[str, Any]) -> None:
    for name in ("failedSyncsAlert", "expiryAlert", "poisonAlert"):
        rule = main["resources"][name]
        properties = rule["config"]["properties"]
        criterion = properties["criteria"]["allOf"][0]
        assert rule["type"] == "Microsoft.Insights/scheduledQueryRules"
        assert properties["scopes"] == [
            {"operator": {"type": "property_accessor", "operands": {"operand_1": "insights", "operand_2": "id"}}}
        ]
        assert (criterion["operator"], criterion["threshold"], criterion["timeAggregation"]) == (
            "GreaterThan",
            0,
            "Count",
        )
        assert properties["actions"]["actionGroups"] == [
            {"operator": {"type": "property_accessor", "operands": {"operand_1": "alertReceivers", "operand_2": "id"}}}
        ]
    assert (
        main["resources"]["failedSyncsAlert"]["config"]["properties"]["criteria"]["allOf"][0]["query"]
        == "failedSyncsQuery"
    )
    assert main["resources"]["expiryAlert"]["config"]["properties"]["criteria"]["allOf"][0]["query"] == "expiryQuery"
    assert main["resources"]["poisonAlert"]["config"]["properties"]["criteria"]["allOf"][0]["query"] == "poisonQuery"


def test_the_poison_alert_matches_the_last_try_line_of_a_queued_tenant(
    main: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(CUSTOMER_TENANT_IDS[0])
        use(emulator, monkeypatch)
        emulator.fault("identity", status=500, times=100)
        with pytest.raises(SyncFailed):
            deliver(json.dumps({"tenant": CUSTOMER_TENANT_IDS[0]}), dequeue_count=dispatch.MAX_DEQUEUE_COUNT)

    poisoned = query_literal(main, "poisonQuery", r'message contains "([^"]+)"')
    assert any(poisoned in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_action_group_receivers_are_optional(main: dict[str, Any]) -> None:
    properties = main["resources"]["alertReceivers"]["config"]["properties"]

    for receivers, parameter in (("emailReceivers", "alertEmail"), ("webhookReceivers", "alertWebhookUrl")):
        condition, when_empty, when_set = conditional(properties[receivers])
        assert condition == {"function": {"type": "empty", "parameters": {"item_to_test": parameter}}}
        assert when_empty == []
        assert when_set[0]["useCommonAlertSchema"] is True
        assert main["parameters"][parameter]["default"] == ""
    assert any(d["type"] == "secure" for d in main["parameters"]["alertWebhookUrl"]["decorators"])


def test_alert_queries_match_what_the_app_writes(
    main: dict[str, Any], app_env: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Drive the app to a failed sync and an expiry finding, then check its own lines against the queries."""
    caplog.set_level("INFO")
    app_env.objects["applePushNotificationCertificate"] = {"c": apns_certificate(expires_in_days=3)}
    app_env.fault("sync", status=500, times=100)
    with pytest.raises(SyncFailed):
        fire_timer()
    lines = [r.getMessage() for r in caplog.records]

    failed = query_literal(main, "failedSyncsQuery", r'message contains "([^"]+)"')
    timer = query_literal(main, "failedSyncsQuery", r'operation_Name =~ "([^"]+)"')
    expiry = query_literal(main, "expiryQuery", r'message startswith "([^"]+)"')
    assert any(failed.lower() in line.lower() for line in lines)
    assert any(line.startswith(expiry) for line in lines)
    assert (INFRA.parent / timer).is_dir(), "the query must name the timer function's folder"
