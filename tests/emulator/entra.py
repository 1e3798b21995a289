"""The Entra stand-in: HTTPS with a test CA, tenant discovery and the client-assertion token grant."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import ssl
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import trustme

from tests.emulator.graph import GraphHandler, GraphServer
from tests.emulator.names import EXCHANGE_AUDIENCE, HOME_TENANT_ID, IDENTITY_OBJECT_ID, JWT_BEARER, TENANT_APP_CLIENT_ID

if TYPE_CHECKING:
    from tests.emulator.core import Emulator


class EntraServer(GraphServer):
    """Entra's v2 endpoints over HTTPS, with a certificate from a test CA generated for this run."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(("127.0.0.1", 0), EntraHandler)
        self.emulator = emulator
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        # The handshake happens in the request's own thread (EntraHandler.setup), never in the accepting one.
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as ca_file:
            ca_file.write(ca.cert_pem.bytes())
        self.ca_file = ca_file.name
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, name="emulator-entra", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with contextlib.suppress(OSError):
            os.unlink(self.ca_file)


class EntraHandler(GraphHandler):
    """``/{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/oauth2/v2.0/token``."""

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.do_handshake()

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str | None]:
        for verb, pattern, name in ENTRA_PATHS:
            found = pattern.fullmatch(path)
            if verb == method and found:
                return name, found.group(1)
        return "unknown", None

    def _answer(self, route: str, tenant: str | None, path: str, query: str, body: bytes) -> None:
        spoilt = self.server.emulator._next_fault(route)
        if spoilt is not None and self._apply(spoilt):
            return
        if route == "entra_discovery":
            self._discovery(tenant or "")
        elif route == "entra_token":
            self._token(tenant or "", {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
        else:
            self._entra_error(404, "invalid_request", 90002, "The requested endpoint does not exist.")

    def _discovery(self, tenant: str) -> None:
        emulator = self.server.emulator
        if tenant not in emulator.customers and tenant != HOME_TENANT_ID:
            self._entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            return
        issuer = f"{emulator.authority}/{tenant}/v2.0"
        self._send_json(
            200,
            {
                "issuer": issuer,
                "token_endpoint": f"{emulator.authority}/{tenant}/oauth2/v2.0/token",
                "authorization_endpoint": f"{emulator.authority}/{tenant}/oauth2/v2.0/authorize",
                "tenant_region_scope": "EU",
            },
        )

    def _token(self, tenant: str, form: dict[str, str]) -> None:
        """The client-credentials grant with a federated assertion, checked as Entra checks it."""
        emulator = self.server.emulator
        customer = emulator.customers.get(tenant)
        assertion = emulator.find_token(form.get("client_assertion", ""))
        claims = assertion.claims if assertion is not None else {}
        expected_issuer = f"{emulator.authority}/{HOME_TENANT_ID}/v2.0"
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != JWT_BEARER:
            self._entra_error(400, "invalid_request", 900144, "The request body must contain client_assertion_type.")
        elif customer is None:
            self._entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        elif form.get("client_id") != TENANT_APP_CLIENT_ID:
            self._entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )
        elif assertion is None or assertion.expires_on < time.time():
            self._entra_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        elif claims.get("aud") != EXCHANGE_AUDIENCE:
            self._entra_error(
                401,
                "invalid_client",
                700212,
                "No matching federated identity record found for presented assertion audience.",
            )
        elif claims.get("iss") != expected_issuer or claims.get("sub") != IDENTITY_OBJECT_ID:
            self._entra_error(
                401,
                "invalid_client",
                70021,
                f"No matching federated identity record found for presented assertion. Assertion Issuer: "
                f"'{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'.",
            )
        elif not customer.consented:
            self._entra_error(
                401,
                "invalid_client",
                7000229,
                f"The client application {TENANT_APP_CLIENT_ID} is missing service principal in the tenant {tenant}.",
            )
        elif form.get("scope") != f"{emulator.url}/.default":
            self._entra_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not valid."
            )
        else:
            token = emulator.issue_tenant_token(customer)
            self._send_json(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": emulator.token_lifetime,
                    "ext_expires_in": emulator.token_lifetime,
                    "access_token": token.value,
                },
            )

    def _entra_error(self, status: int, error: str, code: int, description: str) -> None:
        """Entra's OAuth error body: ``error``, ``error_description`` that starts with the AADSTS code."""
        trace = str(uuid.uuid4())
        self._send_json(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
                "error_codes": [code],
                "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
                "trace_id": trace,
                "correlation_id": str(uuid.uuid4()),
            },
        )


ENTRA_PATHS = [
    ("GET", re.compile(r"/([^/]+)/v2\.0/\.well-known/openid-configuration"), "entra_discovery"),
    ("POST", re.compile(r"/([^/]+)/oauth2/v2\.0/token"), "entra_token"),
]


def b64json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
