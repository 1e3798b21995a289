"""The Graph application permissions the targets need: reading a token's claims, and granting the roles.

Granting: https://learn.microsoft.com/graph/api/serviceprincipal-post-approleassignedto
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import GraphError, GraphProtocolError
from shared.graph import Deadline, GraphClient

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


@dataclass(frozen=True)
class GrantResult:
    principal_id: str
    role: str
    app_role_id: str
    already_granted: bool


def token_claims(token: str) -> dict[str, Any]:
    """The JWT's payload, not verified: for diagnosis only, never for a decision about access."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def grant_app_roles(
    graph: GraphClient, principal_id: str, roles: tuple[str, ...], deadline: Deadline
) -> list[GrantResult]:
    """Assign each of Graph's application roles ``roles`` to a service principal (a managed identity); idempotent."""
    service_principal = graph_service_principal(graph, deadline)
    return [_grant(graph, service_principal, principal_id, role, deadline) for role in roles]


def _grant(
    graph: GraphClient, service_principal: dict[str, Any], principal_id: str, role: str, deadline: Deadline
) -> GrantResult:
    role_id = _app_role_id(service_principal, role)
    graph_sp_id = service_principal["id"]
    try:
        graph.request(
            "POST",
            graph.url(f"/v1.0/servicePrincipals/{quote(graph_sp_id, safe='')}/appRoleAssignedTo"),
            json_body={"principalId": principal_id, "resourceId": graph_sp_id, "appRoleId": role_id},
            deadline=deadline,
        )
    except GraphError as exc:
        # Graph gives an existing assignment no code of its own (Request_BadRequest), only this message.
        if exc.status == 400 and "already exists" in exc.message:
            return GrantResult(principal_id, role, role_id, already_granted=True)
        raise
    return GrantResult(principal_id, role, role_id, already_granted=False)


def held_app_roles(graph: GraphClient, principal_id: str, roles: tuple[str, ...], deadline: Deadline) -> set[str]:
    """Which of Graph's application roles ``roles`` a service principal holds, as Graph's directory says now.

    Unlike a token's ``roles``, this shows a new grant at once (tokens are cached for up to 24 hours).
    """
    service_principal = graph_service_principal(graph, deadline)
    wanted = {_app_role_id(service_principal, role): role for role in roles}
    url = graph.url(f"/v1.0/servicePrincipals/{quote(principal_id, safe='')}/appRoleAssignments")
    found = graph.request("GET", url, deadline=deadline).body
    assignments = found.get("value") if isinstance(found, dict) else None
    if not isinstance(assignments, list):
        raise GraphProtocolError("Graph's list of app role assignments is not a collection")
    return {
        wanted[a["appRoleId"]]
        for a in assignments
        if isinstance(a, dict) and a.get("appRoleId") in wanted and a.get("resourceId") == service_principal["id"]
    }


def _app_role_id(service_principal: dict[str, Any], role: str) -> str:
    """The role's id, looked up by its value: ids are Graph's to choose, values are the documented names."""
    role_id = next(
        (
            r.get("id")
            for r in service_principal.get("appRoles", [])
            if isinstance(r, dict) and r.get("value") == role and "Application" in r.get("allowedMemberTypes", [])
        ),
        None,
    )
    if not isinstance(role_id, str):
        raise GraphProtocolError(f"Microsoft Graph's service principal offers no application role {role}")
    return role_id


def graph_service_principal(graph: GraphClient, deadline: Deadline) -> dict[str, Any]:
    """Microsoft Graph's own service principal in this tenant: the resource the app role belongs to."""
    query = quote(f"appId eq '{GRAPH_APP_ID}'")
    found = graph.request("GET", graph.url(f"/v1.0/servicePrincipals?$filter={query}"), deadline=deadline).body
    items = found.get("value") if isinstance(found, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict) or "id" not in items[0]:
        raise GraphProtocolError("Microsoft Graph's service principal was not found in this tenant")
    return items[0]
