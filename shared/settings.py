"""App settings, read and validated once per process; every error names the setting."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import TypeVar, cast
from urllib.parse import urlsplit

from shared.errors import ConfigurationError, InvalidObjectId
from shared.federation import PUBLIC_AUTHORITY
from shared.graph import GraphSettings
from shared.redaction import remember
from shared.targets import DEFAULT, TARGETS
from shared.targets.base import GUID, validate_object_id
from shared.targets.exchange_connectors import SYNC_TYPES, SyncType, is_sync_type
from shared.targets.managed_devices import OPERATING_SYSTEMS, DeviceSelection

T = TypeVar("T")
NONE: tuple[str, ...] = ()  # an empty list setting
DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_DEVICES = DeviceSelection(timedelta(hours=24), 100, ())


@dataclass(frozen=True)
class Settings:
    connector_ids: tuple[str, ...]
    sync_type: SyncType
    graph: GraphSettings
    targets: tuple[str, ...] = DEFAULT
    min_interval: float = 0
    webhook_secret: str | None = field(default=None, repr=False)
    expiry_warning_days: int = 30
    devices: DeviceSelection = DEFAULT_DEVICES
    # Customer tenants (TENANT_IDS); empty: the app's own tenant alone.
    tenants: tuple[str, ...] = ()
    tenant_concurrency: int = 8

    def options_for(self, target: str) -> object:
        """A target's own settings, for the targets that have any (the managed devices' DEVICE_* settings)."""
        return self.devices if target == "managedDevices" else None

    def ids_for(self, target: str) -> tuple[str, ...]:
        """The objects a setting names for ``target`` (only the Exchange connectors have such a setting)."""
        return self.connector_ids if TARGETS[target].ids_setting == "EXCHANGE_CONNECTOR_IDS" else ()


# Every name parse_settings reads.
SETTING_NAMES = (
    "SYNC_TARGETS",
    "EXCHANGE_CONNECTOR_IDS",
    "SYNC_TYPE",
    "GRAPH_ENDPOINT",
    "AZURE_CLIENT_ID",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "GRAPH_TIMEOUT_SECONDS",
    "GRAPH_TIME_BUDGET_SECONDS",
    "GRAPH_MAX_RETRIES",
    "GRAPH_RETRY_BACKOFF_SECONDS",
    "SYNC_MIN_INTERVAL_SECONDS",
    "WEBHOOK_HMAC_SECRET",
    "EXPIRY_WARNING_DAYS",
    "DEVICE_STALE_HOURS",
    "DEVICE_SYNC_MAX_PER_RUN",
    "DEVICE_OPERATING_SYSTEMS",
    "DEVICE_SYNC_WINDOW_SECONDS",
    "TENANT_IDS",
    "TENANT_APP_CLIENT_ID",
    "TENANT_CONCURRENCY",
    "AZURE_AUTHORITY_HOST",
)


@cache
def load_settings() -> Settings:
    """This process's app settings, read and validated on first use, then kept: Azure restarts the app when its
    settings change. Settings that fail validation are not kept, so every invocation reports the problem."""
    remember_secrets(os.environ)
    return parse_settings(os.environ)


def remember_secrets(env: Mapping[str, str]) -> None:
    """The secrets among the settings, so no log line or answer can carry them (shared.redaction)."""
    remember(env.get("IDENTITY_HEADER"), env.get("WEBHOOK_HMAC_SECRET"))


class _Checked:
    """Reads settings one by one and keeps every invalid one, so that one look names them all."""

    def __init__(self) -> None:
        self.problems: list[ConfigurationError] = []

    def __call__(self, read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except ConfigurationError as exc:
            self.problems.append(exc)
            return fallback


def parse_settings(env: Mapping[str, str]) -> Settings:
    """The settings from ``env``; a :class:`ConfigurationError` naming every invalid one."""
    check = _Checked()

    def number(name: str, *, default: float, low: float, high: float, whole: bool = False) -> float:
        return check(lambda: _number(env, name, default=default, low=low, high=high, whole=whole), default)

    tenants = check(lambda: _tenant_ids(env.get("TENANT_IDS", "")), NONE)
    client_id = check(lambda: _client_id(env.get("AZURE_CLIENT_ID", "").strip()), None)
    connector_ids = check(lambda: _connector_ids(env.get("EXCHANGE_CONNECTOR_IDS", "")), NONE)
    if tenants:
        check(lambda: _check_many_tenants(client_id, connector_ids), None)
    graph = GraphSettings(
        endpoint=check(lambda: _graph_endpoint(env.get("GRAPH_ENDPOINT", "").strip() or DEFAULT_GRAPH_ENDPOINT), ""),
        client_id=client_id,
        identity_endpoint=_identity_endpoint(env),
        timeout=number("GRAPH_TIMEOUT_SECONDS", default=20, low=1, high=120),
        time_budget=number("GRAPH_TIME_BUDGET_SECONDS", default=120, low=5, high=200),
        max_retries=int(number("GRAPH_MAX_RETRIES", default=4, low=0, high=10, whole=True)),
        backoff=number("GRAPH_RETRY_BACKOFF_SECONDS", default=1, low=0, high=30),
        app_client_id=check(lambda: _app_client_id(env.get("TENANT_APP_CLIENT_ID", "").strip()), None)
        if tenants
        else None,
        authority=check(lambda: _authority(env.get("AZURE_AUTHORITY_HOST", "").strip() or PUBLIC_AUTHORITY), None)
        if tenants
        else None,
    )
    settings = Settings(
        connector_ids=connector_ids,
        sync_type=check(lambda: _sync_type(env.get("SYNC_TYPE", "").strip() or "deltaSync"), "deltaSync"),
        graph=graph,
        targets=check(lambda: _targets(env.get("SYNC_TARGETS", "")), DEFAULT),
        min_interval=number("SYNC_MIN_INTERVAL_SECONDS", default=0, low=0, high=86400),
        webhook_secret=env.get("WEBHOOK_HMAC_SECRET") or None,
        expiry_warning_days=int(number("EXPIRY_WARNING_DAYS", default=30, low=0, high=365, whole=True)),
        devices=DeviceSelection(
            stale_after=timedelta(hours=number("DEVICE_STALE_HOURS", default=24, low=1, high=8760)),
            most=int(number("DEVICE_SYNC_MAX_PER_RUN", default=100, low=1, high=1000, whole=True)),
            operating_systems=check(lambda: _operating_systems(env.get("DEVICE_OPERATING_SYSTEMS", "")), NONE),
            window_seconds=number("DEVICE_SYNC_WINDOW_SECONDS", default=20, low=0.01, high=20),
        ),
        tenants=tenants,
        tenant_concurrency=int(number("TENANT_CONCURRENCY", default=8, low=1, high=64, whole=True)) if tenants else 8,
    )
    if check.problems:
        raise ConfigurationError.joined(check.problems)
    return settings


def _tenant_ids(raw: str) -> tuple[str, ...]:
    ids = _listed(raw)
    wrong = [i for i in ids if not GUID.fullmatch(i)]
    if wrong:
        raise ConfigurationError(
            "TENANT_IDS",
            f"{', '.join(repr(w[:60]) for w in wrong)} is not a tenant id (a GUID such as the "
            "directory id in the customer's Entra overview)",
        )
    return tuple(dict.fromkeys(i.lower() for i in ids))


def _check_many_tenants(client_id: str | None, connector_ids: tuple[str, ...]) -> None:
    if client_id is None:
        raise ConfigurationError(
            "AZURE_CLIENT_ID",
            "is required with TENANT_IDS: set it to the client id of the Function App's user-assigned managed "
            "identity, the federated credential of TENANT_APP_CLIENT_ID (a system-assigned identity cannot be one; "
            "README, 'Many tenants')",
        )
    if connector_ids:
        raise ConfigurationError(
            "EXCHANGE_CONNECTOR_IDS",
            "cannot be used with TENANT_IDS: connector ids belong to one tenant; leave it empty and each tenant's "
            "connectors are found in it",
        )


def _app_client_id(raw: str) -> str:
    if not GUID.fullmatch(raw):
        got = f"got {raw[:60]!r}" if raw else "it is not set"
        raise ConfigurationError(
            "TENANT_APP_CLIENT_ID",
            f"with TENANT_IDS, must be the client id (a GUID) of the multi-tenant app registration that trusts the "
            f"managed identity; {got}",
        )
    return raw.lower()


def _authority(raw: str) -> str:
    """azure-identity's AZURE_AUTHORITY_HOST: an https authority (a bare host means https), such as a loopback one
    with its port for the emulator; the origin alone, since the tenant is added per call."""
    text = raw.rstrip("/")
    return _origin(
        "AZURE_AUTHORITY_HOST",
        raw,
        text if "://" in text else f"https://{text}",
        schemes=("https",),
        expected="an https:// Entra authority such as https://login.microsoftonline.com",
    )


def _listed(raw: str) -> list[str]:
    """A list setting's entries: separated by commas, semicolons or white space."""
    return [part for part in re.split(r"[\s,;]+", raw) if part]


def _operating_systems(raw: str) -> tuple[str, ...]:
    """Names from a fixed list, matched without regard to case and written as Intune writes them: never pasted
    into a Graph filter as given."""
    known = {name.lower(): name for name in OPERATING_SYSTEMS}
    names = _listed(raw)
    unknown = [name for name in names if name.lower() not in known]
    if unknown:
        raise ConfigurationError(
            "DEVICE_OPERATING_SYSTEMS",
            f"{', '.join(repr(n[:40]) for n in unknown)} is not an operating system Intune reports; use "
            f"{', '.join(OPERATING_SYSTEMS)}",
        )
    return tuple(dict.fromkeys(known[name.lower()] for name in names))


def _targets(raw: str) -> tuple[str, ...]:
    names = _listed(raw)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise ConfigurationError(
            "SYNC_TARGETS", f"{', '.join(map(repr, unknown))} is no sync target; the targets are {', '.join(TARGETS)}"
        )
    return tuple(dict.fromkeys(names)) or DEFAULT


def _sync_type(raw: str) -> SyncType:
    if not is_sync_type(raw):
        raise ConfigurationError("SYNC_TYPE", f"must be one of {', '.join(SYNC_TYPES)}; got {raw!r}")
    return cast(SyncType, raw)


def _connector_ids(raw: str) -> tuple[str, ...]:
    ids = _listed(raw)
    try:
        return tuple(dict.fromkeys(validate_object_id(i) for i in ids))
    except InvalidObjectId as exc:
        raise ConfigurationError("EXCHANGE_CONNECTOR_IDS", str(exc)) from None


def _graph_endpoint(raw: str) -> str:
    """The Graph root is also the token audience, so it must be exactly a scheme, a host and an optional port."""
    return _origin(
        "GRAPH_ENDPOINT",
        raw,
        raw[:-1] if raw.endswith("/") else raw,
        schemes=("https", "http"),
        expected="an https:// URL such as https://graph.microsoft.com",
    )


def _origin(setting: str, raw: str, url: str, *, schemes: tuple[str, ...], expected: str) -> str:
    """``url`` as ``scheme://host[:port]``, the host in lower case; a path, query, ';' or user part is refused, and
    http:// everywhere but on a loopback host (the emulator)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    problem = None
    if parts is None or parts.scheme not in schemes or not parts.hostname:
        problem = f"must be {expected}"
    elif any(mark in url for mark in "?#;@") or parts.path or any(c.isspace() for c in raw):
        problem = "must be the root only (scheme, host and optional port), with no path, query, ';' or user"
    elif parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        problem = "http:// is allowed only for a loopback host (the local emulator); use https://"
    if problem or parts is None or parts.hostname is None:
        raise ConfigurationError(setting, f"{problem}; got {raw[:100]!r}")
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _client_id(raw: str) -> str | None:
    if not raw:
        return None
    if raw.startswith(("{", "urn:", "URN:")):
        raise ConfigurationError(
            "AZURE_CLIENT_ID", f"give the GUID alone, without braces or a urn:uuid: prefix; got {raw!r}"
        )
    if not GUID.fullmatch(raw):
        raise ConfigurationError(
            "AZURE_CLIENT_ID", "must be the client id (a GUID) of a user-assigned managed identity"
        )
    return raw.lower()


def _identity_endpoint(env: Mapping[str, str]) -> str | None:
    """The platform sets both variables when the app has a managed identity; one alone is not usable."""
    endpoint = env.get("IDENTITY_ENDPOINT", "").strip()
    return endpoint if endpoint and env.get("IDENTITY_HEADER") else None


def _number(
    env: Mapping[str, str], name: str, *, default: float, low: float, high: float, whole: bool = False
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise ConfigurationError(name, f"must be {kind} from {low:g} to {high:g}; got {raw!r}")
    return value
