"""The operator's commands (grant, doctor, status, sync), over the same code the functions run.

Exit codes, the same for every command: 0 the command did what it was asked and found nothing wrong; 1 something
is wrong in the tenant, the identity, Graph or a sync (each problem is printed with its fix); 2 the command line
or an app setting is invalid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TextIO

from shared import doctor, legacy, run, status, watch
from shared import tenants as tenancy
from shared.clients import client_for
from shared.errors import (
    ConfigurationError,
    GraphForbidden,
    GraphNotFound,
    InvalidObjectId,
    InvalidRequest,
    StoreUnavailable,
    SyncAppError,
)
from shared.graph import Deadline
from shared.permissions import grant_app_roles, token_claims
from shared.process import PROCESS
from shared.settings import Settings, load_settings
from shared.targets import SYNC_TYPES, TARGETS, permissions_for
from shared.targets.base import validate_object_id

LISTER = doctor.LISTER


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    PROCESS.start()
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace, TextIO], int] = args.command
    try:
        return command(args, out)
    except ConfigurationError as exc:
        for setting, message in exc.problems:
            print(f"error: app setting {setting}: {message}", file=out)
        print(f"fix: {doctor.SETTING_FIX.format(' and '.join(exc.settings))}", file=out)
        return exc.exit_code
    except SyncAppError as exc:
        print(f"error: {exc}", file=out)
        advice = exc.remedy(lister=LISTER)
        if advice:
            print(f"fix: {advice}", file=out)
        return exc.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="command")

    grant = commands.add_parser("grant", help="grant the Graph permissions the targets need to the app's identity")
    grant.add_argument(
        "--principal-id",
        required=True,
        type=_guid,
        help="object (principal) id of the managed identity: az functionapp identity show -g RG -n APP "
        "--query principalId -o tsv",
    )
    _target_option(grant)
    grant.set_defaults(command=_grant)

    check = commands.add_parser("doctor", help="check settings, identity, permissions and each target")
    check.add_argument(
        "--max-age-hours", type=float, default=24, help="an object whose last sync is older is reported stale"
    )
    check.add_argument(
        "--principal-id",
        type=_guid,
        help="object id of the app's managed identity: checks its grants in the directory when doctor runs "
        "with your own sign-in (az login) instead of the identity's",
    )
    check.add_argument(
        "--notify-test",
        action="store_true",
        help="send one test message to each notification destination (NOTIFY_*) and report its answer",
    )
    _target_option(check)
    _tenant_option(check)
    check.set_defaults(command=_doctor)

    show = commands.add_parser("status", help="each target's objects and their state")
    show.add_argument("--json", action="store_true", help="JSON (as GET /api/sync's targets) instead of tables")
    show.add_argument("--live", action="store_true", help="read Graph, not the stored results (with a storage account)")
    _target_option(show)
    _tenant_option(show)
    show.set_defaults(command=_status)

    sync = commands.add_parser("sync", help="sync the targets, as the functions do")
    taking = ", ".join(name for name, target in TARGETS.items() if target.takes_sync_type)
    sync.add_argument("--type", choices=SYNC_TYPES, help=f"the sync type of {taking}; default: the target's setting")
    sync.add_argument(
        legacy.CLI_OPTION,
        action="extend",
        nargs="+",
        type=_object_id,
        metavar="ID",
        help=f"one or more {TARGETS[legacy.TARGET].noun} ids (implies --target {legacy.TARGET}); repeatable",
    )
    sync.add_argument(
        "--id", action="extend", nargs="+", type=_object_id, metavar="ID", help="ids of the one --target's objects"
    )
    sync.add_argument("--dry-run", action="store_true", help="show what would be synced, sync nothing")
    _target_option(sync)
    _tenant_option(sync)
    sync.set_defaults(command=_sync)
    return parser


def _target_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--target", action="append", choices=TARGETS, metavar="NAME", help="repeatable; default: SYNC_TARGETS"
    )


def _tenant_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--tenant", action="append", metavar="ID", help="a tenant of TENANT_IDS; repeatable; default: every one"
    )


def _tenants(args: argparse.Namespace) -> tuple[str | None, ...]:
    return tenancy.selected(load_settings(), args.tenant, "--tenant")


def _guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an object id (a GUID)") from None


def _object_id(value: str) -> str:
    try:
        return validate_object_id(value)
    except InvalidObjectId as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _targets(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(dict.fromkeys(args.target)) if args.target else load_settings().targets


def _grant(args: argparse.Namespace, out: TextIO) -> int:
    settings = load_settings()
    graph = client_for(settings.graph)
    deadline = Deadline(settings.graph.time_budget)
    try:
        results = grant_app_roles(graph, args.principal_id, permissions_for(_targets(args)), deadline)
    except GraphForbidden as refused:
        print(
            f"error: Graph refused to grant the permission to {_signed_in_as(graph.token(deadline))}: "
            f"{refused.message}",
            file=out,
        )
        print(
            "fix: Sign in (az login) as an administrator who may assign application permissions, such as a "
            "Privileged Role Administrator: the call needs AppRoleAssignment.ReadWrite.All and Application.Read.All.",
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
    for result in results:
        state = "was already granted" if result.already_granted else "is now granted"
        print(f"{result.role} {state} to {result.principal_id} (app role {result.app_role_id}).", file=out)
    if not all(result.already_granted for result in results):
        print(doctor.GRANT_DELAY, file=out)
    return 0


def _signed_in_as(token: str) -> str:
    """Who the refused token belongs to, and what it carries: the first thing to check when a grant is refused."""
    claims = token_claims(token)
    who = claims.get("upn") or f"the identity with object id {claims.get('oid')} (app id {claims.get('appid')})"
    held = " ".join(claims.get("roles") or []) or str(claims.get("scp") or "") or "no roles or scopes"
    return f"{who}, whose token carries {held}"


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    if args.notify_test:
        return _notify_test(out)
    findings = doctor.diagnose(
        max_age=timedelta(hours=args.max_age_hours),
        principal_id=args.principal_id,
        targets=args.target,
        tenants=args.tenant,
    )
    for finding in findings:
        print(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.topic}: {finding.detail}", file=out)
        if finding.fix:
            print(f"      fix: {finding.fix}", file=out)
    problems = sum(not f.ok for f in findings)
    print("All healthy." if not problems else f"{problems} problem(s) found.", file=out)
    if any(f.invalid_setting for f in findings):
        return 2
    return 0 if not problems else 1


def _notify_test(out: TextIO) -> int:
    """One test message to each configured destination; 1 when one did not take it (or none is configured)."""
    from shared import notify  # noqa: PLC0415 - only for this option

    settings = load_settings()
    card, payload = notify.test_messages(settings)
    answered = notify.send(settings, card, payload, Deadline(settings.graph.time_budget))
    if not answered:
        print("FAIL  notify: no destination is set (NOTIFY_TEAMS_WEBHOOK_URL, NOTIFY_WEBHOOK_URL)", file=out)
        return 1
    for name, status_code in answered.items():
        ok = status_code is not None and 200 <= status_code < 300
        said = f"answered {status_code}" if status_code is not None else "did not answer"
        print(f"{'ok  ' if ok else 'FAIL'}  notify {name}: the test message {said}", file=out)
    return 0 if all(s is not None and 200 <= s < 300 for s in answered.values()) else 1


def _status(args: argparse.Namespace, out: TextIO) -> int:
    """Each target's objects (per tenant with TENANT_IDS); configured ids the tenant does not have and targets that
    cannot be read make it 1."""
    settings = load_settings()
    if settings.stored and not args.live:
        return _stored_status(settings, args, out)
    reports = status.tenant_reports(settings, _tenants(args), _targets(args))
    if args.json:
        parts = {report.tenant: report.as_dict() for report in reports}
        print(json.dumps({"tenants": parts} if settings.tenants else parts[None], indent=2), file=out)
    else:
        for report in reports:
            if report.tenant:
                print(f"tenant {report.tenant}", file=out)
            for state in report.states:
                _print_table(state, out)
            if report.expiry is not None:
                _print_expiry(report.expiry, out)
    notes = sys.stderr if args.json else out
    problems = False
    for report in reports:
        where = f"tenant {report.tenant}: " if report.tenant else ""
        for state in report.states:
            target = TARGETS[state.target]
            for missing in state.missing:
                print(
                    f"missing: {missing} is in {target.ids_setting} but not in the tenant; remove or correct it.",
                    file=notes,
                )
            if state.error is not None:
                print(f"error: {where}{state.target}: {state.error}", file=notes)
                advice = state.error.remedy(target, LISTER, state.tenant)
                if advice:
                    print(f"fix: {advice}", file=notes)
            problems = problems or bool(state.missing or state.error)
    return 1 if problems else 0


def _stored_status(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """The stored results (no Graph call): each object's last outcome, and each tenant's expiry standing; 1 when an
    object's last outcome failed."""
    tenants = _tenants(args)
    try:
        found = status.stored_tenants(settings, tenants)
    except StoreUnavailable as exc:
        print(f"error: {exc}\nfix: {exc.remedy(lister=LISTER)} Or run it with --live.", file=out)
        return 1
    if args.json:
        print(json.dumps({"source": "store", "tenants": found}, indent=2), file=out)
    else:
        _print_stored(found, _targets(args) or settings.targets, out)
    failed = any(
        obj["lastOutcome"].get("outcome") == "failed"
        for shown in found.values()
        for target in shown["targets"].values()
        for obj in target["objects"]
    )
    return 1 if failed else 0


def _print_stored(found: dict[str, Any], names: Sequence[str], out: TextIO) -> None:
    for tenant, shown in found.items():
        print(f"tenant {tenant}: stored {shown['asOf'] or 'never (not synced yet)'}", file=out)
        for name, target in shown["targets"].items():
            for obj in target["objects"] if name in names else ():
                last = obj["lastOutcome"]
                said = last.get("outcome", "?") + (f" ({last['reason']})" if last.get("reason") else "")
                print(f"  {name:<45} {obj['id'] or '-':<36}  {said:<22} {last['at']}", file=out)
        for standing in shown["expiry"]["objects"]:
            left = standing.get("daysLeft")
            print(
                f"  expiry {standing['target']:<38} {standing['id']:<36}  days left {'-' if left is None else left:<5} "
                f"{standing.get('problem') or 'ok'}",
                file=out,
            )


def _print_table(state: status.TargetState, out: TextIO) -> None:
    target = TARGETS[state.target]
    print(f"{state.target} ({target.version}, {target.permission})", file=out)
    columns = ("id", *target.state_fields)
    rows = [[_cell(shown.get(c)) for c in columns] for shown in map(target.state, state.objects)]
    rows += [[missing, "missing", *["-"] * (len(columns) - 2)] for missing in state.missing]
    if not rows:
        print(f"  {target.nothing_found() if state.error is None else 'could not be read'}", file=out)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for row in [list(columns), *rows]:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)


def _print_expiry(report: watch.WatchReport, out: TextIO) -> None:
    print(f"expiry watch (warns {report.warning_days} days ahead)", file=out)
    for standing in report.standings:
        expires = standing.expires.date().isoformat() if standing.expires else "-"
        left = standing.days_left(report.at)
        print(
            f"  {standing.name:<50} {standing.id:<36}  expires {expires:<10}  "
            f"days left {'-' if left is None else left:<5}  "
            + (f"{standing.severity}: {standing.problem}" if standing.problem else "ok"),
            file=out,
        )
    for skipped in report.unchecked:
        print(f"  {skipped.target:<50} {skipped.reason}", file=out)


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Only ``logger``'s errors while the block runs."""
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _sync(args: argparse.Namespace, out: TextIO) -> int:
    settings = load_settings()
    legacy_ids = getattr(args, legacy.CLI_OPTION.removeprefix("--"))
    targets = (legacy.TARGET,) if legacy_ids else _targets(args)
    ids = legacy_ids or args.id
    if ids and len(targets) != 1:
        raise InvalidRequest("--id", "needs exactly one --target")
    chosen = _tenants(args)
    if ids and len(chosen) != 1:
        raise InvalidRequest("--tenant", "ids belong to one tenant: name it with --tenant")
    if args.dry_run:
        deadline = Deadline(settings.graph.time_budget)
        count = 0
        for tenant in chosen:
            graph = client_for(settings.graph, tenant)
            where = f"tenant {tenant} " if tenant else ""
            for name in targets:
                for obj in run.resolve_objects(graph, settings, TARGETS[name], ids, deadline):
                    print(f"would sync {where}{name} {obj.id}", file=out)
                    count += 1
        print(f"{count} object(s); nothing was sent (--dry-run).", file=out)
        return 0
    with _quiet(run.log):  # each result is printed below: the run's own line for it would say it twice
        report = run.run_sync(settings, targets, ids=ids, sync_type=args.type, tenants=chosen)
    for result in report.results:
        where = f"{result.tenant}  " if result.tenant else ""
        line = f"{result.outcome:<8}  {where}{result.target}  {result.id or '-'}  request-id={result.request_id}"
        print(f"{line}  {result.message}" if result.message else line, file=out)
    print(report.summary(), file=out)
    for advice in report.remedies(lister=LISTER):
        print(f"fix: {advice}", file=out)
    return 0 if report.ok else 1
