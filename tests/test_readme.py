"""The README and docs/ are exactly true where a test can tell: every setting the code reads is documented and in
local.settings.example.json, every command, option and make target they show exists and parses, and the
README stays one screenful for a newcomer, with the reference in docs/."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from shared.cli import _parser
from shared.setting_reader import Setting
from shared.settings import SETTING_NAMES
from shared.targets import TARGETS
from shared.targets.managed_devices import WRITES_PER_WINDOW

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
# Everything a reader is shown, each doc's title as a section like the README's own.
EVERYTHING = "\n".join([README, *("\n" + text.replace("# ", "## ", 1) for text in DOCS.values())])
# Read by the Functions host from function.json, and checked by doctor.
HOST_SETTINGS = ("SYNC_SCHEDULE",)
# Set by the platform when the app has a managed identity; a local.settings.json must not fake them.
PLATFORM_SETTINGS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")
PLACEHOLDER = "6e4e4ba9-3b55-4f6d-9f3c-2a7d3a0c1b01"


def section(title: str, text: str = README) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def settings_table() -> set[str]:
    rows = [line for line in DOCS["settings.md"].splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z_]+)`", row.split("|")[1])}


def shown_commands() -> list[str]:
    """Every ``python -m shared ...`` the README shows to run (Layout only names modules), up to a comment."""
    found = re.findall(r"python -m shared ([^`\n#]*)", EVERYTHING.replace(section("Layout", EVERYTHING), ""))
    return [command.strip().rstrip(")") for command in found if command.strip() and "..." not in command]


def test_every_setting_the_code_reads_is_in_the_settings_table() -> None:
    assert settings_table() == {*SETTING_NAMES, *HOST_SETTINGS}


@pytest.mark.parametrize("setting", [s for target in TARGETS.values() for s in target.settings], ids=lambda s: s.name)
def test_each_targets_settings_row_is_the_one_the_target_declares(setting: Setting) -> None:
    assert f"| `{setting.name}` | {setting.default} | {setting.doc} |" in DOCS["settings.md"].splitlines()


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
    rows = [line for line in section("Operator commands", EVERYTHING).splitlines() if line.startswith("| `")]
    assert len(rows) == 4
    for row in rows:
        usage = row.split("`")[1]
        name = usage.split()[0]
        known = {option for action in subcommands.choices[name]._actions for option in action.option_strings}
        assert set(re.findall(r"--[a-z-]+", usage)) <= known, usage


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))

    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", EVERYTHING))

    assert named
    assert named <= targets


def test_every_local_host_option_the_readme_shows_exists() -> None:
    script = (ROOT / "scripts" / "local_host.py").read_text()

    for option in re.findall(r"local_host\.py((?: --[a-z-]+)+)", EVERYTHING):
        for name in option.split():
            assert f'"{name}"' in script


def test_every_write_limit_the_readme_quotes_is_the_one_the_code_paces_under() -> None:
    quoted = re.findall(r"(\d+) (?:device )?writes per 20 s", EVERYTHING)

    assert quoted
    assert set(quoted) == {str(WRITES_PER_WINDOW)}
    assert f"at most {WRITES_PER_WINDOW} device writes" in DOCS["settings.md"]


def test_the_prerequisites_ask_for_no_exchange_connector() -> None:
    """Its support ended on 19 February 2024: it is one target among several, never a requirement."""
    assert "Exchange connector" not in section("Prerequisites")


def test_the_demo_certificate_the_readme_describes_is_the_demos() -> None:
    script = (ROOT / "tests" / "emulator" / "demo.py").read_text()
    promised = re.search(r"a push certificate that expires in (\d+) days", README)

    assert promised is not None
    assert f"DEMO_CERTIFICATE_DAYS = {promised[1]}\n" in script


def test_the_readme_quotes_no_test_pass_time_below_the_ci_budget() -> None:
    """Pass times vary with the machine; the README promises only the budget that CI keeps."""
    for tests in (section("Tests"), section("Tests", EVERYTHING.split(README, 1)[1])):
        assert not re.search(r"\d+\s*[\u2013-]\s*\d+ s\b|about (?:four|five) minutes", tests)
        assert "under three minutes" in tests


def test_the_readme_is_one_screenful_and_links_the_reference_that_exists() -> None:
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)", README))

    assert len(README.splitlines()) <= 250
    assert linked == set(DOCS)


def test_every_section_the_apps_messages_point_to_is_in_the_readme() -> None:
    # Adjacent string literals joined, as Python joins them: a message may be split across lines.
    sources = [re.sub(r'"\s*\n\s*f?"', "", path.read_text()) for path in (ROOT / "shared").rglob("*.py")]
    pointed = {title for text in sources for title in re.findall(r"README, '([^']+)'", text)}

    assert pointed
    for title in pointed:
        assert f"\n## {title}" in README, title
