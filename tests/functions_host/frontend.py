"""An HTTP front end over :class:`FunctionsHost`, routed the way the Functions host routes: ``/api/<route>`` for
HTTP triggers (from ``function.json``), ``POST /admin/functions/<name>`` to run any other function now."""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.functions_host.host import FunctionsHost, Invocation

Report = Callable[[str, Invocation], None]


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

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        route = path.split("?", 1)[0]
        if route.startswith("/admin/functions/") and method == "POST":
            name = route.rsplit("/", 1)[-1]
            if name not in self.host.loaded:
                return 404, {}, b""
            self._report(f"{name} (fired by hand)", self.host.invoke_timer(name))
            return 202, {}, b""
        if route not in self.routes:
            return 404, {}, b""
        name, methods = self.routes[route]
        if method not in methods:
            return 405, {"Allow": ", ".join(methods)}, b""
        invocation = self.host.invoke_http(
            name, method, f"http://localhost:{self.port}{path}", headers=headers, body=body
        )
        self._report(f"{method} {route}", invocation)
        if invocation.http is None:
            return 500, {"Content-Type": "text/plain"}, (invocation.error or "no HTTP answer").encode()
        return invocation.http.status, invocation.http.headers, invocation.http.body

    def serve(self) -> ThreadingHTTPServer:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, answer = front.handle(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: each invocation goes to ``report`` instead."""

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        return server

    def _report(self, what: str, invocation: Invocation) -> None:
        if self.report is not None:
            self.report(what, invocation)
