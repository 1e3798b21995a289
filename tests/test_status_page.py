"""GET /api/status: the stored state as one HTML page, worst first, escaped, with a strict CSP and no script."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import deliver, empty_tables, fire_timer, open_status, use
from tests.emulator import CUSTOMER_TENANT_IDS, Emulator, vpp_token
from tests.functions_host.storage import Azurite

T1, T2, *_ = CUSTOMER_TENANT_IDS
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def fleet(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """Two tenants: T1 with an expired VPP token named to break out of HTML, T2 whose Graph refuses the app."""
    empty_tables(azurite)
    expired = {**vpp_token("7b1d9c2e-0f3a-4b5c-8d6e-1a2b3c4d5e09", state="expired", expires_in_days=-3.5)}
    expired["organizationName"] = HOSTILE
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(T1, objects={"vppTokens": [expired]})
        emulator.add_tenant(T2, roles=())
        use(
            emulator,
            monkeypatch,
            AzureWebJobsStorage=azurite.connection_string,
            SYNC_TARGETS="exchangeConnectors vppTokens",
            EXPIRY_WARNING_DAYS="30",
        )
        for message in fire_timer():
            deliver(message)  # each tenant's queued invocation: its syncs and its expiry watch, stored
        yield emulator


def test_the_page_counts_tenants_failures_and_expired_tokens(fleet: Emulator) -> None:
    page = open_status()

    assert page.status == 200
    assert page.mimetype == "text/html"
    counts = {label: value for value, label in re.findall(r"<li><b>(\d+)</b>([^<]+)</li>", page.text)}
    assert counts["tenants"] == "2"
    assert int(counts["failures"]) >= 1
    assert counts["expired"] == "1"


def test_an_expired_token_is_a_red_row_and_its_hostile_name_is_text(fleet: Emulator) -> None:
    page = open_status({"tenant": T1})

    assert HOSTILE not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    row = next(
        r for r in re.findall(r"<tr class=(\w+)><td>([^<]*)</td><td>([^<]*)</td>", page.text) if "expired" in r[2]
    )
    assert row[0] == "red"


def test_each_failure_shows_its_remedy_and_the_worst_tenant_comes_first(fleet: Emulator) -> None:
    page = open_status()

    assert page.text.index(T2) < page.text.index(T1)  # T2's listing failed; T1's token expired: 1 each, then T2's own
    assert "needs the Microsoft Graph application permission" in page.text


def test_the_page_allows_no_script_and_no_outside_asset(fleet: Emulator) -> None:
    page = open_status()
    policy = page.headers["Content-Security-Policy"]

    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # falls back to 'none'
    assert "<script" not in page.text
    assert "http" not in re.sub(r"https://intune-sync[^\"]*", "", page.text.split("<body>")[0])
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"


def test_a_thousand_tenants_are_paged_keeping_the_key(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_tables(azurite)
    with Emulator(entra=True) as emulator:
        for n in range(1, 102):
            emulator.add_tenant(f"{n:08x}-0000-4000-8000-{n:012x}")
        use(emulator, monkeypatch, AzureWebJobsStorage=azurite.connection_string)

        first, second = open_status(), open_status({"page": "2"})

        assert first.text.count("<details") == 100
        assert second.text.count("<details") == 1
        assert 'href="?code=function-key-secret&amp;page=2"' in first.text
        assert emulator.calls() == []


@pytest.mark.parametrize(("params", "said"), [({"page": "0"}, "page:"), ({"tenant": "nope"}, "tenant:")])
def test_a_bad_query_is_400_naming_it(fleet: Emulator, params: dict[str, str], said: str) -> None:
    page = open_status(params)

    assert page.status == 400
    assert said in page.text


def test_without_a_storage_account_the_page_says_so(app_env: Emulator) -> None:
    fire_timer()

    page = open_status()

    assert page.status == 503
    assert "no storage account is set" in page.text
