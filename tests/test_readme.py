"""The README is exactly true where a test can tell: every setting the code reads is documented and in
local.settings.example.json, and every command, option and make target it shows exists and parses."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from shared.cli import _parser
from shared.settings import SETTING_NAMES
from shared.targets.managed_devices import WRITES_PER_WINDOW

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Read by the Functions host from function.json, and checked by doctor.
HOST_SETTINGS = ("SYNC_SCHEDULE",)
# Set by the platform when the app has a managed identity; a local.settings.json must not fake them.
PLATFORM_SETTINGS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")
PLACEHOLDER = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"


def section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def settings_table() -> set[str]:
    rows = [line for line in section("Settings").splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z_]+)`", row.split("|")[1])}


def shown_commands() -> list[str]:
    """Every ``python -m shared ...`` the README shows to run (Layout only names modules), up to a comment."""
    found = re.findall(r"python -m shared ([^`\n#]*)", README.replace(section("Layout"), ""))
    return [command.strip().rstrip(")") for command in found if command.strip() and "..." not in command]


def test_every_setting_the_code_reads_is_in_the_settings_table() -> None:
    assert settings_table() == {*SETTING_NAMES, *HOST_SETTINGS}


def test_every_app_setting_is_in_the_local_settings_example() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]

    assert {*SETTING_NAMES, *HOST_SETTINGS} - set(PLATFORM_SETTINGS) <= set(example)
    assert not set(PLATFORM_SETTINGS) & set(example)


@pytest.mark.parametrize("command", shown_commands())
def test_every_command_the_readme_shows_parses(command: str) -> None:
    words = [PLACEHOLDER if re.fullmatch(r"<[^>]+>|ID|\$\w+", w) else w for w in shlex.split(command)]

    _parser().parse_args(words)


def test_every_option_in_the_operator_table_belongs_to_its_command() -> None:
    subcommands = next(a for a in _parser()._actions if a.dest == "command" or a.choices)
    rows = [line for line in section("Operator commands").splitlines() if line.startswith("| `")]
    assert len(rows) == 4
    for row in rows:
        usage = row.split("`")[1]
        name = usage.split()[0]
        known = {option for action in subcommands.choices[name]._actions for option in action.option_strings}
        assert set(re.findall(r"--[a-z-]+", usage)) <= known, usage


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))

    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))

    assert named
    assert named <= targets


def test_every_local_host_option_the_readme_shows_exists() -> None:
    script = (ROOT / "scripts" / "local_host.py").read_text()

    for option in re.findall(r"local_host\.py((?: --[a-z-]+)+)", README):
        for name in option.split():
            assert f'"{name}"' in script


def test_every_write_limit_the_readme_quotes_is_the_one_the_code_paces_under() -> None:
    quoted = re.findall(r"(\d+) (?:device )?writes per 20 s", README)

    assert quoted
    assert set(quoted) == {str(WRITES_PER_WINDOW)}
    assert f"at most {WRITES_PER_WINDOW} device writes" in section("Settings")


def test_the_prerequisites_ask_for_no_exchange_connector() -> None:
    """Its support ended on 19 February 2024: it is one target among several, never a requirement."""
    assert "Exchange connector" not in section("Prerequisites")


def test_the_demo_certificate_the_readme_describes_is_the_demos() -> None:
    script = (ROOT / "scripts" / "local_host.py").read_text()
    promised = re.search(r"a push certificate that expires in (\d+) days", README)

    assert promised is not None
    assert f"DEMO_CERTIFICATE_DAYS = {promised[1]}\n" in script


def test_the_readme_quotes_no_test_pass_time_below_the_ci_budget() -> None:
    """Pass times vary with the machine; the README promises only the budget that CI keeps."""
    assert not re.search(r"\d+\s*[\u2013-]\s*\d+ s\b|about (?:four|five) minutes", section("Tests"))
    assert "under three minutes" in section("Tests")
