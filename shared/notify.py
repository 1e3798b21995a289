"""A message when a tenant's findings change, where administrators look: a Teams workflow (an Adaptive Card) and a
signed JSON webhook (Standard Webhooks), only on change. A finding that appears, whose severity rises, whose days
left cross 7 or 1, or that clears ("resolved") is a change; the same state twice never is. What was last sent per
tenant is in the store, so a message that could not be delivered is sent again at the next run.

Delivery never fails a sync: it runs inside what is left of the run's time budget, retries a bounded number of
times honouring ``Retry-After``, and logs a failure without the destination (its URL is a secret).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import requests

from shared.settings import Settings
from shared.signatures import sign_standard
from shared.transport import USER_AGENT, Deadline, bounded_by, parse_retry_after, session_for

log = logging.getLogger(__name__)

Change = Literal["new", "worse", "resolved"]
TRIES = 3
# Days-left marks whose crossing is news: a token at 30 days left, then 7, then 1.
MARKS = (7, 1)
SEVERITY_RANK = {"warning": 1, "critical": 2}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


class Changed(NamedTuple):
    change: Change
    finding: dict[str, Any]


def state_of(finding: Mapping[str, Any]) -> dict[str, Any]:
    """What is remembered of a sent finding: enough to tell whether the next one is news."""
    left = finding.get("daysLeft")
    mark = next((m for m in reversed(MARKS) if isinstance(left, int) and left <= m), None)
    return {"severity": finding.get("severity"), "mark": mark}


def changes(sent: Mapping[str, Mapping[str, Any]], findings: Sequence[Mapping[str, Any]]) -> list[Changed]:
    """The tenant's news since what was last sent (``sent``, by finding key), worst first."""
    found: list[Changed] = []
    current = {key(f): f for f in findings}
    for name, finding in current.items():
        before = sent.get(name)
        now = state_of(finding)
        if before is None:
            found.append(Changed("new", dict(finding)))
        elif SEVERITY_RANK.get(now["severity"] or "", 0) > SEVERITY_RANK.get(before.get("severity") or "", 0) or (
            now["mark"] is not None and (before.get("mark") is None or now["mark"] < before["mark"])
        ):
            found.append(Changed("worse", dict(finding)))
    found += [
        Changed("resolved", {"target": s.get("target"), "id": s.get("id"), "name": s.get("name")})
        for name, s in sent.items()
        if name not in current
    ]
    return sorted(found, key=lambda c: (c.change == "resolved", -SEVERITY_RANK.get(c.finding.get("severity") or "", 0)))


def notify_tenants(settings: Settings, watched: Mapping[str | None, Any], deadline: Deadline) -> None:
    """Each watched tenant's changed findings, one message per tenant per run; marked sent only once delivered."""
    from shared import store  # noqa: PLC0415 - with the store only
    from shared.errors import StoreUnavailable  # noqa: PLC0415

    for tenant, report in watched.items():
        findings = [standing.as_dict(report.at) for standing in report.findings]
        try:
            with store.guarded():
                tables = store.store_for(settings)
                sent = tables.notified(tenant)
                now = {
                    key(f): {**state_of(f), "target": f["target"], "id": f["id"], "name": f["name"]} for f in findings
                }
                found = changes(sent, findings)
                # Marked once delivered; a change that is no news (a severity that fell) is remembered, unsent.
                if deliver(settings, tenant, found, deadline) if found else now != sent:
                    tables.mark_notified(tenant, now, sent)
        except StoreUnavailable as exc:
            log.warning("Notifications were not sent: the store, which remembers what was sent, failed: %s", exc)
            return


def key(finding: Mapping[str, Any]) -> str:
    return f"{finding.get('target')}|{finding.get('id')}"


def deliver(settings: Settings, tenant: str | None, found: list[Changed], deadline: Deadline) -> bool:
    """One message per destination holding all of ``found``; True when every destination took it."""
    page = status_page_url()
    sent = send(settings, teams_message(tenant, found, page), webhook_message(tenant, found, page), deadline)
    return all(200 <= (status or 0) < 300 for status in sent.values())


def send(
    settings: Settings, card: dict[str, Any], payload: dict[str, Any], deadline: Deadline
) -> dict[str, int | None]:
    """``card`` to the Teams workflow and ``payload`` (signed) to the webhook, each where configured: the last
    status each answered (None: no answer), by destination."""
    answered: dict[str, int | None] = {}
    if settings.teams_url:
        answered["teams"] = _post(settings.teams_url, json.dumps(card).encode(), {}, deadline)
    if settings.notify_url and settings.notify_secret:
        body = json.dumps(payload).encode()
        headers = sign_standard(settings.notify_secret, f"msg_{uuid.uuid4().hex}", body)
        answered["webhook"] = _post(settings.notify_url, body, headers, deadline)
    return answered


def test_messages(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``doctor --notify-test`` sends: a card and a payload that say they are a test."""
    finding = {
        "target": "test",
        "id": "test",
        "name": "A test message from doctor --notify-test",
        "severity": None,
        "problem": "none: this is a test",
        "fix": "nothing to do",
    }
    found = [Changed("new", finding)]
    page = status_page_url()
    return teams_message(None, found, page), {**webhook_message(None, found, page), "type": "intune-sync.test"}


def status_page_url() -> str | None:
    """The status page, where the platform says the app's host name (``WEBSITE_HOSTNAME``); its key is not added."""
    host = os.environ.get("WEBSITE_HOSTNAME", "").strip()
    return f"https://{host}/api/status" if host else None


def teams_message(tenant: str | None, found: list[Changed], page: str | None) -> dict[str, Any]:
    """A Teams workflow's message: one Adaptive Card (1.4) listing the changes, worst first, each with its fix."""
    where = f"tenant {tenant}" if tenant else "this tenant"
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True, "text": f"Intune sync: {where}"}
    ]
    for changed in found:
        finding = changed.finding
        title = f"{_label(changed)}: {finding.get('name') or finding.get('target')}"
        facts = [{"title": "Target", "value": str(finding.get("target"))}]
        if changed.change != "resolved":
            facts += [
                {"title": "Problem", "value": str(finding.get("problem"))},
                {"title": "Fix", "value": str(finding.get("fix"))},
            ]
        body += [
            {
                "type": "TextBlock",
                "wrap": True,
                "weight": "Bolder",
                "text": title,
                "color": "Attention"
                if finding.get("severity") == "critical"
                else "Warning"
                if changed.change != "resolved"
                else "Good",
            },
            {"type": "FactSet", "facts": facts},
        ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if page:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the status page", "url": page}]
    return {"type": "message", "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}]}


def webhook_message(tenant: str | None, found: list[Changed], page: str | None) -> dict[str, Any]:
    return {
        "type": "intune-sync.findings.changed",
        "tenant": tenant,
        "statusPage": page,
        "changes": [{"change": c.change, **c.finding} for c in found],
    }


def _label(changed: Changed) -> str:
    if changed.change == "resolved":
        return "Resolved"
    return str(changed.finding.get("severity") or "finding").capitalize() + (
        " (worse)" if changed.change == "worse" else ""
    )


def _post(url: str, body: bytes, headers: Mapping[str, str], deadline: Deadline) -> int | None:
    """POST with bounded retries (429 and 5xx, honouring Retry-After) inside the deadline: the last status (None:
    no answer). The URL is never logged."""
    session = session_for(url, USER_AGENT)
    status: int | None = None
    try:
        for attempt in range(1, TRIES + 1):
            left = deadline.remaining()
            if left <= 1:
                log.warning("A notification was not sent: the run's time budget is used up; the next run sends it")
                return None
            try:
                with bounded_by(deadline):
                    answer = session.post(
                        url,
                        data=body,
                        headers={"Content-Type": "application/json", **headers},
                        timeout=(min(5.0, left), min(20.0, left)),
                        allow_redirects=False,
                    )
            except (requests.RequestException, OSError) as exc:
                log.warning(
                    "A notification could not be delivered (try %d of %d): %s", attempt, TRIES, type(exc).__name__
                )
                continue
            status = answer.status_code
            if 200 <= status < 300:
                return status
            wait = parse_retry_after(answer.headers.get("Retry-After")) if answer.status_code in (429, 503) else None
            log.warning("A notification was refused with %d (try %d of %d)", answer.status_code, attempt, TRIES)
            if answer.status_code < 500 and answer.status_code != 429:
                return status
            pause = min(wait if wait is not None else 2.0 ** (attempt - 1), 30.0)
            if attempt < TRIES and pause < deadline.remaining() - 1:
                time.sleep(pause)
        return status
    finally:
        session.close()
