"""The wire under Graph and the managed identity: one pooled session whose every exchange ends at the run's deadline.

``requests`` bounds each socket read, not the whole exchange, so an endpoint that trickles one byte a second
(headers or body) could hold a call for as long as it likes. Here every exchange runs inside
:func:`bounded_by`: one watchdog thread shuts the exchange's socket down when the deadline passes, which ends the
blocked read at once. Answers are also read no further than :data:`MAX_ANSWER_BYTES` after decompression, so what
the other side sends cannot grow this process's memory. azure-identity reaches the same session through
:class:`DeadlineTransport`, azure-core's own transport with its retry sleeps bounded by the same deadline.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

from shared.errors import OutOfTime

# Graph's and the identity endpoint's answers are kilobytes; anything near this is not an answer we can use.
USER_AGENT = "intune-exchange-connector-sync/1.0"
CONNECT_TIMEOUT = 5.0  # seconds; the read timeout is GRAPH_TIMEOUT_SECONDS
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# A Retry-After beyond this is not a wait anyone means: treated as absent, like an unparseable one.
MAX_RETRY_AFTER = 86_400.0


class AnswerTooLarge(requests.RequestException):
    """An answer longer than :data:`MAX_ANSWER_BYTES`; a RequestException so azure-core maps it like other failures."""


class Deadline:
    """A run's total time budget, shared by every call, retry and wait in it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())


class Exchange:
    """The sockets one thread uses while a :func:`bounded_by` block runs; shut down together at the deadline."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown() wakes a read blocked in another thread; close() alone would not.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread for the process, expiring exchanges at their deadlines."""

    def __init__(self) -> None:
        self._armed: set[Exchange] = set()
        self._wake = threading.Condition()
        self._next = float("inf")
        self._thread: threading.Thread | None = None

    def arm(self, exchange: Exchange) -> None:
        with self._wake:
            self._armed.add(exchange)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="graph-deadline-watchdog", daemon=True)
                self._thread.start()
            if exchange.deadline.end < self._next:
                self._wake.notify()

    def disarm(self, exchange: Exchange) -> None:
        with self._wake:
            self._armed.discard(exchange)

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = [e for e in self._armed if e.deadline.end <= now]
                self._armed.difference_update(due)
                self._next = min((e.deadline.end for e in self._armed), default=float("inf"))
                if not due:
                    self._wake.wait(None if self._next == float("inf") else self._next - now)
            for exchange in due:
                exchange.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()


class bounded_by:
    """Every exchange this thread makes inside the block ends when ``deadline`` passes."""

    def __init__(self, deadline: Deadline) -> None:
        self._exchange = Exchange(deadline)
        self._outer: Exchange | None = None

    def __enter__(self) -> Exchange:
        self._outer = getattr(_current, "exchange", None)
        _current.exchange = self._exchange
        _WATCHDOG.arm(self._exchange)
        return self._exchange

    def __exit__(self, *exc: object) -> None:
        _WATCHDOG.disarm(self._exchange)
        _current.exchange = self._outer


def current_exchange() -> Exchange | None:
    return getattr(_current, "exchange", None)


class _JoinsExchange:
    """A urllib3 connection that joins the thread's :class:`Exchange` before it waits for an answer."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        exchange = current_exchange()
        if exchange is not None:
            exchange.attach(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_JoinsExchange, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_JoinsExchange, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _CappedBody:
    """urllib3's response, read no further than ``limit`` bytes after decompression."""

    def __init__(self, raw: Any, limit: int) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_limit", limit)
        object.__setattr__(self, "_read", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            self._count(len(chunk))
            yield chunk

    def read(self, amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
        data: bytes = self._raw.read(self._limit + 1 if amt is None else amt, *args, **kwargs)
        self._count(len(data))
        return data

    def _count(self, size: int) -> None:
        read = self._read + size
        object.__setattr__(self, "_read", read)
        if read > self._limit:
            self._raw.close()
            raise AnswerTooLarge(f"the answer is larger than {self._limit // (1024 * 1024)} MiB; not read further")


@functools.cache
def _trusting(bundle: str) -> ssl.SSLContext:
    """One TLS context per CA bundle for the whole process. Left to itself, urllib3 builds a context and parses the
    bundle again for every connection (about 1 MiB each for certifi's): a process serving many tenants, each with
    its own pools, would grow with every tenant."""
    context = create_urllib3_context()
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    return context


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter, on connections that join the thread's :class:`Exchange`, with capped answers, and sharing
    the process's TLS context for their CA bundle."""

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if verify is not False and host["scheme"] == "https":
            bundle = pool.pop("ca_certs", None) or pool.pop("ca_cert_dir", None) or DEFAULT_CA_BUNDLE_PATH
            pool["ssl_context"] = _trusting(bundle)
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if verify is not False:  # the pool's shared context holds the bundle already: not loaded again per connection
            conn.ca_certs = conn.ca_cert_dir = None

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools bring connection classes of their own
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            response.close()
            raise AnswerTooLarge(f"the answer declares {declared} bytes; not read")
        response.raw = _CappedBody(response.raw, MAX_ANSWER_BYTES)
        return response


def session_for(endpoint: str, user_agent: str) -> requests.Session:
    """A pooled session whose proxy and CA-bundle settings come from the environment once, here.

    By default requests re-reads the proxy variables, NO_PROXY and ~/.netrc on every request (about 0.1 ms
    each); a Function App's environment does not change while it runs. The CA bundle is requests' own
    (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``), else OpenSSL's ``SSL_CERT_FILE``, which requests alone ignores.
    """
    session = requests.Session()
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"{user_agent} {session.headers['User-Agent']}"
    environment = session.merge_environment_settings(endpoint, {}, None, None, None)
    session.proxies.update(environment["proxies"])
    verify = environment["verify"]
    session.verify = os.environ.get("SSL_CERT_FILE") or verify if verify is True else verify
    session.trust_env = False
    return session


class DeadlineTransport(RequestsTransport):  # type: ignore[misc]  # azure-core exports it untyped (lazily)
    """azure-core's requests transport over our session: no request starts, and no retry waits, past the deadline.

    azure-core's RetryPolicy sleeps whatever ``Retry-After`` the identity endpoint sends (an hour, if it says so);
    it sleeps through ``transport.sleep``, so this is where the run's deadline bounds it.
    """

    def __init__(self, session: requests.Session, *, connection_timeout: float, read_timeout: float) -> None:
        super().__init__(
            session=session,
            session_owner=False,
            connection_verify=session.verify,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
        )

    def send(self, request: Any, **kwargs: Any) -> Any:
        exchange = current_exchange()
        if exchange is not None and (exchange.expired or exchange.deadline.remaining() <= 0):
            raise OutOfTime("the run's time budget ran out before the identity endpoint answered")
        return super().send(request, **kwargs)

    def sleep(self, duration: float) -> None:
        exchange = current_exchange()
        if exchange is not None and duration >= exchange.deadline.remaining():
            raise OutOfTime(f"the identity endpoint asked to wait {duration:.0f} s, past the run's time budget")
        super().sleep(duration)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, as delay-seconds or an HTTP date; None when absent or unusable.

    An unusable value (unparseable, negative, a date too far off, a number too long to convert) is treated as
    if the header were absent, so a hostile or broken server can neither crash the run nor park it.
    https://www.rfc-editor.org/rfc/rfc9110#field.retry-after
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text) if len(text) <= 10 else None
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    if seconds is None or not 0 <= seconds <= MAX_RETRY_AFTER:
        return None
    return seconds
