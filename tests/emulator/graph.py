"""The Graph and managed-identity HTTP server: routes, token checks, Graph's error bodies and paging."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.emulator.faults import Fault, Received, gzipped_spaces
from tests.emulator.names import (
    CONFIG_READ_ROLE,
    CONFIG_READ_ROLE_ID,
    CONFIG_READ_WRITE_ROLE,
    CONFIG_READ_WRITE_ROLE_ID,
    GRANT_SCOPE,
    GRAPH_APP_ID,
    GRAPH_SP_ID,
    HOLD_LIMIT,
    IDENTITY_PATH,
    MANAGED_READ_ROLE,
    MANAGED_READ_ROLE_ID,
    PRIVILEGED_ROLE,
    PRIVILEGED_ROLE_ID,
    QUEUE_SERVICE_PATH,
    READ_ROLE,
    READ_ROLE_ID,
    READ_WRITE_ROLE,
    READ_WRITE_ROLE_ID,
    SERVICE_PRINCIPALS_PATH,
    STATS_PATH,
    STORAGE_AUDIENCE,
    SYSTEM_ASSIGNED_CLIENT_ID,
)
from tests.emulator.targets import (
    CONNECTOR_ROUTES,
    SERVED,
    ConnectorRoutes,
    DeviceRoutes,
    mark_synced,
    own_refusal,
)

if TYPE_CHECKING:
    from tests.emulator.core import CustomerTenant, Emulator


class GraphServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    emulator: Emulator

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.emulator._lock:
            self.emulator.connections += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here, not an error worth a traceback."""


class GraphHandler(ConnectorRoutes, DeviceRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the body waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: GraphServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read ``received`` instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route, connector_id = self._route(self.command, parts.path)
        emulator._record(
            Received(
                route=route,
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
        )
        if route == "sync" and connector_id:
            emulator._count_sync(connector_id, +1)
        try:
            self._answer(route, connector_id, parts.path, parts.query, body)
        finally:
            if route == "sync" and connector_id:
                emulator._count_sync(connector_id, -1)

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None]:
        return route_of(method, path)

    def _answer(self, route: str, connector_id: str | None, path: str, query: str, body: bytes) -> None:
        emulator = self.server.emulator
        if route == "stats":
            self._send_json(200, emulator.stats())
            return
        if route != "identity":
            if not getattr(self, "_graph_connection", False):
                self._graph_connection = True
                with emulator._lock:
                    emulator.graph_connections += 1
            time.sleep(emulator.latency)  # Graph's own processing time, so overlapping calls can be seen
        spoilt = emulator._next_fault(route)
        if spoilt is not None and self._apply(spoilt):
            return
        if route == "identity":
            self._identity(query)
        elif route == "queue_metadata":
            self._queue_metadata(connector_id or "", parse_qs(query))
        elif route == "unknown":
            self._graph_error(404, "ResourceNotFound", f"Resource not found for the segment '{path}'.")
        elif self._authorised(route):
            if "." in route:
                self._served(route, connector_id, parse_qs(query))
            else:
                getattr(self, f"_{route}")(connector_id, parse_qs(query), body)

    def _apply(self, spoilt: Fault) -> bool:
        """Carry out a fault; True when it has answered (or hung up) instead of the route."""
        if spoilt.delay:
            time.sleep(spoilt.delay)
        if spoilt.hold is not None:
            spoilt.hold.wait(HOLD_LIMIT)
        with contextlib.suppress(OSError):  # the app hanging up mid-answer is what several faults test
            return self._misbehave(spoilt)
        self.close_connection = True
        return True

    def _misbehave(self, spoilt: Fault) -> bool:
        if spoilt.token_body is not None:
            spoilt.body = self._spoilt_token_answer(spoilt.token_body)
        if spoilt.trickle:
            self._trickle(spoilt)
        elif spoilt.size:
            self._oversized(spoilt)
        elif spoilt.drop:
            self.close_connection = True
        elif spoilt.drop_midway:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"value": [')
            self.wfile.flush()
            self.close_connection = True
        elif spoilt.body is not None:
            self._send(spoilt.status or 200, spoilt.body, spoilt.headers)
        elif spoilt.status is not None:
            echoed = f" ({self.headers.get('Authorization')})" if spoilt.echo_authorization else ""
            self._graph_error(
                spoilt.status, spoilt.code, spoilt.message + echoed, spoilt.headers, spoilt.inner_error_key
            )
        else:
            return False
        return True

    def _spoilt_token_answer(self, how: str) -> bytes:
        """An identity answer around a real token: cut in half, with bytes after the JSON, or a CR/LF in the token."""
        emulator = self.server.emulator
        token = emulator.issue_token(emulator.url, None)
        value = f"{token.value}\r\nX-Injected: 1" if how == "crlf" else token.value
        answer = json.dumps(
            {
                "access_token": value,
                "expires_on": str(token.expires_on),
                "resource": emulator.url,
                "token_type": "Bearer",
            }
        ).encode()
        if how == "truncated":
            return answer[: len(answer) // 2]
        return answer + b"}garbage" if how == "trailing" else answer

    def _trickle(self, spoilt: Fault) -> None:
        body = spoilt.body if spoilt.body is not None else json.dumps({"value": []}).encode()
        head = (
            f"HTTP/1.1 {spoilt.status or 200} OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        slow = head + body if spoilt.trickle_headers else body
        if not spoilt.trickle_headers:
            self.wfile.write(head)
        for index in range(len(slow)):
            self.wfile.write(slow[index : index + 1])
            self.wfile.flush()
            time.sleep(spoilt.trickle)

    def _oversized(self, spoilt: Fault) -> None:
        """A JSON-looking answer of ``size`` bytes, made as it is sent: the emulator holds at most 1 MiB of it."""
        self.send_response(spoilt.status or 200)
        self.send_header("Content-Type", "application/json")
        if spoilt.gzip:
            compressed = gzipped_spaces(spoilt.size)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(compressed)))
            self.end_headers()
            self.wfile.write(compressed)
            return
        chunk = b" " * (1024 * 1024)
        if spoilt.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(spoilt.size))
        self.end_headers()
        left = spoilt.size
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if spoilt.chunked else piece)
            left -= len(piece)
        if spoilt.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _identity(self, query_string: str) -> None:
        emulator = self.server.emulator
        query = {k: v[0] for k, v in parse_qs(query_string).items()}
        if self.headers.get("X-IDENTITY-HEADER") != emulator.identity_header:
            self._send_json(401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or wrong."})
        elif query.get("api-version") != "2019-08-01" or not query.get("resource"):
            self._send_json(400, {"statusCode": 400, "message": "api-version=2019-08-01 and resource are required."})
        else:
            token = emulator.issue_token(query["resource"], query.get("client_id"))
            self._send_json(
                200,
                {
                    "access_token": token.value,
                    "expires_on": str(token.expires_on),
                    "resource": token.audience,
                    "token_type": "Bearer",
                    "client_id": token.client_id or SYSTEM_ASSIGNED_CLIENT_ID,
                },
            )

    def _queue_metadata(self, queue: str, query: dict[str, list[str]]) -> None:
        """Storage's Get Queue Metadata, with a bearer token for Storage: its status codes and x-ms-error-code.
        https://learn.microsoft.com/rest/api/storageservices/get-queue-metadata"""
        emulator = self.server.emulator
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        token = emulator.find_token(value) if scheme == "Bearer" else None
        if query.get("comp") != ["metadata"] or not self.headers.get("x-ms-version"):
            self._storage_error(400, "InvalidQueryParameterValue", "comp=metadata and x-ms-version are required.")
        elif token is None or token.audience.rstrip("/") != STORAGE_AUDIENCE:
            self._storage_error(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request.")
        elif not emulator.queue_role:
            self._storage_error(
                403, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation."
            )
        elif queue not in emulator.queues:
            self._storage_error(404, "QueueNotFound", "The specified queue does not exist.")
        else:
            self._send(200, b"", {"x-ms-approximate-messages-count": "0", "x-ms-version": "2021-08-06"})

    def _storage_error(self, status: int, code: str, message: str) -> None:
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
            f"RequestId:{uuid.uuid4()}</Message></Error>"
        ).encode()
        self._send(status, body, {"Content-Type": "application/xml", "x-ms-error-code": code})

    def _authorised(self, route: str) -> bool:
        emulator = self.server.emulator
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        token = emulator.find_token(value) if scheme == "Bearer" else None
        if token is None or token.expires_on < time.time():
            self._graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
            return False
        if token.audience != emulator.url:
            self._graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
            return False
        # Whose data this call sees: the token's tenant's, and no other.
        self._data: Emulator | CustomerTenant = emulator.customers[token.tenant] if token.tenant else emulator
        target, _, kind = route.partition(".")
        if kind:
            read, write = SERVED[target].roles
            covered = SERVED[target].write_covers_read
            needed = {write} if kind == "sync" else {read, write} if covered else {read}
        else:
            needed = {
                "sync": {READ_WRITE_ROLE},
                "service_principals": {"Application.Read.All", GRANT_SCOPE},
                "role_assignments": {"Application.Read.All", GRANT_SCOPE},
                "assign_role": {GRANT_SCOPE},
            }.get(route, {READ_ROLE, READ_WRITE_ROLE})
        if not needed & token.permissions:
            self._graph_error(
                403,
                "Forbidden",
                "Application is not authorized to perform this operation. Application must have one of the "
                f"following scopes: {', '.join(sorted(needed))}",
            )
            return False
        return True

    def _served(self, route: str, object_id: str | None, query: dict[str, list[str]]) -> None:
        """A target of SERVED: its list (paged), its one object, or its sync action."""
        emulator = self.server.emulator
        name, _, kind = route.partition(".")
        served = SERVED[name]
        if served.fleet:
            self._device_route(kind, object_id, query)
            return
        objects = self._data.objects[name]
        if kind == "list":
            start = int((query.get("$skiptoken") or ["0"])[0])
            items = list(objects.values())
            page: dict[str, Any] = {"value": items[start : start + emulator.page_size]}
            if start + emulator.page_size < len(items):
                page["@odata.nextLink"] = (
                    f"{emulator.url}/{served.version}{served.path}?$skiptoken={start + emulator.page_size}"
                )
            self._send_json(200, page)
            return
        found = next(iter(objects.values()), None) if served.single else objects.get(object_id or "")
        if found is None:
            self._graph_error(404, "ResourceNotFound", f"No {name} object {object_id or ''} in this tenant.")
        elif kind == "get":
            self._send_json(200, found)
        elif (refusal := own_refusal(name, found)) is not None:
            self._graph_error(*refusal)
        else:
            mark_synced(name, found)
            if served.success == 200:
                self._send_json(200, found)
            else:
                self._send(204, b"")

    def _service_principals(self, _id: str | None, query: dict[str, list[str]], _body: bytes) -> None:
        wanted = (query.get("$filter") or [""])[0]
        found = [graph_service_principal()] if wanted == f"appId eq '{GRAPH_APP_ID}'" else []
        self._send_json(200, {"value": found})

    def _role_assignments(self, principal_id: str | None, _query: dict[str, list[str]], _body: bytes) -> None:
        emulator = self.server.emulator
        if principal_id not in emulator.principals:
            self._graph_error(404, "Request_ResourceNotFound", f"Resource '{principal_id}' does not exist.")
            return
        self._send_json(200, {"value": [a for a in emulator.assignments if a["principalId"] == principal_id]})

    def _assign_role(self, resource_id: str | None, _query: dict[str, list[str]], body: bytes) -> None:
        emulator = self.server.emulator
        try:
            wanted = json.loads(body)
        except ValueError:
            wanted = None
        role_ids = {r["id"] for r in graph_service_principal()["appRoles"]}
        if resource_id != GRAPH_SP_ID or not isinstance(wanted, dict) or wanted.get("resourceId") != GRAPH_SP_ID:
            self._graph_error(400, "Request_BadRequest", "resourceId must be the Graph service principal.")
        elif wanted.get("appRoleId") not in role_ids:
            self._graph_error(400, "Request_BadRequest", "Permission being assigned was not found on application")
        elif wanted.get("principalId") not in emulator.principals:
            self._graph_error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{wanted.get('principalId')}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        elif any(
            a["principalId"] == wanted["principalId"] and a["appRoleId"] == wanted["appRoleId"]
            for a in emulator.assignments
        ):
            self._graph_error(
                400,
                "Request_BadRequest",
                "Permission being assigned already exists on the object",
            )
        else:
            assignment = {
                "id": secrets.token_urlsafe(16),
                "principalId": wanted["principalId"],
                "resourceId": GRAPH_SP_ID,
                "appRoleId": wanted["appRoleId"],
            }
            emulator.assignments.append(assignment)
            self._send_json(201, assignment)

    def _graph_error(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner_error_key: str = "innerError",
    ) -> None:
        request_id = str(uuid.uuid4())
        body = {
            "error": {
                "code": code,
                "message": message,
                inner_error_key: {
                    "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": self.headers.get("client-request-id") or request_id,
                },
            }
        }
        self._send(status, json.dumps(body).encode(), {"request-id": request_id, **(headers or {})})

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("request-id", str(uuid.uuid4()))
        if self.headers.get("client-request-id"):
            headers.setdefault("client-request-id", self.headers["client-request-id"])
        if body:
            headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
        headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


ROUTES = [
    ("GET", re.compile(re.escape(STATS_PATH)), "stats"),
    ("GET", re.compile(re.escape(IDENTITY_PATH)), "identity"),
    ("GET", re.compile(rf"{re.escape(QUEUE_SERVICE_PATH)}/([^/]+)"), "queue_metadata"),
    *CONNECTOR_ROUTES,
    ("GET", re.compile(re.escape(SERVICE_PRINCIPALS_PATH)), "service_principals"),
    ("POST", re.compile(rf"{re.escape(SERVICE_PRINCIPALS_PATH)}/([^/]+)/appRoleAssignedTo"), "assign_role"),
    ("GET", re.compile(rf"{re.escape(SERVICE_PRINCIPALS_PATH)}/([^/]+)/appRoleAssignments"), "role_assignments"),
]


for _name, _served in SERVED.items():
    _root = re.escape(f"/{_served.version}{_served.path}")
    if _served.single:
        ROUTES.append(("GET", re.compile(_root), f"{_name}.get"))
        if _served.action:
            ROUTES.append(("POST", re.compile(rf"{_root}/{_served.action}"), f"{_name}.sync"))
    else:
        ROUTES += [
            ("GET", re.compile(_root), f"{_name}.list"),
            ("GET", re.compile(rf"{_root}/([^/]+)"), f"{_name}.get"),
            ("POST", re.compile(rf"{_root}/([^/]+)/{_served.action}"), f"{_name}.sync"),
        ]


def route_of(method: str, path: str) -> tuple[str, str | None]:
    """The route's name and the id in the path, if any."""
    for verb, pattern, name in ROUTES:
        found = pattern.fullmatch(path)
        if verb == method and found:
            return name, found.group(1) if pattern.groups else None
    return "unknown", None


def graph_service_principal() -> dict[str, Any]:
    def role(role_id: str, value: str) -> dict[str, Any]:
        return {"id": role_id, "value": value, "allowedMemberTypes": ["Application"], "isEnabled": True}

    return {
        "id": GRAPH_SP_ID,
        "appId": GRAPH_APP_ID,
        "displayName": "Microsoft Graph",
        "appRoles": [
            role("df021288-bdef-4463-88db-98f22de89214", "User.Read.All"),
            role(READ_ROLE_ID, READ_ROLE),
            role(READ_WRITE_ROLE_ID, READ_WRITE_ROLE),
            role(CONFIG_READ_ROLE_ID, CONFIG_READ_ROLE),
            role(CONFIG_READ_WRITE_ROLE_ID, CONFIG_READ_WRITE_ROLE),
            role(MANAGED_READ_ROLE_ID, MANAGED_READ_ROLE),
            role(PRIVILEGED_ROLE_ID, PRIVILEGED_ROLE),
        ],
    }
