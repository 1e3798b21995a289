"""What every sync target is: where its objects are, how one is synced, which Graph version and permission, and
which settings it reads, and which rules say that an object cannot or need not be synced now. A target module
fills this in; nothing above the targets knows any resource by name (shared.legacy aside: the answer shapes
that predate targets).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, ClassVar, Literal, NamedTuple
from urllib.parse import quote

from shared.errors import GraphError, GraphNotFound, InvalidObjectId, json_type
from shared.graph import Deadline, GraphClient, GraphResponse
from shared.setting_reader import Setting, SettingReader

log = logging.getLogger(__name__)

SkipReason = Literal["notEligible", "alreadyRunning", "tooSoon"]
# How bad a finding is: critical for expired, within EXPIRY_CRITICAL_DAYS or a failing sync; warning for within
# EXPIRY_WARNING_DAYS or a sync gone stale.
Severity = Literal["critical", "warning"]
# The application permissions the targets need (least privileged for each action; reading needs no more).
SERVICE_CONFIG_READ_WRITE = "DeviceManagementServiceConfig.ReadWrite.All"
CONFIGURATION_READ_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
# Graph only says an id is a string; real ids are GUIDs (VPP tokens: GUIDs; driver profiles: GUIDs). Anything
# outside this alphabet could steer the URL (``/``, ``.``, ``%``, ``?``, ``#``), so it never reaches one.
OBJECT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# The last instant a date rule can name: Graph's own largest DateTimeOffset, 9999-12-31T23:59:59.9999999Z.
LATEST = datetime.max.replace(tzinfo=timezone.utc)


class SyncObject(NamedTuple):
    """One thing a target syncs, as Graph described it when it was read (``fields`` is empty when it was not)."""

    target: str
    id: str
    fields: Mapping[str, Any] = MappingProxyType({})

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if isinstance(value, str) else None


class Health(NamedTuple):
    """What ``doctor`` says of one object: fine or not, in one line, and the fix when not."""

    ok: bool
    detail: str
    fix: str | None = None


class WatchRules(NamedTuple):
    """What makes a watched object a finding, and how bad: EXPIRY_WARNING_DAYS, EXPIRY_CRITICAL_DAYS, and each
    target's own thresholds (its options, by target name)."""

    warning: timedelta
    critical: timedelta = timedelta(days=7)
    options: Mapping[str, Any] = MappingProxyType({})


class Standing(NamedTuple):
    """A watched object's expiry and health. ``problem`` set makes it a finding of the watch, as bad as
    ``severity``."""

    target: str
    id: str
    name: str
    expires: datetime | None
    problem: str | None = None
    fix: str | None = None
    severity: Severity | None = None

    def days_left(self, now: datetime) -> int | None:
        """Whole days, toward zero: 11.9 days is 11 left, 2.1 days past is -2 (as the problem's wording says)."""
        return None if self.expires is None else int((self.expires - now).total_seconds() / 86400)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "target": self.target,
            "id": self.id,
            "name": self.name,
            "expires": self.expires.isoformat(timespec="seconds") if self.expires else None,
            "daysLeft": self.days_left(now),
            "problem": self.problem,
            "fix": self.fix,
            "severity": self.severity,
        }


def expiry_finding(expires: datetime | None, now: datetime, rules: WatchRules) -> tuple[str | None, Severity | None]:
    """The expiry's problem (see :func:`expiry_problem`) and its severity: critical once expired or within
    ``rules.critical``, a warning before."""
    problem = expiry_problem(expires, now, rules.warning)
    if problem is None or expires is None:
        return None, None
    return problem, "critical" if expires - now <= rules.critical else "warning"


def stale_since(value: object, now: datetime, after: timedelta) -> datetime | None:
    """When a sync last succeeded, if that is longer ago than ``after``; None when recent, or unknown (not judged)."""
    when = graph_datetime(value)
    return when if when is not None and now - when > after else None


def expiry_problem(expires: datetime | None, now: datetime, warning: timedelta) -> str | None:
    """'expired N days ago' or 'expires in N days' when within ``warning``; None when further off or unknown."""
    if expires is None:
        return None
    if expires <= now:
        return f"expired {(now - expires).days} day(s) ago, on {expires.date().isoformat()}"
    if expires - now <= warning:
        return f"expires in {(expires - now).days} day(s), on {expires.date().isoformat()}"
    return None


class Skip(NamedTuple):
    """Why an object is not synced now: never a failure. ``next_allowed`` says when it may be, where known."""

    reason: SkipReason
    message: str
    next_allowed: datetime | None = None


class Target:
    """A sync target. Subclasses set the class attributes and override the rules they have."""

    name: ClassVar[str]
    version: ClassVar[Literal["v1.0", "beta"]]
    path: ClassVar[str]  # the collection, or the one object, under the version: "/deviceManagement/..."
    action: ClassVar[str]  # the sync action's segment: "sync", "syncLicenses", ...
    permission: ClassVar[str]  # the least-privileged Graph application permission for the sync action
    read_permission: ClassVar[str | None] = None  # when the action's permission does not also cover reading
    single: ClassVar[bool] = False  # one object per tenant (read with GET, synced without an id)
    state_fields: ClassVar[tuple[str, ...]]  # what GET /api/sync and `status` show of each object
    # Answers to the sync action that are this target's own rules (a sync running, one too soon): never
    # retried, never taken as throttling of the tenant; after_refusal() turns them into skips.
    own_statuses: ClassVar[frozenset[int]] = frozenset()
    # The sync action's types, in Graph's exact (case-sensitive) spellings; the first is the default.
    sync_types: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()  # the app settings this target reads, as docs/settings.md lists them
    noun: ClassVar[str]  # "Exchange connector", "VPP token": what one object is called in messages
    ids_setting: ClassVar[str | None] = None  # a setting that names the objects, so none are listed
    unknown_code: ClassVar[str] = "unknownObject"  # the error code for a requested id that is not an object
    none_code: ClassVar[str] = "nothingToSync"  # the error code when the tenant has no object to sync
    none_advice: ClassVar[str | None] = None  # when having none is worth a warning: what it likely means

    @property
    def permissions(self) -> tuple[str, ...]:
        """Every Graph application permission this target needs: the action's, and reading's where it differs."""
        return (self.permission, self.read_permission) if self.read_permission else (self.permission,)

    @property
    def takes_sync_type(self) -> bool:
        return bool(self.sync_types)

    def options(self, read: SettingReader) -> Any:
        """This target's own settings (``settings``), read with ``read``, which keeps every invalid one; None for a
        target without any. The run hands them back to read(), find() and sync() as ``options``."""
        return None

    def configured_ids(self, options: Any) -> tuple[str, ...]:
        """The objects ``ids_setting`` names; none: every object in the tenant is listed."""
        return ()

    def shown_settings(self, options: Any) -> dict[str, str]:
        """What ``doctor``'s settings line shows of this target's own settings, by setting name."""
        return {}

    def default_sync_type(self, options: Any) -> str | None:
        """The sync type when a request names none."""
        return self.sync_types[0] if self.sync_types else None

    def nothing_found(self) -> str:
        return self.none_advice or f"no {self.noun} in this tenant, so there is nothing to sync"

    def read(self, graph: GraphClient, deadline: Deadline, options: Any = None) -> list[SyncObject]:
        """Every object of this target in the tenant, each once (Graph may list one on two pages). ``options``
        are the target's own settings (:meth:`options`), for targets that have any."""
        url = graph.url(f"/{self.version}{self.path}")
        if self.single:
            try:
                found = graph.request("GET", url, deadline=deadline).body
            except GraphNotFound:
                return []  # not set up in this tenant
            return [SyncObject(self.name, self._single_id(found), found if isinstance(found, dict) else {})]
        objects: dict[str, SyncObject] = {}
        for page in graph.pages(url, deadline):
            for item in page.body["value"]:
                try:
                    item_id = validate_object_id(item.get("id") if isinstance(item, dict) else None)
                except InvalidObjectId as exc:
                    log.warning("Skipping a %s Graph listed: %s (request-id=%s)", self.noun, exc, page.request_id)
                    continue
                objects.setdefault(item_id, SyncObject(self.name, item_id, item))
        return list(objects.values())

    def find(self, graph: GraphClient, deadline: Deadline, ids: Sequence[str], options: Any = None) -> list[SyncObject]:
        """The requested objects among those in the tenant (the missing ones are simply absent)."""
        return [o for o in self.read(graph, deadline, options) if o.id in ids]

    def sync(
        self,
        graph: GraphClient,
        obj: SyncObject,
        deadline: Deadline,
        sync_type: str | None = None,
        options: Any = None,
    ) -> GraphResponse:
        """Ask Intune to sync one object. Graph answers at once; the sync itself happens later."""
        return graph.request(
            "POST",
            self.action_url(graph, obj.id),
            json_body=self.action_body(sync_type),
            deadline=deadline,
            final_statuses=self.own_statuses,
        )

    def action_url(self, graph: GraphClient, object_id: str) -> str:
        if self.single:
            return graph.url(f"/{self.version}{self.path}/{self.action}")
        # Quoting is belt and braces: the id was validated, and must stay a single path segment regardless.
        return graph.url(f"/{self.version}{self.path}/{quote(validate_object_id(object_id), safe='')}/{self.action}")

    def action_body(self, sync_type: str | None) -> dict[str, Any] | None:
        return None

    def before_sync(self, obj: SyncObject, now: datetime) -> Skip | None:
        """A reason, read from Graph's own fields, not to send the sync now."""
        return None

    def after_refusal(self, error: GraphError, obj: SyncObject, now: datetime) -> Skip | None:
        """A refusal of the sync action that is one of this target's rules rather than a failure."""
        return None

    def standing(self, obj: SyncObject, now: datetime, rules: WatchRules) -> Standing | None:
        """What the watch says of one object; None for targets it does not watch."""
        return None

    def health(self, obj: SyncObject, now: datetime, max_age: timedelta) -> Health:
        """``doctor``'s check of one object; the default only says it is there."""
        shown = ", ".join(f"{k}={v}" for k, v in self.state(obj).items() if k != "id" and isinstance(v, str))
        return Health(True, shown or "present")

    def summary(self, objects: Sequence[SyncObject]) -> dict[str, object]:
        """What GET /api/sync says of this target's objects: each one and its state."""
        return {"objects": [self.state(o) for o in objects]}

    def state(self, obj: SyncObject) -> dict[str, Any]:
        return {"id": obj.id, **{name: _plain(obj.fields.get(name)) for name in self.state_fields}}

    def _single_id(self, found: object) -> str:
        item_id = found.get("id") if isinstance(found, dict) else None
        return canonical_id(item_id) if isinstance(item_id, str) and OBJECT_ID_PATTERN.fullmatch(item_id) else self.name


def validate_object_id(value: object) -> str:
    """The id in its one spelling (see :func:`canonical_id`), if it is safe to put in a Graph URL; otherwise
    :class:`InvalidObjectId`."""
    if not isinstance(value, str):
        raise InvalidObjectId(f"an id must be a string, not {json_type(value)}")
    if not OBJECT_ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 40 else f"{value[:40]}..."
        raise InvalidObjectId(f"{shown!r} is not an id (1-128 letters, digits, '-' or '_', such as a GUID)")
    return canonical_id(value)


def canonical_id(value: str) -> str:
    """A GUID in lower case, as Graph writes it; any other id as it is. GUIDs compare without regard to case
    (RFC 9562), so an id given in upper case names the same object as Graph's lower-case one."""
    return value.lower() if GUID.fullmatch(value) else value


def graph_datetime(value: object) -> datetime | None:
    """Graph's DateTimeOffset (up to 7 fractional digits) in UTC; None for absent, unparseable, or Graph's 'never'
    (year 1). The largest DateTimeOffset Graph allows (9999-12-31T23:59:59.9999999, at any offset) is read as
    :data:`LATEST`, so no rule computing with a date can overflow."""
    if not isinstance(value, str) or not value:
        return None
    # RFC 3339 allows a lower-case 't' and 'z'; Python 3.10's fromisoformat takes neither, nor a 'Z', and only
    # exactly 3 or 6 fractional digits, where Graph writes up to 7.
    text = value.upper()
    normalised = re.sub(r"\.(\d+)", lambda digits: "." + (digits[1] + "000000")[:6], text).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(normalised)
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # past the end of year 9999 in UTC: 9999-12-31T23:59:59-01:00
        return LATEST


def later(when: datetime, delta: timedelta) -> datetime:
    """``when + delta``, or :data:`LATEST` where that would pass the last datetime Python has."""
    try:
        return when + delta
    except OverflowError:
        return LATEST


def too_soon(last: object, interval: timedelta, now: datetime, what: str) -> Skip | None:
    """A ``tooSoon`` skip when ``last`` (a Graph timestamp) is less than ``interval`` ago."""
    when = graph_datetime(last)
    if when is None or now - when >= interval:
        return None
    return Skip(
        "tooSoon",
        f"{what} at most once every {interval.total_seconds() / 60:g} minutes; the last was triggered at "
        f"{when.isoformat(timespec='seconds')}",
        later(when, interval),
    )


def _plain(value: object) -> object:
    """A state field as JSON can carry it: text, numbers, booleans and small objects of them (Graph's own)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str | int | float | bool)}
    return None
