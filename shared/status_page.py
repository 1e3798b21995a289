"""``GET /api/status``: one HTML page, rendered here, of every tenant's standing, worst first: the counts at the top,
then each tenant's watched objects with their days left, each target's last outcome, and each failure with its
remedy. It reads the store (shared.store), never Graph, and carries no script and no external asset: its
Content-Security-Policy allows its one inline style sheet and nothing else. Every string that came from Graph or a
tenant is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from shared import tenants as tenancy
from shared.errors import InvalidRequest, StoreUnavailable, SyncAppError
from shared.settings import Settings, load_settings

# Tenants per page: healthy ones collapsed, so a page reads at a glance on a phone; 1,000 tenants are 10 pages.
PAGE_SIZE = 100
CRITICAL_DAYS = 7
# Fields that name an object for a person, the first one present.
NAME_FIELDS = ("organizationName", "displayName", "tokenName", "serverName", "deviceName", "appleIdentifier")
STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:1rem;color:#1b1b1b;
background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .5rem}
.counts{display:flex;flex-wrap:wrap;gap:.5rem;margin:0 0 1rem;padding:0;list-style:none}
.counts li{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.4rem .8rem}
.counts b{font-size:1.2rem;display:block}
details{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.4rem .8rem}
summary{cursor:pointer;font-weight:600;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
td,th{text-align:left;padding:.25rem .4rem;border-top:1px solid #eee;vertical-align:top;overflow-wrap:anywhere}
td:first-child{width:24%}
.red{background:#fde2e1;color:#8a1c14}.amber{background:#fff1cc;color:#6b4a00}.ok{color:#1d6b2f}
.fix{color:#444;font-size:.92em}nav a{margin-right:1rem}
@media (max-width:640px){table,tbody,tr,td{display:block}tr:first-child{display:none}
tr{border-top:1px solid #ddd;padding:.3rem 0}td{border:0;padding:.1rem .4rem}}
""".strip()
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the function key is in the page's address
    "Cache-Control": "no-store",
}


@dataclass
class TenantView:
    tenant: str | None
    as_of: str | None
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # (class, what, state, fix)
    failures: int = 0
    expired: int = 0
    expiring: int = 0

    @property
    def worst(self) -> tuple[int, int, int]:
        return (self.expired + self.failures, self.expiring, 0 if self.as_of else 1)


@dataclass(frozen=True)
class Page:
    status: int
    html: str
    headers: Mapping[str, str]


def handle(params: Mapping[str, str]) -> Page:
    """The page for a request's query (``tenant``, ``page``, and the function key ``code``, kept in its links)."""
    try:
        settings = load_settings()
        chosen = _tenants(settings, params)
        number = _page(params)
        views = sorted(_views(settings, chosen), key=lambda v: v.worst, reverse=True)
    except InvalidRequest as exc:
        return _error(400, f"{exc.field}: {exc.message}")
    except StoreUnavailable as exc:
        return _error(503, f"{exc} {exc.remedy()}")
    except SyncAppError as exc:
        return _error(exc.http_status, str(exc))
    return Page(200, render(settings, views, number, params), HEADERS)


def _tenants(settings: Settings, params: Mapping[str, str]) -> tuple[str | None, ...]:
    asked = params.get("tenant")
    return tenancy.selected(settings, [asked.strip()] if asked else None, "tenant")


def _page(params: Mapping[str, str]) -> int:
    raw = params.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise InvalidRequest("page", f"must be a page number from 1, not {raw[:20]!r}")
    return int(raw)


def _views(settings: Settings, tenants: Sequence[str | None]) -> list[TenantView]:
    if not settings.stored:
        raise StoreUnavailable("the page reads the store, and no storage account is set (AzureWebJobsStorage)")
    from shared import store  # noqa: PLC0415 - only on this page

    found = store.read(settings, tenants)
    return [_view(settings, tenant, found.get(tenant)) for tenant in tenants]


def _view(settings: Settings, tenant: str | None, stored: Any) -> TenantView:
    view = TenantView(tenant, stored.as_of if stored else None)
    if stored is None:
        view.rows.append(("amber", "not synced yet", "no run has stored this tenant's results", ""))
        return view
    for standing in sorted(stored.expiry, key=lambda s: (s.get("daysLeft") is None, s.get("daysLeft") or 0)):
        left = standing.get("daysLeft")
        tone = {"critical": "red", "warning": "amber"}.get(standing.get("severity") or "") or _tone(
            left, settings.expiry_warning_days
        )
        view.expired += left is not None and left < 0
        view.expiring += left is not None and 0 <= left <= settings.expiry_warning_days
        days = "no expiry" if left is None else (f"expired {-left} days ago" if left < 0 else f"{left} days left")
        if standing.get("problem") and left is None:
            days = str(standing["problem"])
        what = f"{standing.get('name') or standing.get('target')} ({standing.get('target')})"
        view.rows.append((tone, what, days, standing.get("fix") or "" if tone else ""))
    for obj in stored.objects:
        outcome = obj.outcome
        failed = outcome.get("outcome") == "failed"
        view.failures += failed
        name = next((str(obj.fields[f]) for f in NAME_FIELDS if obj.fields.get(f)), obj.id or "listing")
        said = outcome.get("outcome") or "?"
        if outcome.get("reason"):
            said += f" ({outcome['reason']})"
        if failed and outcome.get("message"):
            said += f": {outcome['message']}"
        view.rows.append(
            ("red" if failed else "", f"{name} ({obj.target})", f"{said}, {obj.at}", outcome.get("remedy") or "")
        )
    return view


def _tone(days_left: int | None, warning_days: int) -> str:
    if days_left is None:
        return ""
    if days_left <= CRITICAL_DAYS:
        return "red"
    return "amber" if days_left <= warning_days else ""


def render(settings: Settings, views: list[TenantView], number: int, params: Mapping[str, str]) -> str:
    e = html.escape
    pages = max(1, -(-len(views) // PAGE_SIZE))
    shown = views[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    counts = [
        ("tenants", len(views)),
        ("failures", sum(v.failures for v in views)),
        ("expired", sum(v.expired for v in views)),
        (f"expiring within {settings.expiry_warning_days} days", sum(v.expiring for v in views)),
    ]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width, initial-scale=1">',
        f"<title>Intune sync status</title><style>{STYLE}</style></head><body>",
        "<h1>Intune sync status</h1>",
        f"<p>As of {e(datetime.now(timezone.utc).isoformat(timespec='seconds'))}, from the stored results.</p>",
        "<ul class=counts>",
        *(f"<li><b>{value}</b>{e(label)}</li>" for label, value in counts),
        "</ul>",
    ]
    for view in shown:
        troubled = view.worst[:2] != (0, 0)
        label = view.tenant or "this tenant"
        synced = f"synced {view.as_of}" if view.as_of else "not synced yet"
        summary = f"{label}: {view.failures} failed, {view.expired} expired, {view.expiring} expiring; {synced}"
        parts.append(f"<details{' open' if troubled else ''}><summary>{e(summary)}</summary><table>")
        parts.append("<tr><th>object</th><th>state</th><th>what to do</th></tr>")
        parts += [
            f"<tr class={tone or 'ok'}><td>{e(what)}</td><td>{e(state)}</td><td class=fix>{e(fix)}</td></tr>"
            for tone, what, state, fix in view.rows
        ]
        parts.append("</table></details>")
    if pages > 1:
        keep = {k: v for k, v in params.items() if k in ("code", "tenant")}
        links = [
            f'<a href="?{e(urlencode({**keep, "page": n}))}">page {n}</a>' for n in range(1, pages + 1) if n != number
        ]
        parts.append(f"<nav>Page {number} of {pages}: {' '.join(links)}</nav>")
    parts.append("</body></html>")
    return "".join(parts)


def _error(status: int, message: str) -> Page:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Intune sync status</title></head>"
        f"<body><p>{html.escape(message)}</p></body></html>"
    )
    return Page(status, body, HEADERS)
