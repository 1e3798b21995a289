"""What the emulator injects (faults) and records (requests, tokens)."""

from __future__ import annotations

import functools
import json
import socket
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Fault:
    """One queued misbehaviour; ``times`` answers are spoilt, then the route behaves again."""

    status: int | None = None
    code: str = "UnknownError"
    message: str = "Emulated failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    # The answer waits until the test sets this (at most HOLD_LIMIT seconds): a call kept in flight on purpose.
    hold: threading.Event | None = None
    drop: bool = False
    drop_midway: bool = False
    body: bytes | None = None
    inner_error_key: str = "innerError"
    times: int = 1
    # Send the answer one byte every ``trickle`` seconds: the body only, or everything from the status line on.
    trickle: float = 0.0
    trickle_headers: bool = False
    # An answer of this many bytes, streamed: with Content-Length, chunked (no length), or gzip that expands to it.
    size: int = 0
    chunked: bool = False
    gzip: bool = False
    # An identity answer around a real token: "truncated", "trailing" bytes after it, or "crlf" inside the token.
    token_body: str | None = None
    # Graph's error message repeats the request's Authorization header back, as a careless proxy might.
    echo_authorization: bool = False


@dataclass(frozen=True)
class Received:
    route: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class IssuedToken:
    value: str
    audience: str
    roles: tuple[str, ...]
    client_id: str | None
    expires_on: int
    scopes: tuple[str, ...] = ()
    tenant: str | None = None  # a customer tenant's Graph token (from the Entra stand-in); None: the home tenant
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def permissions(self) -> set[str]:
        """Application roles and delegated scopes alike: Graph accepts either for these calls."""
        return {*self.roles, *self.scopes}


@functools.cache
@functools.cache
def gzipped_spaces(size: int) -> bytes:
    """gzip of ``size`` spaces: a few hundred KiB that expand to ``size`` bytes. Made once, when the fault is
    queued: compressing 300 MB takes seconds on a busy machine, which the app would take for a hung answer."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1024 * 1024)
    parts = [packer.compress(chunk[: min(size - done, len(chunk))]) for done in range(0, size, len(chunk))]
    return b"".join([*parts, packer.flush()])
