"""``doctor``: what is wrong with this app's setup, and what to do about each thing."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from shared import status
from shared import tenants as tenancy
from shared.clients import client_for
from shared.errors import ConfigurationError, GraphError, IdentityUnavailable, InternalError, contained
from shared.graph import Deadline, GraphClient
from shared.permissions import held_app_roles, token_claims
from shared.settings import Settings, parse_settings, remember_secrets
from shared.targets import TARGETS, permissions_for
from shared.targets.base import Health

log = logging.getLogger(__name__)
# What lists the connectors, as the operator at a terminal runs it (the webhook's answers name GET /api/sync).
LISTER = "python -m shared status"
SETTING_FIX = "Correct the app setting {} (README, 'Settings')."
GRANT_DELAY = "A new grant can take up to 24 hours to reach the identity's cached tokens."
NCRONTAB_FIELD = re.compile(r"[0-9A-Za-z*/,\-]+")


@dataclass(frozen=True)
class Finding:
    ok: bool
    topic: str
    detail: str
    fix: str | None = None
    invalid_setting: bool = False


def diagnose(
    *,
    max_age: timedelta,
    principal_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    targets: tuple[str, ...] | None = None,
    tenants: list[str] | None = None,
) -> list[Finding]:
    """Every check, in the order an administrator would fix them; stops where later checks cannot run. With
    TENANT_IDS, each tenant (or each of ``tenants``) is checked on its own, and its findings name it.

    ``principal_id``: the app's managed identity, checked through Graph's directory when doctor runs with a
    signed-in user's token (on a laptop) rather than with the identity's own.
    """
    env = os.environ if environ is None else environ
    schedule = _schedule_finding(env.get("SYNC_SCHEDULE", ""))
    try:
        remember_secrets(env)
        settings = parse_settings(env)
    except ConfigurationError as exc:
        invalid = [
            Finding(False, "settings", f"{setting}: {message}", SETTING_FIX.format(setting), invalid_setting=True)
            for setting, message in exc.problems
        ]
        return [*invalid, *([] if schedule.ok else [schedule])]
    names = targets or settings.targets
    chosen = tenancy.selected(settings, tenants, "--tenant")
    findings = [_settings_finding(settings, names), schedule]
    if settings.tenants:
        findings.append(_queue_finding(settings, env))

    def check(tenant: str | None) -> list[Finding]:
        found = _tenant_findings(settings, tenant, names, max_age, principal_id)
        return [replace(f, topic=f"tenant {tenant} {f.topic}") for f in found] if tenant else found

    for tenant_findings in tenancy.for_each(settings, chosen, check):
        findings += tenant_findings
    return findings


def _tenant_findings(
    settings: Settings, tenant: str | None, names: tuple[str, ...], max_age: timedelta, principal_id: str | None
) -> list[Finding]:
    roles = permissions_for(names)
    graph = client_for(settings.graph, tenant)
    try:
        claims = token_claims(graph.token(Deadline(settings.graph.time_budget)))
    except IdentityUnavailable as exc:
        return [Finding(False, "credential", str(exc), exc.remedy(lister=LISTER))]
    findings = [_credential_finding(settings, graph, claims)]
    if principal_id and _is_user_token(claims):
        findings += _identity_grant_findings(graph, settings, principal_id, roles)
    else:
        findings += [_permission_finding(claims, role, tenant) for role in roles]
    return findings + _target_findings(settings, names, max_age, tenant)


def _settings_finding(settings: Settings, names: tuple[str, ...]) -> Finding:
    named = "".join(
        f", {setting}={value}"
        for name in names
        for setting, value in TARGETS[name].shown_settings(settings.options_for(name)).items()
    )
    tenants = (
        f", TENANT_IDS={','.join(settings.tenants)} through TENANT_APP_CLIENT_ID={settings.graph.app_client_id} "
        f"at {settings.graph.authority}"
        if settings.tenants
        else ""
    )
    return Finding(
        True,
        "settings",
        f"SYNC_TARGETS={','.join(names)}, GRAPH_ENDPOINT={settings.graph.endpoint}{named}{tenants}",
    )


def _queue_finding(settings: Settings, env: Mapping[str, str]) -> Finding:
    """With TENANT_IDS the timer only dispatches: without the queue, no tenant is synced."""
    from shared.dispatch import QUEUE  # noqa: PLC0415 - only with TENANT_IDS
    from shared.host_storage import check_queue  # noqa: PLC0415

    access = check_queue(settings.graph, env)
    return Finding(access.ok, f"queue {QUEUE}", access.detail, access.fix)


def _schedule_finding(schedule: str) -> Finding:
    """The timer's setting, read by the Functions host rather than the app: invalid, like the app's own (exit 2)."""
    fields = schedule.split()
    if not schedule.strip():
        problem = "is not set, so the timer function cannot load"
    elif len(fields) != 6 or not all(NCRONTAB_FIELD.fullmatch(f) for f in fields):
        problem = f"{schedule!r} is not a 6-field NCRONTAB expression"
    elif not fields[0].isdigit():
        problem = f"{schedule!r} fires more than once a minute"
    else:
        return Finding(True, "SYNC_SCHEDULE", f"{schedule} (UTC)")
    fix = "Set SYNC_SCHEDULE to an NCRONTAB expression with 6 fields, in UTC, such as '0 */15 * * * *'."
    return Finding(False, "SYNC_SCHEDULE", problem, fix, invalid_setting=True)


def _credential_finding(settings: Settings, graph: GraphClient, claims: dict[str, Any]) -> Finding:
    who = claims.get("upn") or f"object id {claims.get('oid')}, app id {claims.get('appid')}"
    detail = f"{graph.identity_description}: {who}; token audience {claims.get('aud')}"
    if claims.get("aud") != settings.graph.endpoint:
        return Finding(False, "credential", detail, "Set GRAPH_ENDPOINT to the Graph root of this tenant's cloud.")
    if graph.tenant is not None and claims.get("tid") != graph.tenant:
        return Finding(False, "credential", f"{detail}; but the token is for tenant {claims.get('tid')}")
    return Finding(True, "credential", detail)


def _is_user_token(claims: dict[str, Any]) -> bool:
    return "upn" in claims or "scp" in claims


def _identity_grant_findings(
    graph: GraphClient, settings: Settings, principal_id: str, roles: tuple[str, ...]
) -> list[Finding]:
    try:
        held = held_app_roles(graph, principal_id, roles, Deadline(settings.graph.time_budget))
    except (GraphError, IdentityUnavailable) as exc:
        return [
            Finding(
                False,
                "permission",
                f"could not read the app role assignments of {principal_id}: {exc}",
                "Sign in (az login) as someone who may read the directory (Application.Read.All).",
            )
        ]
    return [
        Finding(True, "permission", f"the managed identity {principal_id} holds the app role {role}")
        if role in held
        else Finding(
            False,
            "permission",
            f"the managed identity {principal_id} does not hold the app role {role}",
            f"As an administrator: python -m shared grant --principal-id {principal_id}  (README, 'Grant the Graph "
            f"permission'). {GRANT_DELAY}",
        )
        for role in roles
    ]


def _permission_finding(claims: dict[str, Any], role: str, tenant: str | None) -> Finding:
    roles = claims.get("roles") or []
    scopes = str(claims.get("scp") or "").split()
    if role in roles:
        return Finding(True, "permission", f"the token carries the application role {role}")
    if role in scopes:
        return Finding(True, "permission", f"the signed-in user's token carries the delegated scope {role}")
    if _is_user_token(claims):
        return Finding(
            False,
            "permission",
            f"the signed-in user's token lacks {role} (scopes: {' '.join(scopes) or 'none'})",
            "To check the app's managed identity from here, add --principal-id <its object id> "
            "(az functionapp identity show -g RG -n APP --query principalId -o tsv).",
        )
    if tenant is not None:
        return Finding(
            False,
            "permission",
            f"the tenant's token has no application role {role} (roles: {', '.join(roles) or 'none'})",
            f"Add {role} to the API permissions of the app {claims.get('appid')} (TENANT_APP_CLIENT_ID), then have "
            f"an administrator of tenant {tenant} consent again (README, 'Many tenants'). {GRANT_DELAY}",
        )
    return Finding(
        False,
        "permission",
        f"the token has no application role {role} (roles: {', '.join(roles) or 'none'})",
        f"As an administrator: python -m shared grant --principal-id {claims.get('oid')}  "
        f"(or the az rest commands in the README). {GRANT_DELAY}",
    )


def _target_findings(
    settings: Settings, names: tuple[str, ...], max_age: timedelta, tenant: str | None
) -> list[Finding]:
    findings = []
    now = datetime.now(timezone.utc)
    states = status.target_states(settings, names, tenant=tenant)
    for state in states:
        target = TARGETS[state.target]
        if state.error is not None:
            advice = state.error.remedy(target, LISTER, tenant)
            findings.append(Finding(False, state.target, f"could not read them: {state.error}", advice))
            continue
        findings += [
            Finding(
                False,
                f"{state.target} {missing}",
                f"is in {target.ids_setting} but not in the tenant",
                f"Remove it from {target.ids_setting}, or correct the id ('{LISTER}' lists them).",
            )
            for missing in state.missing
        ]
        if not state.objects and not state.missing:
            advice = target.none_advice
            findings.append(Finding(advice is None, state.target, target.nothing_found(), advice))
        for obj in state.objects:
            try:
                health = contained(log, f"checking {state.target} {obj.id}", partial(target.health, obj, now, max_age))
            except InternalError as exc:
                health = Health(False, str(exc))
            findings.append(Finding(health.ok, f"{state.target} {obj.id}", health.detail, health.fix))
    return findings + _expiry_findings(settings, states, tenant)


def _expiry_findings(settings: Settings, states: list[status.TargetState], tenant: str | None) -> list[Finding]:
    """The expiry watch: each finding fails doctor; what the token cannot read is only 'not checked'."""
    if not settings.expiry_warning_days:
        return [Finding(True, "expiry watch", "off (EXPIRY_WARNING_DAYS=0)")]
    report = status.expiry_watch(settings, states, tenant)
    findings = [Finding(True, f"expiry {u.target}", u.reason) for u in report.unchecked]
    for standing in report.standings:
        left = standing.days_left(report.at)
        when = f"expires {standing.expires.date().isoformat()} ({left} days left)" if standing.expires else "no expiry"
        detail = f"{standing.name}: {standing.problem}" if standing.problem else f"{standing.name}: {when}"
        findings.append(
            Finding(standing.problem is None, f"expiry {standing.target} {standing.id}", detail, standing.fix)
        )
    return findings
