"""What the Functions host and the deployment read: function.json, host.json, requirements, ignores."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.package import app_folders, build
from shared import dispatch

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("sync_timer", "sync_http", "sync_tenant", "status_page")
QUEUE_OUTPUT = {
    "name": "tenantqueue",
    "type": "queue",
    "direction": "out",
    "queueName": "sync-tenants",
    "connection": "AzureWebJobsStorage",
}
# Every setting the code reads, less the two the platform sets, plus the timer's schedule (read by the host).


def function_json(name: str) -> dict:
    return json.loads((ROOT / name / "function.json").read_text())


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_binding_is_a_parameter_of_main(name: str) -> None:
    bindings = function_json(name)["bindings"]
    parameters = set(inspect.signature(importlib.import_module(name).main).parameters)

    names = {b["name"] for b in bindings if b["name"] != "$return"}
    assert names == parameters
    assert all("_" not in n for n in names)
    assert function_json(name)["scriptFile"] == "__init__.py"


def test_webhook_needs_a_function_key_and_lives_at_api_sync() -> None:
    trigger, output, queue = function_json("sync_http")["bindings"]

    assert trigger == {
        "authLevel": "function",
        "type": "httpTrigger",
        "direction": "in",
        "name": "req",
        "methods": ["get", "post"],
        "route": "sync/{target?}",
    }
    assert output == {"type": "http", "direction": "out", "name": "$return"}
    assert queue == QUEUE_OUTPUT


def test_the_timer_and_the_webhook_queue_tenants_on_sync_tenants_which_sync_tenant_reads() -> None:
    assert function_json("sync_timer")["bindings"][1] == QUEUE_OUTPUT
    assert function_json("sync_tenant")["bindings"] == [
        {
            "name": "msg",
            "type": "queueTrigger",
            "direction": "in",
            "queueName": "sync-tenants",
            "connection": "AzureWebJobsStorage",
        }
    ]


def test_timer_runs_on_the_sync_schedule_setting_and_not_at_start_up() -> None:
    trigger, _ = function_json("sync_timer")["bindings"]

    assert trigger["type"] == "timerTrigger"
    assert trigger["name"] == "mytimer"
    assert trigger["schedule"] == "%SYNC_SCHEDULE%"
    assert trigger["runOnStartup"] is False


def test_host_json_is_version_2_with_a_timeout_and_the_bundle_that_brings_storage_queues() -> None:
    host = json.loads((ROOT / "host.json").read_text())

    assert host["version"] == "2.0"
    assert host["functionTimeout"] == "00:05:00"
    # Timers and HTTP are built into the host; the Storage queue trigger and output binding come in the bundle.
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}


def test_host_json_retries_a_failed_tenant_with_a_back_off_then_poisons_it() -> None:
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]

    assert queues["maxDequeueCount"] == dispatch.MAX_DEQUEUE_COUNT  # sync_tenant's "last try" line counts on it
    assert queues["visibilityTimeout"] == "00:02:00"  # 5 tries in 10 minutes: inside one 15-minute cycle
    assert queues["batchSize"] == 16
    assert queues["messageEncoding"] == "base64"


def test_requirements_are_exactly_the_four_runtime_packages() -> None:
    lines = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]

    assert [re.split(r"[<>=!~ ]", ln)[0] for ln in lines] == [
        "azure-functions",
        "azure-identity",
        "requests",
        "azure-data-tables",
    ]


def test_funcignore_keeps_tests_and_tooling_out_of_the_package() -> None:
    ignored = (ROOT / ".funcignore").read_text().splitlines()

    for entry in (
        "tests/",
        "scripts/",
        "benchmarks/",
        "infra/",
        ".ci/",
        "requirements-dev.txt",
        ".venv/",
        ".venv313/",
        ".venv-checkov/",
        ".checkov.yaml",
        "azure.yaml",
    ):
        assert entry in ignored
    for deployed in ("shared", "sync_http", "sync_timer", "host.json", "requirements.txt"):
        assert not any(deployed.startswith(e.rstrip("/")) for e in ignored)


def test_the_package_holds_the_app_alone_with_unchecked_bytecode_for_every_module(tmp_path: Path) -> None:
    package = build(tmp_path / "package")

    assert sorted(p.name for p in package.iterdir()) == sorted(["host.json", "requirements.txt", *app_folders()])
    assert {"sync_timer", "sync_http", "shared"} <= set(app_folders())
    tag = sys.implementation.cache_tag
    for source in package.rglob("*.py"):
        cached = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        flags = int.from_bytes(cached.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{cached} is not an unchecked-hash cache (PEP 552)"


def test_the_package_imports_from_its_bytecode_without_reading_a_source(tmp_path: Path) -> None:
    package = build(tmp_path / "package")
    for source in package.rglob("*.py"):
        source.write_text("raise SystemExit('a source was read')\n")  # unchecked caches never look at it

    loaded = subprocess.run(
        [sys.executable, "-c", "import sync_http, sync_timer; from shared import run, webhook"],
        cwd=package,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(package)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr


def test_the_webhook_loads_requests_and_azure_identity_before_any_module_of_the_app() -> None:
    """At the trigger module's own depth, not seven imports down, where CPython 3.13 before 3.13.13
    maps and unmaps a stack chunk for each call across its edge (sync_http/__init__.py; benchmarks/README.md)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sync_http; print(*sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    order = loaded.stdout.split()
    first_of_the_app = next(i for i, name in enumerate(order) if name.split(".")[0] == "shared")

    assert order.index("urllib3.util.url") < first_of_the_app
    assert order.index("azure.identity") < first_of_the_app
