"""App settings, read and validated once per process; every error names the setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.errors import ConfigurationError
from shared.graph import GraphSettings
from shared.process import PROCESS
from shared.redaction import remember
from shared.setting_reader import SettingReader, listed
from shared.signatures import standard_webhooks_key
from shared.targets import DEFAULT, TARGETS
from shared.targets.base import GUID

DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"  # AZURE_AUTHORITY_HOST's default
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Settings:
    graph: GraphSettings
    targets: tuple[str, ...] = DEFAULT
    min_interval: float = 0
    webhook_secret: str | None = field(default=None, repr=False)
    expiry_warning_days: int = 30
    expiry_critical_days: int = 7
    # Customer tenants (TENANT_IDS); empty: the app's own tenant alone.
    tenants: tuple[str, ...] = ()
    tenant_concurrency: int = 8
    # Where changed findings are sent (NOTIFY_*): a Teams workflow's URL, a signed webhook's URL and secret.
    teams_url: str | None = field(default=None, repr=False)
    notify_url: str | None = field(default=None, repr=False)
    notify_secret: str | None = field(default=None, repr=False)
    # The host's storage account is set (AzureWebJobsStorage or its identity-based form): results are stored there.
    stored: bool = False
    # Each target's own settings (Target.options), by target name: read for every target, enabled or not, so a
    # wrong one is named before its target is enabled, and a command naming a target (sync --target) has them.
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def options_for(self, target: str) -> Any:
        return self.options.get(target)

    def ids_for(self, target: str) -> tuple[str, ...]:
        """The objects a target's setting names (its ``ids_setting``); none: every object is listed."""
        return TARGETS[target].configured_ids(self.options_for(target))


# Where the host's storage account is (set by the platform or infra/, not in the settings table): the store's.
STORAGE_SETTINGS = ("AzureWebJobsStorage", "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__accountName")
# The names parse_settings reads itself; TARGETS' own settings follow (SETTING_NAMES).
APP_SETTING_NAMES = (
    "SYNC_TARGETS",
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
    "EXPIRY_CRITICAL_DAYS",
    "TENANT_IDS",
    "TENANT_APP_CLIENT_ID",
    "TENANT_CONCURRENCY",
    "AZURE_AUTHORITY_HOST",
    "NOTIFY_TEAMS_WEBHOOK_URL",
    "NOTIFY_WEBHOOK_URL",
    "NOTIFY_WEBHOOK_SECRET",
)
SETTING_NAMES = (*APP_SETTING_NAMES, *(s.name for target in TARGETS.values() for s in target.settings))


def load_settings() -> Settings:
    """This process's app settings, read and validated on first use, then kept: Azure restarts the app when its
    settings change. Settings that fail validation are not kept, so every invocation reports the problem."""
    PROCESS.start()
    return PROCESS.held("settings", _from_environment)


def _from_environment() -> Settings:
    remember_secrets(os.environ)
    return parse_settings(os.environ)


def remember_secrets(env: Mapping[str, str]) -> None:
    """The secrets among the settings, so no log line or answer can carry them (shared.redaction)."""
    storage = dict(
        part.split("=", 1) for part in env.get("AzureWebJobsStorage", "").split(";") if "=" in part
    )  # a connection string's account key (locally; in Azure the host uses the identity)
    remember(env.get("IDENTITY_HEADER"), env.get("WEBHOOK_HMAC_SECRET"), storage.get("AccountKey"))
    for name in ("NOTIFY_TEAMS_WEBHOOK_URL", "NOTIFY_WEBHOOK_URL"):  # a URL's path and query are its secret
        url = env.get(name, "").strip()
        parts = urlsplit(url)
        remember(url, parts.path, parts.query, *(value for _, value in parse_qsl(parts.query)))
    remember(env.get("NOTIFY_WEBHOOK_SECRET"))


def parse_settings(env: Mapping[str, str]) -> Settings:
    """The settings from ``env``; a :class:`ConfigurationError` naming every invalid one."""
    read = SettingReader(env)
    check, number = read.check, read.number
    tenants: tuple[str, ...] = check(lambda: _tenant_ids(env.get("TENANT_IDS", "")), ())
    client_id = check(lambda: _client_id(read.text("AZURE_CLIENT_ID")), None)
    graph = GraphSettings(
        endpoint=check(lambda: _graph_endpoint(read.text("GRAPH_ENDPOINT") or DEFAULT_GRAPH_ENDPOINT), ""),
        client_id=client_id,
        identity_endpoint=_identity_endpoint(env),
        timeout=number("GRAPH_TIMEOUT_SECONDS", default=20, low=1, high=120),
        time_budget=number("GRAPH_TIME_BUDGET_SECONDS", default=120, low=5, high=200),
        max_retries=int(number("GRAPH_MAX_RETRIES", default=4, low=0, high=10, whole=True)),
        backoff=number("GRAPH_RETRY_BACKOFF_SECONDS", default=1, low=0, high=30),
        app_client_id=check(lambda: _app_client_id(read.text("TENANT_APP_CLIENT_ID")), None) if tenants else None,
        authority=check(lambda: _authority(read.text("AZURE_AUTHORITY_HOST") or PUBLIC_AUTHORITY), None)
        if tenants
        else None,
    )
    options = {name: target.options(read) for name, target in TARGETS.items()}
    if tenants:
        check(lambda: _check_many_tenants(client_id, options), None)
    settings = Settings(
        graph=graph,
        targets=check(lambda: _targets(env.get("SYNC_TARGETS", "")), DEFAULT),
        min_interval=number("SYNC_MIN_INTERVAL_SECONDS", default=0, low=0, high=86400),
        webhook_secret=env.get("WEBHOOK_HMAC_SECRET") or None,
        expiry_warning_days=int(number("EXPIRY_WARNING_DAYS", default=30, low=0, high=365, whole=True)),
        expiry_critical_days=int(number("EXPIRY_CRITICAL_DAYS", default=7, low=0, high=365, whole=True)),
        tenants=tenants,
        tenant_concurrency=int(number("TENANT_CONCURRENCY", default=8, low=1, high=64, whole=True)) if tenants else 8,
        options=MappingProxyType(options),
        stored=any(env.get(name) for name in STORAGE_SETTINGS),
        teams_url=check(lambda: _notify_url("NOTIFY_TEAMS_WEBHOOK_URL", read.text("NOTIFY_TEAMS_WEBHOOK_URL")), None),
        notify_url=check(lambda: _notify_url("NOTIFY_WEBHOOK_URL", read.text("NOTIFY_WEBHOOK_URL")), None),
        notify_secret=check(
            lambda: _notify_secret(read.text("NOTIFY_WEBHOOK_URL"), read.text("NOTIFY_WEBHOOK_SECRET")), None
        ),
    )
    if read.problems:
        raise ConfigurationError.joined(read.problems)
    return settings


def _notify_url(setting: str, raw: str) -> str | None:
    """A notification destination: https (http only on a loopback host, for tests). Its error never repeats it:
    a Teams workflow's URL carries its signature."""
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if (
        parts is None
        or not host
        or not (parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS))
    ):
        raise ConfigurationError(
            setting, "must be an https:// URL (http:// only for a loopback host); not repeated here"
        )
    return raw


def _notify_secret(url: str, raw: str) -> str | None:
    if not url:
        return raw or None
    if not raw.startswith("whsec_") or standard_webhooks_key(raw) is None:
        raise ConfigurationError(
            "NOTIFY_WEBHOOK_SECRET",
            "is required with NOTIFY_WEBHOOK_URL: a Standard Webhooks key, whsec_ and base64 (the receiver verifies "
            "each message with it)",
        )
    return raw


def _tenant_ids(raw: str) -> tuple[str, ...]:
    ids = listed(raw)
    wrong = [i for i in ids if not GUID.fullmatch(i)]
    if wrong:
        raise ConfigurationError(
            "TENANT_IDS",
            f"{', '.join(repr(w[:60]) for w in wrong)} is not a tenant id (a GUID such as the "
            "directory id in the customer's Entra overview)",
        )
    return tuple(dict.fromkeys(i.lower() for i in ids))


def _check_many_tenants(client_id: str | None, options: Mapping[str, Any]) -> None:
    if client_id is None:
        raise ConfigurationError(
            "AZURE_CLIENT_ID",
            "is required with TENANT_IDS: set it to the client id of the Function App's user-assigned managed "
            "identity, the federated credential of TENANT_APP_CLIENT_ID (a system-assigned identity cannot be one; "
            "README, 'Many tenants')",
        )
    for name, target in TARGETS.items():
        if target.ids_setting and target.configured_ids(options[name]):
            raise ConfigurationError(
                target.ids_setting,
                f"cannot be used with TENANT_IDS: {target.noun} ids belong to one tenant; leave it empty and each "
                f"tenant's {target.noun}s are found in it",
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


def _targets(raw: str) -> tuple[str, ...]:
    names = listed(raw)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise ConfigurationError(
            "SYNC_TARGETS", f"{', '.join(map(repr, unknown))} is no sync target; the targets are {', '.join(TARGETS)}"
        )
    return tuple(dict.fromkeys(names)) or DEFAULT


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
