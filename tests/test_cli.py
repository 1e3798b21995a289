"""``python -m shared``: grant, doctor, status and sync against the emulator."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.cli import main
from tests.conftest import closed_port_url
from tests.emulator import (
    CONFIG_READ_WRITE_ROLE_ID,
    DEMO_ADMIN_CLIENT_ID,
    GRANT_SCOPE,
    GRAPH_APP_ID,
    GRAPH_SP_ID,
    IDENTITY_OBJECT_ID,
    READ_ROLE,
    READ_WRITE_ROLE,
    READ_WRITE_ROLE_ID,
    VPP_IDS,
    Emulator,
    connector,
    read_exports,
)

A = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"
B = "0b9a2f51-7c1e-4a8e-b7c4-5d2f3e9a8c02"
ROOT = Path(__file__).resolve().parent.parent


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture
def scheduled(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.setenv("SYNC_SCHEDULE", "0 */15 * * * *")
    return app_env


@pytest.fixture
def signed_in_admin(app_env: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A laptop after ``az login``: no managed identity, and an ``az`` that hands out the admin's token.

    The stand-in ``az`` answers ``az account get-access-token`` as the real one does; azure-identity's own
    AzureCliCredential runs it. Returns the file where it records its arguments.
    """
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.delenv("IDENTITY_HEADER")
    token = app_env.issue_user_token(app_env.url, (GRANT_SCOPE, "Application.Read.All"))
    answer = tmp_path / "token.json"
    answer.write_text(json.dumps({"accessToken": token.value, "expires_on": token.expires_on, "tokenType": "Bearer"}))
    calls = tmp_path / "az-calls.txt"
    fake_az = tmp_path / "bin" / "az"
    fake_az.parent.mkdir()
    fake_az.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\ncat "{answer}"\n')
    fake_az.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_az.parent}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_grant_assigns_the_role_resolved_by_value(app_env: Emulator, signed_in_admin: Path) -> None:
    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 0, out
    assert "DeviceManagementServiceConfig.ReadWrite.All is now granted" in out
    assert "24 hours" in out
    assert app_env.calls("service_principals")[0].query["$filter"] == [f"appId eq '{GRAPH_APP_ID}'"]
    assert app_env.calls("assign_role")[0].json() == {
        "principalId": IDENTITY_OBJECT_ID,
        "resourceId": GRAPH_SP_ID,
        "appRoleId": READ_WRITE_ROLE_ID,
    }
    assert f"account get-access-token --output json --resource {app_env.url}" in signed_in_admin.read_text()


def test_grant_twice_succeeds_and_says_it_was_already_granted(app_env: Emulator, signed_in_admin: Path) -> None:
    cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 0, out
    assert "was already granted" in out
    assert len(app_env.assignments) == 1


def test_grant_without_admin_rights_says_what_is_needed(
    app_env: Emulator, signed_in_admin: Path, tmp_path: Path
) -> None:
    weak = app_env.issue_user_token(app_env.url, ("User.Read",))
    (tmp_path / "token.json").write_text(json.dumps({"accessToken": weak.value, "expires_on": weak.expires_on}))

    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 1
    assert "Privileged Role Administrator" in out
    assert "AppRoleAssignment.ReadWrite.All" in out
    assert app_env.assignments == []


def test_grant_to_an_unknown_principal_says_how_to_find_the_right_one(app_env: Emulator, signed_in_admin: Path) -> None:
    code, out = cli("grant", "--principal-id", "11111111-2222-3333-4444-555555555555")

    assert code == 1
    assert "az functionapp identity show" in out


def test_grant_without_az_login_says_so(app_env: Emulator, signed_in_admin: Path, tmp_path: Path) -> None:
    fake_az = tmp_path / "bin" / "az"
    fake_az.write_text("#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n")

    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 1
    assert "az login" in out
    assert app_env.graph_calls() == []


def test_grant_needs_a_guid(app_env: Emulator) -> None:
    with pytest.raises(SystemExit) as usage:
        cli("grant", "--principal-id", "my-function-app")

    assert usage.value.code == 2


def test_doctor_says_all_healthy_and_exits_0(scheduled: Emulator) -> None:
    code, out = cli("doctor")

    assert code == 0, out
    assert "FAIL" not in out
    assert "All healthy." in out
    assert "the system-assigned managed identity: object id" in out


def test_doctor_without_the_role_gives_the_exact_grant_command(scheduled: Emulator) -> None:
    scheduled.roles = (READ_ROLE,)

    code, out = cli("doctor")

    assert code == 1
    assert "FAIL  permission: the token has no application role DeviceManagementServiceConfig.ReadWrite.All" in out
    assert f"python -m shared grant --principal-id {IDENTITY_OBJECT_ID}" in out
    assert "24 hours" in out


def test_doctor_then_grant_then_doctor_is_healthy(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch, signed_in_admin: Path
) -> None:
    scheduled.roles = (READ_ROLE,)
    assert cli("grant", "--principal-id", IDENTITY_OBJECT_ID)[0] == 0
    monkeypatch.setenv("IDENTITY_ENDPOINT", scheduled.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", scheduled.identity_header)

    code, out = cli("doctor")

    assert code == 0, out


def test_doctor_on_a_laptop_checks_the_identity_grant_in_the_directory(
    scheduled: Emulator, signed_in_admin: Path
) -> None:
    code, before = cli("doctor", "--principal-id", IDENTITY_OBJECT_ID)
    cli("grant", "--principal-id", IDENTITY_OBJECT_ID)
    _, after = cli("doctor", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 1
    assert f"FAIL  permission: the managed identity {IDENTITY_OBJECT_ID} does not hold the app role" in before
    assert f"python -m shared grant --principal-id {IDENTITY_OBJECT_ID}" in before
    assert f"ok    permission: the managed identity {IDENTITY_OBJECT_ID} holds the app role" in after
    assert scheduled.calls("role_assignments")[0].path.endswith(f"/{IDENTITY_OBJECT_ID}/appRoleAssignments")


def test_doctor_with_a_user_sign_in_says_how_to_check_the_identity(scheduled: Emulator, signed_in_admin: Path) -> None:
    code, out = cli("doctor")

    assert code == 1
    assert "add --principal-id" in out


def test_doctor_flags_disconnected_never_synced_and_stale_connectors(scheduled: Emulator) -> None:
    never = connector("c-never")
    never["lastSyncDateTime"] = "0001-01-01T00:00:00Z"
    scheduled.connectors = {
        "c-ok": connector("c-ok"),
        "c-down": connector("c-down", status="disconnected"),
        "c-never": never,
        "c-stale": connector("c-stale", synced_hours_ago=30),
    }

    code, out = cli("doctor", "--max-age-hours", "24")

    assert code == 1
    assert "ok    exchangeConnectors c-ok: connected" in out
    assert "FAIL  exchangeConnectors c-down: status is disconnected" in out
    assert "FAIL  exchangeConnectors c-never: has never synced" in out
    assert "FAIL  exchangeConnectors c-stale: last synced 30.0 h ago" in out
    assert "3 problem(s) found." in out


def test_doctor_flags_configured_connectors_missing_from_the_tenant(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", f"{A},gone-1")

    code, out = cli("doctor")

    assert code == 1
    assert "FAIL  exchangeConnectors gone-1: is in EXCHANGE_CONNECTOR_IDS but not in the tenant" in out


def test_doctor_with_no_connector_explains_the_retirement(scheduled: Emulator) -> None:
    scheduled.connectors.clear()

    code, out = cli("doctor")

    assert code == 1
    assert "19 February 2024" in out


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        (None, "SYNC_SCHEDULE: is not set"),
        ("*/15 * * * *", "is not a 6-field NCRONTAB expression"),
        ("* * * * * *", "fires more than once a minute"),
    ],
)
def test_doctor_checks_the_schedule(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch, schedule: str | None, problem: str
) -> None:
    if schedule is None:
        monkeypatch.delenv("SYNC_SCHEDULE")
    else:
        monkeypatch.setenv("SYNC_SCHEDULE", schedule)

    code, out = cli("doctor")

    assert code == 2  # an invalid setting, though the host reads it rather than the app
    assert problem in out


def test_doctor_names_every_invalid_setting_at_once_and_exits_2(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_SCHEDULE", "*/15 * * * *")
    monkeypatch.setenv("SYNC_TYPE", "turbo")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "abc")
    monkeypatch.setenv("DEVICE_OPERATING_SYSTEMS", "BeOS")

    code, out = cli("doctor")

    assert code == 2
    failed = [line.split(":")[0].split()[-1] for line in out.splitlines() if line.startswith("FAIL")]
    named = [line.split(":")[1].strip() for line in out.splitlines() if line.startswith("FAIL  settings")]
    assert named == ["GRAPH_TIMEOUT_SECONDS", "SYNC_TYPE", "DEVICE_OPERATING_SYSTEMS"]
    assert failed == ["settings", "settings", "settings", "SYNC_SCHEDULE"]
    assert scheduled.calls() == []


def test_every_command_names_every_invalid_setting(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TYPE", "turbo")
    monkeypatch.setenv("GRAPH_TIMEOUT_SECONDS", "abc")

    code, out = cli("status")

    assert code == 2
    assert "error: app setting SYNC_TYPE" in out
    assert "error: app setting GRAPH_TIMEOUT_SECONDS" in out
    assert "fix: Correct the app setting GRAPH_TIMEOUT_SECONDS and SYNC_TYPE" in out


def test_doctor_names_an_invalid_setting(scheduled: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_ENDPOINT", "http://graph.microsoft.com")

    code, out = cli("doctor")

    assert code == 2
    assert "FAIL  settings: GRAPH_ENDPOINT" in out
    assert scheduled.calls() == []


def test_doctor_reports_a_missing_identity(scheduled: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", closed_port_url())

    code, out = cli("doctor")

    assert code == 1
    assert "FAIL  credential: Could not get a token" in out


def test_status_prints_a_table_and_json(app_env: Emulator) -> None:
    code, table = cli("status")
    assert code == 0
    lines = table.splitlines()
    assert lines[0] == f"exchangeConnectors (v1.0, {READ_WRITE_ROLE})"
    assert lines[1].split() == ["id", "status", "lastSyncDateTime", "serverName", "primarySmtpAddress", "version"]
    assert A in table and "EXCH02" in table

    code, as_json = cli("status", "--json")
    reported = json.loads(as_json)["targets"]["exchangeConnectors"]
    assert [c["id"] for c in reported["objects"]] == [A, B]
    assert reported["missing"] == []
    assert app_env.calls("sync") == []


def test_sync_command_runs_the_same_sync(app_env: Emulator) -> None:
    code, out = cli("sync", "--type", "fullSync", "--connector", B)

    assert code == 0, out
    assert [r.json() for r in app_env.calls("sync")] == [{"syncType": "fullSync"}]
    assert "1 accepted, 0 failed" in out


def test_sync_dry_run_sends_nothing(app_env: Emulator) -> None:
    code, out = cli("sync", "--dry-run")

    assert code == 0
    assert f"would sync exchangeConnectors {A}" in out
    assert app_env.calls("sync") == []


def test_failed_sync_command_exits_1_with_the_fix(app_env: Emulator) -> None:
    app_env.roles = (READ_ROLE,)

    code, out = cli("sync")

    assert code == 1
    assert "fix: Graph refused the call: grant the Microsoft Graph application permission" in out


def test_sync_command_refuses_an_unsafe_id(app_env: Emulator) -> None:
    with pytest.raises(SystemExit) as usage:
        cli("sync", "--connector", "../../users")

    assert usage.value.code == 2
    assert app_env.calls() == []


def test_bad_setting_exits_2(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TYPE", "weekly")

    code, out = cli("status")

    assert code == 2
    assert "SYNC_TYPE" in out


def test_python_dash_m_shared_runs(app_env: Emulator) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "shared", "status", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert len(json.loads(run.stdout)["targets"]["exchangeConnectors"]["objects"]) == 2


def test_grant_refused_says_whose_token_was_refused_and_what_it_carries(app_env: Emulator) -> None:
    """The managed identity cannot grant itself: the answer says that this identity was refused, and why."""
    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 1
    assert f"the identity with object id {IDENTITY_OBJECT_ID}" in out
    assert "whose token carries DeviceManagementServiceConfig.ReadWrite.All" in out
    assert "AppRoleAssignment.ReadWrite.All" in out


def test_emulators_demo_administrator_can_grant(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", DEMO_ADMIN_CLIENT_ID)

    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 0, out
    assert "is now granted" in out
    assert app_env.assignments[0]["principalId"] == IDENTITY_OBJECT_ID


def test_doctor_with_an_invalid_setting_exits_2(scheduled: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TYPE", "turbo")

    code, out = cli("doctor")

    assert code == 2
    assert "SYNC_TYPE" in out


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["sync"], ["sync", "--dry-run"], ["doctor"]])
def test_every_command_exits_1_when_graph_cannot_be_reached(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("GRAPH_MAX_RETRIES", "0")
    scheduled.fault("list", drop=True, times=10)

    code, _ = cli(*command)

    assert code == 1


@pytest.mark.parametrize("command", [["status"], ["sync"], ["doctor"], ["grant", "--principal-id", IDENTITY_OBJECT_ID]])
def test_every_command_exits_1_when_the_identity_cannot_be_reached(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", closed_port_url())

    code, out = cli(*command)

    assert code == 1
    assert "Could not get a token" in out


def test_status_shows_configured_ids_the_tenant_does_not_have(
    app_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", f"{A} missing1")

    code, table = cli("status")
    connectors = table.split("expiry watch")[0].splitlines()[2:]
    rows = {line.split()[0]: line.split()[1] for line in connectors if not line.startswith("missing:")}

    assert code == 1
    assert rows == {A: "connected", "missing1": "missing"}
    assert "missing: missing1 is in EXCHANGE_CONNECTOR_IDS but not in the tenant" in table

    code, as_json = cli("status", "--json")
    reported = json.loads(as_json)["targets"]["exchangeConnectors"]
    assert code == 1
    assert ([c["id"] for c in reported["objects"]], reported["missing"]) == ([A], ["missing1"])


def test_sync_takes_several_ids_after_one_connector_option(app_env: Emulator) -> None:
    code, out = cli("sync", "--connector", B, A)

    assert code == 0, out
    assert [r.path.split("/")[-2] for r in app_env.calls("sync")] == [B, A]


def test_cli_fixes_name_the_cli_command_not_the_webhook(app_env: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_CONNECTOR_IDS", A)
    app_env.fault("sync", status=404, code="ResourceNotFound")

    code, out = cli("sync")

    assert code == 1
    assert "python -m shared status lists them" in out
    assert "/api/sync" not in out


def test_python_dash_m_shared_without_the_packages_says_which_python_to_use() -> None:
    run = subprocess.run(
        [sys.executable, "-S", "-m", "shared", "status"], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert ".venv/bin/python -m shared" in run.stderr


@pytest.fixture
def emulator_process() -> Iterator[str]:
    """``make emulator``: what it prints at start-up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    try:
        yield "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_make_emulator_prints_exports_that_make_doctor_pass(emulator_process: str) -> None:
    exported = read_exports(emulator_process.splitlines())
    env = {k: v for k, v in os.environ.items() if k not in ("AZURE_CLIENT_ID", "EXCHANGE_CONNECTOR_IDS")} | exported
    grant = next(line for line in emulator_process.splitlines() if "shared grant" in line).lstrip("# ").split()

    doctor = subprocess.run(
        [sys.executable, "-m", "shared", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    granted = subprocess.run(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "shared", *grant[grant.index("shared") + 1 :]],
        cwd=ROOT,
        env={**env, grant[0].split("=")[0]: grant[0].split("=")[1]},
        capture_output=True,
        text=True,
        check=False,
    )

    assert {"GRAPH_ENDPOINT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "SYNC_SCHEDULE"} <= set(exported)
    assert doctor.returncode == 0, doctor.stdout
    assert "All healthy." in doctor.stdout
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert "is now granted" in granted.stdout


@pytest.fixture
def two_permissions(scheduled: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """Targets that need both Graph permissions; the identity holds only DeviceManagementServiceConfig's."""
    monkeypatch.setenv("SYNC_TARGETS", "exchangeConnectors vppTokens windowsDriverUpdateProfiles")
    return scheduled


def test_doctor_names_each_role_the_enabled_targets_need_and_lack(two_permissions: Emulator) -> None:
    code, out = cli("doctor")

    assert code == 1
    assert "ok    permission: the token carries the application role DeviceManagementServiceConfig.ReadWrite.All" in out
    assert "FAIL  permission: the token has no application role DeviceManagementConfiguration.ReadWrite.All" in out
    assert "FAIL  windowsDriverUpdateProfiles: could not read them" in out
    assert f"ok    vppTokens {VPP_IDS[0]}" in out


def test_grant_grants_every_role_the_targets_need_once(
    two_permissions: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", DEMO_ADMIN_CLIENT_ID)

    first = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)
    second = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert first[0] == second[0] == 0
    assert "DeviceManagementConfiguration.ReadWrite.All is now granted" in first[1]
    assert "DeviceManagementConfiguration.ReadWrite.All was already granted" in second[1]
    assert sorted(a["appRoleId"] for a in two_permissions.assignments) == sorted(
        [READ_WRITE_ROLE_ID, CONFIG_READ_WRITE_ROLE_ID]
    )


def test_status_and_sync_take_a_target(two_permissions: Emulator) -> None:
    code, table = cli("status", "--target", "vppTokens")
    assert code == 0
    assert table.splitlines()[0] == f"vppTokens (v1.0, {READ_WRITE_ROLE})"
    assert VPP_IDS[1] in table

    code, out = cli("sync", "--target", "vppTokens", "--id", VPP_IDS[1])
    assert code == 0, out
    assert [r.path for r in two_permissions.calls("vppTokens.sync")] == [
        f"/v1.0/deviceAppManagement/vppTokens/{VPP_IDS[1]}/syncLicenses"
    ]
    assert two_permissions.calls("sync") == []


def test_sync_ids_need_exactly_one_target(two_permissions: Emulator) -> None:
    code, out = cli("sync", "--id", VPP_IDS[0])

    assert code == 2
    assert "--id" in out
    assert two_permissions.calls() == []


def test_sync_command_says_each_failed_result_once(app_env: Emulator) -> None:
    app_env.roles = (READ_ROLE,)
    run = subprocess.run(
        [sys.executable, "-m", "shared", "sync"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    said = run.stdout + run.stderr
    assert run.returncode == 1
    assert said.count("6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01") == 1


def test_doctor_names_only_the_enabled_targets_settings(scheduled: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_TARGETS", "vppTokens")

    _, out = cli("doctor")

    settings_line = next(line for line in out.splitlines() if "  settings:" in line)
    assert "SYNC_TARGETS=vppTokens, GRAPH_ENDPOINT=" in settings_line
    assert "Exchange" not in settings_line
    assert "EXCHANGE_CONNECTOR_IDS" not in settings_line
    assert "SYNC_TYPE" not in settings_line


def test_doctor_without_the_azure_cli_says_how_to_install_it(
    scheduled: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("IDENTITY_ENDPOINT")
    monkeypatch.setenv("PATH", str(tmp_path))  # no az anywhere

    code, out = cli("doctor")

    assert code == 1
    assert "install the Azure CLI" in out


def test_a_refused_grant_puts_the_fix_on_its_own_line(app_env: Emulator) -> None:
    code, out = cli("grant", "--principal-id", IDENTITY_OBJECT_ID)

    assert code == 1
    assert out.splitlines()[-1].startswith("fix: Sign in (az login) as an administrator")
    assert "Sign in" not in out.splitlines()[0]
