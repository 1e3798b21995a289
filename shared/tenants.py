"""Many tenants from one deployment: which tenants a call covers, and running them side by side.

Graph throttles each tenant on its own, so tenants run concurrently (at most ``TENANT_CONCURRENCY`` at once),
all inside the one run's time budget; one tenant's failure is that tenant's result, never the others'.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shared.errors import InvalidRequest, UnknownTenant
from shared.settings import Settings
from shared.targets.base import GUID

T = TypeVar("T")
# The app's own tenant, when TENANT_IDS is empty: its clients and results carry no tenant id.
HOME: tuple[str | None, ...] = (None,)


def selected(
    settings: Settings, asked: Sequence[object] | None = None, field: str = "tenant"
) -> tuple[str | None, ...]:
    """The tenants a call covers: those ``asked`` (each in TENANT_IDS), else every one; the app's own without
    TENANT_IDS. ``field`` names where they were asked, for the error."""
    if not settings.tenants:
        if asked:
            raise InvalidRequest(field, "this deployment acts in its own tenant only: TENANT_IDS is not set")
        return HOME
    if not asked:
        return settings.tenants
    chosen = []
    for index, value in enumerate(asked):
        name = f"{field}[{index}]" if field.endswith("s") else field  # a body's list, or a query's one value
        if not isinstance(value, str) or not GUID.fullmatch(value):
            raise InvalidRequest(name, f"is not a tenant id (a GUID); got {str(value)[:60]!r}")
        if value.lower() not in settings.tenants:
            raise UnknownTenant(f"{value} is not one of this deployment's tenants (TENANT_IDS)")
        chosen.append(value.lower())
    return tuple(dict.fromkeys(chosen))


def for_each(settings: Settings, tenants: Sequence[str | None], work: Callable[[str | None], T]) -> list[T]:
    """``work`` for each tenant, in their order; concurrently when there are several.

    Each runs in a copy of the caller's context: the Functions worker knows an invocation by a context variable,
    so this is what files the tenants' log lines under the invocation that ran them (and in Application Insights).
    """
    if len(tenants) == 1:
        return [work(tenants[0])]
    workers = min(settings.tenant_concurrency, len(tenants))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenant") as pool:
        running = [pool.submit(contextvars.copy_context().run, work, tenant) for tenant in tenants]
        return [future.result() for future in running]
