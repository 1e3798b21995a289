"""What one worker process keeps between invocations, in one object: its settings, its Graph clients, the sync
gate, the webhook's replay guard, the device pacers. Each is made on first use (``PROCESS.held``), so a path keeps
only what it uses, and :meth:`Process.reset` forgets them all, as a new process would: tests reset between tests;
the app never does (Azure restarts it when its settings change).

What a process sets up once, rather than at import: every log record scrubbed of secrets, and the Azure SDK's
loggers kept quiet (:meth:`Process.start`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from shared import redaction

T = TypeVar("T")


class Process:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._held: dict[str, Any] = {}
        self._started = False

    def start(self) -> None:
        """Set this process up, once: scrub every log record, whichever logger makes it (shared.redaction); keep
        azure-identity to errors (it logs every token lookup at INFO and each failure at WARNING, once per
        credential layer, where the app reports a failed token once, with the fix) and azure-core's request log to
        warnings (each identity request in full at INFO: noise and cost in Application Insights)."""
        if self._started:
            return
        redaction.install()
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        self._started = True

    def held(self, name: str, make: Callable[[], T]) -> T:
        """The process's one ``name``, made by ``make`` on first use. Nothing is kept when ``make`` raises, so a
        setting that fails its check is checked again at the next invocation."""
        found = self._held.get(name)
        if found is None:
            with self._lock:
                found = self._held.get(name)
                if found is None:
                    found = self._held[name] = make()
        return cast(T, found)

    def reset(self) -> None:
        """Forget everything held, closing what can be closed (the clients' sessions)."""
        with self._lock:
            held, self._held = self._held, {}
        for value in held.values():
            close = getattr(value, "close", None)
            if callable(close):
                close()


PROCESS = Process()
