"""The operator's commands (grant, doctor, status, sync), over the same code the functions run.

Exit codes, the same for every command: 0 the command did what it was asked and found nothing wrong; 1 something
is wrong in the tenant, the identity, Graph or a sync (each problem is printed with its fix); 2 the command line
or an app setting is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import timedelta
from typing import TextIO

from shared import connectors, doctor, run
from shared.errors import (
    ConfigurationError,
    GraphForbidden,
    GraphNotFound,
    InvalidConnectorId,
    SyncAppError,
)
from shared.graph import Deadline, client_for
from shared.permissions import PERMISSION, grant_app_role, token_claims
from shared.settings import SYNC_TYPES, load_settings

LISTER = doctor.LISTER


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args, out)
    except ConfigurationError as exc:
        print(f"error: app setting {exc}", file=out)
        print(f"fix: Correct the app setting {exc.setting} (README, 'Settings').", file=out)
        return 2
    except SyncAppError as exc:
        print(f"error: {exc}", file=out)
        advice = run.remedy(exc, lister=LISTER)
        if advice:
            print(f"fix: {advice}", file=out)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    grant = commands.add_parser("grant", help=f"grant {PERMISSION} to the app's managed identity")
    grant.add_argument(
        "--principal-id",
        required=True,
        type=_guid,
        help="object (principal) id of the managed identity: az functionapp identity show -g RG -n APP "
        "--query principalId -o tsv",
    )
    grant.set_defaults(command=_grant)

    check = commands.add_parser("doctor", help="check settings, identity, permission and connectors")
    check.add_argument("--max-age-hours", type=float, default=24, help="a connector not synced for longer is stale")
    check.add_argument(
        "--principal-id",
        type=_guid,
        help="object id of the app's managed identity: checks its grant in the directory when doctor runs "
        "with your own sign-in (az login) instead of the identity's",
    )
    check.set_defaults(command=_doctor)

    status = commands.add_parser("status", help="the connectors' state")
    status.add_argument("--json", action="store_true", help="JSON instead of a table")
    status.set_defaults(command=_status)

    sync = commands.add_parser("sync", help="sync the connectors, as the functions do")
    sync.add_argument("--type", choices=SYNC_TYPES, help="default: SYNC_TYPE")
    sync.add_argument(
        "--connector",
        action="extend",
        nargs="+",
        type=_connector_id,
        metavar="ID",
        help="one or more connector ids; repeatable",
    )
    sync.add_argument("--dry-run", action="store_true", help="show the targets, sync nothing")
    sync.set_defaults(command=_sync)
    return parser


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an object id (a GUID)") from None


def _connector_id(value: str) -> str:
    try:
        return connectors.validate_connector_id(value)
    except InvalidConnectorId as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _grant(args: argparse.Namespace, out: TextIO) -> int:
    settings = load_settings()
    graph = client_for(settings.graph)
    deadline = Deadline(settings.graph.time_budget)
    try:
        result = grant_app_role(graph, args.principal_id, deadline)
    except GraphForbidden as refused:
        print(
            f"error: Graph refused to grant the permission to {_signed_in_as(graph.token(deadline))}: "
            f"{refused.message} Sign in (az login) as an administrator who may assign application permissions, "
            "such as a Privileged Role Administrator: the call needs AppRoleAssignment.ReadWrite.All and "
            "Application.Read.All.",
            file=out,
        )
        return 1
    except GraphNotFound:
        print(
            f"error: no service principal with object id {args.principal_id} in this tenant. Use the managed "
            "identity's principal id: az functionapp identity show -g RG -n APP --query principalId -o tsv",
            file=out,
        )
        return 1
    state = "was already granted" if result.already_granted else "is now granted"
    print(f"{PERMISSION} {state} to {result.principal_id} (app role {result.app_role_id}).", file=out)
    if not result.already_granted:
        print(doctor.GRANT_DELAY, file=out)
    return 0


def _signed_in_as(token: str) -> str:
    """Who the refused token belongs to, and what it carries: the first thing to check when a grant is refused."""
    claims = token_claims(token)
    who = claims.get("upn") or f"the identity with object id {claims.get('oid')} (app id {claims.get('appid')})"
    held = " ".join(claims.get("roles") or []) or str(claims.get("scp") or "") or "no roles or scopes"
    return f"{who}, whose token carries {held}"


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    findings = doctor.diagnose(max_age=timedelta(hours=args.max_age_hours), principal_id=args.principal_id)
    for finding in findings:
        print(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.topic}: {finding.detail}", file=out)
        if finding.fix:
            print(f"      fix: {finding.fix}", file=out)
    problems = sum(not f.ok for f in findings)
    print("All healthy." if not problems else f"{problems} problem(s) found.", file=out)
    if any(f.invalid_setting for f in findings):
        return 2
    return 0 if not problems else 1


def _status(args: argparse.Namespace, out: TextIO) -> int:
    """The connectors' state, and configured ids the tenant does not have (exit 1 while there are any)."""
    found = run.target_states(load_settings())
    columns = ("id", "status", "lastSyncDateTime", "serverName", "version")
    states = [c.state() for c in found.connectors]
    states += [{"id": missing, **dict.fromkeys(columns[1:]), "status": "missing"} for missing in found.missing]
    if args.json:
        print(json.dumps(states, indent=2), file=out)
    else:
        rows = [[str(state[c] or "-") for c in columns] for state in states]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        for row in [list(columns), *rows]:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
        if not states:
            print("No Exchange connector found.", file=out)
    for missing in found.missing:
        print(
            f"missing: {missing} is in EXCHANGE_CONNECTOR_IDS but not in the tenant; remove or correct it.",
            file=sys.stderr if args.json else out,
        )
    return 1 if found.missing else 0


def _sync(args: argparse.Namespace, out: TextIO) -> int:
    settings = load_settings()
    sync_type = args.type or settings.sync_type
    if args.dry_run:
        graph = client_for(settings.graph)
        targets = run.resolve_targets(graph, settings, args.connector, Deadline(settings.graph.time_budget))
        for connector_id in targets:
            print(f"would sync {connector_id} ({sync_type})", file=out)
        print(f"{len(targets)} connector(s); nothing was sent (--dry-run).", file=out)
        return 0
    report = run.run_sync(settings, sync_type, args.connector)
    for result in report.results:
        line = f"{result.outcome:<8}  {result.id}  request-id={result.request_id}"
        print(f"{line}  {result.message}" if result.message else line, file=out)
    print(report.summary(), file=out)
    for advice in report.remedies(lister=LISTER):
        print(f"fix: {advice}", file=out)
    return 0 if report.ok else 1
