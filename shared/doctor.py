"""``doctor``: what is wrong with this app's setup, and what to do about each thing."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from shared import connectors, run
from shared.errors import ConfigurationError, GraphError, IdentityUnavailable
from shared.graph import Deadline, GraphClient, client_for
from shared.permissions import PERMISSION, has_app_role, token_claims
from shared.settings import Settings, parse_settings, remember_secrets

# What lists the connectors, as the operator at a terminal runs it (the webhook's answers name GET /api/sync).
LISTER = "python -m shared status"
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
    *, max_age: timedelta, principal_id: str | None = None, environ: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every check, in the order an administrator would fix them; stops where later checks cannot run.

    ``principal_id``: the app's managed identity, checked through Graph's directory when doctor runs with a
    signed-in user's token (on a laptop) rather than with the identity's own.
    """
    env = os.environ if environ is None else environ
    try:
        remember_secrets(env)
        settings = parse_settings(env)
    except ConfigurationError as exc:
        fix = f"Correct the app setting {exc.setting} (README, 'Settings')."
        return [Finding(False, "settings", str(exc), fix, invalid_setting=True)]
    findings = [_settings_finding(settings), _schedule_finding(env.get("SYNC_SCHEDULE", ""))]
    graph = client_for(settings.graph)
    try:
        claims = token_claims(graph.token(Deadline(settings.graph.time_budget)))
    except IdentityUnavailable as exc:
        return [*findings, Finding(False, "credential", str(exc))]
    findings.append(_credential_finding(settings, claims))
    if principal_id and _is_user_token(claims):
        findings.append(_identity_grant_finding(graph, settings, principal_id))
    else:
        findings.append(_permission_finding(claims))
    return findings + _connector_findings(settings, max_age)


def _settings_finding(settings: Settings) -> Finding:
    targets = ", ".join(settings.connector_ids) or "every connector in the tenant"
    return Finding(
        True,
        "settings",
        f"SYNC_TYPE={settings.sync_type}, GRAPH_ENDPOINT={settings.graph.endpoint}, targets: {targets}",
    )


def _schedule_finding(schedule: str) -> Finding:
    fix = "Set SYNC_SCHEDULE to an NCRONTAB expression with 6 fields, in UTC, such as '0 */15 * * * *'."
    fields = schedule.split()
    if not schedule.strip():
        return Finding(False, "SYNC_SCHEDULE", "is not set, so the timer function cannot load", fix)
    if len(fields) != 6 or not all(NCRONTAB_FIELD.fullmatch(f) for f in fields):
        return Finding(False, "SYNC_SCHEDULE", f"{schedule!r} is not a 6-field NCRONTAB expression", fix)
    if not fields[0].isdigit():
        return Finding(False, "SYNC_SCHEDULE", f"{schedule!r} fires more than once a minute", fix)
    return Finding(True, "SYNC_SCHEDULE", f"{schedule} (UTC)")


def _credential_finding(settings: Settings, claims: dict[str, Any]) -> Finding:
    who = claims.get("upn") or f"object id {claims.get('oid')}, app id {claims.get('appid')}"
    detail = f"{settings.graph.identity_description}: {who}; token audience {claims.get('aud')}"
    if claims.get("aud") != settings.graph.endpoint:
        return Finding(False, "credential", detail, "Set GRAPH_ENDPOINT to the Graph root of this tenant's cloud.")
    return Finding(True, "credential", detail)


def _is_user_token(claims: dict[str, Any]) -> bool:
    return "upn" in claims or "scp" in claims


def _identity_grant_finding(graph: GraphClient, settings: Settings, principal_id: str) -> Finding:
    try:
        granted = has_app_role(graph, principal_id, Deadline(settings.graph.time_budget))
    except (GraphError, IdentityUnavailable) as exc:
        return Finding(
            False,
            "permission",
            f"could not read the app role assignments of {principal_id}: {exc}",
            "Sign in (az login) as someone who may read the directory (Application.Read.All).",
        )
    if granted:
        return Finding(True, "permission", f"the managed identity {principal_id} holds the app role {PERMISSION}")
    return Finding(
        False,
        "permission",
        f"the managed identity {principal_id} does not hold the app role {PERMISSION}",
        f"As an administrator: python -m shared grant --principal-id {principal_id}  (README, 'Grant the Graph "
        f"permission'). {GRANT_DELAY}",
    )


def _permission_finding(claims: dict[str, Any]) -> Finding:
    roles = claims.get("roles") or []
    scopes = str(claims.get("scp") or "").split()
    if PERMISSION in roles:
        return Finding(True, "permission", f"the token carries the application role {PERMISSION}")
    if PERMISSION in scopes:
        return Finding(True, "permission", f"the signed-in user's token carries the delegated scope {PERMISSION}")
    if _is_user_token(claims):
        return Finding(
            False,
            "permission",
            f"the signed-in user's token lacks {PERMISSION} (scopes: {' '.join(scopes) or 'none'})",
            "To check the app's managed identity from here, add --principal-id <its object id> "
            "(az functionapp identity show -g RG -n APP --query principalId -o tsv).",
        )
    return Finding(
        False,
        "permission",
        f"the token has no application role {PERMISSION} (roles: {', '.join(roles) or 'none'})",
        f"As an administrator: python -m shared grant --principal-id {claims.get('oid')}  "
        f"(or the az rest commands in the README). {GRANT_DELAY}",
    )


def _connector_findings(settings: Settings, max_age: timedelta) -> list[Finding]:
    try:
        states = run.target_states(settings)
    except (GraphError, IdentityUnavailable) as exc:
        return [Finding(False, "connectors", f"could not list them: {exc}", run.remedy(exc, lister=LISTER))]
    findings = [
        Finding(
            False,
            f"connector {connector_id}",
            "is in EXCHANGE_CONNECTOR_IDS but not in the tenant",
            "Remove it from EXCHANGE_CONNECTOR_IDS, or correct the id ('python -m shared status' lists them).",
        )
        for connector_id in states.missing
    ]
    if not states.connectors and not states.missing:
        return [
            Finding(
                False,
                "connectors",
                "there is no Exchange connector in this tenant, so there is nothing to sync",
                "Microsoft ended support for the on-premises Intune Exchange connector on 19 February 2024; "
                "if one was never installed or was retired, this app has nothing to do.",
            )
        ]
    now = datetime.now(timezone.utc)
    return [_connector_finding(c, now, max_age) for c in states.connectors] + findings


def _connector_finding(connector: connectors.ExchangeConnector, now: datetime, max_age: timedelta) -> Finding:
    topic = f"connector {connector.id}"
    last_sync = _parse_graph_datetime(connector.last_sync)
    if connector.status != "connected":
        return Finding(
            False,
            topic,
            f"status is {connector.status or 'unknown'} (server {connector.server_name or 'unknown'})",
            "Check the Intune Exchange connector service on its server. Microsoft ended support for the "
            "on-premises connector on 19 February 2024: plan the move to Exchange Online or hybrid modern auth.",
        )
    if last_sync is None:
        return Finding(False, topic, "has never synced", "Run 'python -m shared sync' and check again later.")
    age = now - last_sync
    hours = age.total_seconds() / 3600
    if age > max_age:
        return Finding(
            False,
            topic,
            f"last synced {hours:.1f} h ago, more than {max_age.total_seconds() / 3600:g} h",
            "Check the connector's server; a sync request is accepted by Intune but runs on the connector.",
        )
    return Finding(True, topic, f"connected, last synced {hours:.1f} h ago")


def _parse_graph_datetime(value: str | None) -> datetime | None:
    """Graph's DateTimeOffset, which has 7 fractional digits; its 'never' is year 1."""
    if not value:
        return None
    normalised = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(normalised)
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
