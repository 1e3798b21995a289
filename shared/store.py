"""Stored state: every object's latest outcome, its last 50, and each tenant's expiry standing, in Azure Table storage
in the host's storage account (``AzureWebJobsStorage``), so that a status answer needs no Graph call.

Two tables, one partition per tenant, so each tenant's writes are one transaction per table (Table storage
transactions share a partition key): ``syncstate`` holds a tenant row (when, the counts), one row per object (its
latest outcome, its fields as GET shows them, and how many outcomes it has had) and one per watched object (its
standing); ``synchistory`` holds each object's last :data:`HISTORY` outcomes in as many slots, the oldest overwritten.

The store never costs a sync: every failure here is caught, logged once by the caller, and reported as not stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.errors import StoreUnavailable
from shared.host_storage import service_uri
from shared.process import PROCESS
from shared.records import ObjectResult, SyncReport
from shared.targets import TARGETS

if TYPE_CHECKING:
    from shared.settings import Settings
    from shared.watch import WatchReport

log = logging.getLogger(__name__)

STATE_TABLE = "syncstate"
HISTORY_TABLE = "synchistory"
HISTORY = 50
HOME = "home"  # the partition of the app's own tenant, when TENANT_IDS is empty
BATCH = 100  # Table storage's most operations in one transaction
# Store calls are short; a store that does not answer soon is down, and the sync has already answered.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 10
OUTCOME_FIELDS = (
    "outcome",
    "reason",
    "errorCode",
    "graphErrorCode",
    "graphStatus",
    "requestId",
    "clientRequestId",
    "message",
    "nextAllowedAt",
    "remedy",
)


STANDING_FIELDS = ("target", "id", "name", "expires", "daysLeft", "problem", "fix", "severity")


class StoredObject(NamedTuple):
    tenant: str | None
    target: str
    id: str | None
    at: str
    outcome: dict[str, Any]
    fields: dict[str, Any]

    @property
    def last_outcome(self) -> dict[str, Any]:
        """As the answers show it: when, then the outcome's fields."""
        return {"at": self.at, **self.outcome}


class StoredTenant(NamedTuple):
    """What the store holds of one tenant: when it was last written, each object's latest, its expiry standing."""

    tenant: str | None
    as_of: str | None
    objects: list[StoredObject]
    expiry: list[dict[str, Any]]


class Store:
    """The two tables, created on first use (idempotent)."""

    def __init__(self, service: TableServiceClient) -> None:
        self._state = self._table(service, STATE_TABLE)
        self._history = self._table(service, HISTORY_TABLE)

    @staticmethod
    def _table(service: TableServiceClient, name: str) -> TableClient:
        with contextlib.suppress(ResourceExistsError):
            service.create_table(name)
        return service.get_table_client(name)

    def record(
        self, tenant: str | None, results: Sequence[ObjectResult], read: Mapping[str, Sequence[Any]], watch: Any
    ) -> None:
        """One run's results for one tenant (and its expiry standing, when ``watch`` is a WatchReport)."""
        partition = tenant or HOME
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        held = {e["RowKey"]: e for e in self._partition(partition)}
        fields = {(name, o.id): TARGETS[name].state(o) for name, objects in read.items() for o in objects}
        state: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        for result in results:
            key = f"o|{result.target}|{result.id or '-'}"
            seq = int(held.get(key, {}).get("seq", 0)) + 1
            outcome = _outcome(result)
            shown = fields.get((result.target, result.id or "")) or json.loads(held.get(key, {}).get("fields", "{}"))
            common = {"PartitionKey": partition, "target": result.target, "objectId": result.id or "", "at": at}
            state.append({**common, "RowKey": key, **outcome, "seq": seq, "fields": json.dumps(shown)})
            slot = (seq - 1) % HISTORY
            history.append(
                {**common, "RowKey": f"{result.target}|{result.id or '-'}|{slot:02d}", **outcome, "seq": seq}
            )
        counts = {o: sum(1 for r in results if r.outcome == o) for o in ("accepted", "failed", "skipped")}
        state.append({"PartitionKey": partition, "RowKey": "t", "at": at, **counts})
        gone: list[str] = []
        if watch is not None:
            current = {f"e|{s.target}|{s.id}": s for s in watch.standings}
            state += [
                {"PartitionKey": partition, "RowKey": k, **_standing(s, watch.at), "at": at} for k, s in current.items()
            ]
            gone = [k for k in held if k.startswith("e|") and k not in current]
        self._submit(
            self._state,
            [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in state]
            + [("delete", {"PartitionKey": partition, "RowKey": k}) for k in gone],
        )
        self._submit(self._history, [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in history])

    def _partition(self, partition: str) -> Iterable[dict[str, Any]]:
        return self._state.query_entities("PartitionKey eq @p", parameters={"p": partition})

    @staticmethod
    def _submit(table: TableClient, operations: list[Any]) -> None:
        for start in range(0, len(operations), BATCH):
            table.submit_transaction(operations[start : start + BATCH])

    def tenants(self, chosen: Iterable[str | None] | None = None) -> dict[str | None, StoredTenant]:
        """Every stored tenant (or those ``chosen``), from the state table alone."""
        if chosen is None:
            rows: Iterable[dict[str, Any]] = self._state.list_entities()
        else:
            rows = [row for tenant in chosen for row in self._partition(tenant or HOME)]
        found: dict[str | None, StoredTenant] = {}
        for row in rows:
            tenant = None if row["PartitionKey"] == HOME else row["PartitionKey"]
            stored = found.setdefault(tenant, StoredTenant(tenant, None, [], []))
            key = row["RowKey"]
            if key == "t":
                found[tenant] = stored._replace(as_of=row.get("at"))
            elif key.startswith("o|"):
                outcome = {name: row.get(name) for name in OUTCOME_FIELDS}
                fields = json.loads(row.get("fields") or "{}")
                stored.objects.append(
                    StoredObject(tenant, row["target"], row["objectId"] or None, row["at"], outcome, fields)
                )
            elif key.startswith("e|"):
                stored.expiry.append({name: row.get(name) for name in STANDING_FIELDS})
        return found

    def notified(self, tenant: str | None) -> dict[str, dict[str, Any]]:
        """What was last sent of the tenant's findings (shared.notify), by finding key."""
        rows = self._state.query_entities(
            "PartitionKey eq @p and RowKey ge 'n|' and RowKey lt 'n}'", parameters={"p": tenant or HOME}
        )
        return {row["RowKey"][2:]: json.loads(row.get("sent") or "{}") for row in rows}

    def mark_notified(
        self, tenant: str | None, sent: Mapping[str, Mapping[str, Any]], before: Mapping[str, Any]
    ) -> None:
        """Remember ``sent`` as what was last sent (the findings now, each in its row); those in ``before`` (what
        :meth:`notified` said) and gone now are deleted."""
        partition = tenant or HOME
        operations: list[Any] = [
            (
                "upsert",
                {"PartitionKey": partition, "RowKey": f"n|{name}", "sent": json.dumps(state)},
                {"mode": UpdateMode.REPLACE},
            )
            for name, state in sent.items()
        ]
        operations += [
            ("delete", {"PartitionKey": partition, "RowKey": f"n|{name}"}) for name in before if name not in sent
        ]
        self._submit(self._state, operations)

    def history(self, tenant: str | None, target: str, object_id: str | None) -> list[dict[str, Any]]:
        """An object's stored outcomes, newest first."""
        prefix = f"{target}|{object_id or '-'}|"
        rows = self._history.query_entities(
            "PartitionKey eq @p and RowKey ge @low and RowKey lt @high",
            parameters={"p": tenant or HOME, "low": prefix, "high": f"{prefix}~"},
        )
        newest = sorted(rows, key=lambda row: int(row["seq"]), reverse=True)
        return [{"at": row["at"], **{name: row.get(name) for name in OUTCOME_FIELDS}} for row in newest]


def _outcome(result: ObjectResult) -> dict[str, Any]:
    """The result as a run's answer shows it; Table storage keeps no nulls, so absent fields are left out."""
    shown = result.as_dict()
    if result.error is not None:
        shown["remedy"] = result.error.remedy(TARGETS[result.target], tenant=result.tenant)
    return {name: shown[name] for name in OUTCOME_FIELDS if shown.get(name) is not None}


def _standing(standing: Any, at: datetime) -> dict[str, Any]:
    shown = standing.as_dict(at)
    return {name: shown[name] for name in STANDING_FIELDS if shown.get(name) is not None}


def _service(settings: Settings) -> TableServiceClient:
    env = os.environ
    options = {"connection_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT, "retry_total": 1}
    endpoint = service_uri(env, "table")
    if endpoint:
        from shared.identity import credential_for  # noqa: PLC0415 - only with the identity's endpoint
        from shared.transport import USER_AGENT, session_for  # noqa: PLC0415

        credential = credential_for(settings.graph, session_for(endpoint, USER_AGENT))
        return TableServiceClient(endpoint, credential=credential, **options)  # type: ignore[arg-type]
    return TableServiceClient.from_connection_string(env["AzureWebJobsStorage"], **options)


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Whatever the store raises, as :class:`StoreUnavailable` in our words: the one error its callers handle."""
    try:
        yield
    except (AzureError, ValueError, OSError) as exc:
        raise StoreUnavailable(_said(exc)) from None


def store_for(settings: Settings) -> Store:
    """The process's store; :class:`StoreUnavailable` when it cannot be reached (tried again at the next call)."""
    with guarded():
        return PROCESS.held("store", lambda: Store(_service(settings)))


def read(settings: Settings, tenants: Sequence[str | None]) -> dict[str | None, StoredTenant]:
    """What the store holds of ``tenants`` (every one of TENANT_IDS: one scan of the state table);
    :class:`StoreUnavailable` when it cannot say."""
    with guarded():
        return store_for(settings).tenants(None if tuple(tenants) == settings.tenants else tenants)


def object_history(settings: Settings, tenant: str | None, target: str, object_id: str | None) -> list[dict[str, Any]]:
    with guarded():
        return store_for(settings).history(tenant, target, object_id)


def record_report(
    settings: Settings, report: SyncReport, watched: Mapping[str | None, WatchReport] | None = None
) -> bool:
    """Store a run's results, tenant by tenant; False (logged once) when the store failed. The first failure ends
    the writing: a store that is down is down for every tenant."""
    try:
        with guarded():
            store = store_for(settings)
            for tenant in report.tenants:
                results = [r for r in report.results if r.tenant == tenant]
                store.record(tenant, results, report.read.get(tenant, {}), (watched or {}).get(tenant))
    except StoreUnavailable as exc:
        log.warning("The run's results were not stored: %s", exc)
        return False
    return True


def _said(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"the store ({STATE_TABLE}, {HISTORY_TABLE} in AzureWebJobsStorage) failed: {first[:200]}"
