"""Many tenants from one deployment: the user-assigned identity's token is the client assertion of a multi-tenant
app, exchanged at the Entra stand-in (HTTPS, a test CA) for each tenant's own Graph token."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from shared.cli import main as cli_main
from shared.clients import Clients
from shared.federation import exchange_audience
from shared.process import PROCESS
from shared.settings import parse_settings
from tests.conftest import Answer, call_webhook, deliver, fire_timer, use, wait_for
from tests.emulator import (
    CUSTOMER_TENANT_IDS,
    EXCHANGE_AUDIENCE,
    MANAGED_READ_ROLE,
    PRIVILEGED_ROLE,
    READ_WRITE_ROLE,
    TENANT_APP_CLIENT_ID,
    USER_ASSIGNED_CLIENT_ID,
    DeviceFleet,
    Emulator,
    Received,
    vpp_token,
)

T1, T2, T3, T4, T5, T6 = CUSTOMER_TENANT_IDS
OUTSIDER = "d0000009-0000-4000-8000-000000000009"


@pytest.fixture
def entra() -> Iterator[Emulator]:
    with Emulator(entra=True) as running:
        running.add_tenant(T1)
        running.add_tenant(T2)
        yield running


@pytest.fixture
def tenants(entra: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    return use(entra, monkeypatch)


def tenant_of(call: Received, emulator: Emulator) -> str | None:
    """The tenant of the Graph token a call carried."""
    token = emulator.find_token((call.header("Authorization") or "").removeprefix("Bearer "))
    assert token is not None
    return token.tenant


def token_requests(emulator: Emulator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in emulator.calls("entra_token"):
        tenant = call.path.split("/")[1]
        counts[tenant] = counts.get(tenant, 0) + 1
    return counts


def sync_every_tenant() -> Answer:
    """The webhook naming every tenant of TENANT_IDS, so they run in this call (naming none queues them)."""
    return call_webhook(body={"tenants": os.environ["TENANT_IDS"].split(",")})


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return cli_main(list(argv), out=out), out.getvalue()


def test_each_tenant_is_synced_with_its_own_token(tenants: Emulator) -> None:
    answer = sync_every_tenant()

    assert answer.status == 202, answer.text
    syncs = tenants.calls("sync")
    assert sorted(c.path.split("/")[4][:8] for c in syncs) == sorted([T1[:8], T2[:8]])
    for call in syncs:
        assert call.path.split("/")[4][:8] == tenant_of(call, tenants)[:8]  # type: ignore[index]
    assert {(r["tenant"], r["outcome"]) for r in answer.json["results"]} == {(T1, "accepted"), (T2, "accepted")}
    assert answer.json["tenants"] == [T1, T2]


def test_the_identity_is_asked_only_for_the_exchange_audience(tenants: Emulator) -> None:
    sync_every_tenant()

    [identity] = tenants.calls("identity")
    assert identity.query["resource"] == [EXCHANGE_AUDIENCE]
    assert identity.query["client_id"] == [USER_ASSIGNED_CLIENT_ID]


def test_entra_receives_the_identity_token_as_the_client_assertion(tenants: Emulator) -> None:
    sync_every_tenant()

    [assertion] = [t for t in tenants.tokens if t.audience == EXCHANGE_AUDIENCE]
    for call in tenants.calls("entra_token"):
        form = {k: v[0] for k, v in parse_qs(call.body.decode()).items()}
        assert form["grant_type"] == "client_credentials"
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert form["client_assertion"] == assertion.value
        assert form["client_id"] == TENANT_APP_CLIENT_ID
        assert form["scope"] == f"{tenants.url}/.default"


def test_tokens_are_kept_across_invocations(tenants: Emulator) -> None:
    for _ in range(5):
        assert sync_every_tenant().status == 202

    assert token_requests(tenants) == {T1: 1, T2: 1}
    assert len(tenants.calls("identity")) == 1


def test_a_process_keeps_only_the_most_recently_used_tenants_clients(tenants: Emulator) -> None:
    held = PROCESS.held("graph clients", lambda: Clients(most=1))

    for tenant in (T1, T1, T2, T1):
        assert call_webhook(params={"tenant": tenant}).status == 202

    assert token_requests(tenants) == {T1: 2, T2: 1}  # T1's client was forgotten for T2's, then built again
    assert len(held) == 1
    assert len(tenants.calls("identity")) == 1  # the assertion outlives the clients it served


def test_tenants_starting_together_ask_the_identity_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six tenants need the assertion at the same moment, and the identity is slow to give it: one request."""
    with Emulator(entra=True) as emulator:
        for tenant in CUSTOMER_TENANT_IDS:
            emulator.add_tenant(tenant)
        use(emulator, monkeypatch, TENANT_CONCURRENCY="6")
        emulator.fault("identity", delay=0.5)

        assert sync_every_tenant().status == 202

        assert len(emulator.calls("identity")) == 1
        assert token_requests(emulator) == dict.fromkeys(CUSTOMER_TENANT_IDS, 1)


@pytest.mark.parametrize(
    ("host", "authority", "audience"),
    [
        ("", "https://login.microsoftonline.com", "api://AzureADTokenExchange"),
        ("login.microsoftonline.us", "https://login.microsoftonline.us", "api://AzureADTokenExchangeUSGov"),
        ("https://login.chinacloudapi.cn/", "https://login.chinacloudapi.cn", "api://AzureADTokenExchangeChina"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443", "api://AzureADTokenExchange"),
    ],
)
def test_the_exchange_audience_follows_the_authority(host: str, authority: str, audience: str) -> None:
    settings = parse_settings(
        {
            "TENANT_IDS": T1,
            "TENANT_APP_CLIENT_ID": TENANT_APP_CLIENT_ID,
            "AZURE_CLIENT_ID": USER_ASSIGNED_CLIENT_ID,
            "AZURE_AUTHORITY_HOST": host,
        }
    )

    assert settings.graph.authority == authority
    assert exchange_audience(settings.graph.authority) == audience


def test_an_unconsented_tenant_fails_alone_with_its_consent_url(
    entra: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    entra.add_tenant(T3, consented=False)
    use(entra, monkeypatch)

    answer = sync_every_tenant()

    assert answer.status == 502
    consent = f"{entra.authority}/{T3}/adminconsent?client_id={TENANT_APP_CLIENT_ID}"
    assert answer.json["error"]["code"] == "tenantNotConsented"
    assert answer.json["error"]["consentUrl"] == consent
    assert answer.json["error"]["tenant"] == T3
    assert consent in answer.json["error"]["remedy"]
    outcomes = {(r["tenant"], r["outcome"]) for r in answer.json["results"]}
    assert outcomes == {(T1, "accepted"), (T2, "accepted"), (T3, "failed")}
    assert token_requests(entra)[T3] == 1  # not retried


def test_an_app_unknown_in_the_tenant_is_reported_as_not_consented(tenants: Emulator) -> None:
    refusal = {
        "error": "unauthorized_client",
        "error_description": f"AADSTS700016: Application with identifier '{TENANT_APP_CLIENT_ID}' was not found "
        f"in the directory '{T1}'.",
        "error_codes": [700016],
    }
    tenants.fault("entra_token", status=400, body=json.dumps(refusal).encode())

    answer = call_webhook(params={"tenant": T1})

    assert answer.status == 502
    assert answer.json["error"]["code"] == "tenantNotConsented"
    assert answer.json["error"]["consentUrl"].endswith(f"/{T1}/adminconsent?client_id={TENANT_APP_CLIENT_ID}")


def test_a_tenant_that_granted_no_roles_gets_the_permission_remedy_for_that_tenant(
    entra: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entra.add_tenant(T3, roles=())
    use(entra, monkeypatch)

    answer = call_webhook(params={"tenant": T3})
    state = call_webhook("GET", params={"tenant": T3})

    assert answer.status == 502
    assert answer.json["error"]["code"] == "graphForbidden"
    for remedy in (answer.json["error"]["remedy"], state.json["error"]["remedy"]):
        assert "DeviceManagementServiceConfig.ReadWrite.All" in remedy
        assert f"administrator of tenant {T3}" in remedy
        assert "TENANT_APP_CLIENT_ID" in remedy
    caplog.set_level(logging.ERROR)
    deliver(json.dumps({"tenant": T3}))  # completed: a retry cannot grant the permission
    (logged,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.startswith(f"tenant={T3} Not synced, and trying again cannot fix it")
    assert "DeviceManagementServiceConfig.ReadWrite.All" in logged


@pytest.mark.parametrize(
    ("params", "body"), [({"tenant": T2}, None), ({}, {"tenants": [T2]}), ({"tenant": T2.upper()}, None)]
)
def test_the_webhook_runs_only_the_tenants_asked(
    tenants: Emulator, params: dict[str, str], body: dict[str, object] | None
) -> None:
    answer = call_webhook(params=params, body=body)

    assert answer.status == 202, answer.text
    assert {r["tenant"] for r in answer.json["results"]} == {T2}
    assert token_requests(tenants) == {T2: 1}  # no token for the other tenant


def test_a_tenant_not_in_tenant_ids_is_404_and_nothing_is_sent(tenants: Emulator) -> None:
    answer = call_webhook(params={"tenant": OUTSIDER})

    assert answer.status == 404
    assert answer.json["error"]["code"] == "unknownTenant"
    assert answer.json["error"]["setting"] == "TENANT_IDS"
    assert tenants.calls() == []


@pytest.mark.parametrize(
    ("params", "body", "field"),
    [
        ({"tenant": "not-a-guid"}, None, "tenant"),
        ({}, {"tenants": ["not-a-guid"]}, "tenants[0]"),
        ({}, {"tenants": [T1, 7]}, "tenants[1]"),
        ({}, {"tenants": T1}, "tenants"),
        ({}, {"tenants": []}, "tenants"),
        ({"tenant": T1}, {"tenants": [T2]}, "tenants"),
    ],
)
def test_a_malformed_tenant_is_400_naming_the_field(
    tenants: Emulator, params: dict[str, str], body: dict[str, object] | None, field: str
) -> None:
    answer = call_webhook(params=params, body=body)

    assert answer.status == 400
    assert answer.json["error"]["field"] == field
    assert tenants.calls() == []


def test_ids_need_one_tenant(tenants: Emulator) -> None:
    answer = call_webhook(body={"connectorIds": ["6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"]})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "tenant"


def test_a_refused_tenant_token_gets_that_tenants_remedy(tenants: Emulator) -> None:
    tenants.fault("list", status=401, code="InvalidAuthenticationToken", times=2)

    answer = call_webhook(params={"tenant": T1})

    assert answer.json["error"]["code"] == "graphUnauthorized"
    assert answer.json["error"]["remedy"].startswith(f"Graph refused tenant {T1}'s token")
    assert token_requests(tenants) == {T1: 2}  # the held token was dropped and a new one tried, once


def test_a_tenant_asked_of_a_single_tenant_deployment_is_400(app_env: Emulator) -> None:
    answer = call_webhook(params={"tenant": T1})

    assert answer.status == 400
    assert answer.json["error"]["field"] == "tenant"
    assert "TENANT_IDS" in answer.json["error"]["message"]


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"TENANT_APP_CLIENT_ID": ""}, "TENANT_APP_CLIENT_ID"),
        ({"TENANT_APP_CLIENT_ID": "my-app"}, "TENANT_APP_CLIENT_ID"),
        ({"TENANT_IDS": f"{T1},contoso.onmicrosoft.com"}, "TENANT_IDS"),
        ({"AZURE_CLIENT_ID": ""}, "AZURE_CLIENT_ID"),
        ({"EXCHANGE_CONNECTOR_IDS": "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"}, "EXCHANGE_CONNECTOR_IDS"),
        ({"AZURE_AUTHORITY_HOST": "http://login.microsoftonline.com"}, "AZURE_AUTHORITY_HOST"),
        ({"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/organizations"}, "AZURE_AUTHORITY_HOST"),
        ({"TENANT_CONCURRENCY": "0"}, "TENANT_CONCURRENCY"),
    ],
)
def test_configuration_errors_name_the_setting_and_send_nothing(
    entra: Emulator, monkeypatch: pytest.MonkeyPatch, change: dict[str, str], setting: str
) -> None:
    use(entra, monkeypatch, **change)

    answer = call_webhook()

    assert answer.status == 503
    assert answer.json["error"]["code"] == "configurationError"
    assert answer.json["error"]["setting"] == setting
    with pytest.raises(Exception, match=setting):
        fire_timer()
    code, out = cli("doctor")
    assert code == 2
    assert f"fix: Correct the app setting {setting}" in out
    assert entra.calls() == []


def test_without_tenant_ids_the_tenant_settings_are_not_read(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANT_APP_CLIENT_ID", "not-a-guid")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "http://nowhere")
    monkeypatch.setenv("TENANT_CONCURRENCY", "zero")

    answer = call_webhook()

    assert answer.status == 202
    assert "tenant" not in answer.json["results"][0]
    assert app_env.calls("identity")[0].query["resource"] == [app_env.url]


def test_tenants_run_concurrently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six tenants: every tenant's listing reaches Graph while the first of them is still held unanswered."""
    with Emulator(entra=True) as emulator:
        for tenant in CUSTOMER_TENANT_IDS:
            emulator.add_tenant(tenant)
        use(emulator, monkeypatch, TENANT_CONCURRENCY="6")
        release = threading.Event()
        emulator.fault("list", hold=release, times=6)
        answers: list[Answer] = []
        caller = threading.Thread(target=lambda: answers.append(sync_every_tenant()))
        caller.start()

        try:
            wait_for(lambda: len(emulator.calls("list")) == 6, "all six listings at once")
        finally:
            release.set()
            caller.join(30)

        assert answers[0].status == 202, answers[0].text


def test_concurrency_is_bounded_by_tenant_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(entra=True, latency=0.3) as emulator:
        for tenant in CUSTOMER_TENANT_IDS[:4]:
            emulator.add_tenant(tenant)
        use(emulator, monkeypatch, TENANT_CONCURRENCY="2")

        assert sync_every_tenant().status == 202

        starts = sorted(c.at for c in emulator.calls("list"))
        assert starts[2] - starts[0] >= emulator.latency  # the third tenant waited for a free worker


def test_get_reports_each_tenant(tenants: Emulator) -> None:
    answer = call_webhook("GET")

    assert answer.status == 200, answer.text
    assert set(answer.json["tenants"]) == {T1, T2}
    listed = answer.json["tenants"][T2]["targets"]["exchangeConnectors"]["objects"]
    assert [c["id"][:8] for c in listed] == [T2[:8]]
    assert "connectors" not in answer.json

    only = call_webhook("GET", params={"tenant": T1})
    assert set(only.json["tenants"]) == {T1}


def test_an_unconsented_tenant_is_logged_once_with_its_consent_url_and_not_retried(
    entra: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entra.add_tenant(T3, consented=False)
    use(entra, monkeypatch)
    caplog.set_level(logging.ERROR)

    for message in fire_timer():
        deliver(message)  # none raises: the consented tenants synced, and waiting cannot consent for T3

    (logged,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.startswith(f"tenant={T3} Not synced")
    assert f"{entra.authority}/{T3}/adminconsent?client_id={TENANT_APP_CLIENT_ID}" in logged
    assert len(entra.calls("sync")) == 2


def test_expiry_findings_name_their_tenant(
    entra: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    expiring = vpp_token("7b1d9c2e-0f3a-4b5c-8d6e-1a2b3c4d5e09", expires_in_days=5)
    entra.add_tenant(
        T3,
        objects={"vppTokens": [expiring]},
        roles=(READ_WRITE_ROLE, "DeviceManagementServiceConfig.Read.All", "DeviceManagementApps.ReadWrite.All"),
    )
    use(entra, monkeypatch, EXPIRY_WARNING_DAYS="30", SYNC_TARGETS="exchangeConnectors")
    caplog.set_level(logging.INFO)

    for message in fire_timer():
        deliver(message)

    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("expiry-warning")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"expiry-warning tenant={T3} target=vppTokens")


def test_no_token_or_assertion_reaches_a_log(tenants: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("azure", "azure.identity", "msal", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        tenants.fault("entra_token", status=400, body=b'{"error": "invalid_request", "error_description": "x"}')
        sync_every_tenant()
        sync_every_tenant()
    finally:
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert tenants.tokens
    for token in tenants.tokens:
        assert token.value not in logged
        assert token.value.split(".")[2] not in logged


def test_entra_that_trickles_is_cut_off_at_the_budget(tenants: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", "5")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "20")
    tenants.fault("entra_token", trickle=1.0, trickle_headers=True, body=b"{}", times=2)

    started = time.monotonic()
    answer = sync_every_tenant()

    assert time.monotonic() - started < 5 + 2
    assert answer.status == 503
    assert {r["errorCode"] for r in answer.json["results"]} == {"identityUnavailable"}


def test_an_identity_that_never_answers_stops_every_tenant_at_the_budget(
    tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tenant asks the identity and hangs; the other waits for the same assertion: both end at the budget."""
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", "5")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "20")
    tenants.fault("identity", delay=30)

    started = time.monotonic()
    answer = sync_every_tenant()

    assert time.monotonic() - started < 5 + 2
    assert answer.status == 503
    assert [(r["tenant"], r["errorCode"]) for r in answer.json["results"]] == [
        (T1, "identityUnavailable"),
        (T2, "identityUnavailable"),
    ]
    assert all("time budget" in r["message"] for r in answer.json["results"])
    assert len(tenants.calls("identity")) == 1


@pytest.mark.parametrize(
    "body", [b"<html>Service unavailable</html>", b'{"access_token": 7}', b'{"token_type": "Bearer"}'], ids=str
)
def test_entra_answering_garbage_is_that_tenants_failure(tenants: Emulator, body: bytes) -> None:
    tenants.fault("entra_token", status=200, body=body)

    answer = sync_every_tenant()

    assert answer.status == 503
    failed = [r for r in answer.json["results"] if r["outcome"] == "failed"]
    assert [r["errorCode"] for r in failed] == ["identityUnavailable"]
    assert {r["tenant"] for r in answer.json["results"] if r["outcome"] == "accepted"} == {T1, T2} - {
        failed[0]["tenant"]
    }


def test_entra_is_trusted_only_through_the_ca_bundle(tenants: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")

    refused = call_webhook(params={"tenant": T1})
    assert refused.status == 503
    assert "certificate is not trusted (REQUESTS_CA_BUNDLE)" in refused.json["results"][0]["message"]

    monkeypatch.setenv("SSL_CERT_FILE", tenants.ca_bundle)
    PROCESS.reset()  # a new process's clients, as after an app restart
    assert call_webhook(params={"tenant": T1}).status == 202


def test_doctor_checks_each_tenant_and_prints_the_consent_url(entra: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    entra.add_tenant(T3, consented=False)
    use(entra, monkeypatch, SYNC_TARGETS="exchangeConnectors")

    code, out = cli("doctor")

    assert code == 1
    assert f"ok    tenant {T1} credential" in out
    assert f"ok    tenant {T2} permission" in out
    assert f"FAIL  tenant {T3} credential" in out
    assert f"{entra.authority}/{T3}/adminconsent?client_id={TENANT_APP_CLIENT_ID}" in out

    healthy, out = cli("doctor", "--tenant", T1, "--tenant", T2)
    assert healthy == 0, out


def test_status_and_sync_take_tenant(tenants: Emulator) -> None:
    code, out = cli("sync", "--tenant", T2)
    assert code == 0, out
    assert {tenant_of(c, tenants) for c in tenants.calls("sync")} == {T2}
    assert T2 in out

    code, out = cli("status", "--json", "--tenant", T1)
    assert code == 0
    assert set(json.loads(out)["tenants"]) == {T1}

    assert cli("status", "--tenant", OUTSIDER)[0] == 2
    assert cli("sync", "--tenant", "contoso")[0] == 2


def test_after_the_assertion_failed_the_next_invocation_asks_the_identity_again(tenants: Emulator) -> None:
    """msal keeps a failed identity answer for 5 s and would serve it again without asking."""
    tenants.fault("identity", status=503, times=100)
    assert sync_every_tenant().status == 503
    tenants.mend("identity")
    asked = len(tenants.calls("identity"))

    answer = sync_every_tenant()

    assert answer.status == 202
    assert len(tenants.calls("identity")) == asked + 1


def test_after_entra_failed_the_next_invocation_asks_entra_again(tenants: Emulator) -> None:
    tenants.fault("entra_token", status=503, times=100)
    assert call_webhook(params={"tenant": T1}).status == 503
    tenants.mend("entra_token")
    asked = len(tenants.calls("entra_token"))

    answer = call_webhook(params={"tenant": T1})

    assert answer.status == 202
    assert len(tenants.calls("entra_token")) == asked + 1


def test_get_keeps_one_budget_for_every_tenant_and_the_watch(
    tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph hangs for each tenant's listing and again for its push certificate: GET answers within the budget
    (plus 2 s), and every tenant is in the answer, reported as not read in time."""
    monkeypatch.setenv("GRAPH_TIME_BUDGET_SECONDS", "5")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "20")
    monkeypatch.setenv("EXPIRY_WARNING_DAYS", "30")
    tenants.fault("list", delay=8, times=2)  # longer than the budget
    tenants.fault("applePushNotificationCertificate.get", delay=8, times=2)

    started = time.monotonic()
    answer = call_webhook("GET")

    assert time.monotonic() - started < 5 + 2
    assert set(answer.json["tenants"]) == {T1, T2}
    for report in answer.json["tenants"].values():
        assert report["targets"]["exchangeConnectors"]["error"]["code"] == "timeBudgetExhausted"
        assert any("not checked" in unchecked["reason"] for unchecked in report["expiry"]["notChecked"])


def test_device_writes_are_paced_per_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Intune's device write limit is per app per tenant: two tenants' syncs in one process each fill their own
    window (97% of it), not half of one, and neither provokes a 429."""
    window_scale = 0.1  # Intune's 20 s window as 2 s, the app told the same
    with Emulator(entra=True) as emulator:
        fleets = {tenant: DeviceFleet(450, time_scale=window_scale) for tenant in (T1, T2)}
        for tenant, fleet in fleets.items():
            emulator.add_tenant(tenant, devices=fleet, roles=(MANAGED_READ_ROLE, PRIVILEGED_ROLE))
        use(
            emulator,
            monkeypatch,
            SYNC_TARGETS="managedDevices",
            DEVICE_SYNC_MAX_PER_RUN="300",
            DEVICE_SYNC_WINDOW_SECONDS=str(20 * window_scale),
        )

        answer = sync_every_tenant()

        assert answer.status == 202, answer.text
        for tenant, fleet in fleets.items():
            written = sorted(c.at for c in emulator.calls("managedDevices.sync") if tenant_of(c, emulator) == tenant)
            busiest = max(sum(1 for t in written if start <= t < start + fleet.window) for start in written)
            assert len(written) == 300
            assert fleet.throttled == 0
            assert busiest > 150  # a shared pace would give each tenant about 97 a window


def test_doctor_checks_that_the_identity_reaches_the_tenants_queue(tenants: Emulator) -> None:
    code, out = cli("doctor")

    assert code == 0, out
    assert f"ok    queue sync-tenants: the identity can reach it at {tenants.queue_service_uri}" in out
    (asked,) = tenants.calls("queue_metadata")
    token = tenants.find_token((asked.header("Authorization") or "").removeprefix("Bearer "))
    assert token is not None and token.audience == "https://storage.azure.com"


@pytest.mark.parametrize(
    ("spoil", "said", "fix"),
    [
        ("role", "Storage answered 403 AuthorizationPermissionMismatch", "Storage Queue Data Contributor"),
        ("queue", "Storage answered 404 QueueNotFound", "Create the queue sync-tenants"),
    ],
)
def test_doctor_names_what_keeps_the_identity_from_the_queue(
    tenants: Emulator, spoil: str, said: str, fix: str
) -> None:
    if spoil == "role":
        tenants.queue_role = False
    else:
        tenants.queues.clear()

    code, out = cli("doctor")

    assert code == 1
    assert said in out
    assert fix in out


def test_doctor_without_a_storage_setting_says_the_tenants_cannot_be_dispatched(
    tenants: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AzureWebJobsStorage__queueServiceUri")

    code, out = cli("doctor")

    assert code == 1
    assert "FAIL  queue sync-tenants: the storage account is not set, so the timer cannot dispatch" in out
    assert "AzureWebJobsStorage__queueServiceUri" in out
