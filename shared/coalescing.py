"""Within one instance: a sync already in flight is joined rather than sent again, and, when asked, a
object is not synced again within a minimum interval. Several instances do not share this; Graph's own
throttling (429 with Retry-After) bounds what they send together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ran(Generic[T]):
    """The sync's result: run for this request, or ``joined`` from another request's identical sync."""

    result: T
    joined: bool = False


@dataclass(frozen=True)
class Deferred:
    """Not run: the target was accepted too recently; it may run again at ``next_allowed``."""

    next_allowed: datetime


class SyncGate(Generic[T]):
    """Bounded: what is remembered for ``min_interval`` is only what was accepted within it, and nothing when it is
    0, so a process that syncs 100,000 devices a day does not keep them all."""

    def __init__(self, most_remembered: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[Hashable, Future[T]] = {}
        self._last_accepted: dict[Hashable, float] = {}
        self._most_remembered = most_remembered

    def __len__(self) -> int:
        """How many objects are remembered as accepted, for ``min_interval``."""
        return len(self._last_accepted)

    def submit(
        self,
        target: Hashable,
        variant: Hashable,
        sync: Callable[[], T],
        *,
        accepted: Callable[[T], bool],
        min_interval: float = 0,
    ) -> Ran[T] | Deferred:
        """Run ``sync`` for ``target`` unless the same (target, variant) is in flight (join it) or ``target``
        was accepted less than ``min_interval`` seconds ago (say when it may run again)."""
        key = (target, variant)
        with self._lock:
            last = self._last_accepted.get(target)
            elapsed = time.monotonic() - last if last is not None else None
            if min_interval > 0 and elapsed is not None and elapsed < min_interval:
                wait = timedelta(seconds=min_interval - elapsed)
                return Deferred(datetime.now(timezone.utc) + wait)
            running = self._in_flight.get(key)
            if running is None:
                mine: Future[T] = Future()
                self._in_flight[key] = mine
        if running is not None:
            return Ran(running.result(), joined=True)
        try:
            result = sync()
        except BaseException as exc:
            with self._lock:
                del self._in_flight[key]
            mine.set_exception(exc)
            raise
        # One step, so no request can slip between "no longer in flight" and "just accepted".
        with self._lock:
            if min_interval > 0 and accepted(result):
                now = self._last_accepted[target] = time.monotonic()
                if len(self._last_accepted) > self._most_remembered:
                    self._last_accepted = {t: at for t, at in self._last_accepted.items() if now - at < min_interval}
            del self._in_flight[key]
        mine.set_result(result)
        return Ran(result)
