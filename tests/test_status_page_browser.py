"""The status page as a person sees it: /api/status served by the real worker behind the local host's front end,
opened in Debian's headless Chromium. Its DOM, its console (a CSP violation is a console message) and its
screenshot's colours, which the page's one style sheet gives only if the CSP let it apply. The screenshot is kept
in test-artifacts/."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("azure_functions_runtime_v1", reason="the worker tests run in the Python 3.13 pass of `make test`")

from PIL import Image

from tests.conftest import empty_tables, wait_for
from tests.emulator import CUSTOMER_TENANT_IDS, Emulator, emulator_settings, free_port, vpp_token
from tests.functions_host.frontend import FrontEnd
from tests.functions_host.host import FunctionsHost
from tests.functions_host.queues import QueueOptions, Queues
from tests.functions_host.storage import Azurite

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
T1, T2, *_ = CUSTOMER_TENANT_IDS
HOSTILE = "<img src=x onerror=alert(1)>"
RED_ROW = (0xFD, 0xE2, 0xE1)  # .red's background in shared/status_page.py
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def page_url(azurite: Azurite) -> Iterator[str]:
    """Two tenants synced through the queue into Azurite's tables, the page served on a free port."""
    if CHROMIUM is None:
        pytest.skip(
            "Debian's chromium is not installed: make test installs it when run as root with apt "
            "(or: apt-get install chromium)"
        )
    empty_tables(azurite)
    queues = Queues(azurite.connection_string, QueueOptions.from_host_json(ROOT))
    queues.client("sync-tenants").clear_messages()
    expired = vpp_token("7b1d9c2e-0f3a-4b5c-8d6e-1a2b3c4d5e09", state="expired", expires_in_days=-3.5)
    expired["organizationName"] = HOSTILE
    with Emulator(entra=True) as emulator:
        emulator.add_tenant(T1, objects={"vppTokens": [expired]})
        emulator.add_tenant(T2, roles=())
        env = {
            **emulator_settings(emulator),
            "AzureWebJobsStorage": azurite.connection_string,
            "SYNC_TARGETS": "exchangeConnectors,vppTokens",
            "GRAPH_RETRY_BACKOFF_SECONDS": "0.01",
        }
        with FunctionsHost(ROOT, env=env, queues=queues) as host:
            assert host.invoke_timer("sync_timer").succeeded
            host.listen()
            wait_for(lambda: len(host.queue_invocations) == 2 and host.queues_idle, "both tenants synced", 60)
            port = free_port()
            server = FrontEnd(host, port).serve()
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                yield f"http://127.0.0.1:{port}/api/status?code=function-key"
            finally:
                server.shutdown()


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(  # noqa: S603 - Debian's chromium, headless
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def console(run: subprocess.CompletedProcess[str]) -> list[str]:
    """What the page wrote to the console, a CSP violation included (Chromium logs it as a CONSOLE line)."""
    return [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def test_a_person_sees_the_counts_a_red_row_and_the_hostile_name_as_text(page_url: str) -> None:
    dom = chromium("--dump-dom", page_url)

    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console(dom) == []
    assert "<li><b>2</b>tenants</li>" in dom.stdout
    assert "<li><b>1</b>expired</li>" in dom.stdout
    assert "<img" not in dom.stdout  # the token's name is text, not an element
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom.stdout
    assert '<tr class="red">' in dom.stdout


@pytest.mark.parametrize(("screen", "size"), [("phone", "412,915"), ("desktop", "1100,760")])
def test_the_page_renders_with_its_style(page_url: str, screen: str, size: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"status-page-{screen}.png"
    shot.unlink(missing_ok=True)

    run = chromium(f"--window-size={size}", "--hide-scrollbars", f"--screenshot={shot}", page_url)

    assert run.returncode == 0, run.stderr[-2000:]
    assert console(run) == []
    with Image.open(shot) as image:
        colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    assert RED_ROW in colours  # the style sheet applied: the CSP allowed exactly it
