"""An HTTP front end over :class:`FunctionsHost`, routed the way the Functions host routes: ``/api/<route>`` for
HTTP triggers (from ``function.json``), ``POST /admin/functions/<name>`` to run a non-HTTP function now.

Where the app can see it, it behaves like the host: a chunked body reaches the function whole, a method the
function does not take is a 405 with ``Allow``, and errors are JSON like the app's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.functions_host.host import FunctionsHost, Invocation

# Told of every request: what it was, its invocation (None when no function ran), and the status it was answered.
Report = Callable[[str, Invocation | None, int], None]
# Bodies past this are not read further (the function's own limit is far lower, and it answers 413 itself).
MAX_BODY_BYTES = 1024 * 1024
JSON = {"Content-Type": "application/json"}


def json_error(status: int, code: str, message: str, **extra: str) -> tuple[int, dict[str, str], bytes]:
    return status, dict(JSON), json.dumps({"error": {"code": code, "message": message, **extra}}).encode()


def route_pattern(template: str) -> re.Pattern[str]:
    """A Functions route template as a pattern: ``{name}`` is one path segment, ``{name?}`` an optional one."""
    pattern = ""
    for segment in template.strip("/").split("/"):
        parameter = re.fullmatch(r"\{(\w+)(\?)?\}", segment)
        if parameter is None:
            pattern += "/" + re.escape(segment)
        elif parameter[2]:
            pattern += rf"(?:/(?P<{parameter[1]}>[^/]+))?"
        else:
            pattern += rf"/(?P<{parameter[1]}>[^/]+)"
    return re.compile(pattern)


class FrontEnd:
    def __init__(self, host: FunctionsHost, port: int, report: Report | None = None) -> None:
        self.host = host
        self.port = port
        self.report = report
        self.routes = {
            f"/api/{loaded.trigger.get('route', name)}": (name, [m.upper() for m in loaded.trigger["methods"]])
            for name, loaded in host.loaded.items()
            if loaded.trigger.get("type") == "httpTrigger"
        }
        self._templates = [(route_pattern(route), route) for route in self.routes]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Answer one request, and report it (every method, whatever its status)."""
        route = path.split("?", 1)[0]
        invocation: list[Invocation] = []
        status, answer_headers, answer = self._dispatch(method, path, headers, body, invoked=invocation)
        if self.report is not None:
            what = f"{route.rsplit('/', 1)[-1]} (fired by hand)" if invocation and route.startswith("/admin/") else None
            self.report(what or f"{method} {route}", invocation[0] if invocation else None, status)
        return status, answer_headers, answer

    def _dispatch(
        self, method: str, path: str, headers: dict[str, str], body: bytes, *, invoked: list[Invocation]
    ) -> tuple[int, dict[str, str], bytes]:
        """The answer; a function that ran leaves its invocation in ``invoked``."""
        route = path.split("?", 1)[0]
        if route.startswith("/admin/functions/"):
            return self._admin(method, route.rsplit("/", 1)[-1], invoked)
        matched = next(
            ((hit, template) for pattern, template in self._templates if (hit := pattern.fullmatch(route))), None
        )
        if matched is None:
            return json_error(404, "notFound", f"no function is served at {route}")
        found, template = matched
        name, methods = self.routes[template]
        if method not in methods:
            status, extra, answer = json_error(
                405, "invalidRequest", f"method: use {' or '.join(methods)}", field="method"
            )
            return status, {**extra, "Allow": ", ".join(methods)}, answer
        route_params = {key: value for key, value in found.groupdict().items() if value is not None}
        invocation = self.host.invoke_http(
            name, method, f"http://localhost:{self.port}{path}", headers=headers, body=body, route_params=route_params
        )
        invoked.append(invocation)
        if invocation.http is None:
            return json_error(500, "internalError", invocation.error or "the function gave no HTTP answer")
        return invocation.http.status, invocation.http.headers, invocation.http.body

    def _admin(self, method: str, name: str, invoked: list[Invocation]) -> tuple[int, dict[str, str], bytes]:
        """The host's admin API runs non-HTTP functions; an HTTP function is called at its route instead."""
        if method != "POST":
            status, headers, answer = json_error(405, "invalidRequest", "method: use POST", field="method")
            return status, {**headers, "Allow": "POST"}, answer
        loaded = self.host.loaded.get(name)
        if loaded is None:
            return json_error(404, "notFound", f"no function named {name!r}; loaded: {', '.join(self.host.loaded)}")
        if loaded.trigger.get("type") == "httpTrigger":
            route = next(r for r, (function, _) in self.routes.items() if function == name)
            return json_error(
                400,
                "invalidRequest",
                f"{name} is HTTP-triggered: call it at {route}. /admin/functions/ runs non-HTTP functions only.",
            )
        invoked.append(self.host.invoke_timer(name))
        return 202, {}, b""

    def serve(self) -> ThreadingHTTPServer:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the routing, so one the function does not take is a JSON 405, never a 501.
                if name.startswith("do_"):
                    return self._any
                raise AttributeError(name)

            def _any(self) -> None:
                try:
                    body = self._body()
                except ValueError:
                    self.close_connection = True
                    status, headers, answer = json_error(400, "invalidRequest", "body: malformed chunked encoding")
                else:
                    status, headers, answer = front.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            def _body(self) -> bytes:
                """The request body, whole, whether sent with Content-Length or chunked."""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    return self._chunked_body()
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                return self.rfile.read(min(length, MAX_BODY_BYTES + 1))

            def _chunked_body(self) -> bytes:
                parts: list[bytes] = []
                received = 0
                while True:
                    size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    parts.append(self.rfile.read(min(size, MAX_BODY_BYTES + 1 - received)))
                    received += len(parts[-1])
                    if received > MAX_BODY_BYTES:
                        self.close_connection = True  # the rest is not read: the connection cannot be reused
                        return b"".join(parts)
                    self.rfile.readline(1024)  # the CRLF after each chunk
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: each invocation goes to ``report`` instead."""

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        return server
